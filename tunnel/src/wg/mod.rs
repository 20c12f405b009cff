//! WireGuard backends behind one trait.
//!
//! [`WgBackend`] is the narrow kernel-facing API of the tunnel: the planner hands it the whole desired
//! [`DeviceConfig`], and the backend changes only the difference (added, changed and removed peers), so
//! sessions of unchanged peers are never disturbed and the device is never recreated.
//!
//! Two implementations:
//! - [`kernel::KernelWg`]: the kernel module, link created with rtnetlink, configured over generic netlink;
//! - [`userspace::UserspaceWg`]: our own data path on a TUN device around boringtun's `noise::Tunn`.
//!
//! [`open`] probes the `wireguard` generic-netlink family and picks one; the choice is logged and
//! returned by [`WgBackend::kind`].

pub mod diff;
pub mod kernel;
pub mod keys;
mod link;
pub mod userspace;

use std::fmt;
use std::net::SocketAddr;
use std::time::SystemTime;

use ipnet::IpNet;

pub use diff::{PeerDiff, diff_peers};
pub use keys::{KeyError, PresharedKey, PrivateKey, PublicKey};
pub use userspace::DatapathStats;

/// Default UDP port of WireGuard.
pub const DEFAULT_LISTEN_PORT: u16 = 51820;

/// Errors of choosing and driving a backend.
#[derive(Debug, thiserror::Error)]
pub enum WgError {
    /// The kernel backend failed.
    #[error("kernel wireguard")]
    Kernel(#[from] kernel::KernelError),
    /// The userspace backend failed.
    #[error("userspace wireguard")]
    Userspace(#[from] userspace::UserspaceError),
    /// Removing the interface failed.
    #[error("remove interface")]
    Remove(#[source] link::LinkError),
}

/// Which implementation drives the interface.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BackendKind {
    /// The Linux kernel module.
    Kernel,
    /// Our userspace data path on a TUN device.
    Userspace,
}

impl BackendKind {
    /// `"kernel"` or `"userspace"`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Kernel => "kernel",
            Self::Userspace => "userspace",
        }
    }
}

impl fmt::Display for BackendKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The whole desired state of one WireGuard interface.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeviceConfig {
    /// This node's private key.
    pub private_key: PrivateKey,
    /// UDP listen port (0: any free port).
    pub listen_port: u16,
    /// Every peer; peers not listed are removed.
    pub peers: Vec<PeerConfig>,
}

/// One desired peer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PeerConfig {
    /// The peer's public key (its identity).
    pub public_key: PublicKey,
    /// Optional preshared key.
    pub preshared_key: Option<PresharedKey>,
    /// Where to send; `None` waits for the peer to contact us (then roams).
    pub endpoint: Option<SocketAddr>,
    /// Inner addresses routed to and accepted from this peer.
    pub allowed_ips: Vec<IpNet>,
    /// Seconds between keepalives when idle; `None` or 0 disables them.
    pub persistent_keepalive: Option<u16>,
}

/// The observed state of one peer, as `wg show` prints it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PeerStatus {
    /// The peer's public key.
    pub public_key: PublicKey,
    /// The current endpoint (configured or learnt from the last authenticated packet).
    pub endpoint: Option<SocketAddr>,
    /// The allowed IPs.
    pub allowed_ips: Vec<IpNet>,
    /// Wall-clock time of the last completed handshake.
    pub last_handshake: Option<SystemTime>,
    /// Bytes received from this peer.
    pub rx_bytes: u64,
    /// Bytes sent to this peer.
    pub tx_bytes: u64,
    /// Persistent keepalive interval in seconds.
    pub persistent_keepalive: Option<u16>,
}

/// A WireGuard interface whose peers follow the desired state.
#[async_trait::async_trait]
pub trait WgBackend: Send + Sync {
    /// Which implementation this is.
    fn kind(&self) -> BackendKind;
    /// The interface name.
    fn interface(&self) -> &str;
    /// Sets private key, listen port and the whole peer set, changing only the difference.
    async fn configure(&self, config: &DeviceConfig) -> Result<(), WgError>;
    /// The peers as they are now, sorted by public key.
    async fn peers(&self) -> Result<Vec<PeerStatus>, WgError>;
    /// Send refusals and path MTUs, where the data path is ours (the kernel's counts its own).
    fn datapath_stats(&self) -> Option<DatapathStats> {
        None
    }
}

/// Options of [`open`].
#[derive(Clone, Debug)]
pub struct OpenOptions {
    /// Interface name (at most 15 bytes).
    pub interface: String,
    /// Interface MTU.
    pub mtu: u32,
    /// Never use the kernel module even when present.
    pub force_userspace: bool,
    /// Data-path threads of the userspace backend (0: one per CPU).
    pub threads: usize,
}

impl OpenOptions {
    /// Defaults for `interface`: MTU 1420 like `wg-quick`, kernel when available.
    pub fn new(interface: impl Into<String>) -> Self {
        Self {
            interface: interface.into(),
            mtu: 1420,
            force_userspace: false,
            threads: 0,
        }
    }
}

/// Creates (or adopts) the interface with the kernel backend when the `wireguard` generic-netlink
/// family exists, else with the userspace backend; logs and returns the choice.
pub async fn open(opts: &OpenOptions) -> Result<Box<dyn WgBackend>, WgError> {
    let kernel = !opts.force_userspace && kernel::KernelWg::available().await;
    let backend: Box<dyn WgBackend> = if kernel {
        Box::new(kernel::KernelWg::create(&opts.interface, opts.mtu).await?)
    } else {
        let mut uopts = userspace::UserspaceOptions::new(&opts.interface);
        uopts.mtu = opts.mtu;
        uopts.threads = opts.threads;
        Box::new(userspace::UserspaceWg::create(uopts).await?)
    };
    tracing::info!(interface = %opts.interface, backend = %backend.kind(), "wireguard backend chosen");
    Ok(backend)
}

/// Deletes the interface `name` (kernel link or persistent TUN device), and with it every route
/// through it; `false` when there was none. Both backends leave the interface in place when the
/// process stops, so that traffic for remote ranges fails closed: this is the explicit removal.
pub async fn remove_device(name: &str) -> Result<bool, WgError> {
    let rt = link::connect().map_err(WgError::Remove)?;
    match link::index(&rt, name).await.map_err(WgError::Remove)? {
        Some(index) => {
            link::delete(&rt, index, name)
                .await
                .map_err(WgError::Remove)?;
            Ok(true)
        }
        None => Ok(false),
    }
}
