//! The difference between the current and the desired peer set: what a backend must change.

use std::collections::BTreeMap;

use super::{PeerConfig, PublicKey};

/// Peers to add, change and remove; unchanged peers are not listed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PeerDiff {
    /// Peers that do not exist yet.
    pub added: Vec<PeerConfig>,
    /// Peers that exist with a different configuration (new value).
    pub updated: Vec<PeerConfig>,
    /// Public keys of peers to remove.
    pub removed: Vec<PublicKey>,
}

impl PeerDiff {
    /// True when nothing changes.
    pub fn is_empty(&self) -> bool {
        self.added.is_empty() && self.updated.is_empty() && self.removed.is_empty()
    }
}

/// Compares two peer sets by public key. Allowed IPs compare as sets; a later duplicate key in
/// `desired` wins. The result is sorted by public key, so it is deterministic.
pub fn diff_peers(current: &[PeerConfig], desired: &[PeerConfig]) -> PeerDiff {
    let normalize = |peers: &[PeerConfig]| -> BTreeMap<PublicKey, PeerConfig> {
        peers
            .iter()
            .map(|p| {
                let mut p = p.clone();
                p.allowed_ips.sort();
                p.allowed_ips.dedup();
                p.persistent_keepalive = p.persistent_keepalive.filter(|&k| k != 0);
                (p.public_key, p)
            })
            .collect()
    };
    let (current, desired) = (normalize(current), normalize(desired));
    let mut diff = PeerDiff::default();
    for (key, want) in &desired {
        match current.get(key) {
            None => diff.added.push(want.clone()),
            Some(have) if have != want => diff.updated.push(want.clone()),
            Some(_) => {}
        }
    }
    diff.removed = current
        .keys()
        .filter(|k| !desired.contains_key(k))
        .copied()
        .collect();
    diff
}

#[cfg(test)]
mod tests {
    use super::*;

    // Test ranges: RFC 5737 documentation addresses.
    fn peer(byte: u8, ips: &[&str]) -> PeerConfig {
        PeerConfig {
            public_key: PublicKey::from_bytes([byte; 32]),
            preshared_key: None,
            endpoint: Some(format!("192.0.2.{byte}:51820").parse().unwrap()),
            allowed_ips: ips.iter().map(|s| s.parse().unwrap()).collect(),
            persistent_keepalive: None,
        }
    }

    #[test]
    fn adds_updates_and_removes_only_the_difference() {
        let current = vec![
            peer(1, &["198.51.100.0/26"]),
            peer(2, &["198.51.100.64/26"]),
        ];
        let mut changed = peer(2, &["198.51.100.64/26", "203.0.113.0/24"]);
        changed.persistent_keepalive = Some(25);
        let desired = vec![
            peer(1, &["198.51.100.0/26"]),
            changed.clone(),
            peer(3, &["198.51.100.128/26"]),
        ];
        let d = diff_peers(&current, &desired);
        assert_eq!(d.added, vec![peer(3, &["198.51.100.128/26"])]);
        assert_eq!(d.updated.len(), 1);
        assert_eq!(d.updated[0].public_key, changed.public_key);
        assert!(d.removed.is_empty());

        let d = diff_peers(&desired, &[peer(1, &["198.51.100.0/26"])]);
        assert!(d.added.is_empty() && d.updated.is_empty());
        assert_eq!(
            d.removed,
            vec![
                PublicKey::from_bytes([2; 32]),
                PublicKey::from_bytes([3; 32])
            ]
        );
    }

    #[test]
    fn allowed_ip_order_and_zero_keepalive_do_not_count_as_changes() {
        let a = peer(1, &["198.51.100.0/26", "203.0.113.0/24"]);
        let mut b = peer(1, &["203.0.113.0/24", "198.51.100.0/26"]);
        b.persistent_keepalive = Some(0);
        assert!(diff_peers(&[a], &[b]).is_empty());
    }
}
