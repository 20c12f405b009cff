//! The HTTP face: URL parsing, the request log, fault modes, and the REST verbs.
//!
//! One fallback handler parses every path itself (`/api/v1/...`, `/apis/{group}/{version}/...`,
//! with or without `namespaces/{ns}/`), because a route table cannot tell
//! `/api/v1/namespaces/{name}` (a Namespace) from `/api/v1/namespaces/{ns}/services` by
//! pattern alone.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::Router;
use axum::extract::{Query, State};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use http::{HeaderMap, Method, StatusCode, Uri};
use serde_json::{Value, json};

use super::Shared;
use super::faults::{Mode, RequestRecord, Verb};
use super::patch::{self, PatchKind};
use super::resources::Resource;
use super::selector::{FieldSelector, LabelSelector};
use super::status::ApiError;
use super::store::{WatchFrom, WriteMode};
use super::watch::{self, WatchRequest};

/// The Kubernetes version the server claims to be.
const VERSION: (&str, &str) = ("1", "33");

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

struct Target {
    resource: Resource,
    namespace: Option<String>,
    name: Option<String>,
    subresource: Option<String>,
}

type Params = HashMap<String, String>;

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
        Ok(Route::Version) => Ok(Json(version_info()).into_response()),
        Ok(Route::CoreVersions) => Ok(Json(core_versions(&shared)).into_response()),
        Ok(Route::Groups) => Ok(Json(groups(&shared)).into_response()),
        Ok(Route::GroupVersion { group, version }) => group_version(&shared, &group, &version),
        Ok(Route::Resource(target)) => {
            serve(shared, verb, target, &method, &headers, &params, &body)
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

fn is_true(value: Option<&String>) -> bool {
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

/// A list answer, serialized straight from the stored objects into a buffer sized for them
/// (an object of our kinds is a few hundred bytes of JSON).
fn list_response(resource: Resource, rv: u64, items: &[&Value]) -> Response {
    #[derive(serde::Serialize)]
    struct List<'a> {
        kind: String,
        #[serde(rename = "apiVersion")]
        api_version: String,
        metadata: Value,
        items: &'a [&'a Value],
    }
    let list = List {
        kind: resource.list_kind(),
        api_version: resource.api_version(),
        metadata: json!({"resourceVersion": rv.to_string()}),
        items,
    };
    let mut body = Vec::with_capacity(256 + 512 * items.len());
    match serde_json::to_writer(&mut body, &list) {
        Ok(()) => Response::builder()
            .header(http::header::CONTENT_TYPE, "application/json")
            .body(axum::body::Body::from(body))
            .expect("static headers are valid"),
        Err(e) => {
            ApiError::new(500, "InternalError", format!("encoding the list: {e}")).into_response()
        }
    }
}

fn no_such_path(path: &str) -> ApiError {
    ApiError::not_found(format!(
        "the server could not find the requested resource ({path})"
    ))
}

fn serve(
    shared: Arc<Shared>,
    verb: Verb,
    target: Target,
    method: &Method,
    headers: &HeaderMap,
    params: &Params,
    body: &[u8],
) -> Result<Response, ApiError> {
    let store = &shared.store;
    let resource = target.resource;
    let namespace = target.namespace.clone().unwrap_or_default();
    let name = target.name.clone().unwrap_or_default();
    let labels = LabelSelector::parse(params.get("labelSelector").map_or("", String::as_str))?;
    let fields = FieldSelector::parse(params.get("fieldSelector").map_or("", String::as_str))?;
    if let Some(sub) = &target.subresource
        && sub != "status"
    {
        return Err(ApiError::not_found(format!(
            "subresource {sub:?} is not served"
        )));
    }
    match verb {
        Verb::List => {
            let (items, rv) = store.list(resource, target.namespace.as_deref());
            let items: Vec<&Value> = items
                .iter()
                .map(|o| &**o)
                .filter(|o| labels.matches(o) && fields.matches(o))
                .collect();
            Ok(list_response(resource, rv, &items))
        }
        Verb::Watch => {
            let send_initial_events = is_true(params.get("sendInitialEvents"));
            let from = match params.get("resourceVersion").map(String::as_str) {
                _ if send_initial_events => WatchFrom::Now,
                None | Some("" | "0") => WatchFrom::Now,
                Some(rv) => WatchFrom::Version(rv.parse().map_err(|_| {
                    ApiError::bad_request(format!("invalid resourceVersion {rv:?}"))
                })?),
            };
            let timeout = match params.get("timeoutSeconds") {
                Some(secs) => Duration::from_secs(secs.parse().map_err(|_| {
                    ApiError::bad_request(format!("invalid timeoutSeconds {secs:?}"))
                })?),
                None => shared.options.default_watch_timeout,
            };
            let request = WatchRequest {
                resource,
                namespace: target.namespace,
                labels,
                fields,
                from,
                send_initial_events,
                bookmarks: is_true(params.get("allowWatchBookmarks")),
                timeout,
            };
            Ok(watch::respond(shared, request))
        }
        Verb::Get => store
            .get(resource, &namespace, &name)
            .map(|o| Json(o).into_response())
            .ok_or_else(|| not_found(resource, &name)),
        Verb::Create => {
            let mut object = parse_json(headers, body)?;
            place(&mut object, &target, resource)?;
            let stored = store.write(resource, object, WriteMode::Create)?;
            Ok((StatusCode::CREATED, Json(stored)).into_response())
        }
        Verb::Update => {
            let mut object = parse_json(headers, body)?;
            place(&mut object, &target, resource)?;
            if target.subresource.is_some() {
                let current = store
                    .get(resource, &namespace, &name)
                    .ok_or_else(|| not_found(resource, &name))?;
                object = with_status_of(current, &object);
            }
            let stored = store.write(resource, object, WriteMode::Replace)?;
            Ok(Json(stored).into_response())
        }
        Verb::Patch => {
            let content_type = headers
                .get(http::header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default();
            let kind = PatchKind::from_content_type(content_type)?;
            let patch_body = patch::parse_body(kind, body)?;
            let current = store.get(resource, &namespace, &name);
            let created = current.is_none();
            let mut object = match (&current, kind) {
                (Some(current), _) => current.clone(),
                (None, PatchKind::Apply) if target.subresource.is_none() => json!({}),
                (None, _) => return Err(not_found(resource, &name)),
            };
            patch::apply(kind, &mut object, &patch_body)?;
            if let Some(current) = &current
                && target.subresource.is_some()
            {
                object = with_status_of(current.clone(), &object);
            }
            // The stored version is the precondition only if the patch names one.
            let precondition = patch_body.pointer("/metadata/resourceVersion").cloned();
            if let Some(metadata) = object.get_mut("metadata").and_then(Value::as_object_mut) {
                match precondition {
                    Some(rv) => metadata.insert("resourceVersion".into(), rv),
                    None => metadata.remove("resourceVersion"),
                };
            }
            place(&mut object, &target, resource)?;
            let mode = if created {
                WriteMode::Create
            } else {
                WriteMode::Replace
            };
            let stored = store.write(resource, object, mode)?;
            let code = if created {
                StatusCode::CREATED
            } else {
                StatusCode::OK
            };
            Ok((code, Json(stored)).into_response())
        }
        Verb::Delete => Ok(Json(store.delete(resource, &namespace, &name)?).into_response()),
        Verb::DeleteCollection => {
            let (items, _) = store.list(resource, target.namespace.as_deref());
            let mut deleted = Vec::new();
            for object in items
                .iter()
                .filter(|o| labels.matches(o) && fields.matches(o))
            {
                let ns = object
                    .pointer("/metadata/namespace")
                    .and_then(Value::as_str);
                let name = object.pointer("/metadata/name").and_then(Value::as_str);
                deleted.push(store.delete(
                    resource,
                    ns.unwrap_or_default(),
                    name.unwrap_or_default(),
                )?);
            }
            Ok(Json(json!({
                "kind": resource.list_kind(),
                "apiVersion": resource.api_version(),
                "metadata": {"resourceVersion": store.current_rv().to_string()},
                "items": deleted,
            }))
            .into_response())
        }
        Verb::Other => Err(ApiError::new(
            405,
            "MethodNotAllowed",
            format!("method {method} is not supported on this path"),
        )),
    }
}

fn not_found(resource: Resource, name: &str) -> ApiError {
    ApiError::from(super::store::StoreError::NotFound {
        plural: resource.plural,
        name: name.to_owned(),
    })
}

/// The JSON body of a POST or PUT. Protobuf is refused with 415, on which client-go (kubectl)
/// retries in JSON.
fn parse_json(headers: &HeaderMap, body: &[u8]) -> Result<Value, ApiError> {
    let content_type = headers
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("application/json");
    if !content_type.contains("json") && !content_type.contains("yaml") {
        let message = format!("the body type {content_type:?} is not supported, use JSON");
        return Err(ApiError::new(415, "UnsupportedMediaType", message));
    }
    serde_json::from_slice(body)
        .map_err(|e| ApiError::bad_request(format!("request body is not JSON: {e}")))
}

/// Makes the object's name and namespace those of the URL, refusing contradictions as the
/// apiserver does.
fn place(object: &mut Value, target: &Target, resource: Resource) -> Result<(), ApiError> {
    let Some(fields) = object.as_object_mut() else {
        return Err(ApiError::bad_request("request body is not a JSON object"));
    };
    let metadata = fields
        .entry("metadata")
        .or_insert_with(|| json!({}))
        .as_object_mut()
        .ok_or_else(|| ApiError::bad_request("metadata is not an object"))?;
    let mut pin = |field: &str, want: &Option<String>| -> Result<(), ApiError> {
        let Some(want) = want else { return Ok(()) };
        match metadata.get(field).and_then(Value::as_str) {
            Some(have) if !have.is_empty() && have != want => Err(ApiError::bad_request(format!(
                "the {field} of the provided object ({have:?}) does not match the {field} \
                 sent on the request ({want:?})"
            ))),
            _ => {
                metadata.insert(field.into(), Value::String(want.clone()));
                Ok(())
            }
        }
    };
    pin("name", &target.name)?;
    if resource.namespaced {
        pin("namespace", &target.namespace)?;
    }
    Ok(())
}

/// The stored object with only its status taken from `update`, for the status subresource.
fn with_status_of(mut current: Value, update: &Value) -> Value {
    match update.get("status") {
        Some(status) => current["status"] = status.clone(),
        None => {
            if let Some(fields) = current.as_object_mut() {
                fields.remove("status");
            }
        }
    }
    if let Some(rv) = update.pointer("/metadata/resourceVersion") {
        current["metadata"]["resourceVersion"] = rv.clone();
    }
    current
}

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

fn version_info() -> Value {
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

fn core_versions(shared: &Shared) -> Value {
    json!({
        "kind": "APIVersions",
        "versions": ["v1"],
        "serverAddressByClientCIDRs": [
            {"clientCIDR": "0.0.0.0/0", "serverAddress": shared.addr.to_string()}
        ],
    })
}

fn groups(shared: &Shared) -> Value {
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

fn group_version(shared: &Shared, group: &str, version: &str) -> Result<Response, ApiError> {
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
