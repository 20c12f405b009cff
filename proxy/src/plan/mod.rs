//! The planner: a catalog snapshot in, the desired kernel state out. Pure: no I/O, no
//! clock (the caller passes `now`), so `cargo test` checks it without root.
//!
//! For each Service of each **remote** cluster that has a ClusterIP, one virtual service
//! per (ClusterIP, port), with the endpoints of its EndpointSlices as real servers:
//! ready endpoints weigh 1, terminating-but-serving ones weigh 0 (they take no new
//! connections while established ones drain). Headless and ExternalName services get
//! nothing. A cluster whose first list has not completed is left out and reported in
//! [`Plan::unsynced`] (the caller keeps what the kernel already has for it); a cluster
//! unreachable for longer than the stale-rules expiry is left out for good. A cluster whose
//! data path the tunnel reports down (`pathHealth`) keeps its virtual services without real
//! servers: a new connection is refused at once (the VIP alias answers it) instead of
//! hanging on endpoints no packet reaches, and the real servers come back with the path.
//!
//! [`Planner`] answers the same while building anew only the Services whose objects
//! changed since its last plan: the sync loop keeps one.
//!
//! - this file: the desired-state types and [`plan()`];
//! - [`backends`]: which endpoints a Service's virtual services get, with which weight,
//!   scheduler and affinity (the Kubernetes semantics);
//! - [`memo`]: the memoized [`Planner`], checked against [`plan()`] by its tests.

use std::collections::btree_map::Entry;
use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use causeway_shared::catalog::Snapshot;
use causeway_shared::model::{Protocol, ServiceKey};
use serde::Serialize;
use tokio::time::Instant;

pub mod backends;
mod memo;

pub use backends::{SCHEDULER_ANNOTATION, SCHEDULERS, scheduler_of, virtual_servers};
pub use memo::{PlanStats, Planner};

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
    /// yet synced keep what was there: never program from a partial view). Returns the
    /// keys it added.
    pub fn carry_over(
        &mut self,
        previous: &DesiredState,
        clusters: &BTreeSet<String>,
    ) -> Vec<VsKey> {
        let mut added = Vec::new();
        if clusters.is_empty() {
            return added; // every cluster synced, the usual case: no need to walk `previous`
        }
        for (k, vs) in &previous.services {
            if clusters.contains(&vs.origin.cluster)
                && let Entry::Vacant(e) = self.services.entry(*k)
            {
                e.insert(vs.clone());
                added.push(*k);
            }
        }
        added
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

#[cfg(test)]
mod tests;
