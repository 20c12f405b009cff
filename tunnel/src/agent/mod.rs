//! The tunnel's control plane on one node: [`Agent::start`] spawns its loops, [`Agent::shutdown`]
//! stops them. One file per loop:
//!
//! - [`sync`]: catalog, subnet, key and health-verdict changes mark it dirty; one
//!   [`SyncRunner`] task plans and applies (WireGuard peers in place, routes, MSS clamp, steering
//!   flows);
//! - [`health`]: every few seconds, each peer up or down, metrics and `/status`; a changed
//!   verdict triggers a sync (what the tunnel does when a peer goes down);
//! - [`publish`]: our TunnelEndpoint and per-node Service in the local cluster;
//! - [`keys`]: the key file watcher (scheduled and manual rotation);
//! - [`steering`]: install, recheck and remove the OVS flows.
//!
//! [`state`] is what they share, [`metrics`] the agent's own metrics. The modules below depend
//! on `state` (and `sync` on `steering`), never on this file.

mod health;
mod keys;
mod metrics;
mod probe;
mod publish;
mod state;
mod steering;
mod sync;

use std::sync::Arc;

use arc_swap::ArcSwap;
use axum::Router;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;
use causeway_shared::catalog::Catalog;
use causeway_shared::config::Config;
use causeway_shared::sync_runner::SyncRunner;
use prometheus_client::registry::Registry;
use tokio::sync::watch;
use tokio::task::JoinHandle;

pub use state::{DisplayChain, Identity, Parts, Timing};
pub use sync::SyncError;

use crate::health::StatusReport;
use crate::keystore::KeyStore;
use crate::mss::MssClamp;
use crate::publish::Publisher;
use crate::steering::Steering;
use crate::subnets;
use crate::wg::{PrivateKey, PublicKey};
use metrics::LoopMetrics;
use state::Inner;

/// Everything an agent is started with (the metrics registry aside, which it only borrows).
pub struct AgentConfig {
    pub config: Arc<Config>,
    pub identity: Identity,
    /// Filled by the sources the caller started.
    pub catalog: Arc<Catalog>,
    pub parts: Parts,
    /// The node's key (from the [`KeyStore`] when there is one).
    pub key: PrivateKey,
    /// Watched for rotations; `None`: the key never changes.
    pub keystore: Option<KeyStore>,
    /// Publishes this node in the local cluster; `None`: nothing is published (and the node's
    /// subnets come from `Node.spec.podCIDRs` only).
    pub publisher: Option<Publisher>,
    pub timing: Timing,
}

/// A running tunnel control plane.
pub struct Agent {
    inner: Arc<Inner>,
    tasks: Vec<JoinHandle<()>>,
}

/// Triggers a sync on every change `changes` sees, until the agent is gone.
fn mark_dirty_on<T: Send + Sync + 'static>(
    mut changes: watch::Receiver<T>,
    inner: &Arc<Inner>,
) -> JoinHandle<()> {
    let weak = Arc::downgrade(inner);
    tokio::spawn(async move {
        while changes.changed().await.is_ok() {
            let Some(i) = weak.upgrade() else { return };
            i.mark_dirty();
        }
    })
}

impl Agent {
    /// Starts the loops; the metrics are registered in `registry`.
    pub fn start(cfg: AgentConfig, registry: &mut Registry) -> Self {
        let AgentConfig {
            config,
            identity,
            catalog,
            parts,
            key,
            keystore,
            publisher,
            timing,
        } = cfg;
        let steering = parts
            .switch
            .clone()
            .map(|s| Steering::new(s, config.tunnel.ovs_bridge.clone()));
        let mss = MssClamp::new(parts.nft.clone());
        let (trigger, _) = watch::channel(0);
        let (key_changed, _) = watch::channel(key.public_key());
        let mut tasks = Vec::new();
        let source = config.tunnel.node_subnets;
        let subnets = match &publisher {
            Some(p) if source != subnets::NodeSubnetSource::NodeSpec => {
                let (rx, t) = subnets::watch::spawn(p.client(), &identity.node, source);
                tasks.extend(t);
                Some(rx)
            }
            _ => None,
        };
        let inner = Arc::new(Inner {
            metrics: LoopMetrics::register(registry),
            config,
            id: identity,
            catalog,
            parts,
            timing,
            key: ArcSwap::from_pointee(key),
            keystore,
            publisher,
            trigger,
            key_changed,
            labels: Default::default(),
            problems: Default::default(),
            resolved: Default::default(),
            activity: Default::default(),
            peer_up: Default::default(),
            applied_generations: Default::default(),
            status: ArcSwap::from_pointee(StatusReport::default()),
            probes: Arc::new(std::sync::Mutex::new(crate::probe::Tracker::new(
                std::time::Instant::now(),
            ))),
            probing: Default::default(),
            probe_endpoint: watch::channel(None).0,
            steering,
            mss,
            subnets,
            subnet_choice: Default::default(),
        });
        // Catalog changes, and the CNI's node subnets, mark the loop dirty.
        tasks.push(mark_dirty_on(inner.catalog.subscribe(), &inner));
        if let Some(rx) = inner.subnets.clone() {
            tasks.push(mark_dirty_on(rx, &inner));
        }
        let i = inner.clone();
        let rx = inner.trigger.subscribe();
        tasks.push(tokio::spawn(async move {
            let runner = SyncRunner::new(i.timing.sync.clone());
            runner
                .run(rx, |req| {
                    let i = i.clone();
                    async move { i.sync(req).await }
                })
                .await;
        }));
        if inner.publisher.is_some() {
            let i = inner.clone();
            tasks.push(tokio::spawn(async move { i.publish_loop().await }));
        }
        if inner.keystore.is_some() {
            let i = inner.clone();
            tasks.push(tokio::spawn(async move { i.key_loop().await }));
        }
        let i = inner.clone();
        tasks.push(tokio::spawn(async move { i.health_loop().await }));
        tasks.extend(inner.start_probes());
        if inner.steering.is_some() {
            let i = inner.clone();
            tasks.push(tokio::spawn(async move { i.steering_loop().await }));
        }
        Self { inner, tasks }
    }

    /// The current `/status` document.
    pub fn status(&self) -> Arc<StatusReport> {
        self.inner.status.load_full()
    }

    /// The node's current public key.
    pub fn public_key(&self) -> PublicKey {
        self.inner.key.load().public_key()
    }

    /// Refreshes the status now (tests; the health loop does it periodically).
    pub async fn refresh_status(&self) -> Arc<StatusReport> {
        self.inner.refresh_health().await;
        self.status()
    }

    /// `/paths` (JSON): per remote cluster, whether its nodes answer probes through the
    /// tunnel. Read by causeway-dns and causeway-proxy (`pathHealth`): serve it beside the
    /// metrics.
    pub fn paths_router(&self) -> Router {
        let inner = self.inner.clone();
        Router::new().route(
            "/paths",
            get(move || {
                let report = inner.paths_report();
                async move { axum::Json(report) }
            }),
        )
    }

    /// The `/paths` document now (tests).
    pub fn paths(&self) -> causeway_shared::path_health::PathReport {
        self.inner.paths_report()
    }

    /// `/status` (JSON) and `/wg` (text) routes; merge into the telemetry router.
    pub fn router(&self) -> Router {
        let (a, b) = (self.inner.clone(), self.inner.clone());
        Router::new()
            .route(
                "/status",
                get(move || {
                    let s = a.status.load_full();
                    async move { axum::Json((*s).clone()) }
                }),
            )
            .route(
                "/wg",
                get(move || {
                    let s = b.status.load_full();
                    async move {
                        (
                            [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
                            crate::health::render_wg(&s),
                        )
                            .into_response()
                    }
                }),
            )
    }

    /// Stops the loops and removes the steering flows (clean shutdown). Routes, the clamp and
    /// the device stay: a restarted tunnel adopts them without cutting connections.
    pub async fn shutdown(mut self) {
        let tasks = std::mem::take(&mut self.tasks);
        for t in &tasks {
            t.abort();
        }
        // Wait until no sync can still be installing flows behind our back.
        for t in tasks {
            let _ = t.await;
        }
        self.inner.remove_steering().await;
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}
