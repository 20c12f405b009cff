//! The kernel state a backend reads back: our virtual services and real servers with
//! their counters, in the shape `ipvsadm -Ln` prints (see [`super::ipvsadm`]).

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};

use serde::Serialize;

use crate::plan::{DesiredState, Origin, VirtualServer, VsKey};

/// Traffic counters, where the backend has them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Counters {
    pub conns: u64,
    pub in_pkts: u64,
    pub out_pkts: u64,
    pub in_bytes: u64,
    pub out_bytes: u64,
}

/// A real server as the kernel holds it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct KernelReal {
    pub weight: u32,
    pub active_conns: u32,
    pub inactive_conns: u32,
    pub stats: Counters,
}

/// A virtual service as the kernel holds it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct KernelService {
    pub scheduler: String,
    /// Persistence (session affinity) timeout in seconds.
    pub affinity: Option<u32>,
    pub reals: BTreeMap<SocketAddr, KernelReal>,
    pub stats: Counters,
    /// Where it came from, when the kernel object says (nftables comments) or the
    /// current plan knows.
    pub origin: Option<Origin>,
}

/// What `ipvsadm -Ln` prints in its first line.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct Header {
    /// `IP_VS_VERSION_CODE` (0 for nftables).
    pub version: u32,
    /// Connection table size (0 for nftables).
    pub size: u32,
}

/// Our part of the kernel state.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct KernelState {
    pub header: Header,
    pub services: BTreeMap<VsKey, KernelService>,
}

impl KernelState {
    /// The state a backend would hold after applying `desired` (zero counters).
    pub fn from_desired(desired: &DesiredState, header: Header) -> Self {
        let services = desired
            .services
            .iter()
            .map(|(k, vs)| {
                let reals = vs
                    .reals
                    .iter()
                    .map(|(a, w)| {
                        (
                            *a,
                            KernelReal {
                                weight: *w,
                                ..Default::default()
                            },
                        )
                    })
                    .collect();
                let ks = KernelService {
                    scheduler: vs.scheduler.clone(),
                    affinity: vs.affinity,
                    reals,
                    stats: Counters::default(),
                    origin: Some(vs.origin.clone()),
                };
                (*k, ks)
            })
            .collect();
        KernelState { header, services }
    }

    /// What the kernel holds, as a desired state (adoption after a restart). A service
    /// without a recorded origin is attributed to `owner(vip)` (the remote cluster
    /// whose service CIDR holds the VIP), or to no cluster (`""`).
    pub fn to_desired(&self, owner: impl Fn(IpAddr) -> Option<String>) -> DesiredState {
        let services = self
            .services
            .iter()
            .map(|(k, ks)| {
                let origin = ks.origin.clone().unwrap_or_else(|| Origin {
                    cluster: owner(k.addr.ip()).unwrap_or_default(),
                    service: causeway_shared::model::ServiceKey::new("", ""),
                    port: String::new(),
                    slice_generation: 0,
                });
                let vs = VirtualServer {
                    scheduler: ks.scheduler.clone(),
                    affinity: ks.affinity,
                    reals: ks.reals.iter().map(|(a, r)| (*a, r.weight)).collect(),
                    origin,
                };
                (*k, vs)
            })
            .collect();
        DesiredState { services }
    }

    /// Fills missing origins from the plan (IPVS keeps no annotations).
    pub fn annotate(&mut self, desired: &DesiredState) {
        for (k, ks) in &mut self.services {
            if ks.origin.is_none() {
                ks.origin = desired.services.get(k).map(|vs| vs.origin.clone());
            }
        }
    }
}
