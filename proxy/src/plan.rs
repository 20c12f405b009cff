//! The planner: a catalog snapshot in, the desired kernel state out. Pure: no I/O, no
//! clock (the caller passes `now`), so `cargo test` checks it without root.
//!
//! For each Service of each **remote** cluster that has a ClusterIP, one virtual service
//! per (ClusterIP, port), with the endpoints of its EndpointSlices as real servers:
//! ready endpoints weigh 1, terminating-but-serving ones weigh 0 (they take no new
//! connections while established ones drain). Headless and ExternalName services get
//! nothing. A cluster whose first list has not completed is left out and reported in
//! [`Plan::unsynced`] (the caller keeps what the kernel already has for it); a cluster
//! unreachable for longer than the stale-rules expiry is left out for good.
//!
//! [`Planner`] answers the same while building anew only the Services whose objects
//! changed since its last plan: the sync loop keeps one.

use std::cmp::Ordering;
use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use causeway_shared::catalog::Snapshot;
use causeway_shared::model::{
    AddressType, ClusterData, EndpointSlice, Protocol, Service, ServiceKey, ServiceType,
    SessionAffinity,
};
use serde::Serialize;
use tokio::time::Instant;

/// Annotation choosing the IPVS scheduler of a service.
pub const SCHEDULER_ANNOTATION: &str = "causeway.io/scheduler";

/// Schedulers a service may ask for (the IPVS kernel modules `ip_vs_<name>`).
pub const SCHEDULERS: &[&str] = &[
    "rr", "wrr", "lc", "wlc", "lblc", "lblcr", "dh", "sh", "sed", "nq", "mh", "fo", "ovf", "twos",
];

/// Identity of a virtual service: protocol, VIP and port.
///
/// Ordered as `ipvsadm -Ln` sorts: IPv4 before IPv6, then protocol number, address, port.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
pub struct VsKey {
    pub proto: Protocol,
    pub addr: SocketAddr,
}

impl VsKey {
    fn sort_key(&self) -> (bool, Protocol, IpAddr, u16) {
        (
            self.addr.is_ipv6(),
            self.proto,
            self.addr.ip(),
            self.addr.port(),
        )
    }
}

impl Ord for VsKey {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.sort_key().cmp(&other.sort_key())
    }
}

impl PartialOrd for VsKey {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl std::fmt::Display for VsKey {
    /// `TCP 192.0.2.10:80`, as ipvsadm names a service.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.proto, self.addr)
    }
}

/// Where a virtual service comes from.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Origin {
    pub cluster: String,
    pub service: ServiceKey,
    /// Name of the service port (empty when unnamed).
    pub port: String,
    /// Highest `metadata.generation` of the EndpointSlices used.
    pub slice_generation: i64,
}

/// One virtual service with its real servers.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct VirtualServer {
    /// IPVS scheduler name (`rr` unless annotated).
    pub scheduler: String,
    /// `sessionAffinity: ClientIP` timeout in seconds.
    pub affinity: Option<u32>,
    /// Real servers and their weights (0: drain, no new connections).
    pub reals: BTreeMap<SocketAddr, u32>,
    pub origin: Origin,
}

/// Everything the kernel should hold.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct DesiredState {
    pub services: BTreeMap<VsKey, VirtualServer>,
}

impl DesiredState {
    /// The service IPs to alias on the interface.
    pub fn vips(&self) -> BTreeSet<IpAddr> {
        self.services.keys().map(|k| k.addr.ip()).collect()
    }

    /// Number of virtual services and real servers of each cluster.
    pub fn counts(&self) -> BTreeMap<&str, (usize, usize)> {
        let mut out: BTreeMap<&str, (usize, usize)> = BTreeMap::new();
        for vs in self.services.values() {
            let c = out.entry(vs.origin.cluster.as_str()).or_default();
            c.0 += 1;
            c.1 += vs.reals.len();
        }
        out
    }

    /// Copies from `previous` every virtual service of the given clusters (clusters not
    /// yet synced keep what was there: never program from a partial view).
    pub fn carry_over(&mut self, previous: &DesiredState, clusters: &BTreeSet<String>) {
        if clusters.is_empty() {
            return; // every cluster synced, the usual case: no need to walk `previous`
        }
        for (k, vs) in &previous.services {
            if clusters.contains(&vs.origin.cluster) {
                self.services.entry(*k).or_insert_with(|| vs.clone());
            }
        }
    }
}

/// Planner settings (from the `proxy:` section).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PlanSettings {
    /// A remote unreachable this long loses its rules; zero keeps them forever.
    pub stale_rules_expiry: Duration,
}

/// Two services of different clusters claim the same VIP, protocol and port.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Conflict {
    pub key: VsKey,
    /// The cluster that keeps it (first in name order).
    pub kept: String,
    pub dropped: String,
}

/// The planner's answer.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Plan {
    pub desired: DesiredState,
    /// Remote clusters not synced yet: their state is kept as it is.
    pub unsynced: BTreeSet<String>,
    /// Remote clusters whose rules expired (unreachable for longer than the expiry).
    pub expired: BTreeSet<String>,
    pub conflicts: Vec<Conflict>,
    /// Each remote cluster's data generation this plan was built from.
    pub generations: BTreeMap<String, u64>,
}

/// Builds the desired state of every remote cluster in `snapshot`.
pub fn plan(snapshot: &Snapshot, settings: &PlanSettings, now: Instant) -> Plan {
    Planner::default().plan(snapshot, settings, now)
}

/// The planner with a memory: [`Planner::plan`] answers exactly as [`plan`] does, but
/// builds anew only the virtual services of Services that changed since its last call.
///
/// The sources keep the same `Arc` for every object that did not change, so a Service
/// whose object and EndpointSlices are the same `Arc`s as last time has the same virtual
/// services, and a cluster whose whole `ClusterData` is the same `Arc` has the same
/// result. The memo holds those `Arc`s rather than bare addresses: a freed object's
/// address could be reused by a new one, a live `Arc`'s cannot.
///
/// It also holds a copy of every virtual service it planned; each plan hands out clones
/// (the caller owns and changes its [`DesiredState`]), which is most of what a re-plan
/// costs.
#[derive(Debug, Default)]
pub struct Planner {
    /// The clusters of the last plan, by name (unsynced, expired and gone ones are dropped).
    clusters: BTreeMap<String, ClusterMemo>,
    /// Services whose virtual services the last plan built anew.
    rebuilt: usize,
}

/// What one cluster's data planned to.
#[derive(Debug)]
struct ClusterMemo {
    data: Arc<ClusterData>,
    /// In the order of `data.services` (by key): the order [`plan`] meets them in.
    services: Vec<ServiceMemo>,
    /// The virtual services of all of them, sorted by key (then by where [`plan`] meets
    /// them): the desired state is built from these in order, without a search.
    servers: Vec<Claim>,
}

/// What one Service was planned from.
#[derive(Debug)]
struct ServiceMemo {
    service: Arc<Service>,
    slices: Vec<Arc<EndpointSlice>>,
}

/// One virtual service of a cluster.
#[derive(Debug)]
struct Claim {
    key: VsKey,
    /// The position of its Service in [`ClusterMemo::services`], and its own among that
    /// Service's virtual services.
    at: (usize, usize),
    server: VirtualServer,
}

/// The slices of one service, as [`ClusterData::slices_by_service`] lists them.
type SliceGroup = BTreeMap<String, Arc<EndpointSlice>>;

impl Planner {
    /// Builds the desired state of every remote cluster in `snapshot`, as [`plan`] does.
    pub fn plan(&mut self, snapshot: &Snapshot, settings: &PlanSettings, now: Instant) -> Plan {
        let mut out = Plan::default();
        let mut previous = std::mem::take(&mut self.clusters);
        self.rebuilt = 0;
        for view in snapshot.clusters.values().filter(|v| !v.local) {
            if !view.status.synced {
                out.unsynced.insert(view.name.clone());
                continue;
            }
            let expired = !settings.stale_rules_expiry.is_zero()
                && view
                    .status
                    .unreachable_for(now)
                    .is_some_and(|d| d > settings.stale_rules_expiry);
            if expired {
                out.expired.insert(view.name.clone());
                continue;
            }
            out.generations
                .insert(view.name.clone(), view.status.data_generation);
            let memo = match previous.remove(&view.name) {
                Some(memo) if Arc::ptr_eq(&memo.data, &view.data) => memo,
                memo => ClusterMemo::update(&view.name, &view.data, memo, &mut self.rebuilt),
            };
            self.clusters.insert(view.name.clone(), memo);
        }
        (out.desired, out.conflicts) = merge(&self.clusters);
        out
    }

    /// How many Services the last [`Planner::plan`] built virtual services for anew
    /// (the others' were reused).
    pub fn rebuilt(&self) -> usize {
        self.rebuilt
    }
}

/// The virtual services of all clusters, in name order, the first claimant of a key
/// keeping it; the others are conflicts, listed in the order [`plan`] meets them.
fn merge(clusters: &BTreeMap<String, ClusterMemo>) -> (DesiredState, Vec<Conflict>) {
    let clusters: Vec<(&String, &ClusterMemo)> = clusters.iter().collect();
    let mut claims: Vec<(VsKey, usize, usize)> = clusters
        .iter()
        .enumerate()
        .flat_map(|(c, (_, memo))| {
            memo.servers
                .iter()
                .enumerate()
                .map(move |(i, s)| (s.key, c, i))
        })
        .collect();
    // Each cluster's run is sorted and the runs come in cluster order, so a stable sort
    // by key merges them and keeps each key's claimants in the order `plan` meets them.
    claims.sort_by_key(|c| c.0);
    let mut services = Vec::with_capacity(claims.len());
    let mut conflicts = Vec::new();
    let mut kept: Option<(VsKey, usize)> = None;
    for &(key, c, i) in &claims {
        let claim = &clusters[c].1.servers[i];
        match kept {
            Some((k, first)) if k == key => conflicts.push((
                (c, claim.at),
                Conflict {
                    key,
                    kept: clusters[first].0.clone(),
                    dropped: clusters[c].0.clone(),
                },
            )),
            _ => {
                kept = Some((key, c));
                services.push((key, claim.server.clone()));
            }
        }
    }
    conflicts.sort_by_key(|(at, _)| *at);
    let desired = DesiredState {
        // In key order already: `collect` finds one sorted run and builds the map in
        // bulk, without a search per key.
        services: services.into_iter().collect(),
    };
    (desired, conflicts.into_iter().map(|(_, c)| c).collect())
}

impl ClusterMemo {
    /// The memo of `data`, reusing from `previous` every Service whose object and
    /// slices did not change.
    fn update(
        cluster: &str,
        data: &Arc<ClusterData>,
        previous: Option<ClusterMemo>,
        rebuilt: &mut usize,
    ) -> ClusterMemo {
        let (old, mut servers) = previous
            .map(|m| (m.services, m.servers))
            .unwrap_or_default();
        // Where each previous Service went (None: it changed or went).
        let mut moved_to: Vec<Option<usize>> = vec![None; old.len()];
        let mut old = old.into_iter().enumerate().peekable();
        let mut groups = data.slices_by_service().peekable();
        let mut services = Vec::with_capacity(data.services.len());
        let mut added = Vec::new();
        // Services, slice groups and previous memos are all sorted by key: one walk
        // pairs them up without a search.
        for (key, svc) in &data.services {
            let slices = loop {
                match groups.peek().map(|(k, _)| (*k).cmp(key)) {
                    Some(Ordering::Less) => {
                        groups.next(); // slices of a service that does not exist
                    }
                    Some(Ordering::Equal) => break groups.next().map(|(_, g)| g),
                    _ => break None,
                }
            };
            // An unchanged Service is the next memo's very object: no key comparison.
            let memo = old
                .next_if(|(_, m)| Arc::ptr_eq(&m.service, svc))
                .or_else(|| {
                    while old.next_if(|(_, m)| m.service.key < *key).is_some() {}
                    old.next_if(|(_, m)| m.service.key == *key)
                });
            let at = services.len();
            match memo.filter(|(_, m)| m.built_from(svc, slices)) {
                Some((was, memo)) => {
                    moved_to[was] = Some(at);
                    services.push(memo);
                }
                None => {
                    *rebuilt += 1;
                    let built = virtual_servers(cluster, data, svc).into_iter();
                    added.extend(built.enumerate().map(|(v, (key, server))| Claim {
                        key,
                        at: (at, v),
                        server,
                    }));
                    services.push(ServiceMemo {
                        service: svc.clone(),
                        slices: slices
                            .into_iter()
                            .flat_map(|g| g.values().cloned())
                            .collect(),
                    });
                }
            }
        }
        // The previous claims, moved along, are still sorted: the sort below only has
        // to merge the new ones in.
        servers.retain_mut(|c| match moved_to[c.at.0] {
            Some(s) => {
                c.at.0 = s;
                true
            }
            None => false,
        });
        servers.append(&mut added);
        servers.sort_by_key(|c| (c.key, c.at));
        ClusterMemo {
            data: data.clone(),
            services,
            servers,
        }
    }
}

impl ServiceMemo {
    /// True when built from this very Service object and these very slices.
    fn built_from(&self, svc: &Arc<Service>, slices: Option<&SliceGroup>) -> bool {
        Arc::ptr_eq(&self.service, svc)
            && self
                .slices
                .iter()
                .map(Arc::as_ptr)
                .eq(slices.into_iter().flat_map(|g| g.values()).map(Arc::as_ptr))
    }
}

/// The scheduler a service asks for, `rr` when it asks for none or an unknown one.
pub fn scheduler_of(svc: &Service) -> String {
    match svc.annotations.get(SCHEDULER_ANNOTATION) {
        Some(s) if SCHEDULERS.contains(&s.trim()) => s.trim().to_string(),
        _ => "rr".to_string(),
    }
}

/// The virtual services of one Service (none for headless and ExternalName ones).
pub fn virtual_servers(
    cluster: &str,
    data: &ClusterData,
    svc: &Service,
) -> Vec<(VsKey, VirtualServer)> {
    if svc.headless || svc.service_type == ServiceType::ExternalName {
        return Vec::new();
    }
    let scheduler = scheduler_of(svc);
    let affinity = match svc.session_affinity {
        SessionAffinity::ClientIp { timeout_seconds } => Some(timeout_seconds),
        SessionAffinity::None => None,
    };
    let mut out = Vec::new();
    for &vip in &svc.cluster_ips {
        let family = if vip.is_ipv4() {
            AddressType::IPv4
        } else {
            AddressType::IPv6
        };
        for port in &svc.ports {
            let mut reals: BTreeMap<SocketAddr, u32> = BTreeMap::new();
            let mut generation = 0;
            for slice in data
                .slices_of(&svc.key)
                .filter(|s| s.address_type == family)
            {
                let Some(sp) = slice
                    .ports
                    .iter()
                    .find(|p| p.name == port.name && p.protocol == port.protocol)
                else {
                    continue;
                };
                generation = generation.max(slice.generation);
                for ep in &slice.endpoints {
                    let weight = if ep.ready || svc.publish_not_ready_addresses {
                        1
                    } else if ep.serving && ep.terminating {
                        0
                    } else {
                        continue;
                    };
                    for addr in ep.addresses.iter().filter(|a| a.is_ipv4() == vip.is_ipv4()) {
                        let w = reals
                            .entry(SocketAddr::new(*addr, sp.port))
                            .or_insert(weight);
                        *w = (*w).max(weight);
                    }
                }
            }
            out.push((
                VsKey {
                    proto: port.protocol,
                    addr: SocketAddr::new(vip, port.port),
                },
                VirtualServer {
                    scheduler: scheduler.clone(),
                    affinity,
                    reals,
                    origin: Origin {
                        cluster: cluster.to_string(),
                        service: svc.key.clone(),
                        port: port.name.clone(),
                        slice_generation: generation,
                    },
                },
            ));
        }
    }
    out
}

#[cfg(test)]
mod tests;
