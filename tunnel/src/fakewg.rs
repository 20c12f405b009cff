//! A [`WgBackend`] in memory, for tests of the control plane: it keeps the last
//! [`DeviceConfig`] and reports its peers without handshakes (or with the ones a test sets).

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::SystemTime;

use crate::wg::{BackendKind, DeviceConfig, PeerStatus, PublicKey, WgBackend, WgError};

/// The fake device.
#[derive(Debug)]
pub struct FakeWg {
    interface: String,
    state: Mutex<FakeState>,
}

#[derive(Debug, Default)]
struct FakeState {
    config: Option<DeviceConfig>,
    handshakes: BTreeMap<PublicKey, SystemTime>,
    configures: usize,
}

impl FakeWg {
    pub fn new(interface: &str) -> Self {
        Self {
            interface: interface.into(),
            state: Mutex::default(),
        }
    }

    fn st(&self) -> std::sync::MutexGuard<'_, FakeState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The last configuration applied.
    pub fn config(&self) -> Option<DeviceConfig> {
        self.st().config.clone()
    }

    /// How many times `configure` ran.
    pub fn configures(&self) -> usize {
        self.st().configures
    }

    /// Pretends a handshake with `peer` completed at `at`.
    pub fn set_handshake(&self, peer: PublicKey, at: SystemTime) {
        self.st().handshakes.insert(peer, at);
    }

    /// Canonical text of the peers: `key endpoint allowed-ips`, sorted by key.
    pub fn dump(&self) -> String {
        let st = self.st();
        let Some(c) = &st.config else {
            return String::new();
        };
        let mut peers = c.peers.clone();
        peers.sort_by_key(|p| p.public_key);
        peers
            .iter()
            .map(|p| {
                let ips: Vec<String> = p.allowed_ips.iter().map(ToString::to_string).collect();
                format!(
                    "{} {} {}\n",
                    p.public_key,
                    p.endpoint.map_or("-".to_string(), |e| e.to_string()),
                    ips.join(",")
                )
            })
            .collect()
    }
}

#[async_trait::async_trait]
impl WgBackend for FakeWg {
    fn kind(&self) -> BackendKind {
        BackendKind::Userspace
    }

    fn interface(&self) -> &str {
        &self.interface
    }

    async fn configure(&self, config: &DeviceConfig) -> Result<(), WgError> {
        let mut st = self.st();
        st.config = Some(config.clone());
        st.configures += 1;
        Ok(())
    }

    async fn peers(&self) -> Result<Vec<PeerStatus>, WgError> {
        let st = self.st();
        let mut out: Vec<PeerStatus> = st
            .config
            .iter()
            .flat_map(|c| c.peers.iter())
            .map(|p| PeerStatus {
                public_key: p.public_key,
                endpoint: p.endpoint,
                allowed_ips: p.allowed_ips.clone(),
                last_handshake: st.handshakes.get(&p.public_key).copied(),
                rx_bytes: 0,
                tx_bytes: 0,
                persistent_keepalive: p.persistent_keepalive,
            })
            .collect();
        out.sort_by_key(|p| p.public_key);
        Ok(out)
    }
}
