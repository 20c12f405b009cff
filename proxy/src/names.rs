//! Kernel-facing names: deterministic, length-safe, readable.
//!
//! Like kube-proxy's `service-HASH-ns/svc/proto/port`, every nftables chain or set name is
//! a fixed prefix, an 8-character hash of the object's identity, then a readable tail
//! that may be cut short. The hash alone makes the name unique; the tail is for people.
//!
//! Allowed characters (nft identifier syntax): `a-z 0-9 - _ . /`, starting with a letter.
//! Cluster, namespace and service names are DNS labels, so they need no escaping; the
//! `:` of IPv6 addresses is written as `.`. Names are at most [`MAX_NAME_LEN`] bytes
//! (the kernel allows 255).

use std::net::SocketAddr;

use crate::plan::{Origin, VsKey};

/// Longest name we generate.
pub const MAX_NAME_LEN: usize = 128;

/// FNV-1a, 64 bit: tiny, stable across versions and platforms (names must survive a
/// restart of a newer binary, or adoption would see every chain as foreign).
fn fnv1a(parts: &[&str]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for p in parts {
        for b in p.bytes().chain(std::iter::once(0)) {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0000_0100_0000_01b3);
        }
    }
    h
}

/// 8 characters of RFC 4648 base32 (lower case) of a hash: 40 bits.
pub fn short_hash(parts: &[&str]) -> String {
    const ALPHABET: &[u8; 32] = b"abcdefghijklmnopqrstuvwxyz234567";
    let h = fnv1a(parts);
    (0..8)
        .map(|i| ALPHABET[((h >> (i * 5)) & 31) as usize] as char)
        .collect()
}

fn join(prefix: &str, hash: &str, tail: &str) -> String {
    let mut name = format!("{prefix}-{hash}-{tail}");
    if name.len() > MAX_NAME_LEN {
        let mut cut = MAX_NAME_LEN;
        while !name.is_char_boundary(cut) {
            cut -= 1;
        }
        name.truncate(cut);
    }
    name
}

fn addr_text(a: SocketAddr) -> String {
    format!("{}/{}", a.ip(), a.port()).replace(':', ".")
}

/// The identity hash of a virtual service (protocol, VIP, port).
pub fn vs_hash(key: &VsKey) -> String {
    short_hash(&[key.proto.as_lower(), &key.addr.to_string()])
}

/// Which of `shards` tables holds a virtual service: FNV-1a of protocol number, address
/// octets and port (big endian). Stable, like the names, and cheap (no formatting).
pub fn shard_of(key: &VsKey, shards: usize) -> usize {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    let mut eat = |b: u8| {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    };
    eat(key.proto.number());
    match key.addr.ip() {
        std::net::IpAddr::V4(a) => a.octets().into_iter().for_each(&mut eat),
        std::net::IpAddr::V6(a) => a.octets().into_iter().for_each(&mut eat),
    }
    key.addr.port().to_be_bytes().into_iter().for_each(&mut eat);
    (h % shards.max(1) as u64) as usize
}

/// Chain of one virtual service: `svc-HASH-cluster/ns/name/proto/port`.
pub fn service_chain(key: &VsKey, origin: &Origin) -> String {
    let tail = format!(
        "{}/{}/{}/{}/{}",
        origin.cluster,
        origin.service.namespace,
        origin.service.name,
        key.proto.as_lower(),
        key.addr.port()
    );
    join("svc", &vs_hash(key), &tail)
}

/// Session-affinity set of one real server: `aff-HASH-ip/port`.
pub fn affinity_set(key: &VsKey, real: SocketAddr) -> String {
    let hash = short_hash(&[
        key.proto.as_lower(),
        &key.addr.to_string(),
        &real.to_string(),
    ]);
    join("aff", &hash, &addr_text(real))
}

/// Whether `name` is a valid nft identifier as we generate them.
pub fn is_valid(name: &str) -> bool {
    let mut bytes = name.bytes();
    matches!(bytes.next(), Some(b'a'..=b'z'))
        && name.len() <= MAX_NAME_LEN
        && bytes.all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"-_./".contains(&b))
}

#[cfg(test)]
mod tests {
    use super::*;
    use causeway_shared::model::{Protocol, ServiceKey};

    fn key(addr: &str) -> VsKey {
        VsKey {
            proto: Protocol::Tcp,
            addr: addr.parse().unwrap(),
        }
    }

    fn origin(ns: &str) -> Origin {
        Origin {
            cluster: "b".into(),
            service: ServiceKey::new(ns, "web"),
            port: "http".into(),
            slice_generation: 1,
        }
    }

    #[test]
    fn names_are_stable_readable_and_valid() {
        let k = key("192.0.2.10:80");
        let chain = service_chain(&k, &origin("demo"));
        assert_eq!(chain, format!("svc-{}-b/demo/web/tcp/80", vs_hash(&k)));
        // Pinned: a change here would orphan the chains of running proxies.
        assert_eq!(short_hash(&["tcp", "192.0.2.10:80"]), vs_hash(&k));
        assert_eq!(vs_hash(&k).len(), 8);
        let aff = affinity_set(&k, "[2001:db8::5]:8080".parse().unwrap());
        assert!(aff.ends_with("-2001.db8..5/8080"), "{aff}");
        for n in [
            chain,
            aff,
            affinity_set(&k, "198.51.100.1:1".parse().unwrap()),
        ] {
            assert!(is_valid(&n), "{n}");
        }
    }

    #[test]
    fn shards_spread_services_and_stay_put() {
        let mut counts = [0usize; 4];
        for i in 0..400u32 {
            let k = key(&format!("10.0.{}.{}:80", i / 256, i % 256));
            let s = shard_of(&k, 4);
            assert_eq!(s, shard_of(&k, 4));
            counts[s] += 1;
        }
        assert!(counts.iter().all(|c| (60..140).contains(c)), "{counts:?}");
        assert_eq!(shard_of(&key("192.0.2.10:80"), 1), 0);
    }

    #[test]
    fn long_names_are_cut_but_stay_unique() {
        let mut o = origin(&"n".repeat(63));
        o.service.name = "s".repeat(63);
        let a = service_chain(&key("192.0.2.10:80"), &o);
        let b = service_chain(&key("192.0.2.11:80"), &o);
        assert_eq!(a.len(), MAX_NAME_LEN);
        assert_ne!(a, b);
        assert!(is_valid(&a));
    }
}
