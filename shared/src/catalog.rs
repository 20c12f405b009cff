//! All clusters' data as one immutable snapshot, published lock-free.
//!
//! Sources publish a whole new [`ClusterData`] (cheap: the maps hold `Arc`s) together
//! with their [`ClusterStatus`]; readers `load()` a [`Snapshot`] without locks and never
//! see a half-applied list. Every publication bumps the generation and wakes subscribers.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use arc_swap::ArcSwap;
use serde::Serialize;
use tokio::sync::watch;
use tokio::time::Instant;

use crate::model::ClusterData;

/// Connection and sync state of one cluster's source.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ClusterStatus {
    /// The first full list has completed (the data is usable).
    pub synced: bool,
    /// The source currently reaches the cluster's API (or reads its file).
    pub connected: bool,
    /// When the connection was lost; None while connected.
    pub disconnected_since: Option<Instant>,
    /// The last error the source met, kept until the next success.
    pub last_error: Option<String>,
    /// Wall-clock time of the last data change.
    pub last_update: Option<SystemTime>,
    /// Bumped on each data change of this cluster.
    pub data_generation: u64,
}

impl ClusterStatus {
    /// How long the cluster has been unreachable, measured at `now`.
    pub fn unreachable_for(&self, now: Instant) -> Option<std::time::Duration> {
        self.disconnected_since
            .map(|t| now.saturating_duration_since(t))
    }
}

/// One cluster in a snapshot.
#[derive(Clone, Debug)]
pub struct ClusterView {
    pub name: String,
    pub local: bool,
    pub status: ClusterStatus,
    pub data: Arc<ClusterData>,
}

/// Every cluster at one moment.
#[derive(Clone, Debug)]
pub struct Snapshot {
    pub generation: u64,
    /// By cluster name (every configured cluster is present from the start).
    pub clusters: BTreeMap<String, ClusterView>,
}

impl Snapshot {
    pub fn cluster(&self, name: &str) -> Option<&ClusterView> {
        self.clusters.get(name)
    }

    /// True once every cluster has synced at least once.
    pub fn all_synced(&self) -> bool {
        self.clusters.values().all(|c| c.status.synced)
    }

    /// Readiness detail, one entry per cluster.
    pub fn readiness(&self) -> Vec<ClusterReadiness> {
        let now = Instant::now();
        self.clusters
            .values()
            .map(|c| ClusterReadiness {
                cluster: c.name.clone(),
                synced: c.status.synced,
                connected: c.status.connected,
                unreachable_seconds: c.status.unreachable_for(now).map(|d| d.as_secs()),
                last_error: c.status.last_error.clone(),
                generation: c.status.data_generation,
            })
            .collect()
    }
}

/// A cluster's line in `/readyz`.
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct ClusterReadiness {
    pub cluster: String,
    pub synced: bool,
    pub connected: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub unreachable_seconds: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
    pub generation: u64,
}

/// The published state of every cluster, plus a change notification.
pub struct Catalog {
    current: ArcSwap<Snapshot>,
    /// Serialises writers (readers never take it).
    write: Mutex<()>,
    changed: watch::Sender<u64>,
}

impl Catalog {
    /// A catalog with every cluster present, unsynced and disconnected.
    pub fn new<'a>(clusters: impl IntoIterator<Item = &'a str>, local: &str) -> Arc<Catalog> {
        let clusters = clusters
            .into_iter()
            .map(|name| {
                let view = ClusterView {
                    name: name.to_string(),
                    local: name == local,
                    status: ClusterStatus::default(),
                    data: Arc::new(ClusterData::default()),
                };
                (name.to_string(), view)
            })
            .collect();
        let (changed, _) = watch::channel(0);
        Arc::new(Catalog {
            current: ArcSwap::from_pointee(Snapshot {
                generation: 0,
                clusters,
            }),
            write: Mutex::new(()),
            changed,
        })
    }

    /// A catalog for the clusters of a configuration.
    pub fn for_config(config: &crate::config::Config) -> Arc<Catalog> {
        Catalog::new(
            config.clusters.iter().map(|c| c.name.as_str()),
            &config.local_cluster,
        )
    }

    /// The current snapshot (lock-free).
    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.current.load_full()
    }

    /// A receiver whose value is the latest generation; `changed()` wakes on each publication.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.changed.subscribe()
    }

    /// Replaces one cluster's data and status in a new snapshot.
    pub fn publish(&self, cluster: &str, data: Arc<ClusterData>, status: ClusterStatus) {
        self.modify(cluster, |view| {
            let data_changed = !Arc::ptr_eq(&view.data, &data);
            view.data = data;
            view.status = ClusterStatus {
                data_generation: view.status.data_generation + u64::from(data_changed),
                last_update: if data_changed {
                    Some(SystemTime::now())
                } else {
                    view.status.last_update
                },
                ..status
            };
        });
    }

    /// Replaces one cluster's status without a data change: `data_generation` and
    /// `last_update` belong to [`Catalog::publish`] and are kept.
    pub fn set_status(&self, cluster: &str, status: ClusterStatus) {
        self.update_status(cluster, move |st| {
            *st = ClusterStatus {
                data_generation: st.data_generation,
                last_update: st.last_update,
                ..status
            }
        });
    }

    /// Changes one cluster's status only (connection lost or regained, an error).
    pub fn update_status(&self, cluster: &str, f: impl FnOnce(&mut ClusterStatus)) {
        self.modify(cluster, |view| f(&mut view.status));
    }

    fn modify(&self, cluster: &str, f: impl FnOnce(&mut ClusterView)) {
        let _guard = self.write.lock().unwrap_or_else(|e| e.into_inner());
        let old = self.current.load();
        let Some(view) = old.clusters.get(cluster) else {
            tracing::error!(cluster, "publication for a cluster that is not configured");
            return;
        };
        let mut view = view.clone();
        f(&mut view);
        let mut clusters = old.clusters.clone();
        clusters.insert(cluster.to_string(), view);
        let generation = old.generation + 1;
        self.current.store(Arc::new(Snapshot {
            generation,
            clusters,
        }));
        self.changed.send_replace(generation);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Node, ObjectKind};

    fn node(name: &str) -> Node {
        Node {
            name: name.into(),
            pod_cidrs: vec![],
            addresses: vec![],
            resource_version: None,
        }
    }

    #[tokio::test]
    async fn publish_swaps_one_cluster_and_notifies() {
        let cat = Catalog::new(["a", "b"], "a");
        let mut rx = cat.subscribe();
        let s0 = cat.snapshot();
        assert!(!s0.all_synced());
        assert!(s0.cluster("a").unwrap().local);

        let mut data = ClusterData::default();
        data.upsert_node(node("n1"));
        cat.publish(
            "b",
            Arc::new(data),
            ClusterStatus {
                synced: true,
                connected: true,
                ..Default::default()
            },
        );
        rx.changed().await.unwrap();
        let s1 = cat.snapshot();
        assert_eq!(s1.generation, 1);
        assert_eq!(*rx.borrow(), 1);
        assert_eq!(s1.cluster("b").unwrap().data.count(ObjectKind::Node), 1);
        assert_eq!(s1.cluster("b").unwrap().status.data_generation, 1);
        assert!(Arc::ptr_eq(
            &s0.cluster("a").unwrap().data,
            &s1.cluster("a").unwrap().data
        ));
        // The old snapshot is untouched.
        assert_eq!(s0.cluster("b").unwrap().data.count(ObjectKind::Node), 0);
        assert!(!s1.all_synced());

        cat.update_status("b", |s| {
            s.connected = false;
            s.disconnected_since = Some(Instant::now());
        });
        let s2 = cat.snapshot();
        assert_eq!(s2.generation, 2);
        assert_eq!(
            s2.cluster("b").unwrap().status.data_generation,
            1,
            "status change is not a data change"
        );
        assert!(!s2.readiness()[1].connected);
    }

    #[test]
    fn unknown_cluster_is_ignored() {
        let cat = Catalog::new(["a"], "a");
        cat.publish("zz", Arc::default(), ClusterStatus::default());
        assert_eq!(cat.snapshot().generation, 0);
    }
}
