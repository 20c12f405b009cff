//! Metrics of the cluster sources.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use crate::catalog::ClusterStatus;
use crate::model::{ClusterData, ObjectKind};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ClusterLabels {
    pub cluster: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ClusterKindLabels {
    pub cluster: String,
    pub kind: String,
}

/// Per-cluster source metrics (`causeway_cluster_*`).
#[derive(Clone, Default)]
pub struct SourceMetrics {
    pub synced: Family<ClusterLabels, Gauge>,
    pub connected: Family<ClusterLabels, Gauge>,
    pub objects: Family<ClusterKindLabels, Gauge>,
    pub errors: Family<ClusterKindLabels, Counter>,
    pub updates: Family<ClusterLabels, Counter>,
    pub last_update_seconds: Family<ClusterLabels, Gauge>,
    /// `causeway_source_stale`: 1 while the cluster is served from its saved state.
    pub stale: Family<ClusterLabels, Gauge>,
    /// `causeway_source_state_writes`: state files written.
    pub state_writes: Family<ClusterLabels, Counter>,
}

impl SourceMetrics {
    pub fn register(registry: &mut Registry) -> Self {
        let m = Self::default();
        {
            let r = registry.sub_registry_with_prefix("causeway_source");
            r.register(
                "stale",
                "1 while the cluster is served from its last good state on disk, before a fresh list",
                m.stale.clone(),
            );
            r.register(
                "state_writes",
                "Last-good-state files written per cluster",
                m.state_writes.clone(),
            );
        }
        let r = registry.sub_registry_with_prefix("causeway_cluster");
        r.register(
            "synced",
            "1 once the cluster's first full list has completed",
            m.synced.clone(),
        );
        r.register(
            "connected",
            "1 while the cluster's API (or file) is reachable",
            m.connected.clone(),
        );
        r.register(
            "objects",
            "Objects held per cluster and kind",
            m.objects.clone(),
        );
        r.register(
            "source_errors",
            "Watch, list, parse and conversion errors per cluster and kind",
            m.errors.clone(),
        );
        r.register(
            "updates",
            "Published data changes per cluster",
            m.updates.clone(),
        );
        r.register(
            "last_update_timestamp_seconds",
            "Unix time of the cluster's last data change",
            m.last_update_seconds.clone(),
        );
        m
    }

    pub fn error(&self, cluster: &str, kind: &str) {
        self.errors
            .get_or_create(&ClusterKindLabels {
                cluster: cluster.into(),
                kind: kind.into(),
            })
            .inc();
    }

    /// Counts a state file written.
    pub fn state_saved(&self, cluster: &str) {
        self.state_writes
            .get_or_create(&ClusterLabels {
                cluster: cluster.into(),
            })
            .inc();
    }

    /// State files written for `cluster` so far.
    pub fn state_writes_of(&self, cluster: &str) -> u64 {
        self.state_writes
            .get_or_create(&ClusterLabels {
                cluster: cluster.into(),
            })
            .get()
    }

    /// Records a publication.
    pub fn observe(&self, cluster: &str, status: &ClusterStatus, data: Option<&ClusterData>) {
        let c = ClusterLabels {
            cluster: cluster.into(),
        };
        self.synced.get_or_create(&c).set(i64::from(status.synced));
        self.stale.get_or_create(&c).set(i64::from(status.stale));
        self.connected
            .get_or_create(&c)
            .set(i64::from(status.connected));
        if let Some(data) = data {
            self.updates.get_or_create(&c).inc();
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs() as i64)
                .unwrap_or(0);
            self.last_update_seconds.get_or_create(&c).set(now);
            for kind in ObjectKind::ALL {
                self.objects
                    .get_or_create(&ClusterKindLabels {
                        cluster: cluster.into(),
                        kind: kind.plural().into(),
                    })
                    .set(data.count(kind) as i64);
            }
        }
    }
}
