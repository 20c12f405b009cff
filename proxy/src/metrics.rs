//! The proxy's Prometheus metrics, registered at construction.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use std::sync::atomic::AtomicU64;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KindLabel {
    /// `full` or `partial`.
    pub kind: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ClusterLabel {
    pub cluster: String,
}

/// Everything the sync loop reports.
#[derive(Clone)]
pub struct ProxyMetrics {
    pub sync_duration: Family<KindLabel, Histogram>,
    pub sync_failures: Counter,
    pub last_success: Gauge<f64, AtomicU64>,
    pub programming_latency: Histogram,
    pub services: Family<ClusterLabel, Gauge>,
    pub real_servers: Family<ClusterLabel, Gauge>,
    pub draining: Gauge,
}

fn buckets() -> impl Iterator<Item = f64> {
    [
        0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
    ]
    .into_iter()
}

impl ProxyMetrics {
    pub fn register(registry: &mut Registry) -> Self {
        let m = ProxyMetrics {
            sync_duration: Family::new_with_constructor(|| Histogram::new(buckets())),
            sync_failures: Counter::default(),
            last_success: Gauge::default(),
            programming_latency: Histogram::new(buckets()),
            services: Family::default(),
            real_servers: Family::default(),
            draining: Gauge::default(),
        };
        let r = registry.sub_registry_with_prefix("causeway_proxy");
        r.register(
            "sync_duration_seconds",
            "Time to plan and apply one sync, by kind (full or partial)",
            m.sync_duration.clone(),
        );
        r.register(
            "sync_failures",
            "Syncs whose apply failed",
            m.sync_failures.clone(),
        );
        r.register(
            "last_sync_success_timestamp_seconds",
            "Unix time of the last successful sync",
            m.last_success.clone(),
        );
        r.register(
            "network_programming_latency_seconds",
            "From an EndpointSlice or Service change seen by the source to the kernel programmed",
            m.programming_latency.clone(),
        );
        r.register(
            "virtual_services",
            "Virtual services programmed, by cluster",
            m.services.clone(),
        );
        r.register(
            "real_servers",
            "Real servers programmed, by cluster",
            m.real_servers.clone(),
        );
        r.register(
            "draining_real_servers",
            "Real servers kept at weight 0 while draining",
            m.draining.clone(),
        );
        m
    }
}
