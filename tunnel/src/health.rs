//! Peer health: last handshake age, traffic, endpoint. A peer is down when neither a handshake
//! nor any received byte happened within `peerDownAfter`: WireGuard renews a busy session's
//! handshake only every 2 minutes, while persistent keepalives arrive every `persistentKeepalive`,
//! so received traffic notices a dead peer much sooner than handshakes alone. Rendered as metrics, `/status` JSON and `wg show`-like text.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::{Duration, SystemTime};

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use serde::Serialize;

use crate::plan::PeerLabel;
use crate::wg::{PeerStatus, PublicKey};

/// Errors of this module (none yet: rendering is infallible).
#[derive(Debug, thiserror::Error)]
pub enum HealthError {}

/// One peer's health.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PeerHealth {
    pub cluster: String,
    pub node: String,
    pub public_key: String,
    pub endpoint: Option<String>,
    pub allowed_ips: Vec<String>,
    /// Seconds since the last handshake; `None` if there was none.
    pub last_handshake_seconds: Option<u64>,
    /// Seconds since bytes were last received; `None` if never seen.
    pub last_received_seconds: Option<u64>,
    pub rx_bytes: u64,
    pub tx_bytes: u64,
    pub up: bool,
    /// The path probe of this peer, when it publishes a probe endpoint.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub probe: Option<ProbeHealth>,
}

/// A peer's path probe, as `/status` shows it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ProbeHealth {
    pub target: String,
    pub sent: u64,
    pub answered: u64,
    /// Milliseconds since the last answer; `None` if none yet.
    pub last_answer_ms: Option<u64>,
    /// Round trip of the last answer, in microseconds.
    pub rtt_us: Option<u64>,
}

impl From<crate::probe::ProbeView> for ProbeHealth {
    fn from(v: crate::probe::ProbeView) -> Self {
        Self {
            target: v.target.to_string(),
            sent: v.sent,
            answered: v.answered,
            last_answer_ms: v.last_answer_ago.map(|d| d.as_millis() as u64),
            rtt_us: v.rtt.map(|d| d.as_micros() as u64),
        }
    }
}

/// The whole `/status` document.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct StatusReport {
    pub interface: String,
    pub backend: String,
    pub public_key: String,
    pub listen_port: u16,
    pub peers: Vec<PeerHealth>,
    /// Problems of the last plan (objects or fields left out).
    pub problems: Vec<String>,
}

/// Remembers when each peer's received-bytes counter last moved.
#[derive(Clone, Debug, Default)]
pub struct Activity(BTreeMap<PublicKey, (u64, SystemTime)>);

impl Activity {
    /// Records the counters seen at `now`; forgets peers that are gone.
    pub fn observe(&mut self, peers: &[PeerStatus], now: SystemTime) {
        self.0
            .retain(|k, _| peers.iter().any(|p| p.public_key == *k));
        for p in peers {
            let e = self
                .0
                .entry(p.public_key)
                .or_insert((0, SystemTime::UNIX_EPOCH));
            if p.rx_bytes != e.0 {
                *e = (p.rx_bytes, now);
            }
        }
    }

    /// When bytes from `peer` were last seen arriving.
    pub fn last_received(&self, peer: &PublicKey) -> Option<SystemTime> {
        self.0
            .get(peer)
            .map(|(_, t)| *t)
            .filter(|t| *t != SystemTime::UNIX_EPOCH)
    }
}

/// Computes each peer's health at `now`.
pub fn assess(
    peers: &[PeerStatus],
    labels: &BTreeMap<PublicKey, PeerLabel>,
    activity: &Activity,
    now: SystemTime,
    down_after: Duration,
) -> Vec<PeerHealth> {
    let mut out: Vec<PeerHealth> = peers
        .iter()
        .map(|p| {
            let age_of = |t: SystemTime| now.duration_since(t).unwrap_or_default().as_secs();
            let age = p.last_handshake.map(age_of);
            let received = activity.last_received(&p.public_key).map(age_of);
            let label = labels.get(&p.public_key).cloned().unwrap_or(PeerLabel {
                cluster: "unknown".into(),
                node: "unknown".into(),
            });
            PeerHealth {
                cluster: label.cluster,
                node: label.node,
                public_key: p.public_key.to_base64(),
                endpoint: p.endpoint.map(|e| e.to_string()),
                allowed_ips: p.allowed_ips.iter().map(ToString::to_string).collect(),
                last_handshake_seconds: age,
                last_received_seconds: received,
                rx_bytes: p.rx_bytes,
                tx_bytes: p.tx_bytes,
                up: age
                    .into_iter()
                    .chain(received)
                    .min()
                    .is_some_and(|a| a <= down_after.as_secs()),
                probe: None,
            }
        })
        .collect();
    out.sort_by(|a, b| (&a.cluster, &a.node).cmp(&(&b.cluster, &b.node)));
    out
}

/// `wg show`-like text of the report.
pub fn render_wg(r: &StatusReport) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "interface: {} ({})", r.interface, r.backend);
    let _ = writeln!(s, "  public key: {}", r.public_key);
    let _ = writeln!(s, "  private key: (hidden)");
    let _ = writeln!(s, "  listening port: {}", r.listen_port);
    for p in &r.peers {
        let _ = writeln!(
            s,
            "\npeer: {} ({}/{}) {}",
            p.public_key,
            p.cluster,
            p.node,
            if p.up { "up" } else { "DOWN" }
        );
        if let Some(e) = &p.endpoint {
            let _ = writeln!(s, "  endpoint: {e}");
        }
        let _ = writeln!(
            s,
            "  allowed ips: {}",
            if p.allowed_ips.is_empty() {
                "(none)".into()
            } else {
                p.allowed_ips.join(", ")
            }
        );
        match p.last_handshake_seconds {
            Some(a) => {
                let _ = writeln!(s, "  latest handshake: {a} seconds ago");
            }
            None => {
                let _ = writeln!(s, "  latest handshake: (none)");
            }
        }
        let _ = writeln!(
            s,
            "  transfer: {} B received, {} B sent",
            p.rx_bytes, p.tx_bytes
        );
        if let Some(pr) = &p.probe {
            let last = pr
                .last_answer_ms
                .map_or("never answered".to_string(), |ms| {
                    format!("last answer {ms} ms ago")
                });
            let _ = writeln!(
                s,
                "  probe: {} {}/{} answered, {last}",
                pr.target, pr.answered, pr.sent
            );
        }
    }
    s
}

/// Labels of the per-peer metrics.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PeerLabels {
    pub cluster: String,
    pub node: String,
}

/// Per-peer metrics, registered at construction.
#[derive(Clone, Default)]
pub struct PeerMetrics {
    up: Family<PeerLabels, Gauge>,
    handshake_age: Family<PeerLabels, Gauge>,
    rx: Family<PeerLabels, Gauge>,
    tx: Family<PeerLabels, Gauge>,
    peers: Gauge,
    peers_down: Gauge,
    path_mtu: Family<PeerLabels, Gauge>,
    oversize_trains: Gauge,
    send_errors: Gauge,
    mtu_too_large: Gauge,
}

impl PeerMetrics {
    pub fn register(reg: &mut Registry) -> Self {
        let m = Self::default();
        reg.register(
            "causeway_tunnel_peer_up",
            "1 if the peer had a handshake within peerDownAfter",
            m.up.clone(),
        );
        reg.register(
            "causeway_tunnel_peer_last_handshake_age_seconds",
            "Seconds since the peer's last handshake (-1: never)",
            m.handshake_age.clone(),
        );
        reg.register(
            "causeway_tunnel_peer_rx_bytes",
            "Bytes received from the peer",
            m.rx.clone(),
        );
        reg.register(
            "causeway_tunnel_peer_tx_bytes",
            "Bytes sent to the peer",
            m.tx.clone(),
        );
        reg.register("causeway_tunnel_peers", "Configured peers", m.peers.clone());
        reg.register(
            "causeway_tunnel_peers_down",
            "Peers reported down",
            m.peers_down.clone(),
        );
        reg.register(
            "causeway_tunnel_peer_path_mtu_bytes",
            "Path MTU towards the peer's endpoint, as the kernel knows it (userspace data path)",
            m.path_mtu.clone(),
        );
        reg.register(
            "causeway_tunnel_oversize_gso_trains",
            "GSO trains refused as too large for the path and resent datagram by datagram (cumulative)",
            m.oversize_trains.clone(),
        );
        reg.register(
            "causeway_tunnel_send_errors",
            "Datagrams the kernel refused to send (cumulative)",
            m.send_errors.clone(),
        );
        reg.register(
            "causeway_tunnel_peers_mtu_too_large",
            "Peers whose path carries less than the tunnel MTU plus overhead (fragmented)",
            m.mtu_too_large.clone(),
        );
        m
    }

    /// Sets the data-path gauges; `health` maps public keys to peer labels.
    pub fn observe_datapath(&self, stats: &crate::wg::DatapathStats, health: &[PeerHealth]) {
        self.oversize_trains.set(stats.oversize_trains as i64);
        self.send_errors.set(stats.send_errors as i64);
        self.mtu_too_large.set(stats.mtu_too_large_peers as i64);
        for p in health {
            let l = PeerLabels {
                cluster: p.cluster.clone(),
                node: p.node.clone(),
            };
            let mtu = p
                .public_key
                .parse::<crate::wg::PublicKey>()
                .ok()
                .and_then(|k| stats.path_mtu.get(&k));
            match mtu {
                Some(m) => {
                    self.path_mtu.get_or_create(&l).set(i64::from(*m));
                }
                None => {
                    self.path_mtu.remove(&l);
                }
            }
        }
    }

    /// Sets every gauge from `health`; peers that are gone lose their series.
    pub fn observe(&self, health: &[PeerHealth], previous: &[PeerHealth]) {
        let labels = |p: &PeerHealth| PeerLabels {
            cluster: p.cluster.clone(),
            node: p.node.clone(),
        };
        for gone in previous.iter().filter(|o| {
            !health
                .iter()
                .any(|p| p.cluster == o.cluster && p.node == o.node)
        }) {
            let l = labels(gone);
            self.up.remove(&l);
            self.handshake_age.remove(&l);
            self.rx.remove(&l);
            self.tx.remove(&l);
            self.path_mtu.remove(&l);
        }
        for p in health {
            let l = labels(p);
            self.up.get_or_create(&l).set(i64::from(p.up));
            self.handshake_age
                .get_or_create(&l)
                .set(p.last_handshake_seconds.map_or(-1, |a| a as i64));
            self.rx.get_or_create(&l).set(p.rx_bytes as i64);
            self.tx.get_or_create(&l).set(p.tx_bytes as i64);
        }
        self.peers.set(health.len() as i64);
        self.peers_down
            .set(health.iter().filter(|p| !p.up).count() as i64);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wg::PrivateKey;

    #[test]
    fn down_after_threshold_and_never() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(10_000);
        let (a, b, c) = (
            PrivateKey::generate().public_key(),
            PrivateKey::generate().public_key(),
            PrivateKey::generate().public_key(),
        );
        let st = |k, hs: Option<u64>| PeerStatus {
            public_key: k,
            endpoint: Some("192.0.2.1:51820".parse().unwrap()),
            allowed_ips: vec!["10.129.0.0/24".parse().unwrap()],
            last_handshake: hs.map(|s| now - Duration::from_secs(s)),
            rx_bytes: 1,
            tx_bytes: 2,
            persistent_keepalive: Some(25),
        };
        let labels = BTreeMap::from([
            (
                a,
                PeerLabel {
                    cluster: "b".into(),
                    node: "b1".into(),
                },
            ),
            (
                b,
                PeerLabel {
                    cluster: "b".into(),
                    node: "b2".into(),
                },
            ),
            (
                c,
                PeerLabel {
                    cluster: "c".into(),
                    node: "c1".into(),
                },
            ),
        ]);
        let h = assess(
            &[st(a, Some(10)), st(b, Some(200)), st(c, None)],
            &labels,
            &Activity::default(),
            now,
            Duration::from_secs(180),
        );
        let summary: Vec<_> = h
            .iter()
            .map(|p| (p.node.as_str(), p.up, p.last_handshake_seconds))
            .collect();
        assert_eq!(
            summary,
            [
                ("b1", true, Some(10)),
                ("b2", false, Some(200)),
                ("c1", false, None)
            ]
        );
        let mut reg = Registry::default();
        let m = PeerMetrics::register(&mut reg);
        m.observe(&h, &[]);
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &reg).unwrap();
        assert!(
            text.contains("causeway_tunnel_peer_up{cluster=\"b\",node=\"b2\"} 0"),
            "{text}"
        );
        assert!(text.contains("causeway_tunnel_peers_down 2"), "{text}");
        m.observe(&h[..1], &h);
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &reg).unwrap();
        assert!(!text.contains("node=\"b2\""), "{text}");
        // Traffic from b2 (keepalives) counts as a sign of life, handshakes aside.
        let mut activity = Activity::default();
        let mut seen = st(b, Some(200));
        activity.observe(&[seen.clone()], now - Duration::from_secs(5));
        seen.rx_bytes = 99;
        activity.observe(&[seen.clone()], now - Duration::from_secs(2));
        let h2 = assess(&[seen], &labels, &activity, now, Duration::from_secs(180));
        assert!(h2[0].up && h2[0].last_received_seconds == Some(2), "{h2:?}");
        let report = StatusReport {
            interface: "causeway0".into(),
            backend: "userspace".into(),
            peers: h,
            ..Default::default()
        };
        let wg = render_wg(&report);
        assert!(
            wg.contains("private key: (hidden)") && wg.contains("(b/b2) DOWN"),
            "{wg}"
        );
    }
}
