//! The HTTP face: URL parsing, the request log and the fault modes, then the REST verbs
//! ([`verbs`]) or the discovery documents ([`discovery`]).
//!
//! One fallback handler parses every path itself (`/api/v1/...`, `/apis/{group}/{version}/...`,
//! with or without `namespaces/{ns}/`), because a route table cannot tell
//! `/api/v1/namespaces/{name}` (a Namespace) from `/api/v1/namespaces/{ns}/services` by
//! pattern alone.

mod discovery;
mod verbs;

use std::collections::HashMap;
use std::sync::Arc;

use axum::Json;
use axum::Router;
use axum::extract::{Query, State};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use http::{HeaderMap, Method, Uri};

use super::Shared;
use super::faults::{Mode, RequestRecord, Verb};
use super::resources::Resource;
use super::status::ApiError;

pub(crate) fn router(shared: Arc<Shared>) -> Router {
    Router::new().fallback(handle).with_state(shared)
}

/// What a path names.
enum Route {
    Version,
    CoreVersions,
    Groups,
    GroupVersion { group: String, version: String },
    Resource(Target),
}

pub(super) struct Target {
    resource: Resource,
    namespace: Option<String>,
    name: Option<String>,
    subresource: Option<String>,
}

pub(super) type Params = HashMap<String, String>;

async fn handle(
    State(shared): State<Arc<Shared>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    Query(params): Query<Params>,
    body: Bytes,
) -> Response {
    let route = parse_path(&shared, uri.path());
    let verb = match &route {
        Ok(Route::Resource(target)) => verb_of(&method, target, &params),
        _ => Verb::Other,
    };
    let (resource, namespace) = match &route {
        Ok(Route::Resource(t)) => (t.resource.plural.to_owned(), t.namespace.clone()),
        _ => (String::new(), None),
    };
    shared.faults.record(RequestRecord {
        method: method.to_string(),
        uri: uri.to_string(),
        verb,
        resource,
        namespace: namespace.unwrap_or_default(),
        resource_version: params.get("resourceVersion").cloned(),
        content_type: headers
            .get(http::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned),
    });

    match shared.faults.mode() {
        Mode::Normal => {}
        Mode::Error(code) => return ApiError::injected(code).into_response(),
        Mode::Refuse => {
            // A request that raced the switch: close its connection like the others.
            shared.faults.kill_connections();
            return std::future::pending().await;
        }
        // Never answered; leaving the mode closes the connection.
        Mode::Stall => return std::future::pending().await,
    }

    let result = match route {
        Ok(Route::Version) => Ok(Json(discovery::version_info()).into_response()),
        Ok(Route::CoreVersions) => Ok(Json(discovery::core_versions(&shared)).into_response()),
        Ok(Route::Groups) => Ok(Json(discovery::groups(&shared)).into_response()),
        Ok(Route::GroupVersion { group, version }) => {
            discovery::group_version(&shared, &group, &version)
        }
        Ok(Route::Resource(target)) => {
            verbs::serve(shared, verb, target, &method, &headers, &params, &body)
        }
        Err(e) => Err(e),
    };
    result.unwrap_or_else(IntoResponse::into_response)
}

fn verb_of(method: &Method, target: &Target, params: &Params) -> Verb {
    let item = target.name.is_some();
    match *method {
        Method::GET if item => Verb::Get,
        Method::GET if is_true(params.get("watch")) => Verb::Watch,
        Method::GET => Verb::List,
        Method::POST if !item => Verb::Create,
        Method::PUT if item => Verb::Update,
        Method::PATCH if item => Verb::Patch,
        Method::DELETE if item => Verb::Delete,
        Method::DELETE => Verb::DeleteCollection,
        _ => Verb::Other,
    }
}

pub(super) fn is_true(value: Option<&String>) -> bool {
    matches!(value.map(String::as_str), Some("true" | "1"))
}

fn parse_path(shared: &Shared, path: &str) -> Result<Route, ApiError> {
    let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
    let (group, version, rest) = match segments.as_slice() {
        ["version"] => return Ok(Route::Version),
        ["api"] => return Ok(Route::CoreVersions),
        ["apis"] => return Ok(Route::Groups),
        ["api", version] => {
            let (group, version) = (String::new(), (*version).to_owned());
            return Ok(Route::GroupVersion { group, version });
        }
        ["apis", group, version] => {
            let (group, version) = ((*group).to_owned(), (*version).to_owned());
            return Ok(Route::GroupVersion { group, version });
        }
        ["api", version, rest @ ..] => ("", *version, rest),
        ["apis", group, version, rest @ ..] => (*group, *version, rest),
        _ => return Err(no_such_path(path)),
    };
    let lookup = |plural: &str| shared.store.resource_for_path(group, version, plural);
    let (resource, namespace, tail) = match rest {
        ["namespaces", ns, plural, tail @ ..] if lookup(plural).is_some_and(|r| r.namespaced) => (
            lookup(plural).expect("checked"),
            Some((*ns).to_owned()),
            tail,
        ),
        [plural, tail @ ..] => (
            lookup(plural).ok_or_else(|| no_such_path(path))?,
            None,
            tail,
        ),
        [] => return Err(no_such_path(path)),
    };
    let (name, subresource) = match tail {
        [] => (None, None),
        [name] => (Some((*name).to_owned()), None),
        [name, sub] => (Some((*name).to_owned()), Some((*sub).to_owned())),
        _ => return Err(no_such_path(path)),
    };
    if resource.namespaced && name.is_some() && namespace.is_none() {
        return Err(no_such_path(path));
    }
    Ok(Route::Resource(Target {
        resource,
        namespace,
        name,
        subresource,
    }))
}

pub(super) fn no_such_path(path: &str) -> ApiError {
    ApiError::not_found(format!(
        "the server could not find the requested resource ({path})"
    ))
}
