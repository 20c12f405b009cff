//! `IPVS_SVC_ATTR_*`: the attributes nested in `IPVS_CMD_ATTR_SERVICE`.

use netlink_packet_core::{
    DecodeError, DefaultNla, Emitable, NLA_F_NESTED, Nla, NlaBuffer, Parseable, parse_string,
    parse_u16, parse_u16_be, parse_u32,
};

use super::{InetAddr, StatsAttr, parse_nested};

const AF: u16 = 1;
const PROTOCOL: u16 = 2;
const ADDR: u16 = 3;
const PORT: u16 = 4;
const FWMARK: u16 = 5;
const SCHED_NAME: u16 = 6;
const FLAGS: u16 = 7;
const TIMEOUT: u16 = 8;
const NETMASK: u16 = 9;
const STATS: u16 = 10;
const PE_NAME: u16 = 11;
const STATS64: u16 = 12;

/// `IP_VS_SVC_F_PERSISTENT`: connections from one client stick to one real server.
pub const IP_VS_SVC_F_PERSISTENT: u32 = 0x0001;
/// `IP_VS_SVC_F_HASHED`: kernel-internal, set on every service the kernel reports.
pub const IP_VS_SVC_F_HASHED: u32 = 0x0002;

/// `struct ip_vs_flags`: the kernel applies `(old & !mask) | (flags & mask)`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ServiceFlags {
    /// The flag bits (`IP_VS_SVC_F_*`).
    pub flags: u32,
    /// Which bits of `flags` to apply.
    pub mask: u32,
}

/// An attribute of a service nest.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ServiceAttr {
    /// `IPVS_SVC_ATTR_AF` (u16): `AF_INET` or `AF_INET6`.
    AddressFamily(u16),
    /// `IPVS_SVC_ATTR_PROTOCOL` (u16): `IPPROTO_TCP`, `IPPROTO_UDP`, `IPPROTO_SCTP`.
    Protocol(u16),
    /// `IPVS_SVC_ATTR_ADDR` (16 bytes).
    Address(InetAddr),
    /// `IPVS_SVC_ATTR_PORT` (u16, network byte order; held here in host order).
    Port(u16),
    /// `IPVS_SVC_ATTR_FWMARK` (u32): a firewall-mark service instead of proto/addr/port.
    Fwmark(u32),
    /// `IPVS_SVC_ATTR_SCHED_NAME` (NUL-terminated string).
    SchedName(String),
    /// `IPVS_SVC_ATTR_FLAGS` (`struct ip_vs_flags`).
    Flags(ServiceFlags),
    /// `IPVS_SVC_ATTR_TIMEOUT` (u32): persistence timeout in seconds.
    Timeout(u32),
    /// `IPVS_SVC_ATTR_NETMASK` (4 bytes), kept raw. The kernel reads it with
    /// `nla_get_be32`: for IPv4 it is the persistence netmask in network order; for
    /// IPv6 the kernel casts it back to a host-order prefix length, so ipvsadm writes
    /// e.g. 128 in host order. See [`crate::VirtualService`] for the conversion.
    Netmask([u8; 4]),
    /// `IPVS_SVC_ATTR_STATS` (nested, 32-bit counters but 64-bit byte counts).
    Stats(Vec<StatsAttr>),
    /// `IPVS_SVC_ATTR_PE_NAME` (string): persistence engine, e.g. `sip`.
    PeName(String),
    /// `IPVS_SVC_ATTR_STATS64` (nested, 64-bit counters).
    Stats64(Vec<StatsAttr>),
    /// Any attribute this client does not know.
    Other(DefaultNla),
}

impl ServiceAttr {
    /// Whether the kernel uses this attribute to find an existing service (the
    /// others describe the service and are needed only by NEW/SET_SERVICE).
    pub fn is_identity(&self) -> bool {
        matches!(
            self,
            Self::AddressFamily(_)
                | Self::Protocol(_)
                | Self::Address(_)
                | Self::Port(_)
                | Self::Fwmark(_)
        )
    }
}

impl Nla for ServiceAttr {
    fn value_len(&self) -> usize {
        match self {
            Self::AddressFamily(_) | Self::Protocol(_) | Self::Port(_) => 2,
            Self::Fwmark(_) | Self::Timeout(_) | Self::Netmask(_) => 4,
            Self::Address(_) => InetAddr::LEN,
            Self::SchedName(s) | Self::PeName(s) => s.len() + 1,
            Self::Flags(_) => 8,
            Self::Stats(nlas) | Self::Stats64(nlas) => nlas.as_slice().buffer_len(),
            Self::Other(nla) => nla.value_len(),
        }
    }

    fn kind(&self) -> u16 {
        match self {
            Self::AddressFamily(_) => AF,
            Self::Protocol(_) => PROTOCOL,
            Self::Address(_) => ADDR,
            Self::Port(_) => PORT,
            Self::Fwmark(_) => FWMARK,
            Self::SchedName(_) => SCHED_NAME,
            Self::Flags(_) => FLAGS,
            Self::Timeout(_) => TIMEOUT,
            Self::Netmask(_) => NETMASK,
            Self::Stats(_) => STATS | NLA_F_NESTED,
            Self::PeName(_) => PE_NAME,
            Self::Stats64(_) => STATS64 | NLA_F_NESTED,
            Self::Other(nla) => nla.kind(),
        }
    }

    fn emit_value(&self, buf: &mut [u8]) {
        match self {
            Self::AddressFamily(v) | Self::Protocol(v) => buf.copy_from_slice(&v.to_ne_bytes()),
            Self::Port(v) => buf.copy_from_slice(&v.to_be_bytes()),
            Self::Fwmark(v) | Self::Timeout(v) => buf.copy_from_slice(&v.to_ne_bytes()),
            Self::Netmask(raw) => buf.copy_from_slice(raw),
            Self::Address(addr) => buf.copy_from_slice(&addr.0),
            Self::SchedName(s) | Self::PeName(s) => {
                buf[..s.len()].copy_from_slice(s.as_bytes());
                buf[s.len()] = 0;
            }
            Self::Flags(f) => {
                buf[..4].copy_from_slice(&f.flags.to_ne_bytes());
                buf[4..8].copy_from_slice(&f.mask.to_ne_bytes());
            }
            Self::Stats(nlas) | Self::Stats64(nlas) => nlas.as_slice().emit(buf),
            Self::Other(nla) => nla.emit_value(buf),
        }
    }
}

impl<T: AsRef<[u8]> + ?Sized> Parseable<NlaBuffer<&T>> for ServiceAttr {
    fn parse(buf: &NlaBuffer<&T>) -> Result<Self, DecodeError> {
        let v = buf.value();
        Ok(match buf.kind() {
            AF => Self::AddressFamily(parse_u16(v)?),
            PROTOCOL => Self::Protocol(parse_u16(v)?),
            ADDR => Self::Address(InetAddr::parse(v)?),
            PORT => Self::Port(parse_u16_be(v)?),
            FWMARK => Self::Fwmark(parse_u32(v)?),
            SCHED_NAME => Self::SchedName(parse_string(v)?),
            FLAGS => match *v {
                [a, b, c, d, e, f, g, h] => Self::Flags(ServiceFlags {
                    flags: u32::from_ne_bytes([a, b, c, d]),
                    mask: u32::from_ne_bytes([e, f, g, h]),
                }),
                _ => return Err(DecodeError::invalid_number(8, v.len())),
            },
            TIMEOUT => Self::Timeout(parse_u32(v)?),
            NETMASK => match *v {
                [a, b, c, d] => Self::Netmask([a, b, c, d]),
                _ => return Err(DecodeError::invalid_number(4, v.len())),
            },
            STATS => Self::Stats(parse_nested(v, "IPVS_SVC_ATTR_STATS")?),
            PE_NAME => Self::PeName(parse_string(v)?),
            STATS64 => Self::Stats64(parse_nested(v, "IPVS_SVC_ATTR_STATS64")?),
            _ => Self::Other(DefaultNla::parse(buf)?),
        })
    }
}
