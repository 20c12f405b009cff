//! The backend's view of IPVS: virtual services and their real servers, without
//! netlink details. Conversions to and from attributes are in `convert.rs`.

use std::fmt;
use std::net::{IpAddr, SocketAddr};

/// The transport protocol of a virtual service.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Protocol {
    /// `IPPROTO_TCP`.
    Tcp,
    /// `IPPROTO_UDP`.
    Udp,
    /// `IPPROTO_SCTP`.
    Sctp,
}

impl Protocol {
    /// The IP protocol number, as carried in `IPVS_SVC_ATTR_PROTOCOL`.
    pub fn number(self) -> u16 {
        match self {
            Self::Tcp => 6,
            Self::Udp => 17,
            Self::Sctp => 132,
        }
    }

    /// The protocol with IP protocol number `n`, if IPVS supports it.
    pub fn from_number(n: u16) -> Option<Self> {
        match n {
            6 => Some(Self::Tcp),
            17 => Some(Self::Udp),
            132 => Some(Self::Sctp),
            _ => None,
        }
    }
}

impl fmt::Display for Protocol {
    /// As `ipvsadm -Ln` prints it: `TCP`, `UDP`, `SCTP`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Tcp => "TCP",
            Self::Udp => "UDP",
            Self::Sctp => "SCTP",
        })
    }
}

/// A virtual service: protocol, address and port (firewall-mark services are not
/// modelled; Causeway never creates them and [`crate::IpvsClient::list_services`]
/// skips them).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct VirtualService {
    /// Transport protocol.
    pub proto: Protocol,
    /// The virtual IP.
    pub addr: IpAddr,
    /// The virtual port.
    pub port: u16,
    /// Scheduler name (`rr`, `wrr`, `lc`, `sh`, `mh`, ...): the kernel loads module
    /// `ip_vs_<name>`.
    pub scheduler: String,
    /// Persistence timeout in seconds (`ipvsadm -p`); `None` = not persistent.
    pub persistent: Option<u32>,
    /// Persistence granularity as a prefix length of the client address (`ipvsadm -M`):
    /// 32 (IPv4) or 128 (IPv6) makes each client address its own group.
    pub netmask: u8,
}

impl VirtualService {
    /// A non-persistent service with scheduler `scheduler`.
    pub fn new(proto: Protocol, addr: IpAddr, port: u16, scheduler: impl Into<String>) -> Self {
        Self {
            proto,
            addr,
            port,
            scheduler: scheduler.into(),
            persistent: None,
            netmask: full_prefix(addr),
        }
    }

    /// Makes the service persistent for `timeout_secs`, as `sessionAffinity: ClientIP`
    /// needs.
    pub fn with_persistence(mut self, timeout_secs: u32) -> Self {
        self.persistent = Some(timeout_secs);
        self
    }

    /// Whether `other` is the same kernel object (protocol, address, port), whatever
    /// its scheduler and persistence.
    pub fn same_key(&self, other: &Self) -> bool {
        (self.proto, self.addr, self.port) == (other.proto, other.addr, other.port)
    }
}

impl fmt::Display for VirtualService {
    /// `TCP 10.0.0.1:80`, `UDP [2001:db8::1]:53`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} {}",
            self.proto,
            SocketAddr::new(self.addr, self.port)
        )
    }
}

/// The forwarding method of a real server (`IP_VS_CONN_F_*`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Forward {
    /// NAT (`ipvsadm -m`): what Causeway uses.
    #[default]
    Masq,
    /// Direct routing (`ipvsadm -g`); the kernel ignores the real server's port.
    Route,
    /// IP-in-IP tunnelling (`ipvsadm -i`).
    Tunnel,
    /// Local delivery (`IP_VS_CONN_F_LOCALNODE`); seen only in listings.
    Local,
    /// Cache bypass (`IP_VS_CONN_F_BYPASS`); seen only in listings.
    Bypass,
}

impl fmt::Display for Forward {
    /// As `ipvsadm -Ln` prints it.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Masq => "Masq",
            Self::Route => "Route",
            Self::Tunnel => "Tunnel",
            Self::Local => "Local",
            Self::Bypass => "Bypass",
        })
    }
}

/// Traffic counters (from the kernel's 64-bit stats nest when present).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// Connections scheduled.
    pub conns: u64,
    /// Packets in.
    pub in_pkts: u64,
    /// Packets out.
    pub out_pkts: u64,
    /// Bytes in.
    pub in_bytes: u64,
    /// Bytes out.
    pub out_bytes: u64,
    /// Connections per second (rate estimator).
    pub cps: u64,
    /// Packets in per second.
    pub in_pps: u64,
    /// Packets out per second.
    pub out_pps: u64,
    /// Bytes in per second.
    pub in_bps: u64,
    /// Bytes out per second.
    pub out_bps: u64,
}

/// Connection counts and traffic of one real server, as the kernel reports them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DestStats {
    /// Established connections.
    pub active_conns: u32,
    /// Connections in other states.
    pub inactive_conns: u32,
    /// Persistence templates.
    pub persistent_conns: u32,
    /// Traffic counters.
    pub traffic: Stats,
}

/// A real server (IPVS "destination") of a virtual service.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RealServer {
    /// Its address (the same family as the service's).
    pub addr: IpAddr,
    /// Its port.
    pub port: u16,
    /// Scheduling weight; 0 takes no new connections but keeps existing ones.
    pub weight: u32,
    /// Forwarding method.
    pub fwd: Forward,
    /// Counters; ignored when adding or editing.
    pub stats: DestStats,
}

impl RealServer {
    /// A real server with zero counters.
    pub fn new(addr: IpAddr, port: u16, weight: u32, fwd: Forward) -> Self {
        Self {
            addr,
            port,
            weight,
            fwd,
            stats: DestStats::default(),
        }
    }

    /// Whether `other` is the same kernel object (address and port).
    pub fn same_key(&self, other: &Self) -> bool {
        (self.addr, self.port) == (other.addr, other.port)
    }
}

impl fmt::Display for RealServer {
    /// `10.0.0.2:8080`, `[2001:db8::2]:8080`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        SocketAddr::new(self.addr, self.port).fmt(f)
    }
}

/// A virtual service as listed from the kernel, with its real servers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServiceEntry {
    /// The service.
    pub service: VirtualService,
    /// Its traffic counters.
    pub stats: Stats,
    /// Its real servers, in kernel order.
    pub dests: Vec<RealServer>,
}

/// `IPVS_CMD_GET_INFO`: what `ipvsadm -Ln` prints in its first line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Info {
    /// `IP_VS_VERSION_CODE`, e.g. `0x010201`.
    pub version: u32,
    /// Size of the connection hash table (`ip_vs.conn_tab_bits`).
    pub conn_table_size: u32,
}

impl fmt::Display for Info {
    /// `IP Virtual Server version 1.2.1 (size=4096)`, exactly as ipvsadm prints it.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let v = self.version;
        write!(
            f,
            "IP Virtual Server version {}.{}.{} (size={})",
            (v >> 16) & 0xff,
            (v >> 8) & 0xff,
            v & 0xff,
            self.conn_table_size
        )
    }
}

/// The prefix length that makes every client address its own persistence group.
pub(crate) fn full_prefix(addr: IpAddr) -> u8 {
    match addr {
        IpAddr::V4(_) => 32,
        IpAddr::V6(_) => 128,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_names_service_and_dest_like_ipvsadm() {
        let v4 = VirtualService::new(Protocol::Tcp, "192.0.2.1".parse().unwrap(), 80, "rr");
        assert_eq!(v4.to_string(), "TCP 192.0.2.1:80");
        let v6 = VirtualService::new(Protocol::Sctp, "2001:db8::1".parse().unwrap(), 53, "rr");
        assert_eq!(v6.to_string(), "SCTP [2001:db8::1]:53");
        assert_eq!(v6.netmask, 128);
        let rs = RealServer::new("2001:db8::2".parse().unwrap(), 8080, 1, Forward::Masq);
        assert_eq!(rs.to_string(), "[2001:db8::2]:8080");
        let info = Info {
            version: 0x010201,
            conn_table_size: 4096,
        };
        assert_eq!(
            info.to_string(),
            "IP Virtual Server version 1.2.1 (size=4096)"
        );
    }

    #[test]
    fn protocol_numbers() {
        for p in [Protocol::Tcp, Protocol::Udp, Protocol::Sctp] {
            assert_eq!(Protocol::from_number(p.number()), Some(p));
        }
        assert_eq!(Protocol::from_number(1), None);
    }
}
