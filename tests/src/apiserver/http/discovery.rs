//! Discovery: `/version`, `/api`, `/apis` and `/apis/{group}/{version}` (or `/api/v1`),
//! listing what the server serves, for `kubectl` and client-go.

use axum::Json;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use super::super::Shared;
use super::super::status::ApiError;
use super::no_such_path;

/// The Kubernetes version the server claims to be.
const VERSION: (&str, &str) = ("1", "33");

/// kubectl's abbreviations of the built-in resources.
fn short_names(plural: &str) -> &'static [&'static str] {
    match plural {
        "services" => &["svc"],
        "nodes" => &["no"],
        "endpoints" => &["ep"],
        "configmaps" => &["cm"],
        "namespaces" => &["ns"],
        "pods" => &["po"],
        _ => &[],
    }
}

pub(super) fn version_info() -> Value {
    let (major, minor) = VERSION;
    json!({
        "major": major,
        "minor": minor,
        "gitVersion": format!("v{major}.{minor}.0-causeway-test"),
        "gitCommit": "0000000000000000000000000000000000000000",
        "gitTreeState": "clean",
        "buildDate": "2025-01-01T00:00:00Z",
        "goVersion": "none",
        "compiler": "rustc",
        "platform": "linux/amd64",
    })
}

pub(super) fn core_versions(shared: &Shared) -> Value {
    json!({
        "kind": "APIVersions",
        "versions": ["v1"],
        "serverAddressByClientCIDRs": [
            {"clientCIDR": "0.0.0.0/0", "serverAddress": shared.addr.to_string()}
        ],
    })
}

pub(super) fn groups(shared: &Shared) -> Value {
    let mut names: Vec<(&str, &str)> = shared
        .store
        .resources()
        .iter()
        .filter(|r| !r.group.is_empty())
        .map(|r| (r.group, r.version))
        .collect();
    names.sort_unstable();
    names.dedup();
    let groups: Vec<Value> = names
        .iter()
        .map(|(group, version)| {
            let gv = json!({"groupVersion": format!("{group}/{version}"), "version": version});
            json!({"name": group, "versions": [gv], "preferredVersion": gv})
        })
        .collect();
    json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": groups})
}

pub(super) fn group_version(
    shared: &Shared,
    group: &str,
    version: &str,
) -> Result<Response, ApiError> {
    let resources: Vec<Value> = shared
        .store
        .resources()
        .iter()
        .filter(|r| r.group == group && r.version == version)
        .map(|r| {
            json!({
                "name": r.plural,
                "singularName": r.kind.to_lowercase(),
                "shortNames": short_names(r.plural),
                "namespaced": r.namespaced,
                "kind": r.kind,
                "verbs": ["create", "delete", "deletecollection", "get", "list", "patch",
                          "update", "watch"],
            })
        })
        .collect();
    if resources.is_empty() {
        return Err(no_such_path(&format!("{group}/{version}")));
    }
    let group_version = if group.is_empty() {
        version.to_owned()
    } else {
        format!("{group}/{version}")
    };
    Ok(Json(json!({
        "kind": "APIResourceList",
        "apiVersion": "v1",
        "groupVersion": group_version,
        "resources": resources,
    }))
    .into_response())
}
