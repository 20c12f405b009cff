//! What the probes have found, per target: pure, the caller passes `now`.
//!
//! [`Tracker::set_targets`] follows the plan (state of an unchanged target is kept);
//! [`Tracker::sent`] and [`Tracker::answered`] record traffic; [`Tracker::report`] turns it,
//! with the handshake-based health of peers that publish no probe endpoint, into the
//! `/paths` document.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use causeway_shared::path_health::{ClusterPath, PathReport};
use ipnet::IpNet;

use crate::health::PeerHealth;
use crate::plan::PeerLabel;

/// Requests kept awaiting an answer per target (older ones count as lost).
const PENDING: usize = 8;

/// One probed peer.
#[derive(Clone, Debug)]
struct Target {
    label: PeerLabel,
    /// Since when it is probed (a new peer counts as unreachable only from then).
    added: Instant,
    sent: u64,
    answered: u64,
    last_answer: Option<Instant>,
    rtt: Option<Duration>,
    pending: Vec<(u64, Instant)>,
}

/// A probed peer as `/status` shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProbeView {
    pub target: SocketAddr,
    pub sent: u64,
    pub answered: u64,
    pub last_answer_ago: Option<Duration>,
    pub rtt: Option<Duration>,
}

/// The probe state of every target.
#[derive(Clone, Debug)]
pub struct Tracker {
    started: Instant,
    targets: BTreeMap<SocketAddr, Target>,
    /// Sources whose requests are answered: the peers' allowed IPs (the tunnel's side).
    allowed: Vec<IpNet>,
}

impl Tracker {
    pub fn new(now: Instant) -> Self {
        Self {
            started: now,
            targets: BTreeMap::new(),
            allowed: Vec::new(),
        }
    }

    /// The targets of the current plan, and the ranges whose requests are answered.
    pub fn set_targets(
        &mut self,
        targets: impl IntoIterator<Item = (PeerLabel, SocketAddr)>,
        allowed: Vec<IpNet>,
        now: Instant,
    ) {
        let mut old = std::mem::take(&mut self.targets);
        for (label, addr) in targets {
            let t = match old.remove(&addr) {
                Some(t) if t.label == label => t,
                _ => Target {
                    label,
                    added: now,
                    sent: 0,
                    answered: 0,
                    last_answer: None,
                    rtt: None,
                    pending: Vec::new(),
                },
            };
            self.targets.insert(addr, t);
        }
        self.allowed = allowed;
    }

    /// Where to send the next round.
    pub fn targets(&self) -> Vec<SocketAddr> {
        self.targets.keys().copied().collect()
    }

    /// True when a request from `ip` is answered (it came through the tunnel).
    pub fn answers(&self, ip: IpAddr) -> bool {
        self.allowed.iter().any(|n| n.contains(&ip))
    }

    pub fn sent(&mut self, to: SocketAddr, seq: u64, now: Instant) {
        if let Some(t) = self.targets.get_mut(&to) {
            t.sent += 1;
            t.pending.push((seq, now));
            if t.pending.len() > PENDING {
                t.pending.remove(0);
            }
        }
    }

    /// Records an answer from `from` to request `seq`; false when it answers nothing we
    /// sent (another target, a request forgotten, a duplicate).
    pub fn answered(&mut self, from: SocketAddr, seq: u64, now: Instant) -> bool {
        let Some(t) = self.targets.get_mut(&from) else {
            return false;
        };
        let Some(i) = t.pending.iter().position(|(s, _)| *s == seq) else {
            return false;
        };
        let (_, at) = t.pending.remove(i);
        t.answered += 1;
        t.last_answer = Some(now);
        t.rtt = Some(now.saturating_duration_since(at));
        true
    }

    /// The probe state of the peer labelled `label`, if it is probed.
    pub fn view(&self, label: &PeerLabel, now: Instant) -> Option<ProbeView> {
        self.targets
            .iter()
            .find(|(_, t)| t.label == *label)
            .map(|(addr, t)| ProbeView {
                target: *addr,
                sent: t.sent,
                answered: t.answered,
                last_answer_ago: t.last_answer.map(|a| now.saturating_duration_since(a)),
                rtt: t.rtt,
            })
    }

    fn target_of(&self, peer: &PeerHealth) -> Option<&Target> {
        self.targets
            .values()
            .find(|t| t.label.cluster == peer.cluster && t.label.node == peer.node)
    }

    /// How long `peer` has shown no working path: for a probed peer, since its last answer
    /// (or since it is probed); else since its last handshake or received traffic (or since
    /// our start).
    fn silent_for(&self, peer: &PeerHealth, now: Instant) -> Duration {
        if let Some(t) = self.target_of(peer) {
            return now.saturating_duration_since(t.last_answer.unwrap_or(t.added));
        }
        let since_start = now.saturating_duration_since(self.started);
        peer.last_handshake_seconds
            .into_iter()
            .chain(peer.last_received_seconds)
            .min()
            .map_or(since_start, |s| Duration::from_secs(s).min(since_start))
    }

    /// The `/paths` document for `remotes` (configuration order), from the peers' health.
    /// A probed peer is reachable when answered within two intervals (and a little: one
    /// lost probe is not an outage); another when the health check says it is up.
    pub fn report(
        &self,
        node: &str,
        remotes: &[String],
        peers: &[PeerHealth],
        interval: Duration,
        now: Instant,
    ) -> PathReport {
        let since_start = now.saturating_duration_since(self.started);
        let fresh = 2 * interval + Duration::from_millis(100);
        let clusters = remotes
            .iter()
            .map(|name| {
                let mut path = ClusterPath {
                    cluster: name.clone(),
                    unreachable_ms: since_start.as_millis() as u64,
                    ..ClusterPath::default()
                };
                for p in peers.iter().filter(|p| p.cluster == *name) {
                    let silent = self.silent_for(p, now);
                    let probed = self.target_of(p).is_some();
                    path.peers += 1;
                    path.probed += usize::from(probed);
                    path.reachable += usize::from(if probed { silent <= fresh } else { p.up });
                    path.unreachable_ms = path.unreachable_ms.min(silent.as_millis() as u64);
                }
                path
            })
            .collect();
        PathReport {
            node: node.to_string(),
            clusters,
        }
    }
}

#[cfg(test)]
mod tests;
