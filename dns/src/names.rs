//! Names of the DNS schema: where each record lives, and the small conversions between
//! presentation names, wire names and reverse (`in-addr.arpa` / `ip6.arpa`) names.
//!
//! Presentation names here are absolute, lower-case and end with a dot. Kubernetes object
//! names are already RFC 1123 labels; anything that is not a valid label (a hostname set by
//! hand, say) is skipped by the callers rather than answered under a broken name.

use std::fmt::Write as _;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// The zone of one cluster: `cluster.<name>`, without the final dot.
pub fn cluster_zone(cluster: &str) -> String {
    format!("cluster.{cluster}")
}

/// `<svc>.<ns>.svc.<zone>.`
pub fn service_name(svc: &str, ns: &str, zone: &str) -> String {
    format!("{svc}.{ns}.svc.{zone}.")
}

/// `_<port>._<proto>.<owner>` for an SRV record (`owner` absolute).
pub fn srv_name(port: &str, proto: &str, owner: &str) -> String {
    format!("_{port}._{proto}.{owner}")
}

/// The label of an endpoint without a hostname: its address with `.`/`:` turned into
/// `-` (`10-4-0-7`, `fd00-b--5`), as CoreDNS names them.
pub fn ip_label(ip: IpAddr) -> String {
    ip.to_string().replace(['.', ':'], "-")
}

/// True for an RFC 1123 label: 1-63 of a-z, 0-9 and `-`, alphanumeric at both ends.
pub fn is_label(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.len() <= 63
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
        && b[0] != b'-'
        && b[b.len() - 1] != b'-'
}

/// `7.0.4.10.in-addr.arpa.` / the 32-nibble `ip6.arpa.` name of an address.
pub fn reverse_name(ip: IpAddr) -> String {
    let mut s = String::with_capacity(74);
    match ip {
        IpAddr::V4(v4) => {
            let o = v4.octets();
            let _ = write!(s, "{}.{}.{}.{}.in-addr.arpa.", o[3], o[2], o[1], o[0]);
        }
        IpAddr::V6(v6) => {
            for byte in v6.octets().iter().rev() {
                let _ = write!(s, "{:x}.{:x}.", byte & 0xf, byte >> 4);
            }
            s.push_str("ip6.arpa.");
        }
    }
    s
}

/// The reverse zone that holds a prefix: the name of its first `prefix_len` bits rounded
/// down to a whole label (octet for IPv4, nibble for IPv6), e.g. `132.10.in-addr.arpa.`
/// for `10.132.0.0/16` and also for `10.132.0.0/20`.
pub fn reverse_zone(net: ipnet::IpNet) -> String {
    let full = reverse_name(net.network());
    let (labels_total, per_label) = match net {
        ipnet::IpNet::V4(_) => (4, 8),
        ipnet::IpNet::V6(_) => (32, 4),
    };
    let keep = usize::from(net.prefix_len()) / per_label;
    let parts: Vec<&str> = full.trim_end_matches('.').split('.').collect();
    let mut out = parts[labels_total - keep..].join(".");
    out.push('.');
    out
}

/// Appends the wire form of an absolute presentation name (`a.b.` → `\x01a\x01b\x00`).
/// Labels must be valid (callers build names from checked labels).
pub fn push_wire(name: &str, out: &mut Vec<u8>) {
    for label in name
        .trim_end_matches('.')
        .split('.')
        .filter(|l| !l.is_empty())
    {
        out.push(label.len() as u8);
        out.extend_from_slice(label.as_bytes());
    }
    out.push(0);
}

/// The wire form of an absolute presentation name, lower-cased.
pub fn to_wire(name: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(name.len() + 2);
    push_wire(&name.to_ascii_lowercase(), &mut out);
    out
}

/// Reads the address out of a full-length reverse name in wire form (lower-case);
/// None for partial names, bad labels or other names.
pub fn parse_reverse_wire(wire: &[u8]) -> Option<IpAddr> {
    const V4: &[u8] = b"\x07in-addr\x04arpa\x00";
    const V6: &[u8] = b"\x03ip6\x04arpa\x00";
    if let Some(head) = wire.strip_suffix(V4) {
        let mut octets = [0u8; 4];
        let mut rest = head;
        for i in (0..4).rev() {
            let (&len, tail) = rest.split_first()?;
            let len = usize::from(len);
            if len == 0 || len > 3 || tail.len() < len {
                return None;
            }
            let text = std::str::from_utf8(&tail[..len]).ok()?;
            if len > 1 && text.starts_with('0') {
                return None;
            }
            octets[i] = text.parse().ok()?;
            rest = &tail[len..];
        }
        return rest.is_empty().then(|| IpAddr::V4(Ipv4Addr::from(octets)));
    }
    if let Some(head) = wire.strip_suffix(V6) {
        if head.len() != 64 {
            return None;
        }
        let mut value: u128 = 0;
        for (i, pair) in head.chunks_exact(2).enumerate() {
            if pair[0] != 1 {
                return None;
            }
            let nibble = char::from(pair[1]).to_digit(16)?;
            value |= u128::from(nibble) << (4 * i);
        }
        return Some(IpAddr::V6(Ipv6Addr::from(value)));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_and_names() {
        assert_eq!(ip_label("10.4.0.7".parse().unwrap()), "10-4-0-7");
        assert_eq!(ip_label("fd00:b::5".parse().unwrap()), "fd00-b--5");
        assert!(is_label("web-0"));
        assert!(!is_label("Web"));
        assert!(!is_label("-a"));
        assert!(!is_label(""));
        assert_eq!(
            service_name("web", "demo", "cluster.b"),
            "web.demo.svc.cluster.b."
        );
        assert_eq!(to_wire("A.b."), b"\x01a\x01b\x00");
    }

    #[test]
    fn reverse_round_trip() {
        for ip in ["10.132.1.5", "192.0.2.255", "fd00:b::5", "2001:db8::1"] {
            let ip: IpAddr = ip.parse().unwrap();
            let wire = to_wire(&reverse_name(ip));
            assert_eq!(parse_reverse_wire(&wire), Some(ip), "{ip}");
        }
        assert_eq!(
            reverse_name("10.132.1.5".parse().unwrap()),
            "5.1.132.10.in-addr.arpa."
        );
        assert_eq!(parse_reverse_wire(&to_wire("1.132.10.in-addr.arpa.")), None);
        assert_eq!(
            parse_reverse_wire(&to_wire("1.1.300.10.in-addr.arpa.")),
            None
        );
        assert_eq!(
            parse_reverse_wire(&to_wire("01.1.3.10.in-addr.arpa.")),
            None
        );
        assert_eq!(
            reverse_zone("10.132.0.0/20".parse().unwrap()),
            "132.10.in-addr.arpa."
        );
        assert_eq!(
            reverse_zone("fd00:b::/48".parse().unwrap()),
            "0.0.0.0.b.0.0.0.0.0.d.f.ip6.arpa."
        );
    }
}
