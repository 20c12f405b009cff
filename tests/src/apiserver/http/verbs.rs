//! The REST verbs on one resource: LIST, WATCH (handed to [`super::super::watch`]), GET,
//! POST, PUT, PATCH, DELETE and DELETE on a collection, with the `status` subresource; and
//! how their request bodies are read and placed.

use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::response::{IntoResponse, Response};
use http::{HeaderMap, Method, StatusCode};
use serde_json::{Value, json};

use super::super::Shared;
use super::super::faults::Verb;
use super::super::patch::{self, PatchKind};
use super::super::resources::Resource;
use super::super::selector::{FieldSelector, LabelSelector};
use super::super::status::ApiError;
use super::super::store::{StoreError, WatchFrom, WriteMode};
use super::super::watch::{self, WatchRequest};
use super::{Params, Target, is_true};

/// Serves `verb` on `target`.
pub(super) fn serve(
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
    ApiError::from(StoreError::NotFound {
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
