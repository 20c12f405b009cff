//! The data path: threads moving packets between the TUN queues and the UDP sockets.
//!
//! - one *outbound* thread per TUN queue: read a batch of packets (non-blocking reads until the
//!   queue is empty), route each by allowed IPs, encrypt, and send the batch with `sendmmsg`, with
//!   consecutive equal-size datagrams to one endpoint glued into UDP GSO trains;
//! - one *inbound* thread per UDP socket (`SO_REUSEPORT`): `recvmmsg` a batch (each message may be a
//!   UDP GRO train), find the peer by receiver index (or, for handshake initiations, by the static
//!   key after the MAC/cookie check), decrypt, check the inner source against the peer's allowed
//!   IPs, write to TUN;
//! - one timer thread (see `timers.rs`).
//!
//! The configuration is a [`State`] behind an `RwLock` that the data path reads once per batch.

use std::collections::{BTreeMap, HashMap};
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::Duration;

use boringtun::noise::handshake::parse_handshake_anon;
use boringtun::noise::rate_limiter::RateLimiter;
use boringtun::noise::{Packet, Tunn, TunnResult};
use boringtun::x25519;
use socket2::Socket;

use super::allowed_ips::AllowedIps;
use super::offload::{self, Gro, VNET_HDR_LEN, VnetHdr};
use super::peer::Peer;
use super::stats::{Counters, GsoLimits};
use super::sys::{self, MAX_GSO_BYTES, MAX_GSO_SEGMENTS, RecvBatch, SendMsg};
use super::tun::TunQueue;
use crate::wg::PublicKey;

/// How long a blocked thread waits before looking at the stop flag.
pub(crate) const POLL: Duration = Duration::from_millis(200);
/// Packets per batch.
const BATCH: usize = 64;
/// Room for one encrypted packet: MTU up to 65535 is not supported; 1500 + headers is.
const SLOT: usize = 2048;
/// Handshakes per second before cookies are demanded (boringtun's device default).
pub(crate) const HANDSHAKE_RATE_LIMIT: u64 = 100;

/// The device's private key.
pub(crate) struct Keys {
    pub secret: x25519::StaticSecret,
    pub public: x25519::PublicKey,
}

/// Configuration the data path reads.
#[derive(Default)]
pub(crate) struct State {
    pub keys: Option<Keys>,
    pub rate_limiter: Option<Arc<RateLimiter>>,
    pub peers: BTreeMap<PublicKey, Arc<Peer>>,
    pub by_index: HashMap<u32, Arc<Peer>>,
    pub routes: AllowedIps<Arc<Peer>>,
    /// The socket outbound packets leave from.
    pub send: Option<Arc<Socket>>,
    pub listen_port: u16,
}

impl State {
    pub fn rebuild_routes(&mut self) {
        let entries: Vec<_> = self
            .peers
            .values()
            .flat_map(|p| {
                p.config()
                    .allowed_ips
                    .into_iter()
                    .map(move |net| (net, Arc::clone(p)))
            })
            .collect();
        self.routes = AllowedIps::build(entries);
    }
}

/// What every thread shares.
pub(crate) struct Shared {
    state: RwLock<State>,
    pub tun: Vec<TunQueue>,
    pub stop: AtomicBool,
    /// The device's MTU (what one inner packet may be).
    pub mtu: u32,
    pub counters: Counters,
}

impl Shared {
    pub fn new(tun: Vec<TunQueue>, mtu: u32) -> Self {
        Self {
            state: RwLock::new(State::default()),
            tun,
            stop: AtomicBool::new(false),
            mtu,
            counters: Counters::default(),
        }
    }

    pub fn read(&self) -> RwLockReadGuard<'_, State> {
        self.state
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    pub fn write(&self) -> RwLockWriteGuard<'_, State> {
        self.state
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    pub fn stopped(&self) -> bool {
        self.stop.load(Ordering::Relaxed)
    }
}

/// Sends one datagram, counting it for the peer (or the error).
pub(crate) fn send_one(
    sock: &Socket,
    counters: &Counters,
    peer: &Peer,
    dst: SocketAddr,
    data: &[u8],
) {
    let failed = sys::send_batch(
        sock,
        &[SendMsg {
            dst,
            data,
            segment: 0,
        }],
    );
    match failed.first() {
        None => peer.sent(data.len()),
        Some((_, e)) => counters.send_error(dst, e),
    }
}

/// A run of encrypted datagrams in the arena that go out as one GSO send.
struct Run {
    peer: Arc<Peer>,
    dst: SocketAddr,
    start: usize,
    end: usize,
    segment: usize,
    count: usize,
    /// The last datagram was shorter than `segment`: nothing may follow it.
    closed: bool,
}

/// Encrypted datagrams waiting for one `sendmmsg`: an arena they are encrypted into, back to
/// back, and the GSO runs over it.
struct SendBatch {
    arena: Vec<u8>,
    cursor: usize,
    runs: Vec<Run>,
    /// UDP GSO works here (cleared at the first refusal).
    gso: bool,
    /// Train sizes destinations refused as too large for their path.
    limits: GsoLimits,
}

impl SendBatch {
    fn new(bytes: usize) -> Self {
        Self {
            arena: vec![0; bytes],
            cursor: 0,
            runs: Vec::with_capacity(256),
            gso: true,
            limits: GsoLimits::default(),
        }
    }

    /// Bytes left in the arena.
    fn room(&self) -> usize {
        self.arena.len() - self.cursor
    }

    /// Routes `pkt` by its destination, encrypts it for that peer into the arena and appends it
    /// to the last run if it can ride in the same GSO train. The caller keeps
    /// `room() >= pkt.len() + ENCRYPT_SLACK`.
    fn encrypt(&mut self, state: &State, pkt: &[u8]) {
        let Some(dst_ip) = Tunn::dst_address(pkt) else {
            return;
        };
        let Some(peer) = state.routes.lookup(dst_ip) else {
            return;
        };
        let Some(dst) = peer.endpoint() else { return };
        let start = self.cursor;
        let out = &mut self.arena[start..];
        if out.len() < pkt.len() + ENCRYPT_SLACK {
            return;
        }
        let written = match peer.tunn().encapsulate(pkt, out) {
            TunnResult::WriteToNetwork(p) => p.len(),
            TunnResult::Err(e) => {
                tracing::trace!(error = ?e, "encapsulate");
                return;
            }
            _ => return, // queued until the handshake completes
        };
        self.cursor += written;
        let joins = self.gso
            && self.runs.last().is_some_and(|r| {
                Arc::ptr_eq(&r.peer, peer)
                    && r.dst == dst
                    && !r.closed
                    && r.end == start
                    && written <= r.segment
                    && r.count < MAX_GSO_SEGMENTS
                    && r.end - r.start + written <= MAX_GSO_BYTES
                    && self.limits.allows(dst, r.segment)
            });
        if joins {
            let r = self.runs.last_mut().expect("checked above");
            r.end = self.cursor;
            r.count += 1;
            r.closed = written < r.segment;
        } else {
            self.runs.push(Run {
                peer: Arc::clone(peer),
                dst,
                start,
                end: self.cursor,
                segment: written,
                count: 1,
                closed: false,
            });
        }
    }

    /// Sends every run with as few `sendmmsg` calls as possible and empties the batch. A train
    /// the kernel refuses as too large for the path (EMSGSIZE), or because it has no UDP GSO, is
    /// resent datagram by datagram; other refusals are counted.
    fn send(&mut self, sock: &Socket, counters: &Counters) {
        if self.runs.is_empty() {
            self.cursor = 0;
            return;
        }
        let arena = &self.arena;
        let msgs: Vec<SendMsg<'_>> = self
            .runs
            .iter()
            .map(|r| SendMsg {
                dst: r.dst,
                data: &arena[r.start..r.end],
                segment: if r.count > 1 {
                    u16::try_from(r.segment).unwrap_or(0)
                } else {
                    0
                },
            })
            .collect();
        let mut resend = Vec::new();
        for (i, e) in sys::send_batch(sock, &msgs) {
            let r = &self.runs[i];
            let train = r.count > 1;
            match e.raw_os_error() {
                Some(libc::EMSGSIZE) if train => {
                    counters.oversize_train(r.dst, r.segment);
                    self.limits.refuse(r.dst, r.segment);
                    resend.push(i);
                }
                Some(libc::EIO | libc::EINVAL | libc::ENOPROTOOPT) if train && self.gso => {
                    // No UDP GSO here (old kernel, or a device that refuses it): singly from now on.
                    tracing::info!(error = %e, "udp gso unavailable, sending datagrams singly");
                    self.gso = false;
                    resend.push(i);
                }
                _ => counters.send_error(r.dst, &e),
            }
        }
        if !resend.is_empty() {
            let singles: Vec<SendMsg<'_>> = resend
                .iter()
                .map(|&i| &self.runs[i])
                .flat_map(|r| {
                    arena[r.start..r.end].chunks(r.segment).map(|c| SendMsg {
                        dst: r.dst,
                        data: c,
                        segment: 0,
                    })
                })
                .collect();
            for (i, e) in sys::send_batch(sock, &singles) {
                counters.send_error(singles[i].dst, &e);
            }
        }
        for r in &self.runs {
            r.peer.sent(r.end - r.start);
        }
        self.runs.clear();
        self.cursor = 0;
    }
}

/// Room an encryption needs beyond the plaintext: WireGuard's data header and tag (32 bytes), or
/// a handshake initiation (148 bytes) when the packet is queued instead.
const ENCRYPT_SLACK: usize = 160;

/// Waits until the queue has something to read; false on timeout or error (after a pause).
fn wait_readable(tun: &TunQueue) -> bool {
    match sys::poll_readable(tun, POLL) {
        Ok(ready) => ready,
        Err(e) => {
            tracing::warn!(error = %e, "poll tun");
            std::thread::sleep(POLL);
            false
        }
    }
}

/// The socket outbound packets leave from, once bound.
fn send_socket(shared: &Shared) -> Option<Arc<Socket>> {
    shared.read().send.clone()
}

/// Outbound loop of one TUN queue.
pub(crate) fn outbound(shared: Arc<Shared>, queue: usize) {
    if shared.tun[queue].vnet() {
        outbound_offload(&shared, queue);
    } else {
        outbound_plain(&shared, queue);
    }
}

/// Outbound without offloads: every read is one MTU-sized packet.
fn outbound_plain(shared: &Shared, queue: usize) {
    let tun = &shared.tun[queue];
    let mut inbuf = vec![[0u8; SLOT]; BATCH];
    let mut lens = [0usize; BATCH];
    let mut batch = SendBatch::new(BATCH * SLOT);
    while !shared.stopped() {
        if !wait_readable(tun) {
            continue;
        }
        let mut n = 0;
        while n < BATCH {
            match tun.read(&mut inbuf[n]) {
                Ok(len) => {
                    lens[n] = len;
                    n += 1;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) => {
                    tracing::debug!(error = %e, "read tun");
                    break;
                }
            }
        }
        let Some(sock) = send_socket(shared) else {
            continue;
        };
        {
            let state = shared.read();
            for (pkt, &len) in inbuf.iter().zip(&lens).take(n) {
                batch.encrypt(&state, &pkt[..len]);
            }
        }
        batch.send(&sock, &shared.counters);
    }
}

/// Bytes of the arena of one outbound thread with offloads: room for several 64 KiB reads.
const OFFLOAD_ARENA: usize = 512 << 10;

/// Outbound with offloads: a read is a `virtio_net_hdr` and a packet of up to 64 KiB, which
/// `offload::split` cuts into MTU-sized packets (checksums finished) that are encrypted straight
/// into the send arena.
fn outbound_offload(shared: &Shared, queue: usize) {
    let tun = &shared.tun[queue];
    let mut inbuf = vec![0u8; VNET_HDR_LEN + 65_535];
    let mut scratch = vec![0u8; 65_535];
    let mut batch = SendBatch::new(OFFLOAD_ARENA);
    while !shared.stopped() {
        if !wait_readable(tun) {
            continue;
        }
        let Some(sock) = send_socket(shared) else {
            // Not configured yet: drain the queue.
            while tun.read(&mut inbuf).is_ok() {}
            continue;
        };
        loop {
            let len = match tun.read(&mut inbuf) {
                Ok(len) => len,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) => {
                    tracing::debug!(error = %e, "read tun");
                    break;
                }
            };
            let Some(hdr) = VnetHdr::parse(&inbuf[..len]) else {
                continue;
            };
            let pkt = &mut inbuf[VNET_HDR_LEN..len];
            let segments = offload::segment_count(&hdr, pkt.len());
            let need = pkt.len() + segments * (usize::from(hdr.csum_start) + 60 + ENCRYPT_SLACK);
            if batch.room() < need {
                batch.send(&sock, &shared.counters);
            }
            let state = shared.read();
            if let Err(e) = offload::split(&hdr, pkt, &mut scratch, |p| batch.encrypt(&state, p)) {
                tracing::debug!(error = %e, "tun packet dropped");
            }
        }
        batch.send(&sock, &shared.counters);
    }
}

/// Inbound loop of one UDP socket. With offloads, decrypted TCP segments are coalesced (GRO)
/// and each batch ends with the held packets written out.
pub(crate) fn inbound(shared: Arc<Shared>, sock: Arc<Socket>, stop: Arc<AtomicBool>, queue: usize) {
    let tun = &shared.tun[queue % shared.tun.len()];
    let mut batch = RecvBatch::new(16, 65_536);
    let mut out = vec![0u8; 65_536];
    let mut gro = Gro::new(GRO_FLOWS);
    let mut write_vnet = |hdr: &VnetHdr, pkt: &[u8]| {
        if let Err(e) = tun.write_vnet(&hdr.to_bytes(), pkt) {
            tracing::trace!(error = %e, "write tun");
        }
    };
    while !shared.stopped() && !stop.load(Ordering::Relaxed) {
        match batch.recv(&sock) {
            Ok(_) => {}
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted
                ) =>
            {
                continue;
            }
            Err(e) => {
                tracing::warn!(error = %e, "recvmmsg");
                std::thread::sleep(POLL);
                continue;
            }
        }
        let state = shared.read();
        let mut each = |deliver: &mut dyn FnMut(&[u8])| {
            for (src, data, segment) in batch.messages() {
                for datagram in data.chunks(segment) {
                    handle_datagram(
                        &state,
                        &sock,
                        &shared.counters,
                        src,
                        datagram,
                        &mut out,
                        deliver,
                    );
                }
            }
        };
        if tun.vnet() {
            each(&mut |pkt: &[u8]| gro.push(pkt, &mut write_vnet));
            gro.flush(&mut write_vnet);
        } else {
            each(&mut |pkt: &[u8]| {
                let _ = tun.write(pkt);
            });
        }
    }
}

/// TCP flows one inbound thread coalesces at once.
const GRO_FLOWS: usize = 8;

/// Handles one datagram; decrypted packets whose source the peer may use go to `deliver`.
#[allow(clippy::too_many_arguments)]
fn handle_datagram(
    state: &State,
    sock: &Socket,
    counters: &Counters,
    src: SocketAddr,
    datagram: &[u8],
    out: &mut [u8],
    deliver: &mut dyn FnMut(&[u8]),
) {
    if datagram.len() < 4 {
        return;
    }
    let index_at = |off: usize| {
        datagram
            .get(off..off + 4)
            .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]) >> 8)
    };
    let peer = match datagram[0] {
        // Data and cookie replies carry our index at 4, handshake responses at 8.
        4 | 3 => index_at(4).and_then(|i| state.by_index.get(&i)),
        2 => index_at(8).and_then(|i| state.by_index.get(&i)),
        1 => {
            // An initiation names its sender only inside the encryption: check MACs (and demand a
            // cookie when under load) before spending a Diffie-Hellman on it.
            let (Some(keys), Some(limiter)) = (&state.keys, &state.rate_limiter) else {
                return;
            };
            let mut cookie = [0u8; 64];
            match limiter.verify_packet(Some(src.ip()), datagram, &mut cookie) {
                Ok(Packet::HandshakeInit(init)) => {
                    parse_handshake_anon(&keys.secret, &keys.public, &init)
                        .ok()
                        .and_then(|half| {
                            state
                                .peers
                                .get(&PublicKey::from_bytes(half.peer_static_public))
                        })
                }
                Err(TunnResult::WriteToNetwork(reply)) => {
                    for (_, e) in sys::send_batch(
                        sock,
                        &[SendMsg {
                            dst: src,
                            data: reply,
                            segment: 0,
                        }],
                    ) {
                        counters.send_error(src, &e);
                    }
                    return;
                }
                _ => return,
            }
        }
        _ => return,
    };
    let Some(peer) = peer else { return };
    let mut tunn = peer.tunn();
    match tunn.decapsulate(Some(src.ip()), datagram, out) {
        TunnResult::WriteToTunnelV4(packet, from) => {
            let from = std::net::IpAddr::V4(from);
            if state
                .routes
                .lookup(from)
                .is_some_and(|p| Arc::ptr_eq(p, peer))
            {
                deliver(packet);
            }
        }
        TunnResult::WriteToTunnelV6(packet, from) => {
            let from = std::net::IpAddr::V6(from);
            if state
                .routes
                .lookup(from)
                .is_some_and(|p| Arc::ptr_eq(p, peer))
            {
                deliver(packet);
            }
        }
        TunnResult::WriteToNetwork(reply) => {
            send_one(sock, counters, peer, src, reply);
            // A completed handshake releases the packets queued while it ran.
            while let TunnResult::WriteToNetwork(queued) = tunn.decapsulate(None, &[], out) {
                send_one(sock, counters, peer, src, queued);
            }
        }
        TunnResult::Done => {}
        TunnResult::Err(e) => {
            tracing::trace!(error = ?e, %src, "decapsulate");
            return;
        }
    }
    drop(tunn);
    peer.received(datagram.len());
    peer.set_endpoint(src);
}
