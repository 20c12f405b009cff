//! The one narrow interface to the kernel's load balancer, its two implementations
//! ([`nft`], [`ipvs`]) and a stateful fake for tests.
//!
//! A backend is told the whole desired state and, when it has one, the state it last
//! installed. Without a previous state (start, periodic resync, after a failure) it
//! reconciles against what the kernel really holds; with one it may apply only the
//! difference. Calls block (they run `nft` or talk netlink): call them from
//! `spawn_blocking`.

pub mod ipvs;
pub mod nft;

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};

use serde::Serialize;

use crate::plan::{DesiredState, Origin, VirtualServer, VsKey};

/// Why a backend call failed.
#[derive(Debug, thiserror::Error)]
pub enum BackendError {
    /// The nftables backend failed.
    #[error(transparent)]
    Nft(#[from] nft::NftError),
    /// The IPVS backend failed.
    #[error(transparent)]
    Ipvs(#[from] ipvs::IpvsBackendError),
    /// The fake was told to fail (tests).
    #[error("injected failure: {0}")]
    Injected(String),
}

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

/// What one apply did, for logs and metrics.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ApplyReport {
    /// Kernel operations (IPVS commands, or nft commands in the transaction).
    pub operations: usize,
}

/// A kernel load balancer.
pub trait Backend: Send {
    /// `nftables`, `ipvs` or `fake`.
    fn name(&self) -> &'static str;

    /// Our part of the kernel state, with counters where the backend has them.
    fn read(&mut self) -> Result<KernelState, BackendError>;

    /// Makes the kernel hold `desired`. `previous` is what the last successful apply
    /// installed; `None` reconciles against the kernel itself.
    fn apply(
        &mut self,
        desired: &DesiredState,
        previous: Option<&DesiredState>,
    ) -> Result<ApplyReport, BackendError>;

    /// Connections (active and inactive) still using a real server, if the backend can
    /// tell; graceful termination deletes a draining real server once this is 0.
    fn connections(&mut self, _vs: &VsKey, _real: SocketAddr) -> Option<u32> {
        None
    }
}

/// A stateful fake: holds what it was told, answers `read()` with it, prints it as
/// `ipvsadm -Ln` would, and fails on demand.
#[derive(Debug)]
pub struct FakeBackend {
    pub state: KernelState,
    /// Number of following `apply` calls that fail.
    pub fail_next: u32,
    /// `(full, services)` of each successful apply.
    pub applies: Vec<(bool, usize)>,
    /// Connection counts `connections()` reports, by real server.
    pub conns: BTreeMap<(VsKey, SocketAddr), u32>,
}

impl Default for FakeBackend {
    fn default() -> Self {
        FakeBackend {
            state: KernelState {
                header: FAKE_HEADER,
                services: BTreeMap::new(),
            },
            fail_next: 0,
            applies: Vec::new(),
            conns: BTreeMap::new(),
        }
    }
}

/// The header the fake reports: IPVS 1.2.1, 4096 entries (the kernel's defaults).
pub const FAKE_HEADER: Header = Header {
    version: 0x010201,
    size: 4096,
};

impl FakeBackend {
    /// The state in `ipvsadm -Ln` layout.
    pub fn dump(&self) -> String {
        crate::debug::render_ipvsadm(&self.state, crate::debug::View::default())
    }
}

impl Backend for FakeBackend {
    fn name(&self) -> &'static str {
        "fake"
    }

    fn read(&mut self) -> Result<KernelState, BackendError> {
        Ok(self.state.clone())
    }

    fn apply(
        &mut self,
        desired: &DesiredState,
        previous: Option<&DesiredState>,
    ) -> Result<ApplyReport, BackendError> {
        if self.fail_next > 0 {
            self.fail_next -= 1;
            return Err(BackendError::Injected("apply".into()));
        }
        self.state = KernelState::from_desired(desired, FAKE_HEADER);
        self.applies
            .push((previous.is_none(), desired.services.len()));
        Ok(ApplyReport {
            operations: desired.services.len(),
        })
    }

    fn connections(&mut self, vs: &VsKey, real: SocketAddr) -> Option<u32> {
        self.conns.get(&(*vs, real)).copied()
    }
}
