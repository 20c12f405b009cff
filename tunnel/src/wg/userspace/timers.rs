//! The timer thread: drives boringtun's handshake/rekey/keepalive timers every [`TICK`], sends our
//! own persistent keepalives, resets the handshake rate limiter every second, and every
//! [`PROBE_EVERY`] reads the path MTU towards each peer's endpoint (see `stats.rs`).

use std::sync::Arc;
use std::time::{Duration, Instant};

use boringtun::noise::TunnResult;
use boringtun::noise::errors::WireGuardError;

use super::device::{Shared, send_one};
use super::sys;

/// Timer resolution (WireGuard's timers are in seconds; boringtun asks for 100–250 ms).
pub(crate) const TICK: Duration = Duration::from_millis(100);
/// How often the path MTU towards each peer is read.
pub(crate) const PROBE_EVERY: Duration = Duration::from_secs(5);

/// Reads the kernel's path MTU towards every peer's endpoint and records it.
fn probe_path_mtu(shared: &Shared) {
    let targets: Vec<_> = {
        let state = shared.read();
        shared
            .counters
            .retain_peers(|k| state.peers.contains_key(k));
        state
            .peers
            .iter()
            .filter_map(|(k, p)| p.endpoint().map(|e| (*k, e)))
            .collect()
    };
    for (key, endpoint) in targets {
        match sys::path_mtu(endpoint) {
            Ok(mtu) => shared.counters.path_mtu(key, endpoint, mtu, shared.mtu),
            Err(e) => tracing::debug!(%endpoint, error = %e, "path MTU unknown"),
        }
    }
}

pub(crate) fn run(shared: Arc<Shared>) {
    let mut buf = vec![0u8; 2048];
    let mut last_reset = Instant::now();
    let mut last_probe: Option<Instant> = None;
    while !shared.stopped() {
        std::thread::sleep(TICK);
        if last_probe.is_none_or(|t| t.elapsed() >= PROBE_EVERY) {
            probe_path_mtu(&shared);
            last_probe = Some(Instant::now());
        }
        let state = shared.read();
        if last_reset.elapsed() >= Duration::from_secs(1) {
            if let Some(limiter) = &state.rate_limiter {
                limiter.reset_count();
            }
            last_reset = Instant::now();
        }
        let Some(sock) = state.send.clone() else {
            continue;
        };
        for peer in state.peers.values() {
            let mut tunn = peer.tunn();
            let endpoint = peer.endpoint();
            match tunn.update_timers(&mut buf) {
                TunnResult::WriteToNetwork(p) => {
                    if let Some(dst) = endpoint {
                        send_one(&sock, &shared.counters, peer, dst, p);
                    }
                }
                TunnResult::Err(WireGuardError::ConnectionExpired) => {
                    tracing::debug!(peer = %peer.config().public_key, "session expired");
                }
                _ => {}
            }
            let keepalive = u64::from(peer.keepalive());
            if let Some(dst) =
                endpoint.filter(|_| keepalive > 0 && peer.idle_ms() >= keepalive * 1000)
                && let TunnResult::WriteToNetwork(p) = tunn.encapsulate(&[], &mut buf)
            {
                send_one(&sock, &shared.counters, peer, dst, p);
            }
        }
    }
}
