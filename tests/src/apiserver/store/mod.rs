//! The object store: JSON objects keyed by resource, namespace and name, with one global
//! resourceVersion counter (like etcd's revision) and a bounded history of change events that
//! watches are served from. What the server fills into a written object is [`metadata`]'s
//! job; the store's own unit tests are in `tests.rs`.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};

use serde_json::Value;
use tokio::sync::broadcast;

use super::resources::{DEFAULT_RESOURCES, Resource};

mod metadata;

/// How many change events a store keeps for watches to resume from, unless configured.
pub const DEFAULT_HISTORY: usize = 1000;

/// Capacity of the live event channel; a watch that falls this far behind is ended with 410.
const CHANNEL_CAPACITY: usize = 4096;

/// Errors of store operations; the HTTP layer turns each into a `Status` object.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// No served resource has this `apiVersion` and `kind`.
    #[error("no resource is served for apiVersion {api_version:?} kind {kind:?}")]
    UnknownType {
        /// The object's `apiVersion`.
        api_version: String,
        /// The object's `kind`.
        kind: String,
    },
    /// The object is not a JSON object or has malformed fields.
    #[error("invalid object: {0}")]
    Invalid(String),
    /// The object has neither `metadata.name` nor `metadata.generateName`.
    #[error("{plural}: metadata.name is required")]
    MissingName {
        /// Plural of the resource.
        plural: &'static str,
    },
    /// No such object.
    #[error("{plural} {name:?} not found")]
    NotFound {
        /// Plural of the resource.
        plural: &'static str,
        /// Name of the object.
        name: String,
    },
    /// A create found an object of that name.
    #[error("{plural} {name:?} already exists")]
    AlreadyExists {
        /// Plural of the resource.
        plural: &'static str,
        /// Name of the object.
        name: String,
    },
    /// An update carried a resourceVersion that is not the stored one.
    #[error(
        "operation cannot be fulfilled on {plural} {name:?}: the object has been modified \
         (resourceVersion {given}, stored {stored})"
    )]
    Conflict {
        /// Plural of the resource.
        plural: &'static str,
        /// Name of the object.
        name: String,
        /// The resourceVersion the client sent.
        given: String,
        /// The resourceVersion in the store.
        stored: String,
    },
    /// A watch asked for a resourceVersion older than the kept history.
    #[error("too old resource version: {requested} ({oldest})")]
    Expired {
        /// The resourceVersion asked for.
        requested: u64,
        /// The oldest resourceVersion a watch may start from.
        oldest: u64,
    },
    /// The object could not be turned into JSON.
    #[error("cannot serialize object")]
    Serialize(#[source] serde_json::Error),
    /// A stored object does not deserialize as the type asked for.
    #[error("stored object does not deserialize as the requested type")]
    Deserialize(#[source] serde_json::Error),
}

/// The type of a change event, as written in a watch stream.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventType {
    /// An object was created.
    Added,
    /// An object was changed.
    Modified,
    /// An object was deleted.
    Deleted,
}

impl EventType {
    /// The wire name: `ADDED`, `MODIFIED` or `DELETED`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Added => "ADDED",
            Self::Modified => "MODIFIED",
            Self::Deleted => "DELETED",
        }
    }
}

/// One change, kept in the history and sent to live watches.
#[derive(Debug)]
pub(crate) struct StoredEvent {
    pub rv: u64,
    pub resource: Resource,
    pub event_type: EventType,
    /// The object after the change (for a delete: the last state, with the delete's RV).
    pub object: Value,
    /// The object before the change, so that selector-filtered watches can synthesise
    /// ADDED/DELETED when an object starts or stops matching.
    pub old: Option<Value>,
}

/// What the live channel carries.
#[derive(Clone, Debug)]
pub(crate) enum Broadcast {
    Event(Arc<StoredEvent>),
    /// The history was compacted; open watches must end with 410 so their clients relist.
    Compacted,
}

/// How a write treats an existing object.
#[derive(Clone, Debug)]
pub(crate) enum WriteMode {
    /// Fail with `AlreadyExists` if the object exists.
    Create,
    /// Fail with `NotFound` if it does not; with `Conflict` if a non-empty resourceVersion
    /// in the object differs from the stored one.
    Replace,
    /// Create or replace, ignoring any resourceVersion in the object.
    Upsert,
}

/// Where a watch starts.
#[derive(Clone, Copy, Debug)]
pub(crate) enum WatchFrom {
    /// Synthetic ADDED events for the current objects, then changes.
    Now,
    /// Changes after this resourceVersion, replayed from the history.
    Version(u64),
}

/// A registered watch: what to send first, and the live channel for the rest.
pub(crate) struct Subscription {
    /// Current objects, for a watch started with [`WatchFrom::Now`].
    pub initial: Vec<Arc<Value>>,
    /// Events of the resource from the history after the requested version.
    pub backlog: Vec<Arc<StoredEvent>>,
    /// Live events; every one has a version above `rv`.
    pub rx: broadcast::Receiver<Broadcast>,
    /// The store's version when the watch was registered.
    pub rv: u64,
}

type ObjectKey = (String, String);
type ResourceKey = (&'static str, &'static str);

struct Inner {
    resources: Vec<Resource>,
    /// Shared, not copied, by lists and watches: a list of thousands of objects costs their
    /// serialization only.
    objects: BTreeMap<ResourceKey, BTreeMap<ObjectKey, Arc<Value>>>,
    rv: u64,
    history: VecDeque<Arc<StoredEvent>>,
    history_limit: usize,
    /// Watches from a version below this answer 410.
    oldest_watchable: u64,
    ids: metadata::Ids,
}

/// The object store of one test API server.
pub(crate) struct Store {
    inner: Mutex<Inner>,
    events: broadcast::Sender<Broadcast>,
}

impl Store {
    pub fn new(history_limit: usize) -> Self {
        let (events, _) = broadcast::channel(CHANNEL_CAPACITY);
        Self {
            inner: Mutex::new(Inner {
                resources: DEFAULT_RESOURCES.to_vec(),
                objects: BTreeMap::new(),
                rv: 1,
                history: VecDeque::new(),
                history_limit: history_limit.max(1),
                oldest_watchable: 0,
                ids: metadata::Ids::new(),
            }),
            events,
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic while holding the lock leaves consistent data (writes are applied last).
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn register(&self, resource: Resource) {
        let mut inner = self.lock();
        if !inner.resources.contains(&resource) {
            inner.resources.push(resource);
        }
    }

    pub fn resources(&self) -> Vec<Resource> {
        self.lock().resources.clone()
    }

    pub fn resource_for_type(&self, api_version: &str, kind: &str) -> Result<Resource, StoreError> {
        self.lock()
            .resources
            .iter()
            .find(|r| r.matches_type(api_version, kind))
            .copied()
            .ok_or_else(|| StoreError::UnknownType {
                api_version: api_version.to_owned(),
                kind: kind.to_owned(),
            })
    }

    pub fn resource_for_path(&self, group: &str, version: &str, plural: &str) -> Option<Resource> {
        self.lock()
            .resources
            .iter()
            .find(|r| r.group == group && r.version == version && r.plural == plural)
            .copied()
    }

    /// The resource an object belongs to, from its `apiVersion` and `kind`.
    pub fn resource_of(&self, object: &Value) -> Result<Resource, StoreError> {
        let field = |f: &str| {
            object
                .get(f)
                .and_then(Value::as_str)
                .ok_or_else(|| StoreError::Invalid(format!("object has no string field {f:?}")))
        };
        self.resource_for_type(field("apiVersion")?, field("kind")?)
    }

    pub fn current_rv(&self) -> u64 {
        self.lock().rv
    }

    pub fn get(&self, resource: Resource, namespace: &str, name: &str) -> Option<Value> {
        let namespace = scope(resource, namespace);
        self.lock()
            .objects
            .get(&(resource.group, resource.plural))
            .and_then(|m| m.get(&(namespace.to_owned(), name.to_owned())))
            .map(|v| Value::clone(v))
    }

    /// Objects of a resource (in one namespace, or all when `namespace` is `None`), sorted by
    /// namespace and name, with the store's version they were read at.
    pub fn list(&self, resource: Resource, namespace: Option<&str>) -> (Vec<Arc<Value>>, u64) {
        let inner = self.lock();
        let items = inner
            .objects
            .get(&(resource.group, resource.plural))
            .map(|m| {
                m.iter()
                    .filter(|((ns, _), _)| namespace.is_none_or(|want| ns == want))
                    .map(|(_, v)| v.clone())
                    .collect()
            })
            .unwrap_or_default();
        (items, inner.rv)
    }

    /// Creates or replaces an object, filling in the server-owned metadata ([`metadata`]);
    /// emits an event unless the write changes nothing.
    pub fn write(
        &self,
        resource: Resource,
        mut object: Value,
        mode: WriteMode,
    ) -> Result<Value, StoreError> {
        let (namespace, given_rv) = metadata::place(resource, &mut object)?;
        let mut inner = self.lock();
        let name = metadata::name(resource, &mut object, &mode, &mut inner.ids)?;
        let key = (namespace, name.clone());
        let existing = inner
            .objects
            .get(&(resource.group, resource.plural))
            .and_then(|m| m.get(&key))
            .cloned();
        match (&mode, &existing) {
            (WriteMode::Create, Some(_)) => {
                return Err(StoreError::AlreadyExists {
                    plural: resource.plural,
                    name,
                });
            }
            (WriteMode::Replace, None) => {
                return Err(StoreError::NotFound {
                    plural: resource.plural,
                    name,
                });
            }
            (WriteMode::Replace, Some(old)) => {
                let stored = metadata::rv_of(old);
                if !given_rv.is_empty() && given_rv != stored {
                    return Err(StoreError::Conflict {
                        plural: resource.plural,
                        name,
                        given: given_rv,
                        stored: stored.to_owned(),
                    });
                }
            }
            _ => {}
        }
        metadata::stamp(&mut object, existing.as_deref(), &mut inner.ids);
        if existing.as_deref() == Some(&object) {
            return Ok(object);
        }
        inner.rv += 1;
        let rv = inner.rv;
        object["metadata"]["resourceVersion"] = Value::String(rv.to_string());
        inner
            .objects
            .entry((resource.group, resource.plural))
            .or_default()
            .insert(key, Arc::new(object.clone()));
        let event_type = if existing.is_some() {
            EventType::Modified
        } else {
            EventType::Added
        };
        let existing = existing.map(|v| Value::clone(&v));
        self.publish(&mut inner, resource, event_type, object.clone(), existing);
        Ok(object)
    }

    /// Deletes an object; the DELETED event carries its last state with the delete's version.
    pub fn delete(
        &self,
        resource: Resource,
        namespace: &str,
        name: &str,
    ) -> Result<Value, StoreError> {
        let namespace = scope(resource, namespace);
        let mut inner = self.lock();
        let old = inner
            .objects
            .get_mut(&(resource.group, resource.plural))
            .and_then(|m| m.remove(&(namespace.to_owned(), name.to_owned())))
            .ok_or_else(|| StoreError::NotFound {
                plural: resource.plural,
                name: name.to_owned(),
            })?;
        inner.rv += 1;
        let old = Value::clone(&old);
        let mut object = old.clone();
        object["metadata"]["resourceVersion"] = Value::String(inner.rv.to_string());
        self.publish(
            &mut inner,
            resource,
            EventType::Deleted,
            object.clone(),
            Some(old),
        );
        Ok(object)
    }

    fn publish(
        &self,
        inner: &mut Inner,
        resource: Resource,
        event_type: EventType,
        object: Value,
        old: Option<Value>,
    ) {
        let event = Arc::new(StoredEvent {
            rv: inner.rv,
            resource,
            event_type,
            object,
            old,
        });
        inner.history.push_back(event.clone());
        while inner.history.len() > inner.history_limit {
            if let Some(dropped) = inner.history.pop_front() {
                inner.oldest_watchable = dropped.rv;
            }
        }
        // Sent under the lock, so the channel carries events in version order. No receiver is
        // not an error.
        let _ = self.events.send(Broadcast::Event(event));
    }

    /// Forgets the history: watches from any version before now answer 410 Gone. With
    /// `end_watches`, open watches also end with a 410 error event, so their clients relist.
    pub fn compact(&self, end_watches: bool) -> u64 {
        let mut inner = self.lock();
        // A compaction takes a version of its own, so that even a client that is up to date
        // (its last bookmark is the current version) is now too old.
        inner.rv += 1;
        inner.oldest_watchable = inner.rv;
        inner.history.clear();
        if end_watches {
            let _ = self.events.send(Broadcast::Compacted);
        }
        inner.rv
    }

    pub fn watch(&self, resource: Resource, from: WatchFrom) -> Result<Subscription, StoreError> {
        let inner = self.lock();
        let rx = self.events.subscribe();
        let (initial, backlog) = match from {
            WatchFrom::Now => {
                let initial = inner
                    .objects
                    .get(&(resource.group, resource.plural))
                    .map(|m| m.values().cloned().collect())
                    .unwrap_or_default();
                (initial, Vec::new())
            }
            WatchFrom::Version(requested) => {
                if requested < inner.oldest_watchable {
                    return Err(StoreError::Expired {
                        requested,
                        oldest: inner.oldest_watchable,
                    });
                }
                let backlog = inner
                    .history
                    .iter()
                    .filter(|e| e.rv > requested && e.resource == resource)
                    .cloned()
                    .collect();
                (Vec::new(), backlog)
            }
        };
        Ok(Subscription {
            initial,
            backlog,
            rx,
            rv: inner.rv,
        })
    }
}

fn scope(resource: Resource, namespace: &str) -> &str {
    if resource.namespaced { namespace } else { "" }
}

#[cfg(test)]
mod tests;
