//! The tunnel's control loop: catalog changes (and key changes) mark it dirty; one
//! [`SyncRunner`] task plans and applies — WireGuard peers in place, routes, the MSS clamp,
//! steering flows. Beside it: the publisher (own TunnelEndpoint and Service), the key watcher
//! (rotation), the health loop and the steering recheck.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use arc_swap::ArcSwap;
use axum::Router;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;
use causeway_shared::catalog::{Catalog, Snapshot};
use causeway_shared::config::Config;
use causeway_shared::sync_runner::{SyncRequest, SyncRunner, SyncTiming};
use ipnet::IpNet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tracing::Instrument as _;

use crate::health::{self, PeerMetrics, StatusReport};
use crate::host::{Host, HostError};
use crate::keystore::KeyStore;
use crate::mss::{MssClamp, MssError, Nft};
use crate::plan::{self, LocalNode, PeerLabel, PlanInput, RemoteCluster, RemoteView, Settings};
use crate::publish::{Publication, Publisher};
use crate::routes::{RouteTable, RoutesError};
use crate::steering::{Outcome, Steering, SteeringError, Switch};
use crate::subnets;
use crate::wg::{DeviceConfig, PeerConfig, PrivateKey, PublicKey, WgBackend, WgError};

/// Errors of one sync.
#[derive(Debug, thiserror::Error)]
pub enum ReconcileError {
    /// Configuring the WireGuard device failed.
    #[error("wireguard")]
    Wg(#[from] WgError),
    /// Programming routes failed.
    #[error("routes")]
    Routes(#[from] RoutesError),
    /// Applying the MSS clamp failed.
    #[error("mss clamp")]
    Mss(#[from] MssError),
    /// Programming the OVS bridge failed.
    #[error("steering")]
    Steering(#[from] SteeringError),
    /// Reading the host's interfaces failed.
    #[error("host interfaces")]
    Host(#[from] HostError),
    /// Steering is on but the pod interface has no IPv4 address or MAC.
    #[error("pod interface {0} has no IPv4 address and MAC")]
    PodInterface(String),
}

/// Who and where this tunnel is.
#[derive(Clone, Debug)]
pub struct Identity {
    pub node: String,
    /// Namespace of our pod, our Service and our TunnelEndpoint.
    pub namespace: String,
    /// Our pod (labelled for the per-node Service), if running in one.
    pub pod_name: Option<String>,
    /// The pod's interface on the SDN bridge (for steering).
    pub pod_interface: String,
}

/// The kernel-facing parts, injected.
#[derive(Clone)]
pub struct Parts {
    pub backend: Arc<dyn WgBackend>,
    pub routes: Arc<dyn RouteTable>,
    pub nft: Arc<dyn Nft>,
    /// `Some` with `steering: ovs`.
    pub switch: Option<Arc<dyn Switch>>,
    pub host: Arc<dyn Host>,
}

/// Timing of the loops.
#[derive(Clone, Debug)]
pub struct Timing {
    pub sync: SyncTiming,
    pub publish_every: Duration,
    pub key_poll: Duration,
    pub health_every: Duration,
    pub steering_recheck: Duration,
}

impl Default for Timing {
    fn default() -> Self {
        Self {
            sync: SyncTiming {
                min_interval: Duration::from_millis(200),
                ..SyncTiming::default()
            },
            publish_every: Duration::from_secs(5),
            key_poll: Duration::from_secs(10),
            health_every: Duration::from_secs(5),
            steering_recheck: Duration::from_secs(10),
        }
    }
}

/// Metrics of the loop, registered at construction.
#[derive(Clone)]
struct LoopMetrics {
    sync_duration: Histogram,
    sync_failures: Counter,
    last_sync: Gauge,
    steering_restores: Counter,
    programming_latency: Histogram,
    rotations: Counter,
    peers: PeerMetrics,
}

impl LoopMetrics {
    fn register(reg: &mut Registry) -> Self {
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

struct Inner {
    config: Arc<Config>,
    id: Identity,
    catalog: Arc<Catalog>,
    parts: Parts,
    timing: Timing,
    key: ArcSwap<PrivateKey>,
    keystore: Option<KeyStore>,
    publisher: Option<Publisher>,
    trigger: watch::Sender<u64>,
    key_changed: watch::Sender<PublicKey>,
    labels: Mutex<BTreeMap<PublicKey, PeerLabel>>,
    problems: Mutex<Vec<String>>,
    resolved: Mutex<BTreeMap<String, SocketAddr>>,
    activity: Mutex<health::Activity>,
    /// Up (true) or down per peer, as the last health check found them; the plan moves a
    /// cluster's service CIDRs off a down peer.
    peer_up: Mutex<BTreeMap<PublicKey, bool>>,
    /// Per remote cluster, the data generation the last successful sync covered.
    applied_generations: Mutex<BTreeMap<String, u64>>,
    status: ArcSwap<StatusReport>,
    metrics: LoopMetrics,
    steering: Option<Steering>,
    mss: MssClamp,
    /// What the CNI sources say about this node's subnets (`tunnel.nodeSubnets`), when the
    /// node publishes itself; `None`: only `Node.spec.podCIDRs` is read.
    subnets: Option<watch::Receiver<subnets::Observed>>,
    /// The last subnet choice, logged when it changes.
    subnet_choice: Mutex<Option<subnets::Choice>>,
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
            i.trigger.send_modify(|g| *g += 1);
        }
    })
}

/// A running tunnel control plane.
pub struct Agent {
    inner: Arc<Inner>,
    tasks: Vec<JoinHandle<()>>,
}

fn now_unix() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default()
}

impl Agent {
    /// Starts the loops. `key` is the node's key (from the [`KeyStore`] when there is one).
    #[allow(clippy::too_many_arguments)]
    pub fn start(
        config: Arc<Config>,
        id: Identity,
        catalog: Arc<Catalog>,
        parts: Parts,
        key: PrivateKey,
        keystore: Option<KeyStore>,
        publisher: Option<Publisher>,
        registry: &mut Registry,
        timing: Timing,
    ) -> Self {
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
                let (rx, t) = subnets::watch::spawn(p.client(), &id.node, source);
                tasks.extend(t);
                Some(rx)
            }
            _ => None,
        };
        let inner = Arc::new(Inner {
            metrics: LoopMetrics::register(registry),
            config,
            id,
            catalog,
            parts,
            timing,
            key: ArcSwap::from_pointee(key),
            keystore,
            publisher,
            trigger,
            key_changed,
            labels: Mutex::default(),
            problems: Mutex::default(),
            resolved: Mutex::default(),
            activity: Mutex::default(),
            peer_up: Mutex::default(),
            applied_generations: Mutex::default(),
            status: ArcSwap::from_pointee(StatusReport::default()),
            steering,
            mss,
            subnets,
            subnet_choice: Mutex::default(),
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
                            health::render_wg(&s),
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
        if let Some(s) = &self.inner.steering {
            match s.remove().await {
                Ok(()) => tracing::info!(bridge = s.bridge(), "steering flows removed"),
                Err(e) => tracing::warn!(error = %e, "could not remove steering flows"),
            }
        }
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

impl Inner {
    fn remote_view(
        &self,
        snap: &Snapshot,
        name: &str,
        cidrs: &[IpNet],
        current: &[PeerConfig],
    ) -> RemoteView {
        match snap.cluster(name) {
            Some(v) if v.status.synced => RemoteView::Synced(
                v.data
                    .tunnel_endpoints
                    .values()
                    .map(|t| (**t).clone())
                    .collect(),
            ),
            _ => RemoteView::Unsynced(
                current
                    .iter()
                    .filter(|p| {
                        !p.allowed_ips.is_empty()
                            && p.allowed_ips
                                .iter()
                                .all(|a| cidrs.iter().any(|c| c.contains(a)))
                    })
                    .cloned()
                    .collect(),
            ),
        }
    }

    async fn resolve(&self, snap: &Snapshot) -> BTreeMap<String, SocketAddr> {
        let wanted: Vec<String> = snap
            .clusters
            .values()
            .filter(|c| !c.local)
            .flat_map(|c| {
                c.data
                    .tunnel_endpoints
                    .values()
                    .filter_map(|t| t.endpoint.clone())
                    .collect::<Vec<_>>()
            })
            .chain(
                self.config
                    .tunnel
                    .static_peers
                    .iter()
                    .filter_map(|p| p.endpoint.clone()),
            )
            .filter(|e| e.parse::<SocketAddr>().is_err())
            .collect();
        let mut out = BTreeMap::new();
        for name in wanted {
            if let Some(a) = self
                .resolved
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .get(&name)
            {
                out.insert(name, *a);
                continue;
            }
            let found = tokio::time::timeout(
                Duration::from_secs(2),
                tokio::net::lookup_host(name.clone()),
            )
            .await;
            match found {
                Ok(Ok(mut addrs)) => {
                    if let Some(a) = addrs.next() {
                        self.resolved
                            .lock()
                            .unwrap_or_else(|e| e.into_inner())
                            .insert(name.clone(), a);
                        out.insert(name, a);
                    }
                }
                _ => tracing::warn!(endpoint = name, "cannot resolve a peer endpoint"),
            }
        }
        out
    }

    /// Observes, once per remote data change, how long it took until a sync applied it.
    fn observe_programming_latency(&self, snap: &Snapshot) {
        let mut seen = self
            .applied_generations
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        let now = SystemTime::now();
        for c in snap.clusters.values().filter(|c| !c.local) {
            let generation = c.status.data_generation;
            if seen.get(&c.name).is_some_and(|g| *g >= generation) {
                continue;
            }
            let first = !seen.contains_key(&c.name);
            seen.insert(c.name.clone(), generation);
            // The first sync after start measures our start-up, not programming latency.
            if let (false, Some(changed)) = (first, c.status.last_update) {
                let latency = now.duration_since(changed).unwrap_or_default();
                self.metrics
                    .programming_latency
                    .observe(latency.as_secs_f64());
            }
        }
    }

    async fn sync(&self, req: SyncRequest) -> Result<(), ReconcileError> {
        // The snapshot this sync starts from (sync_inner reads the same or a newer one).
        let snap_for_latency = self.catalog.snapshot();
        let span = tracing::info_span!("sync", node = %self.id.node, generation = req.generation, full = req.full);
        let started = std::time::Instant::now();
        let result = self.sync_inner(req).instrument(span.clone()).await;
        self.metrics
            .sync_duration
            .observe(started.elapsed().as_secs_f64());
        match &result {
            Ok(()) => {
                self.metrics.last_sync.set(now_unix() as i64);
                self.observe_programming_latency(&snap_for_latency);
            }
            Err(e) => {
                self.metrics.sync_failures.inc();
                span.in_scope(|| tracing::warn!(error = %DisplayChain(e), "sync failed"));
            }
        }
        result
    }

    /// This pod's port on the bridge, from its interface's IPv4 address and MAC.
    async fn steering_port(
        &self,
        s: &Steering,
        interfaces: &[crate::host::HostInterface],
    ) -> Result<crate::steering::SteeringPort, ReconcileError> {
        let pod = interfaces.iter().find(|i| i.name == self.id.pod_interface);
        let ip = pod.and_then(|i| i.addresses.iter().copied().find(IpAddr::is_ipv4));
        let mac = pod.and_then(|i| i.mac.clone());
        let (Some(ip), Some(mac)) = (ip, mac) else {
            return Err(ReconcileError::PodInterface(self.id.pod_interface.clone()));
        };
        Ok(
            s.resolve_port(self.config.tunnel.ovs_port.as_deref(), ip, &mac)
                .await?,
        )
    }

    async fn sync_inner(&self, req: SyncRequest) -> Result<(), ReconcileError> {
        if req.full {
            // Host names of endpoints are resolved again on every full sync.
            self.resolved
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .clear();
        }
        let cfg = &self.config;
        let snap = self.catalog.snapshot();
        let local = snap.cluster(&cfg.local_cluster);
        let node = local.and_then(|l| l.data.nodes.get(&self.id.node).cloned());
        let interfaces = self.parts.host.interfaces().await?;
        let any_unsynced = cfg
            .remotes()
            .any(|r| !snap.cluster(&r.name).is_some_and(|c| c.status.synced));
        let current: Vec<PeerConfig> = if any_unsynced {
            self.parts
                .backend
                .peers()
                .await?
                .into_iter()
                .map(|p| PeerConfig {
                    public_key: p.public_key,
                    preshared_key: None,
                    endpoint: p.endpoint,
                    allowed_ips: p.allowed_ips,
                    persistent_keepalive: p.persistent_keepalive,
                })
                .collect()
        } else {
            Vec::new()
        };
        let remotes = cfg
            .remotes()
            .map(|r| {
                let cidrs: Vec<IpNet> = r
                    .pod_cidrs
                    .iter()
                    .chain(&r.service_cidrs)
                    .copied()
                    .collect();
                RemoteCluster {
                    name: r.name.clone(),
                    pod_cidrs: r.pod_cidrs.clone(),
                    service_cidrs: r.service_cidrs.clone(),
                    view: self.remote_view(&snap, &r.name, &cidrs, &current),
                }
            })
            .collect();
        // A steering problem must not keep WireGuard and routes from following the peers: it
        // is reported after they are applied (and the runner retries).
        let mut steering_error = None;
        let steering = match &self.steering {
            Some(s) => match self.steering_port(s, &interfaces).await {
                Ok(port) => Some(port),
                Err(e) => {
                    steering_error = Some(e);
                    None
                }
            },
            None => None,
        };
        let key = self.key.load_full();
        let input = PlanInput {
            local: LocalNode {
                cluster: cfg.local_cluster.clone(),
                node: self.id.node.clone(),
                public_key: key.public_key(),
                pod_cidrs: match &node {
                    Some(n) => self.node_subnets(n),
                    None => cfg.local().pod_cidrs.clone(),
                },
                addresses: interfaces
                    .iter()
                    .flat_map(|i| i.addresses.iter().copied())
                    .collect(),
            },
            remotes,
            local_cidrs: cfg
                .local()
                .pod_cidrs
                .iter()
                .chain(&cfg.local().service_cidrs)
                .copied()
                .collect(),
            static_peers: cfg.tunnel.static_peers.clone(),
            settings: Settings {
                interface: cfg.tunnel.interface.clone(),
                keepalive: u16::try_from(cfg.tunnel.persistent_keepalive.0.as_secs())
                    .unwrap_or(u16::MAX),
            },
            resolved: self.resolve(&snap).await,
            steering,
            peer_up: self
                .peer_up
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .clone(),
        };
        let plan = plan::plan(&input);
        tracing::trace!(plan = %plan.render(), "plan");
        {
            let mut problems = self.problems.lock().unwrap_or_else(|e| e.into_inner());
            if *problems != plan.problems {
                for p in &plan.problems {
                    tracing::warn!(problem = %p, "left out of the plan");
                }
                *problems = plan.problems.clone();
            }
        }
        self.parts
            .backend
            .configure(&DeviceConfig {
                private_key: (*key).clone(),
                listen_port: cfg.tunnel.listen_port,
                peers: plan.peer_configs(),
            })
            .await?;
        *self.labels.lock().unwrap_or_else(|e| e.into_inner()) = plan.labels();
        self.parts.routes.sync(&plan.routes).await?;
        self.mss.sync(&plan.mss_interface, req.full).await?;
        if let Some(e) = steering_error {
            return Err(e);
        }
        if let Some(s) = &self.steering {
            match s.apply(&plan.flows).await? {
                Outcome::Unchanged => {}
                // The switch lost our flows (an ovs-vswitchd restart) and this sync came before
                // the recheck: the same restore, counted the same way.
                Outcome::Restored => {
                    self.metrics.steering_restores.inc();
                    tracing::warn!(
                        bridge = s.bridge(),
                        "steering flows were missing or altered; restored"
                    );
                }
                Outcome::Installed => tracing::info!(
                    bridge = s.bridge(),
                    flows = plan.flows.len(),
                    "steering flows installed"
                ),
            }
        }
        tracing::debug!(
            peers = plan.peers.len(),
            routes = plan.routes.len(),
            "synced"
        );
        Ok(())
    }

    async fn refresh_health(&self) {
        let peers = match self.parts.backend.peers().await {
            Ok(p) => p,
            Err(e) => {
                tracing::warn!(error = %DisplayChain(&e), "cannot read peers");
                return;
            }
        };
        let labels = self
            .labels
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        let down_after = self.config.tunnel.peer_down_after.0;
        let now = SystemTime::now();
        let activity = {
            let mut a = self.activity.lock().unwrap_or_else(|e| e.into_inner());
            a.observe(&peers, now);
            a.clone()
        };
        let health = health::assess(&peers, &labels, &activity, now, down_after);
        let previous = self.status.load_full();
        for p in &health {
            let was = previous.peers.iter().find(|o| o.public_key == p.public_key);
            match (was.map(|w| w.up), p.up) {
                (Some(true), false) => tracing::warn!(
                    peer = %format!("{}/{}", p.cluster, p.node),
                    last_handshake_seconds = ?p.last_handshake_seconds,
                    "peer down: no handshake within peerDownAfter"
                ),
                (Some(false), true) => {
                    tracing::info!(peer = %format!("{}/{}", p.cluster, p.node), "peer up")
                }
                _ => {}
            }
        }
        self.metrics.peers.observe(&health, &previous.peers);
        if let Some(stats) = self.parts.backend.datapath_stats() {
            self.metrics.peers.observe_datapath(&stats, &health);
        }
        // A peer going down or coming back can move service CIDRs: plan again.
        let peer_up: BTreeMap<PublicKey, bool> = health
            .iter()
            .filter_map(|p| Some((p.public_key.parse().ok()?, p.up)))
            .collect();
        let changed = {
            let mut current = self.peer_up.lock().unwrap_or_else(|e| e.into_inner());
            let changed = *current != peer_up;
            *current = peer_up;
            changed
        };
        if changed {
            self.trigger.send_modify(|g| *g += 1);
        }
        let key = self.key.load();
        self.status.store(Arc::new(StatusReport {
            interface: self.config.tunnel.interface.clone(),
            backend: self.parts.backend.kind().to_string(),
            public_key: key.public_key().to_base64(),
            listen_port: self.config.tunnel.listen_port,
            peers: health,
            problems: self
                .problems
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .clone(),
        }));
    }

    async fn health_loop(&self) {
        loop {
            self.refresh_health().await;
            tokio::time::sleep(self.timing.health_every).await;
        }
    }

    async fn steering_loop(&self) {
        let Some(s) = &self.steering else { return };
        loop {
            tokio::time::sleep(self.timing.steering_recheck).await;
            match s.recheck().await {
                Ok(Outcome::Restored) => {
                    self.metrics.steering_restores.inc();
                    tracing::warn!(
                        bridge = s.bridge(),
                        "steering flows were missing or altered; restored"
                    );
                }
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %DisplayChain(&e), "steering recheck failed"),
            }
        }
    }

    fn publication(&self) -> (Publication, Vec<causeway_shared::model::NodeAddress>) {
        let snap = self.catalog.snapshot();
        let node = snap
            .cluster(&self.config.local_cluster)
            .and_then(|l| l.data.nodes.get(&self.id.node).cloned());
        (
            Publication {
                public_key: self.key.load().public_key(),
                endpoint: None,
                pod_cidrs: node
                    .as_ref()
                    .map(|n| self.node_subnets(n))
                    .unwrap_or_default(),
            },
            node.map(|n| n.addresses.clone()).unwrap_or_default(),
        )
    }

    /// This node's pod subnets, from the source `tunnel.nodeSubnets` names.
    fn node_subnets(&self, node: &causeway_shared::model::Node) -> Vec<IpNet> {
        let observed = self
            .subnets
            .as_ref()
            .map(|rx| rx.borrow().clone())
            .unwrap_or_default();
        let choice = subnets::choose(self.config.tunnel.node_subnets, &observed, &node.pod_cidrs);
        let mut last = self.subnet_choice.lock().unwrap_or_else(|e| e.into_inner());
        if last.as_ref() != Some(&choice) {
            for p in &choice.problems {
                tracing::warn!(error = %p, "cannot read the node's subnets from this source");
            }
            if choice.subnets.is_empty() {
                tracing::warn!(
                    source = %self.config.tunnel.node_subnets,
                    "no pod subnets found for this node; remote clusters cannot reach its pods"
                );
            } else {
                tracing::info!(subnets = %choice, "node pod subnets");
            }
            *last = Some(choice.clone());
        }
        choice.subnets
    }

    async fn publish_loop(&self) {
        let Some(p) = &self.publisher else { return };
        let mut key_rx = self.key_changed.subscribe();
        let mut subnets_rx = self.subnets.clone();
        let mut catalog_rx = self.catalog.subscribe();
        let mut prepared = false;
        let mut last: Option<Publication> = None;
        loop {
            if !prepared {
                let r = async {
                    p.label_own_pod().await?;
                    p.ensure_service().await
                }
                .await;
                match r {
                    Ok(()) => prepared = true,
                    Err(e) => {
                        tracing::warn!(error = %DisplayChain(&e), "cannot prepare the per-node service; retrying")
                    }
                }
            }
            // Never publish from a partial view: our Node (pod subnets, addresses) counts only
            // once the local cluster's first list is complete.
            let local_synced = self
                .catalog
                .snapshot()
                .cluster(&self.config.local_cluster)
                .is_some_and(|c| c.status.synced);
            if local_synced {
                let (mut publication, addresses) = self.publication();
                match p.endpoint(&addresses).await {
                    Ok(e) => publication.endpoint = e,
                    Err(e) => {
                        tracing::warn!(error = %DisplayChain(&e), "cannot read the per-node service");
                        publication.endpoint = last.as_ref().and_then(|l| l.endpoint.clone());
                    }
                }
                if last.as_ref() != Some(&publication) {
                    match p.publish(&publication).await {
                        Ok(()) => last = Some(publication),
                        Err(e) => {
                            tracing::warn!(error = %DisplayChain(&e), "cannot publish the TunnelEndpoint; retrying")
                        }
                    }
                }
            }
            tokio::select! {
                _ = tokio::time::sleep(self.timing.publish_every) => {}
                r = key_rx.changed() => if r.is_err() { return },
                r = catalog_rx.changed() => if r.is_err() { return },
                Some(r) = async { match subnets_rx.as_mut() {
                    Some(rx) => Some(rx.changed().await),
                    None => std::future::pending().await,
                } } => if r.is_err() { return },
            }
        }
    }

    async fn key_loop(&self) {
        let Some(store) = &self.keystore else { return };
        let interval = self.config.tunnel.rotate_interval.0;
        loop {
            tokio::time::sleep(self.timing.key_poll).await;
            // A file of a hundred bytes on the node's disk, read in place like the file
            // sources do; a due rotation writes it (two fsyncs) once per interval.
            let stored = match store.read() {
                Ok(Some(k)) => k,
                Ok(None) => {
                    tracing::warn!(
                        path = %store.path().display(),
                        "key file is gone; keeping the key in use (a restart generates a new one)"
                    );
                    continue;
                }
                Err(e) => {
                    tracing::warn!(error = %DisplayChain(&e), "cannot read the key file; keeping the key in use");
                    continue;
                }
            };
            let due = !interval.is_zero()
                && now_unix().saturating_sub(stored.created_unix) >= interval.as_secs();
            if due {
                if let Err(e) = store.rotate() {
                    tracing::warn!(error = %DisplayChain(&e), "scheduled key rotation failed");
                }
                continue;
            }
            if stored.key.public_key() != self.key.load().public_key() {
                tracing::info!(public_key = %stored.key.public_key(), "new key; reconfiguring and republishing");
                self.key.store(Arc::new(stored.key.clone()));
                self.metrics.rotations.inc();
                self.key_changed.send_replace(stored.key.public_key());
                self.trigger.send_modify(|g| *g += 1);
            }
        }
    }
}

/// An error with its sources, `a: b: c`.
pub struct DisplayChain<'a>(pub &'a (dyn std::error::Error + 'static));

impl std::fmt::Display for DisplayChain<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.0)?;
        let mut src = self.0.source();
        while let Some(s) = src {
            write!(f, ": {s}")?;
            src = s.source();
        }
        Ok(())
    }
}
