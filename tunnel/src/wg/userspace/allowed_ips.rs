//! Cryptokey routing table: longest-prefix match of an inner address to a peer.
//!
//! One hash map per prefix length that is in use, probed from the longest; with the few prefix
//! lengths a mesh uses (pod subnets, host routes) a lookup is one or two hash probes.

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;

use ipnet::IpNet;

/// Maps prefixes to values; a later insert of the same prefix wins.
#[derive(Debug)]
pub struct AllowedIps<T> {
    v4: Vec<(u8, HashMap<u32, T>)>,
    v6: Vec<(u8, HashMap<u128, T>)>,
}

impl<T> Default for AllowedIps<T> {
    fn default() -> Self {
        Self {
            v4: Vec::new(),
            v6: Vec::new(),
        }
    }
}

const fn mask32(len: u8) -> u32 {
    if len == 0 {
        0
    } else {
        u32::MAX << (32 - len as u32)
    }
}

const fn mask128(len: u8) -> u128 {
    if len == 0 {
        0
    } else {
        u128::MAX << (128 - len as u32)
    }
}

impl<T: Clone> AllowedIps<T> {
    /// Builds the table from `(prefix, value)` pairs.
    pub fn build(entries: impl IntoIterator<Item = (IpNet, T)>) -> Self {
        let mut v4: BTreeMap<u8, HashMap<u32, T>> = BTreeMap::new();
        let mut v6: BTreeMap<u8, HashMap<u128, T>> = BTreeMap::new();
        for (net, value) in entries {
            match net {
                IpNet::V4(n) => {
                    let len = n.prefix_len();
                    v4.entry(len)
                        .or_default()
                        .insert(u32::from(n.addr()) & mask32(len), value);
                }
                IpNet::V6(n) => {
                    let len = n.prefix_len();
                    v6.entry(len)
                        .or_default()
                        .insert(u128::from(n.addr()) & mask128(len), value);
                }
            }
        }
        Self {
            v4: v4.into_iter().rev().collect(),
            v6: v6.into_iter().rev().collect(),
        }
    }

    /// The value of the longest prefix containing `addr`.
    #[inline]
    pub fn lookup(&self, addr: IpAddr) -> Option<&T> {
        match addr {
            IpAddr::V4(a) => {
                let a = u32::from(a);
                self.v4
                    .iter()
                    .find_map(|(len, map)| map.get(&(a & mask32(*len))))
            }
            IpAddr::V6(a) => {
                let a = u128::from(a);
                self.v6
                    .iter()
                    .find_map(|(len, map)| map.get(&(a & mask128(*len))))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Test ranges: RFC 5737 and RFC 3849 documentation prefixes.
    #[test]
    fn longest_prefix_wins() {
        let t = AllowedIps::build([
            ("198.51.100.0/24".parse().unwrap(), "a"),
            ("198.51.100.128/25".parse().unwrap(), "b"),
            ("198.51.100.7/32".parse().unwrap(), "c"),
            ("0.0.0.0/0".parse().unwrap(), "default"),
            ("2001:db8::/32".parse().unwrap(), "v6"),
            ("2001:db8:1::/48".parse().unwrap(), "v6-long"),
        ]);
        let l = |s: &str| t.lookup(s.parse().unwrap()).copied();
        assert_eq!(l("198.51.100.1"), Some("a"));
        assert_eq!(l("198.51.100.200"), Some("b"));
        assert_eq!(l("198.51.100.7"), Some("c"));
        assert_eq!(l("203.0.113.1"), Some("default"));
        assert_eq!(l("2001:db8::1"), Some("v6"));
        assert_eq!(l("2001:db8:1::1"), Some("v6-long"));
        assert_eq!(l("2001:db9::1"), None);
    }

    #[test]
    fn host_bits_of_a_prefix_are_ignored() {
        let t = AllowedIps::build([("198.51.100.9/24".parse().unwrap(), 1)]);
        assert_eq!(t.lookup("198.51.100.200".parse().unwrap()), Some(&1));
    }
}
