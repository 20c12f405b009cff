//! All clusters' data as one immutable snapshot, published lock-free.
//!
//! Sources publish a whole new [`ClusterData`] (cheap: the maps hold `Arc`s) together
//! with their [`ClusterStatus`]; readers `load()` a [`Snapshot`] without locks and never
//! see a half-applied list. Every publication bumps the generation and wakes subscribers.
//!
//! Readiness is decided here ([`Snapshot::ready`]): the local cluster must have synced; a
//! remote counts once it has synced (from its API or from its last good state on disk) or
//! once the first-sync wait (`readiness.remoteSyncTimeout`) has passed since the start.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use arc_swap::ArcSwap;
use serde::Serialize;
use tokio::sync::watch;
use tokio::time::Instant;

use crate::model::ClusterData;

/// Connection and sync state of one cluster's source.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ClusterStatus {
    /// The first full list has completed, or the last good state was loaded from disk
    /// (the data is usable either way).
    pub synced: bool,
    /// The data was loaded from the state directory and no fresh full list has replaced
    /// it yet.
    pub stale: bool,
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

/// What the tunnel's probes say of a remote cluster's data path (`pathHealth`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum PathState {
    /// No report (shared health off, the tunnel not answering, the cluster not in it).
    #[default]
    Unknown,
    /// A node of the cluster answered a probe within `pathHealth.unreachableAfter`.
    Reachable,
    /// None did: left out of merged answers until one does.
    Unreachable,
}

/// One cluster in a snapshot.
#[derive(Clone, Debug)]
pub struct ClusterView {
    pub name: String,
    pub local: bool,
    pub status: ClusterStatus,
    pub data: Arc<ClusterData>,
    /// Reachability through the tunnel (set by the path-health watcher, never by sources).
    pub path: PathState,
}

impl ClusterView {
    /// True when the tunnel reports the cluster unreachable: merged answers leave it out.
    pub fn path_down(&self) -> bool {
        self.path == PathState::Unreachable
    }
}

/// Every cluster at one moment.
#[derive(Clone, Debug)]
pub struct Snapshot {
    pub generation: u64,
    /// By cluster name (every configured cluster is present from the start).
    pub clusters: BTreeMap<String, ClusterView>,
    /// When the catalog was created (the start of the first-sync wait).
    pub started: Instant,
    /// How long remotes are waited for before they stop counting against readiness.
    pub remote_sync_timeout: Duration,
}

/// Where one cluster stands, as `/readyz` shows it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum SourceState {
    /// Listed from its source.
    Synced,
    /// Serving its last good state from disk; no fresh list yet.
    StaleFromDisk,
    /// Not synced yet, still inside the first-sync wait (or the local cluster, which is
    /// always waited for).
    Waiting,
    /// A remote that is not synced after the first-sync wait: shown, but it no longer
    /// keeps the binary unready.
    Failed,
}

impl Snapshot {
    pub fn cluster(&self, name: &str) -> Option<&ClusterView> {
        self.clusters.get(name)
    }

    /// True once every cluster has synced at least once.
    pub fn all_synced(&self) -> bool {
        self.clusters.values().all(|c| c.status.synced)
    }

    /// When the first-sync wait for remotes ends.
    pub fn remote_wait_deadline(&self) -> Instant {
        self.started + self.remote_sync_timeout
    }

    /// The state of one cluster at `now`.
    pub fn source_state(&self, view: &ClusterView, now: Instant) -> SourceState {
        match (view.status.synced, view.status.stale) {
            (true, true) => SourceState::StaleFromDisk,
            (true, false) => SourceState::Synced,
            (false, _) if view.local || now < self.remote_wait_deadline() => SourceState::Waiting,
            (false, _) => SourceState::Failed,
        }
    }

    /// Whether `view` counts as done for readiness at `now`: synced (fresh or from disk),
    /// or a remote past the first-sync wait.
    pub fn counts_for_readiness(&self, view: &ClusterView, now: Instant) -> bool {
        self.source_state(view, now) != SourceState::Waiting
    }

    /// The readiness rule: the local cluster has synced and no remote is still inside
    /// its first-sync wait. A remote that failed never makes this false.
    pub fn ready(&self, now: Instant) -> bool {
        self.clusters
            .values()
            .all(|c| self.counts_for_readiness(c, now))
    }

    /// Readiness detail, one entry per cluster.
    pub fn readiness(&self) -> Vec<ClusterReadiness> {
        self.readiness_at(Instant::now())
    }

    /// [`Snapshot::readiness`] at `now`.
    pub fn readiness_at(&self, now: Instant) -> Vec<ClusterReadiness> {
        self.clusters
            .values()
            .map(|c| ClusterReadiness {
                cluster: c.name.clone(),
                local: c.local,
                state: self.source_state(c, now),
                synced: c.status.synced,
                stale: c.status.stale,
                connected: c.status.connected,
                unreachable_seconds: c.status.unreachable_for(now).map(|d| d.as_secs()),
                last_error: c.status.last_error.clone(),
                generation: c.status.data_generation,
                path: c.path,
            })
            .collect()
    }
}

/// A cluster's line in `/readyz`.
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct ClusterReadiness {
    pub cluster: String,
    pub local: bool,
    pub state: SourceState,
    pub synced: bool,
    pub stale: bool,
    pub connected: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub unreachable_seconds: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
    pub generation: u64,
    /// Reachability through the tunnel, as the path-health watcher last read it.
    pub path: PathState,
}

/// The published state of every cluster, plus a change notification.
pub struct Catalog {
    current: ArcSwap<Snapshot>,
    /// Serialises writers (readers never take it).
    write: Mutex<()>,
    changed: watch::Sender<u64>,
}

impl Catalog {
    /// A catalog with every cluster present, unsynced and disconnected, and the default
    /// first-sync wait for remotes.
    pub fn new<'a>(clusters: impl IntoIterator<Item = &'a str>, local: &str) -> Arc<Catalog> {
        let wait = crate::config::ReadinessConfig::default()
            .remote_sync_timeout
            .0;
        Catalog::with_remote_sync_timeout(clusters, local, wait)
    }

    /// [`Catalog::new`] with a given first-sync wait for remotes, counted from now.
    pub fn with_remote_sync_timeout<'a>(
        clusters: impl IntoIterator<Item = &'a str>,
        local: &str,
        remote_sync_timeout: Duration,
    ) -> Arc<Catalog> {
        let clusters = clusters
            .into_iter()
            .map(|name| {
                let view = ClusterView {
                    name: name.to_string(),
                    local: name == local,
                    status: ClusterStatus::default(),
                    data: Arc::new(ClusterData::default()),
                    path: PathState::Unknown,
                };
                (name.to_string(), view)
            })
            .collect();
        let (changed, _) = watch::channel(0);
        Arc::new(Catalog {
            current: ArcSwap::from_pointee(Snapshot {
                generation: 0,
                clusters,
                started: Instant::now(),
                remote_sync_timeout,
            }),
            write: Mutex::new(()),
            changed,
        })
    }

    /// A catalog for the clusters of a configuration.
    pub fn for_config(config: &crate::config::Config) -> Arc<Catalog> {
        Catalog::with_remote_sync_timeout(
            config.clusters.iter().map(|c| c.name.as_str()),
            &config.local_cluster,
            config.readiness.remote_sync_timeout.0,
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

    /// Sets one cluster's data-path state; publishes only when it changed.
    pub fn set_path(&self, cluster: &str, path: PathState) {
        if self
            .snapshot()
            .cluster(cluster)
            .is_none_or(|v| v.path == path)
        {
            return;
        }
        self.modify(cluster, |view| view.path = path);
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
            started: old.started,
            remote_sync_timeout: old.remote_sync_timeout,
        }));
        self.changed.send_replace(generation);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Node, ObjectKind};

    #[tokio::test]
    async fn publish_swaps_one_cluster_and_notifies() {
        let cat = Catalog::new(["a", "b"], "a");
        let mut rx = cat.subscribe();
        let s0 = cat.snapshot();
        assert!(!s0.all_synced());
        assert!(s0.cluster("a").unwrap().local);

        let mut data = ClusterData::default();
        data.upsert_node(Node::named("n1"));
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

    fn status(synced: bool, stale: bool) -> ClusterStatus {
        ClusterStatus {
            synced,
            stale,
            ..Default::default()
        }
    }

    #[tokio::test(start_paused = true)]
    async fn ready_needs_the_local_cluster_and_waits_for_remotes_only_so_long() {
        let wait = Duration::from_secs(5);
        let cat = Catalog::with_remote_sync_timeout(["a", "b", "c"], "a", wait);
        let t0 = cat.snapshot().started;
        let states = |now| {
            let s = cat.snapshot();
            let r: Vec<_> = s.readiness_at(now).iter().map(|c| c.state).collect();
            (s.ready(now), r)
        };
        use SourceState::*;
        assert_eq!(states(t0), (false, vec![Waiting, Waiting, Waiting]));
        cat.publish("a", Arc::default(), status(true, false));
        assert_eq!(states(t0), (false, vec![Synced, Waiting, Waiting]));
        cat.publish("b", Arc::default(), status(true, true));
        assert_eq!(
            states(t0),
            (false, vec![Synced, StaleFromDisk, Waiting]),
            "c is still inside its wait"
        );
        let after = t0 + wait;
        assert_eq!(
            states(after),
            (true, vec![Synced, StaleFromDisk, Failed]),
            "a remote past the wait no longer counts against readiness"
        );

        // The local cluster is waited for forever.
        let cat = Catalog::with_remote_sync_timeout(["a", "b"], "a", wait);
        cat.publish("b", Arc::default(), status(true, false));
        let s = cat.snapshot();
        let late = s.started + Duration::from_secs(3600);
        assert!(!s.ready(late));
        assert_eq!(s.source_state(s.cluster("a").unwrap(), late), Waiting);
    }

    #[test]
    fn path_state_is_published_only_when_it_changes_and_survives_source_publications() {
        let cat = Catalog::new(["a", "b"], "a");
        cat.set_path("b", PathState::Unknown);
        assert_eq!(cat.snapshot().generation, 0, "no change, no publication");
        cat.set_path("b", PathState::Unreachable);
        let s = cat.snapshot();
        assert_eq!(s.generation, 1);
        assert!(s.cluster("b").unwrap().path_down());
        assert_eq!(s.readiness()[1].path, PathState::Unreachable);
        cat.publish("b", Arc::default(), status(true, false));
        assert!(
            cat.snapshot().cluster("b").unwrap().path_down(),
            "a source's publication keeps the path state"
        );
        cat.set_path("zz", PathState::Reachable);
        assert_eq!(cat.snapshot().generation, 2);
    }

    #[test]
    fn unknown_cluster_is_ignored() {
        let cat = Catalog::new(["a"], "a");
        cat.publish("zz", Arc::default(), ClusterStatus::default());
        assert_eq!(cat.snapshot().generation, 0);
    }
}
