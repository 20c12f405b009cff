//! One cluster's watch events folded into its data and status: relists buffered and swapped
//! in whole, the state loaded from disk counted as synced (and stale) until every kind is
//! listed again, failures kept per kind, and each change published to the catalog (and
//! handed to the state writer once fully listed).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use futures::{Stream, StreamExt};
use tokio::time::Instant;

use super::super::metrics::SourceMetrics;
use crate::catalog::{Catalog, ClusterStatus};
use crate::model::convert::ConvertError;
use crate::model::{ClusterData, EndpointSlice, Node, ObjectKind, Service, TunnelEndpoint};

/// A change seen by one of the watchers, already converted to the model.
pub(super) enum Change {
    Init(ObjectKind),
    Upsert {
        initial: bool,
        obj: Object,
    },
    InitDone(ObjectKind),
    Delete {
        kind: ObjectKind,
        namespace: String,
        name: String,
    },
    /// The object could not be converted; it is skipped and the rest carries on.
    Invalid(ObjectKind, ConvertError),
    /// The watch failed (the watcher backs off and retries by itself).
    Error(ObjectKind, String),
    /// A probe reached the API while some watch was failing: a watch that resumes without
    /// new events says nothing, so reachability is checked on its own.
    Reachable,
}

pub(super) enum Object {
    Service(Service),
    Slice(EndpointSlice),
    Node(Node),
    Tunnel(TunnelEndpoint),
}

impl Object {
    fn kind(&self) -> ObjectKind {
        match self {
            Object::Service(_) => ObjectKind::Service,
            Object::Slice(_) => ObjectKind::EndpointSlice,
            Object::Node(_) => ObjectKind::Node,
            Object::Tunnel(_) => ObjectKind::TunnelEndpoint,
        }
    }

    fn upsert_into(self, data: &mut ClusterData) {
        match self {
            Object::Service(s) => data.upsert_service(s),
            Object::Slice(s) => data.upsert_slice(s),
            Object::Node(n) => data.upsert_node(n),
            Object::Tunnel(t) => data.upsert_tunnel_endpoint(t),
        }
    }
}

fn remove(data: &mut ClusterData, kind: ObjectKind, namespace: &str, name: &str) -> bool {
    match kind {
        ObjectKind::Service => data.remove_service(&crate::model::ServiceKey::new(namespace, name)),
        ObjectKind::EndpointSlice => data.remove_slice(namespace, name),
        ObjectKind::Node => data.remove_node(name),
        ObjectKind::TunnelEndpoint => data.remove_tunnel_endpoint(namespace, name),
    }
}

/// What one cluster's source has seen so far.
pub(super) struct SourceState {
    pub(super) cluster: String,
    wanted: BTreeSet<ObjectKind>,
    pub(super) data: ClusterData,
    /// Relists in progress, by kind.
    relisting: BTreeMap<ObjectKind, ClusterData>,
    synced: BTreeSet<ObjectKind>,
    failing: BTreeMap<ObjectKind, String>,
    pub(super) status: ClusterStatus,
    /// The data came from the state directory and some kind has not been listed since.
    pub(super) stale: bool,
    /// Saves each fully listed version of the data (remote clusters with a state directory).
    pub(super) writer: Option<tokio::sync::watch::Sender<Option<Arc<ClusterData>>>>,
}

impl SourceState {
    pub(super) fn new(cluster: &str, kinds: &[ObjectKind]) -> Self {
        Self {
            cluster: cluster.to_string(),
            wanted: kinds.iter().copied().collect(),
            data: ClusterData::default(),
            relisting: BTreeMap::new(),
            synced: BTreeSet::new(),
            failing: BTreeMap::new(),
            status: ClusterStatus::default(),
            stale: false,
            writer: None,
        }
    }

    fn all_listed(&self) -> bool {
        self.wanted.iter().all(|k| self.synced.contains(k))
    }

    /// Applies one change; returns whether the published data changed.
    fn apply(&mut self, change: Change, metrics: &SourceMetrics) -> bool {
        let cluster = self.cluster.as_str();
        match change {
            Change::Init(kind) => {
                self.failing.remove(&kind);
                self.relisting.insert(kind, ClusterData::default());
                false
            }
            Change::Upsert { initial: true, obj } => {
                let kind = obj.kind();
                obj.upsert_into(self.relisting.entry(kind).or_default());
                false
            }
            Change::Upsert {
                initial: false,
                obj,
            } => {
                self.failing.remove(&obj.kind());
                obj.upsert_into(&mut self.data);
                true
            }
            Change::InitDone(kind) => {
                let fresh = self.relisting.remove(&kind).unwrap_or_default();
                self.data.replace_kind(kind, &fresh);
                self.synced.insert(kind);
                self.failing.remove(&kind);
                if self.stale && self.all_listed() {
                    tracing::info!(cluster, "fresh list replaced the state loaded from disk");
                    self.stale = false;
                }
                tracing::debug!(
                    cluster,
                    kind = kind.plural(),
                    objects = fresh.count(kind),
                    "list complete"
                );
                true
            }
            Change::Delete {
                kind,
                namespace,
                name,
            } => {
                self.failing.remove(&kind);
                remove(&mut self.data, kind, &namespace, &name)
            }
            Change::Invalid(kind, e) => {
                tracing::warn!(cluster, error = %e, "skipping an object that cannot be used");
                metrics.error(cluster, kind.plural());
                false
            }
            Change::Reachable => {
                self.failing.clear();
                false
            }
            Change::Error(kind, message) => {
                tracing::warn!(cluster, kind = kind.plural(), error = %message, "watch failed; keeping last-known data and retrying");
                metrics.error(cluster, kind.plural());
                self.failing.insert(kind, message);
                false
            }
        }
    }

    /// The status these changes lead to.
    pub(super) fn next_status(&self) -> ClusterStatus {
        let connected = self.failing.is_empty();
        let prev = &self.status;
        ClusterStatus {
            synced: self.stale || self.all_listed(),
            stale: self.stale,
            connected,
            disconnected_since: if connected {
                None
            } else {
                Some(prev.disconnected_since.unwrap_or_else(Instant::now))
            },
            last_error: if connected {
                None
            } else {
                self.failing
                    .iter()
                    .next()
                    .map(|(k, e)| format!("{}: {e}", k.plural()))
            },
            ..prev.clone()
        }
    }
}

pub(super) async fn run_changes(
    state: &mut SourceState,
    mut chunks: impl Stream<Item = Vec<Change>> + Unpin,
    catalog: &Catalog,
    metrics: &SourceMetrics,
    failing: &AtomicBool,
) {
    while let Some(chunk) = chunks.next().await {
        let mut data_changed = false;
        for change in chunk {
            data_changed |= state.apply(change, metrics);
        }
        failing.store(!state.failing.is_empty(), Ordering::Relaxed);
        let status = state.next_status();
        if status.connected != state.status.connected {
            if status.connected {
                tracing::info!(cluster = state.cluster, "cluster API reachable again");
            } else {
                tracing::warn!(cluster = state.cluster, error = ?status.last_error, "cluster API unreachable");
            }
        }
        let status_changed = status != state.status;
        state.status = status;
        if data_changed {
            metrics.observe(&state.cluster, &state.status, Some(&state.data));
            let data = Arc::new(state.data.clone());
            catalog.publish(&state.cluster, data.clone(), state.status.clone());
            // Only fully listed data is saved: a partly relisted stale state is not good.
            if let Some(w) = &state.writer
                && state.all_listed()
                && !state.stale
            {
                w.send_replace(Some(data));
            }
        } else if status_changed {
            metrics.observe(&state.cluster, &state.status, None);
            catalog.set_status(&state.cluster, state.status.clone());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn saved_state_counts_as_synced_until_every_kind_is_listed_again() {
        let metrics = SourceMetrics::default();
        let mut st = SourceState::new("b", &[ObjectKind::Service, ObjectKind::Node]);
        st.data.upsert_node(Node::named("saved"));
        st.stale = true;
        let s = st.next_status();
        assert!(s.synced && s.stale, "{s:?}");

        // Nodes are listed again: the saved nodes are replaced, services are still stale.
        st.apply(Change::Init(ObjectKind::Node), &metrics);
        st.apply(
            Change::Upsert {
                initial: true,
                obj: Object::Node(Node::named("fresh")),
            },
            &metrics,
        );
        assert!(st.apply(Change::InitDone(ObjectKind::Node), &metrics));
        assert_eq!(st.data.nodes.keys().collect::<Vec<_>>(), ["fresh"]);
        let s = st.next_status();
        assert!(s.synced && s.stale, "{s:?}");
        assert!(!st.all_listed());

        st.apply(Change::Init(ObjectKind::Service), &metrics);
        st.apply(Change::InitDone(ObjectKind::Service), &metrics);
        let s = st.next_status();
        assert!(s.synced && !s.stale, "{s:?}");
        assert!(st.all_listed());
    }

    #[test]
    fn without_saved_state_a_cluster_is_synced_only_once_every_kind_is_listed() {
        let metrics = SourceMetrics::default();
        let mut st = SourceState::new("b", &[ObjectKind::Service, ObjectKind::Node]);
        assert!(!st.next_status().synced);
        st.apply(Change::InitDone(ObjectKind::Node), &metrics);
        assert!(!st.next_status().synced);
        st.apply(Change::InitDone(ObjectKind::Service), &metrics);
        let s = st.next_status();
        assert!(s.synced && !s.stale, "{s:?}");
    }
}
