//! The agent's own metrics (syncs, programming latency, steering restores, key changes) beside
//! the per-peer ones of [`crate::health::PeerMetrics`], all registered at construction.

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

use crate::health::PeerMetrics;

/// Metrics of the loop, registered at construction.
#[derive(Clone)]
pub(super) struct LoopMetrics {
    pub sync_duration: Histogram,
    pub sync_failures: Counter,
    pub last_sync: Gauge,
    pub steering_restores: Counter,
    pub programming_latency: Histogram,
    pub rotations: Counter,
    pub peers: PeerMetrics,
}

impl LoopMetrics {
    pub fn register(reg: &mut Registry) -> Self {
        let m = Self {
            sync_duration: Histogram::new([0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0]),
            sync_failures: Counter::default(),
            last_sync: Gauge::default(),
            steering_restores: Counter::default(),
            programming_latency: Histogram::new([0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0]),
            rotations: Counter::default(),
            peers: PeerMetrics::default(),
        };
        reg.register(
            "causeway_tunnel_sync_duration_seconds",
            "Duration of a sync",
            m.sync_duration.clone(),
        );
        reg.register(
            "causeway_tunnel_sync_failures",
            "Failed syncs",
            m.sync_failures.clone(),
        );
        reg.register(
            "causeway_tunnel_last_sync_timestamp_seconds",
            "Unix time of the last successful sync",
            m.last_sync.clone(),
        );
        reg.register(
            "causeway_tunnel_network_programming_latency_seconds",
            "Time from a remote cluster's data change (TunnelEndpoints) to the sync that applied it",
            m.programming_latency.clone(),
        );
        reg.register(
            "causeway_tunnel_steering_restores",
            "Times our OVS flows were found missing or altered and reinstalled",
            m.steering_restores.clone(),
        );
        reg.register(
            "causeway_tunnel_key_changes",
            "Key changes applied (rotations)",
            m.rotations.clone(),
        );
        Self {
            peers: PeerMetrics::register(reg),
            ..m
        }
    }
}
