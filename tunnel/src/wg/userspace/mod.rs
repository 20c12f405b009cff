//! Userspace WireGuard: our data path on a TUN device around boringtun's `noise::Tunn`.
//!
//! Design (see the crate README for figures): per CPU one TUN queue and one `SO_REUSEPORT` UDP
//! socket, each served by a thread; batched, GSO/GRO-glued UDP I/O; a timer thread. Configuration
//! changes take the state's write lock briefly and touch only changed peers.

mod allowed_ips;
mod device;
mod offload;
mod peer;
mod stats;
mod sys;
mod timers;
mod tun;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use boringtun::noise::rate_limiter::RateLimiter;
use boringtun::x25519;

pub use allowed_ips::AllowedIps;
use device::{HANDSHAKE_RATE_LIMIT, Keys, POLL, Shared};
use peer::Peer;
pub use stats::DatapathStats;
use tun::TunQueue;

use super::link::{self, LinkError};
use super::{BackendKind, DeviceConfig, PeerConfig, PeerStatus, WgBackend, WgError, diff_peers};

/// Errors of the userspace backend.
#[derive(Debug, thiserror::Error)]
pub enum UserspaceError {
    /// Opening a TUN queue failed (no `/dev/net/tun`, no CAP_NET_ADMIN, bad name).
    #[error("open tun queue {queue} of {interface}")]
    Tun {
        /// The interface.
        interface: String,
        /// Which queue.
        queue: usize,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// Raising the link failed.
    #[error(transparent)]
    Link(#[from] LinkError),
    /// Binding the UDP port failed.
    #[error("bind udp port {port}")]
    Bind {
        /// The port.
        port: u16,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// Starting a data-path thread failed.
    #[error("spawn data-path thread")]
    Spawn(#[source] std::io::Error),
}

/// Options of [`UserspaceWg::create`].
#[derive(Clone, Debug)]
pub struct UserspaceOptions {
    /// Interface name (at most 15 bytes).
    pub interface: String,
    /// Interface MTU.
    pub mtu: u32,
    /// Data-path threads per direction (0: one per CPU).
    pub threads: usize,
    /// UDP socket buffer size, forced past `net.core.[rw]mem_max`.
    pub socket_buffer: usize,
    /// TUN offloads (`IFF_VNET_HDR` + `TUNSETOFFLOAD`): read 64 KiB TCP segments and split them
    /// ourselves, write coalesced TCP segments. Falls back to plain packets where the kernel
    /// refuses them.
    pub offload: bool,
    /// Keep the device when the process stops or dies (`TUNSETPERSIST`), so routes through it
    /// stay and traffic for remote ranges is dropped instead of following another route; a
    /// restart attaches to the same device. Remove it with [`super::remove_device`].
    pub persist: bool,
}

impl UserspaceOptions {
    /// Defaults: MTU 1420, one thread per CPU, 8 MiB socket buffers, TUN offloads on, persistent.
    pub fn new(interface: impl Into<String>) -> Self {
        Self {
            interface: interface.into(),
            mtu: 1420,
            threads: 0,
            socket_buffer: 8 << 20,
            offload: true,
            persist: true,
        }
    }
}

struct Sockets {
    port: u16,
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
}

/// The userspace implementation of [`WgBackend`]. Dropping it stops the threads; the TUN device
/// stays when it is persistent ([`UserspaceOptions::persist`]), else the kernel removes it.
pub struct UserspaceWg {
    opts: UserspaceOptions,
    threads: usize,
    shared: Arc<Shared>,
    workers: Mutex<Vec<JoinHandle<()>>>,
    sockets: Mutex<Option<Sockets>>,
    /// The namespace the device was created in; its UDP sockets are bound there.
    netns: std::fs::File,
    next_index: Mutex<u32>,
}

fn spawn(
    name: String,
    f: impl FnOnce() + Send + 'static,
) -> Result<JoinHandle<()>, UserspaceError> {
    std::thread::Builder::new()
        .name(name)
        .spawn(f)
        .map_err(UserspaceError::Spawn)
}

impl UserspaceWg {
    /// Creates the TUN device (one queue per thread) or attaches to the one a previous process
    /// left, sets its MTU, brings it up and starts the outbound and timer threads. UDP sockets are
    /// bound by the first `configure`.
    pub async fn create(opts: UserspaceOptions) -> Result<Self, UserspaceError> {
        let threads = if opts.threads == 0 {
            std::thread::available_parallelism().map_or(1, |n| n.get())
        } else {
            opts.threads
        };
        let netns = sys::current_netns().map_err(|source| UserspaceError::Tun {
            interface: opts.interface.clone(),
            queue: 0,
            source,
        })?;
        let rt = link::connect()?;
        let adopted = link::index(&rt, &opts.interface).await?.is_some();
        let queues = (0..threads)
            .map(|queue| {
                TunQueue::open(&opts.interface, opts.offload).map_err(|source| {
                    UserspaceError::Tun {
                        interface: opts.interface.clone(),
                        queue,
                        source,
                    }
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        queues[0]
            .set_persist(opts.persist)
            .map_err(|source| UserspaceError::Tun {
                interface: opts.interface.clone(),
                queue: 0,
                source,
            })?;
        tracing::info!(
            interface = %opts.interface,
            adopted,
            persistent = opts.persist,
            "tun device ready"
        );
        tracing::debug!(
            interface = %opts.interface,
            queues = threads,
            vnet = opts.offload,
            offloads = ?queues[0].offloads(),
            "tun opened"
        );
        let index =
            link::index(&rt, &opts.interface)
                .await?
                .ok_or_else(|| UserspaceError::Tun {
                    interface: opts.interface.clone(),
                    queue: 0,
                    source: std::io::Error::from(std::io::ErrorKind::NotFound),
                })?;
        link::up(&rt, index, &opts.interface, opts.mtu).await?;
        let shared = Arc::new(Shared::new(queues, opts.mtu));
        let mut workers = Vec::new();
        for queue in 0..threads {
            let s = Arc::clone(&shared);
            workers.push(spawn(format!("wg-out-{queue}"), move || {
                device::outbound(s, queue)
            })?);
        }
        let s = Arc::clone(&shared);
        workers.push(spawn("wg-timers".into(), move || timers::run(s))?);
        let start = rand_core::RngCore::next_u32(&mut rand_core::OsRng);
        Ok(Self {
            opts,
            threads,
            shared,
            workers: Mutex::new(workers),
            sockets: Mutex::new(None),
            netns,
            next_index: Mutex::new(start & 0x00ff_ffff),
        })
    }

    /// Send refusals and the probed path MTU per peer.
    pub fn datapath_stats(&self) -> DatapathStats {
        self.shared.counters.snapshot()
    }

    /// The bound UDP port (useful with `listen_port: 0`), once configured.
    pub fn listen_port(&self) -> Option<u16> {
        self.sockets
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .as_ref()
            .map(|s| s.port)
    }

    /// Binds `port` on one socket per thread and starts their inbound threads; the previous
    /// sockets' threads are told to stop.
    fn rebind(&self, port: u16) -> Result<(), UserspaceError> {
        let mut guard = self
            .sockets
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if guard.as_ref().is_some_and(|s| s.port == port || port == 0) {
            return Ok(());
        }
        let (buf, threads) = (self.opts.socket_buffer, self.threads);
        let socks = sys::in_netns(&self.netns, || {
            let first = sys::udp_socket(port, buf, POLL)?;
            let bound = first.local_addr()?.as_socket().map_or(port, |a| a.port());
            let mut socks = vec![Arc::new(first)];
            for _ in 1..threads {
                socks.push(Arc::new(sys::udp_socket(bound, buf, POLL)?));
            }
            Ok(socks)
        })
        .map_err(|source| UserspaceError::Bind { port, source })?;
        let bound = socks[0]
            .local_addr()
            .ok()
            .and_then(|a| a.as_socket())
            .map_or(port, |a| a.port());
        let stop = Arc::new(AtomicBool::new(false));
        let mut threads = Vec::new();
        for (i, sock) in socks.iter().enumerate() {
            let (shared, sock, stop) = (
                Arc::clone(&self.shared),
                Arc::clone(sock),
                Arc::clone(&stop),
            );
            threads.push(spawn(format!("wg-in-{i}"), move || {
                device::inbound(shared, sock, stop, i)
            })?);
        }
        {
            let mut state = self.shared.write();
            state.send = Some(Arc::clone(&socks[0]));
            state.listen_port = bound;
        }
        if let Some(old) = guard.replace(Sockets {
            port: bound,
            stop,
            threads,
        }) {
            old.stop.store(true, Ordering::Relaxed);
            // The old threads exit within one receive timeout; they are not joined here so that
            // configure never blocks the async runtime.
            drop(old.threads);
        }
        tracing::debug!(interface = %self.opts.interface, port = bound, "udp bound");
        Ok(())
    }

    fn allocate_index(&self, state: &device::State) -> u32 {
        let mut next = self
            .next_index
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        loop {
            *next = (*next + 1) & 0x00ff_ffff;
            if !state.by_index.contains_key(&*next) {
                return *next;
            }
        }
    }

    fn apply(&self, config: &DeviceConfig) -> Result<(), UserspaceError> {
        self.rebind(config.listen_port)?;
        let mut state = self.shared.write();
        let secret = config.private_key.to_dalek();
        let public = x25519::PublicKey::from(&secret);
        if state.keys.as_ref().is_none_or(|k| k.public != public) {
            // A new private key: every session must be renegotiated (key rotation).
            let limiter = Arc::new(RateLimiter::new(&public, HANDSHAKE_RATE_LIMIT));
            for peer in state.peers.values() {
                peer.tunn().set_static_private(secret.clone(), public, None);
            }
            state.keys = Some(Keys {
                secret: secret.clone(),
                public,
            });
            state.rate_limiter = Some(limiter);
        }
        let current: Vec<PeerConfig> = state.peers.values().map(|p| p.config()).collect();
        let diff = diff_peers(&current, &config.peers);
        tracing::debug!(
            interface = %self.opts.interface,
            added = diff.added.len(),
            updated = diff.updated.len(),
            removed = diff.removed.len(),
            "configure userspace wireguard"
        );
        for key in &diff.removed {
            if let Some(peer) = state.peers.remove(key) {
                state.by_index.remove(&peer.index);
            }
        }
        for cfg in diff.updated {
            if let Some(peer) = state.peers.get(&cfg.public_key) {
                peer.update(&secret, cfg);
            }
        }
        let mut added = Vec::with_capacity(diff.added.len());
        for cfg in diff.added {
            let index = self.allocate_index(&state);
            let peer = Arc::new(Peer::new(&secret, cfg, index));
            state.by_index.insert(index, Arc::clone(&peer));
            state
                .peers
                .insert(peer.config().public_key, Arc::clone(&peer));
            added.push(peer);
        }
        state.rebuild_routes();
        let sock = state.send.clone();
        drop(state);
        if let Some(sock) = sock {
            initiate(&sock, &self.shared.counters, &added);
        }
        Ok(())
    }
}

/// Starts a handshake with every new peer whose endpoint is known, without waiting for traffic.
/// After a restart the peer still holds a session we have forgotten: its packets name an index
/// we no longer know and are dropped until one side handshakes again, which the peer would do
/// only after its own timeouts (about 15 s). Initiating here makes that a round trip.
fn initiate(sock: &socket2::Socket, counters: &stats::Counters, peers: &[Arc<Peer>]) {
    let mut buf = [0u8; 256];
    for peer in peers {
        let Some(dst) = peer.endpoint() else { continue };
        let mut tunn = peer.tunn();
        if let boringtun::noise::TunnResult::WriteToNetwork(init) =
            tunn.format_handshake_initiation(&mut buf, false)
        {
            device::send_one(sock, counters, peer, dst, init);
        }
    }
}

#[async_trait::async_trait]
impl WgBackend for UserspaceWg {
    fn kind(&self) -> BackendKind {
        BackendKind::Userspace
    }

    fn datapath_stats(&self) -> Option<DatapathStats> {
        Some(self.shared.counters.snapshot())
    }

    fn interface(&self) -> &str {
        &self.opts.interface
    }

    async fn configure(&self, config: &DeviceConfig) -> Result<(), WgError> {
        Ok(self.apply(config)?)
    }

    async fn peers(&self) -> Result<Vec<PeerStatus>, WgError> {
        Ok(self
            .shared
            .read()
            .peers
            .values()
            .map(|p| p.status())
            .collect())
    }
}

impl Drop for UserspaceWg {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::Relaxed);
        let sockets = self
            .sockets
            .get_mut()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take();
        let workers = std::mem::take(
            self.workers
                .get_mut()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
        );
        for t in workers
            .into_iter()
            .chain(sockets.into_iter().flat_map(|s| s.threads))
        {
            let _ = t.join();
        }
    }
}
