//! Path probes through the tunnel: every `tunnel.probeInterval` one small UDP datagram
//! ([`wire`]) to each peer that publishes a probe endpoint (an address in its pod subnets,
//! so the datagram is routed into the tunnel, encrypted, and answered back through it), and
//! answers to the requests of remote peers. [`tracker`] keeps what was found; the agent serves
//! it as `/paths`.
//!
//! The probe sees what a pod's packet would see: routes, keys, the remote node's forwarding
//! and its tunnel, both ways. WireGuard handshakes alone are renewed only every two minutes
//! on a busy session and say nothing about the return path.

pub mod tracker;
pub mod wire;

use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::net::UdpSocket;

pub use tracker::{ProbeView, Tracker};
use wire::{Kind, Probe};

/// `addr` with an IPv4-mapped IPv6 address written as IPv4.
fn canonical(addr: SocketAddr) -> SocketAddr {
    SocketAddr::new(addr.ip().to_canonical(), addr.port())
}

/// The destination as the socket's family needs it.
fn for_socket(socket: &UdpSocket, to: SocketAddr) -> SocketAddr {
    match (socket.local_addr(), to.ip()) {
        (Ok(SocketAddr::V6(_)), IpAddr::V4(v4)) => {
            SocketAddr::new(v4.to_ipv6_mapped().into(), to.port())
        }
        _ => to,
    }
}

/// Sends a round of requests every `interval` and answers requests, until the task is
/// aborted. Send errors are counted per round and logged when they change (a peer without a
/// route is normal for a moment at start).
pub async fn run(socket: UdpSocket, tracker: Arc<Mutex<Tracker>>, interval: Duration) {
    let session: u64 = rand_session();
    let mut seq: u64 = 0;
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut buf = [0u8; 64];
    let mut last_failures = 0usize;
    loop {
        tokio::select! {
            _ = tick.tick() => {
                let targets = lock(&tracker).targets();
                let mut failures = 0;
                for to in targets {
                    seq += 1;
                    let p = Probe { kind: Kind::Request, session, seq };
                    match socket.send_to(&p.encode(), for_socket(&socket, to)).await {
                        Ok(_) => lock(&tracker).sent(to, seq, Instant::now()),
                        Err(e) => {
                            failures += 1;
                            tracing::debug!(%to, error = %e, "probe not sent");
                        }
                    }
                }
                if failures != last_failures {
                    if failures > 0 {
                        tracing::info!(failures, "probes the kernel refused to send this round");
                    }
                    last_failures = failures;
                }
            }
            r = socket.recv_from(&mut buf) => {
                let Ok((n, from)) = r else { continue };
                let from = canonical(from);
                let Some(p) = Probe::decode(&buf[..n]) else { continue };
                match p.kind {
                    Kind::Request => {
                        if lock(&tracker).answers(from.ip()) {
                            let _ = socket.send_to(&p.reply().encode(), for_socket(&socket, from)).await;
                        }
                    }
                    Kind::Reply if p.session == session => {
                        lock(&tracker).answered(from, p.seq, Instant::now());
                    }
                    Kind::Reply => {}
                }
            }
        }
    }
}

/// Locks the tracker, also when poisoned (every writer leaves it whole).
fn lock(t: &Mutex<Tracker>) -> std::sync::MutexGuard<'_, Tracker> {
    t.lock().unwrap_or_else(|e| e.into_inner())
}

/// A session number that differs between processes (answers to a previous run are ignored).
fn rand_session() -> u64 {
    rand_core::RngCore::next_u64(&mut rand_core::OsRng)
}
