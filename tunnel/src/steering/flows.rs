//! The steering flows as text (pure): what `steering: ovs` installs on the SDN bridge.
//!
//! OpenShift SDN's `br0` pipeline: table 0 classifies, tables 20–27 validate a pod's source
//! (in_port, IP and MAC must match the pod), table 30 routes by destination. Our flows:
//! - table 0: IP from the tunnel pod's port with a remote source skips validation (the
//!   tunnel pod forwards decapsulated packets whose source is a remote pod) and goes to 30;
//! - table 30: IP to any remote pod or service CIDR goes to the tunnel pod's port, with the
//!   destination MAC rewritten to the pod's (the sender addressed the gateway's MAC, which the
//!   tunnel pod's kernel would drop as PACKET_OTHERHOST).
//!
//! Every flow carries [`COOKIE`]; priorities are above the SDN's own (at most 300).

use std::fmt;

use ipnet::IpNet;

/// The cookie of every flow we install; nothing else on the bridge carries it.
pub const COOKIE: u64 = 0xca5e_a700_0000_0001;
/// Table where the bridge classifies incoming packets.
pub const TABLE_CLASSIFY: u8 = 0;
/// The bridge's routing table (after the source validation tables).
pub const TABLE_ROUTING: u8 = 30;
/// Priority of our flows, above OpenShift SDN's highest (300).
pub const PRIORITY: u16 = 400;

/// Where the tunnel pod sits on the bridge.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SteeringPort {
    /// The bridge (`br0`).
    pub bridge: String,
    /// OpenFlow port number of the tunnel pod's interface.
    pub ofport: u32,
    /// MAC address of the tunnel pod's interface, `02:00:00:00:00:01` form.
    pub mac: String,
}

/// One OpenFlow flow, without its cookie (the switch adds it).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Flow {
    pub table: u8,
    pub priority: u16,
    /// Match fields, `ovs-ofctl` syntax.
    pub matches: String,
    /// Actions, `ovs-ofctl` syntax.
    pub actions: String,
}

impl fmt::Display for Flow {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "table={},priority={},{} actions={}",
            self.table, self.priority, self.matches, self.actions
        )
    }
}

/// Drops duplicates and ranges inside others; sorted.
fn collapse(nets: &[IpNet]) -> Vec<IpNet> {
    let mut sorted: Vec<IpNet> = nets.iter().map(IpNet::trunc).collect();
    sorted.sort();
    sorted.dedup();
    sorted
        .iter()
        .copied()
        .filter(|n| !sorted.iter().any(|o| o != n && o.contains(n)))
        .collect()
}

/// The flows steering `remote` ranges through the tunnel pod on `port`.
pub fn steering_flows(port: &SteeringPort, remote: &[IpNet]) -> Vec<Flow> {
    let mut flows = Vec::new();
    for net in collapse(remote) {
        let (proto, src, dst) = match net {
            IpNet::V4(_) => ("ip", "nw_src", "nw_dst"),
            IpNet::V6(_) => ("ipv6", "ipv6_src", "ipv6_dst"),
        };
        flows.push(Flow {
            table: TABLE_CLASSIFY,
            priority: PRIORITY,
            matches: format!("{proto},in_port={},{src}={net}", port.ofport),
            actions: format!("goto_table:{TABLE_ROUTING}"),
        });
        flows.push(Flow {
            table: TABLE_ROUTING,
            priority: PRIORITY,
            matches: format!("{proto},{dst}={net}"),
            actions: format!("set_field:{}->eth_dst,output:{}", port.mac, port.ofport),
        });
    }
    flows.sort();
    flows
}
