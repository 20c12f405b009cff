//! The one narrow interface to the kernel's load balancer, its two implementations
//! ([`nft`], [`ipvs`]) and a stateful fake for tests ([`FakeBackend`]); the state a
//! backend reads back ([`KernelState`]) and its `ipvsadm -Ln` rendering ([`ipvsadm`]).
//!
//! A backend is told the whole desired state and, when it has one, the state it last
//! installed. Without a previous state (start, periodic resync, after a failure) it
//! reconciles against what the kernel really holds; with one it may apply only the
//! difference. Calls block (they run `nft` or talk netlink): call them from
//! `spawn_blocking`.

mod fake;
pub mod ipvs;
pub mod ipvsadm;
pub mod nft;
mod state;

use std::net::SocketAddr;

pub use fake::{FAKE_HEADER, FakeBackend};
pub use state::{Counters, Header, KernelReal, KernelService, KernelState};

use crate::plan::{DesiredState, VsKey};

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
