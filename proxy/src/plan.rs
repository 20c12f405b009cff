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

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use causeway_shared::catalog::Snapshot;
use causeway_shared::model::{
    AddressType, ClusterData, Protocol, Service, ServiceKey, ServiceType, SessionAffinity,
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
    let mut out = Plan::default();
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
        for svc in view.data.services.values() {
            for (key, vs) in virtual_servers(&view.name, &view.data, svc) {
                match out.desired.services.get(&key) {
                    Some(kept) => out.conflicts.push(Conflict {
                        key,
                        kept: kept.origin.cluster.clone(),
                        dropped: view.name.clone(),
                    }),
                    None => {
                        out.desired.services.insert(key, vs);
                    }
                }
            }
        }
    }
    out
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
