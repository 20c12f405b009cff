//! One sync, as the [`SyncRunner`](causeway_shared::sync_runner::SyncRunner) calls it: read the
//! catalog and the host, plan, then apply — the WireGuard backend (peers changed in place), the
//! routes, the MSS clamp, the steering flows — and measure it.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, SystemTime};

use causeway_shared::catalog::Snapshot;
use causeway_shared::sync_runner::SyncRequest;
use ipnet::IpNet;
use tracing::Instrument as _;

use super::state::{DisplayChain, Inner, lock, now_unix};
use crate::host::{HostError, HostInterface};
use crate::mss::MssError;
use crate::plan::{self, LocalNode, PlanInput, RemoteCluster, RemoteView, Settings};
use crate::routes::RoutesError;
use crate::steering::{Steering, SteeringError, SteeringPort};
use crate::wg::{DeviceConfig, PeerConfig, WgError};

/// Errors of one sync.
#[derive(Debug, thiserror::Error)]
pub enum SyncError {
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

impl Inner {
    /// One sync with its span, duration, failure count and programming latency.
    pub(super) async fn sync(&self, req: SyncRequest) -> Result<(), SyncError> {
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

    async fn sync_inner(&self, req: SyncRequest) -> Result<(), SyncError> {
        if req.full {
            // Host names of endpoints are resolved again on every full sync.
            lock(&self.resolved).clear();
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
                    view: remote_view(&snap, &r.name, &cidrs, &current),
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
            peer_up: lock(&self.peer_up).clone(),
        };
        let plan = plan::plan(&input);
        tracing::trace!(plan = %plan.render(), "plan");
        {
            let mut problems = lock(&self.problems);
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
        *lock(&self.labels) = plan.labels();
        self.parts.routes.sync(&plan.routes).await?;
        self.follow_plan_probes(&plan);
        self.mss.sync(&plan.mss_interface, req.full).await?;
        if let Some(e) = steering_error {
            return Err(e);
        }
        self.apply_steering(&plan.flows).await?;
        tracing::debug!(
            peers = plan.peers.len(),
            routes = plan.routes.len(),
            "synced"
        );
        Ok(())
    }

    /// This pod's port on the bridge, from its interface's IPv4 address and MAC.
    async fn steering_port(
        &self,
        s: &Steering,
        interfaces: &[HostInterface],
    ) -> Result<SteeringPort, SyncError> {
        let pod = interfaces.iter().find(|i| i.name == self.id.pod_interface);
        let ip = pod.and_then(|i| i.addresses.iter().copied().find(IpAddr::is_ipv4));
        let mac = pod.and_then(|i| i.mac.clone());
        let (Some(ip), Some(mac)) = (ip, mac) else {
            return Err(SyncError::PodInterface(self.id.pod_interface.clone()));
        };
        Ok(
            s.resolve_port(self.config.tunnel.ovs_port.as_deref(), ip, &mac)
                .await?,
        )
    }

    /// The endpoints given as host names, resolved (cached until the next full sync).
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
            if let Some(a) = lock(&self.resolved).get(&name) {
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
                        lock(&self.resolved).insert(name.clone(), a);
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
        let mut seen = lock(&self.applied_generations);
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
}

/// What the plan may use of remote cluster `name`: its TunnelEndpoints once synced, else the
/// peers the device has now whose allowed IPs lie inside the cluster's `cidrs` (last known
/// good: a disconnected cluster keeps its peers).
fn remote_view(snap: &Snapshot, name: &str, cidrs: &[IpNet], current: &[PeerConfig]) -> RemoteView {
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
