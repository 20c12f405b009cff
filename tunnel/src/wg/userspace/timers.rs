//! The timer thread: drives boringtun's handshake/rekey/keepalive timers every [`TICK`], sends our
//! own persistent keepalives, and resets the handshake rate limiter every second.

use std::sync::Arc;
use std::time::{Duration, Instant};

use boringtun::noise::TunnResult;
use boringtun::noise::errors::WireGuardError;

use super::device::{Shared, send_one};

/// Timer resolution (WireGuard's timers are in seconds; boringtun asks for 100–250 ms).
pub(crate) const TICK: Duration = Duration::from_millis(100);

pub(crate) fn run(shared: Arc<Shared>) {
    let mut buf = vec![0u8; 2048];
    let mut last_reset = Instant::now();
    while !shared.stopped() {
        std::thread::sleep(TICK);
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
                        send_one(&sock, peer, dst, p);
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
                send_one(&sock, peer, dst, p);
            }
        }
    }
}
