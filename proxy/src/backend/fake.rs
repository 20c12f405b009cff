//! A stateful fake backend for tests: it holds what it was told, answers `read()` with
//! it and fails on demand.

use std::collections::BTreeMap;
use std::net::SocketAddr;

use super::ipvsadm::{View, render_ipvsadm};
use super::{ApplyReport, Backend, BackendError, Header, KernelState};
use crate::plan::{DesiredState, VsKey};

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
        render_ipvsadm(&self.state, View::default())
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
