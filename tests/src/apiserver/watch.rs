//! Watch streams: newline-delimited JSON `{"type": ..., "object": ...}` events over a chunked
//! response, as `kube`'s watcher reads them.
//!
//! A watch first sends what it owes (the current objects for a watch without a version, or
//! the history after the requested version), then live events, BOOKMARKs every
//! `bookmark_interval` when asked for, and ends cleanly after `timeoutSeconds`. A version older
//! than the history is answered with HTTP 200 and an ERROR event carrying a 410 `Status`, as
//! the apiserver does: `kube`'s watcher relists on that event, whereas an HTTP 410 on the watch
//! request itself would make it retry the same version forever.

use std::io;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::response::Response;
use bytes::Bytes;
use serde_json::{Value, json};
use tokio::sync::{broadcast, mpsc};
use tokio::time::{Instant, MissedTickBehavior};

use super::Shared;
use super::faults::Mode;
use super::resources::Resource;
use super::selector::{FieldSelector, LabelSelector};
use super::status::ApiError;
use super::store::{Broadcast, EventType, StoredEvent, Subscription, WatchFrom};

/// Annotation of the BOOKMARK that ends the initial events of a streaming list.
const INITIAL_EVENTS_END: &str = "k8s.io/initial-events-end";

/// A parsed watch request.
pub(crate) struct WatchRequest {
    pub resource: Resource,
    pub namespace: Option<String>,
    pub labels: LabelSelector,
    pub fields: FieldSelector,
    pub from: WatchFrom,
    /// `sendInitialEvents=true`: end the initial events with an annotated BOOKMARK.
    pub send_initial_events: bool,
    /// `allowWatchBookmarks=true`.
    pub bookmarks: bool,
    /// `timeoutSeconds`, or the server default.
    pub timeout: Duration,
}

impl WatchRequest {
    fn matches(&self, object: &Value) -> bool {
        let namespace = object
            .pointer("/metadata/namespace")
            .and_then(Value::as_str);
        self.namespace
            .as_deref()
            .is_none_or(|want| namespace == Some(want))
            && self.labels.matches(object)
            && self.fields.matches(object)
    }

    /// The event this watch sends for a change, if any: an object that starts or stops
    /// matching the selectors is ADDED or DELETED for this watch.
    fn translate(&self, event: &StoredEvent) -> Option<(EventType, Value)> {
        if event.resource != self.resource {
            return None;
        }
        let now = self.matches(&event.object);
        let was = event.old.as_ref().is_some_and(|old| self.matches(old));
        let event_type = match (event.event_type, was, now) {
            (EventType::Added, _, true) => EventType::Added,
            (EventType::Modified, true, true) => EventType::Modified,
            (EventType::Modified, false, true) => EventType::Added,
            (EventType::Modified, true, false) => EventType::Deleted,
            (EventType::Deleted, _, true) => EventType::Deleted,
            _ => return None,
        };
        Some((event_type, event.object.clone()))
    }

    fn bookmark(&self, rv: u64, initial_end: bool) -> Value {
        let mut metadata = json!({"resourceVersion": rv.to_string()});
        if initial_end {
            metadata["annotations"] = json!({INITIAL_EVENTS_END: "true"});
        }
        json!({
            "type": "BOOKMARK",
            "object": {
                "kind": self.resource.kind,
                "apiVersion": self.resource.api_version(),
                "metadata": metadata,
            }
        })
    }
}

/// Starts a watch and returns its streaming response.
pub(crate) fn respond(shared: Arc<Shared>, request: WatchRequest) -> Response {
    let subscription = shared.store.watch(request.resource, request.from);
    let (tx, rx) = mpsc::channel::<Result<Bytes, io::Error>>(64);
    tokio::spawn(async move {
        let sender = Sender { tx };
        match subscription {
            Ok(subscription) => run(&shared, &request, subscription, &sender).await,
            Err(e) => {
                let status = ApiError::from(e).to_status();
                let _ = sender
                    .send(&json!({"type": "ERROR", "object": status}))
                    .await;
            }
        }
    });
    let stream = futures::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|chunk| (chunk, rx))
    });
    Response::builder()
        .header(http::header::CONTENT_TYPE, "application/json")
        .body(Body::from_stream(stream))
        .expect("static headers are valid")
}

struct Sender {
    tx: mpsc::Sender<Result<Bytes, io::Error>>,
}

/// The client went away.
struct Gone;

impl Sender {
    async fn send(&self, line: &impl serde::Serialize) -> Result<(), Gone> {
        let mut bytes = serde_json::to_vec(line).map_err(|_| Gone)?;
        bytes.push(b'\n');
        self.tx.send(Ok(Bytes::from(bytes))).await.map_err(|_| Gone)
    }

    async fn event(&self, event_type: EventType, object: &Value) -> Result<(), Gone> {
        #[derive(serde::Serialize)]
        struct Event<'a> {
            #[serde(rename = "type")]
            event_type: &'static str,
            object: &'a Value,
        }
        self.send(&Event {
            event_type: event_type.as_str(),
            object,
        })
        .await
    }
}

async fn run(shared: &Shared, request: &WatchRequest, mut sub: Subscription, out: &Sender) {
    let deadline = Instant::now() + request.timeout;
    let _ = stream(shared, request, &mut sub, out, deadline).await;
}

async fn stream(
    shared: &Shared,
    request: &WatchRequest,
    sub: &mut Subscription,
    out: &Sender,
    deadline: Instant,
) -> Result<(), Gone> {
    for object in std::mem::take(&mut sub.initial) {
        if request.matches(&object) {
            out.event(EventType::Added, &object).await?;
        }
    }
    if request.send_initial_events {
        out.send(&request.bookmark(sub.rv, true)).await?;
    }
    for event in std::mem::take(&mut sub.backlog) {
        if let Some((event_type, object)) = request.translate(&event) {
            out.event(event_type, &object).await?;
        }
    }

    // The newest version this watch has seen: a BOOKMARK may claim it, because the channel
    // delivers events in version order and is drained before each bookmark (`biased`).
    let mut seen = sub.rv;
    let period = shared.options.bookmark_interval;
    let mut bookmarks = tokio::time::interval_at(Instant::now() + period, period);
    bookmarks.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut mode = shared.faults.subscribe_mode();
    loop {
        if *mode.borrow_and_update() == Mode::Stall {
            // A stalled server sends nothing; leaving the mode closes the connection.
            tokio::select! {
                _ = out.tx.closed() => return Err(Gone),
                _ = mode.changed() => continue,
            }
        }
        tokio::select! {
            biased;
            _ = out.tx.closed() => return Err(Gone),
            message = sub.rx.recv() => match message {
                Ok(Broadcast::Event(event)) => {
                    seen = event.rv;
                    if let Some((event_type, object)) = request.translate(&event) {
                        out.event(event_type, &object).await?;
                    }
                }
                Ok(Broadcast::Compacted) => {
                    let current = shared.store.current_rv();
                    return out.send(&expired(seen, current)).await;
                }
                Err(broadcast::error::RecvError::Lagged(_)) => {
                    let current = shared.store.current_rv();
                    return out.send(&expired(seen, current)).await;
                }
                Err(broadcast::error::RecvError::Closed) => return Ok(()),
            },
            _ = mode.changed() => {}
            _ = bookmarks.tick(), if request.bookmarks => {
                out.send(&request.bookmark(seen, false)).await?;
            }
            _ = tokio::time::sleep_until(deadline) => return Ok(()),
        }
    }
}

fn expired(requested: u64, current: u64) -> Value {
    let status = ApiError::new(
        410,
        "Expired",
        format!("too old resource version: {requested} ({current})"),
    )
    .to_status();
    json!({"type": "ERROR", "object": status})
}
