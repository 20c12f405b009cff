//! What the data path counts about its sends, and the path-MTU view per peer.
//!
//! Send errors never stop the data path, but they must not hide either: each kind is counted,
//! and the first of each kind is logged at WARN (the rest at DEBUG). A GSO train the kernel
//! refuses as too large for the path (EMSGSIZE) is resent datagram by datagram, which the kernel
//! fragments; the destination then gets no trains of that segment size for [`GSO_LIMIT_TTL`].

use std::collections::BTreeMap;
use std::io;
use std::net::SocketAddr;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::wg::PublicKey;

/// How long a learned "no GSO trains of this size to that destination" holds; the path MTU may
/// grow again.
pub(crate) const GSO_LIMIT_TTL: Duration = Duration::from_secs(60);

/// Bytes a tunnelled packet gains: outer IP header, UDP header (8), WireGuard data header and
/// tag (32).
pub(crate) fn overhead(endpoint: &SocketAddr) -> u32 {
    let ip = if endpoint.is_ipv4()
        || matches!(endpoint, SocketAddr::V6(v6) if v6.ip().to_ipv4_mapped().is_some())
    {
        20
    } else {
        40
    };
    ip + 8 + 32
}

/// A snapshot of the counters, for metrics and tests.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DatapathStats {
    /// GSO trains refused as too large for the path (EMSGSIZE) and resent datagram by datagram.
    pub oversize_trains: u64,
    /// Datagrams the kernel refused for any other reason (dropped).
    pub send_errors: u64,
    /// The probed path MTU towards each peer's endpoint.
    pub path_mtu: BTreeMap<PublicKey, u32>,
    /// Peers whose path carries less than the device MTU plus the tunnel's overhead: their
    /// packets are fragmented on the underlay.
    pub mtu_too_large_peers: usize,
}

/// The counters, shared by every data-path thread.
#[derive(Default)]
pub(crate) struct Counters {
    oversize_trains: AtomicU64,
    send_errors: AtomicU64,
    warned_oversize: AtomicBool,
    warned_send: AtomicBool,
    path_mtu: Mutex<BTreeMap<PublicKey, (u32, bool)>>,
}

impl Counters {
    /// A GSO train to `dst` of `segment`-byte datagrams was refused as too large.
    pub fn oversize_train(&self, dst: SocketAddr, segment: usize) {
        self.oversize_trains.fetch_add(1, Ordering::Relaxed);
        if !self.warned_oversize.swap(true, Ordering::Relaxed) {
            tracing::warn!(
                %dst,
                datagram = segment,
                "the path to this peer carries less than the tunnel MTU needs: sending datagram \
                 by datagram, fragmented by the kernel (lower tunnel.mtu to avoid it)"
            );
        } else {
            tracing::debug!(%dst, datagram = segment, "gso train too large for the path");
        }
    }

    /// The kernel refused a datagram to `dst`.
    pub fn send_error(&self, dst: SocketAddr, error: &io::Error) {
        self.send_errors.fetch_add(1, Ordering::Relaxed);
        if !self.warned_send.swap(true, Ordering::Relaxed) {
            tracing::warn!(%dst, %error, "send failed (further send errors are logged at debug and counted)");
        } else {
            tracing::debug!(%dst, %error, "send failed");
        }
    }

    /// Records the probed path MTU towards `peer`; warns when it changes to too small.
    pub fn path_mtu(&self, peer: PublicKey, endpoint: SocketAddr, path: u32, device_mtu: u32) {
        let too_large = device_mtu + overhead(&endpoint) > path;
        let mut map = self.path_mtu.lock().unwrap_or_else(|e| e.into_inner());
        let before = map.insert(peer, (path, too_large));
        if too_large && before != Some((path, true)) {
            tracing::warn!(
                %peer,
                %endpoint,
                path_mtu = path,
                device_mtu,
                fits = path.saturating_sub(overhead(&endpoint)),
                "tunnel MTU too large for the path to this peer: packets are fragmented on the \
                 underlay; set tunnel.mtu to at most the `fits` value"
            );
        }
    }

    /// Forgets peers no longer configured.
    pub fn retain_peers(&self, keep: impl Fn(&PublicKey) -> bool) {
        self.path_mtu
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .retain(|k, _| keep(k));
    }

    pub fn snapshot(&self) -> DatapathStats {
        let map = self.path_mtu.lock().unwrap_or_else(|e| e.into_inner());
        DatapathStats {
            oversize_trains: self.oversize_trains.load(Ordering::Relaxed),
            send_errors: self.send_errors.load(Ordering::Relaxed),
            path_mtu: map.iter().map(|(k, (m, _))| (*k, *m)).collect(),
            mtu_too_large_peers: map.values().filter(|(_, t)| *t).count(),
        }
    }
}

/// Per outbound thread: the largest GSO segment each destination took, learned from refusals.
#[derive(Default)]
pub(crate) struct GsoLimits {
    limits: Vec<(SocketAddr, usize, Instant)>,
}

impl GsoLimits {
    /// Datagrams of at least `segment` bytes to `dst` were refused in a train.
    pub fn refuse(&mut self, dst: SocketAddr, segment: usize) {
        let now = Instant::now();
        self.limits
            .retain(|(d, _, at)| *d != dst && now - *at < GSO_LIMIT_TTL);
        self.limits.push((dst, segment, now));
    }

    /// Whether a train of `segment`-byte datagrams to `dst` may be built.
    pub fn allows(&self, dst: SocketAddr, segment: usize) -> bool {
        self.limits.is_empty()
            || !self
                .limits
                .iter()
                .any(|(d, s, at)| *d == dst && segment >= *s && at.elapsed() < GSO_LIMIT_TTL)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[test]
    fn overhead_per_family() {
        assert_eq!(overhead(&addr("192.0.2.1:51820")), 60);
        assert_eq!(overhead(&addr("[::ffff:192.0.2.1]:51820")), 60);
        assert_eq!(overhead(&addr("[2001:db8::1]:51820")), 80);
    }

    #[test]
    fn gso_limits_are_per_destination_and_size() {
        let mut l = GsoLimits::default();
        let (a, b) = (addr("192.0.2.1:51820"), addr("192.0.2.2:51820"));
        assert!(l.allows(a, 1452));
        l.refuse(a, 1452);
        assert!(!l.allows(a, 1452) && !l.allows(a, 1500));
        assert!(l.allows(a, 1340), "smaller trains still go");
        assert!(l.allows(b, 1452), "other destinations unaffected");
    }

    #[test]
    fn path_mtu_flags_too_small_paths() {
        let c = Counters::default();
        let (k1, k2) = (
            PublicKey::from_bytes([1; 32]),
            PublicKey::from_bytes([2; 32]),
        );
        c.path_mtu(k1, addr("192.0.2.1:51820"), 1400, 1420);
        c.path_mtu(k2, addr("192.0.2.2:51820"), 1500, 1420);
        let s = c.snapshot();
        assert_eq!(s.mtu_too_large_peers, 1);
        assert_eq!(s.path_mtu[&k1], 1400);
        c.retain_peers(|k| *k == k2);
        assert_eq!(c.snapshot().mtu_too_large_peers, 0);
    }
}
