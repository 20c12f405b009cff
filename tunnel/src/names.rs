//! Names of the objects the tunnel creates, deterministic and length-safe.
//!
//! A node name is a DNS subdomain (up to 253 characters, dots allowed). A Service name must be
//! a DNS label (at most 63 of `a-z0-9-`, starting with a letter) and a label value at most 63
//! of `A-Za-z0-9-_.`. When the readable form does not fit or had to be altered, it is cut and
//! suffixed with `-` and 8 hex digits of a 64-bit FNV-1a hash of the node name, so two nodes
//! never share a name.

/// Prefix of the per-node Service (and of everything else the tunnel names).
pub const SERVICE_PREFIX: &str = "causeway-tunnel-";
/// Label the tunnel puts on its own pod, with its node name, for the Service's selector.
pub const NODE_LABEL: &str = "causeway.io/tunnel-node";
/// Label on every object the tunnel manages.
pub const MANAGED_BY: (&str, &str) = ("app.kubernetes.io/managed-by", "causeway-tunnel");

fn fnv1a(s: &str) -> u64 {
    s.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

fn fit(prefix: &str, node: &str, max: usize, allowed: impl Fn(char) -> bool) -> String {
    let cleaned: String = node
        .chars()
        .map(|c| if allowed(c) { c } else { '-' })
        .collect();
    let readable = format!("{prefix}{cleaned}");
    if readable.len() <= max && cleaned == node {
        return readable;
    }
    let suffix = format!("-{:08x}", fnv1a(node) as u32);
    let keep = max - suffix.len();
    let mut cut: String = readable.chars().take(keep).collect();
    while cut.ends_with(['-', '.', '_']) {
        cut.pop();
    }
    cut + &suffix
}

/// `causeway-tunnel-<node>`: the per-node Service (a DNS label).
pub fn service_name(node: &str) -> String {
    fit(SERVICE_PREFIX, node, 63, |c| {
        c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-'
    })
}

/// `<node>`: the node's TunnelEndpoint object.
pub fn endpoint_name(node: &str) -> String {
    fit("", node, 253, |c| {
        c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '.'
    })
}

/// The node name as a label value.
pub fn label_value(node: &str) -> String {
    fit("", node, 63, |c| {
        c.is_ascii_alphanumeric() || c == '-' || c == '.' || c == '_'
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_names_stay_readable() {
        assert_eq!(service_name("worker-1"), "causeway-tunnel-worker-1");
        assert_eq!(
            endpoint_name("ip-10-0-1-2.ec2.internal"),
            "ip-10-0-1-2.ec2.internal"
        );
        assert_eq!(endpoint_name("worker-1"), "worker-1");
        assert_eq!(label_value("worker-1"), "worker-1");
    }

    #[test]
    fn dots_and_long_names_get_a_hash() {
        let s = service_name("ip-10-0-1-2.ec2.internal");
        assert!(
            s.starts_with("causeway-tunnel-ip-10-0-1-2-ec2-internal-"),
            "{s}"
        );
        assert_eq!(
            s.len(),
            "causeway-tunnel-ip-10-0-1-2-ec2-internal-".len() + 8
        );
        let long = "n".repeat(100);
        let a = service_name(&long);
        let b = service_name(&"n".repeat(101));
        assert_eq!(a.len(), 63);
        assert_ne!(a, b);
        assert_eq!(label_value(&long).len(), 63);
        assert_eq!(service_name(&long), a, "deterministic");
    }
}
