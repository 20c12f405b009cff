//! `IPVS_DEST_ATTR_*`: the attributes nested in `IPVS_CMD_ATTR_DEST`.

use netlink_packet_core::{
    DecodeError, DefaultNla, Emitable, NLA_F_NESTED, Nla, NlaBuffer, Parseable, parse_u8,
    parse_u16, parse_u16_be, parse_u32,
};

use super::{InetAddr, StatsAttr, parse_nested};

const ADDR: u16 = 1;
const PORT: u16 = 2;
const FWD_METHOD: u16 = 3;
const WEIGHT: u16 = 4;
const U_THRESH: u16 = 5;
const L_THRESH: u16 = 6;
const ACTIVE_CONNS: u16 = 7;
const INACT_CONNS: u16 = 8;
const PERSIST_CONNS: u16 = 9;
const STATS: u16 = 10;
const ADDR_FAMILY: u16 = 11;
const STATS64: u16 = 12;
const TUN_TYPE: u16 = 13;
const TUN_PORT: u16 = 14;
const TUN_FLAGS: u16 = 15;

/// `IP_VS_CONN_F_MASQ`: NAT.
pub const IP_VS_CONN_F_MASQ: u32 = 0;
/// `IP_VS_CONN_F_LOCALNODE`: deliver locally.
pub const IP_VS_CONN_F_LOCALNODE: u32 = 1;
/// `IP_VS_CONN_F_TUNNEL`: IP-in-IP (or GUE/GRE, see `IPVS_DEST_ATTR_TUN_TYPE`).
pub const IP_VS_CONN_F_TUNNEL: u32 = 2;
/// `IP_VS_CONN_F_DROUTE`: direct routing ("gatewaying").
pub const IP_VS_CONN_F_DROUTE: u32 = 3;
/// `IP_VS_CONN_F_BYPASS`: cache bypass.
pub const IP_VS_CONN_F_BYPASS: u32 = 4;
/// `IP_VS_CONN_F_FWD_MASK`: the bits of `IPVS_DEST_ATTR_FWD_METHOD` the kernel uses.
pub const IP_VS_CONN_F_FWD_MASK: u32 = 0x7;

/// An attribute of a destination (real server) nest.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DestAttr {
    /// `IPVS_DEST_ATTR_ADDR` (16 bytes).
    Address(InetAddr),
    /// `IPVS_DEST_ATTR_PORT` (u16, network byte order; held here in host order).
    Port(u16),
    /// `IPVS_DEST_ATTR_FWD_METHOD` (u32, `IP_VS_CONN_F_*`).
    FwdMethod(u32),
    /// `IPVS_DEST_ATTR_WEIGHT` (u32; the kernel rejects values above `i32::MAX`).
    Weight(u32),
    /// `IPVS_DEST_ATTR_U_THRESH` (u32): upper connection threshold, 0 = none.
    UpperThreshold(u32),
    /// `IPVS_DEST_ATTR_L_THRESH` (u32): lower connection threshold.
    LowerThreshold(u32),
    /// `IPVS_DEST_ATTR_ACTIVE_CONNS` (u32, reply only).
    ActiveConns(u32),
    /// `IPVS_DEST_ATTR_INACT_CONNS` (u32, reply only).
    InactiveConns(u32),
    /// `IPVS_DEST_ATTR_PERSIST_CONNS` (u32, reply only).
    PersistentConns(u32),
    /// `IPVS_DEST_ATTR_STATS` (nested).
    Stats(Vec<StatsAttr>),
    /// `IPVS_DEST_ATTR_ADDR_FAMILY` (u16): may differ from the service's (tunnel only).
    AddressFamily(u16),
    /// `IPVS_DEST_ATTR_STATS64` (nested).
    Stats64(Vec<StatsAttr>),
    /// `IPVS_DEST_ATTR_TUN_TYPE` (u8): 0 IPIP, 1 GUE, 2 GRE.
    TunnelType(u8),
    /// `IPVS_DEST_ATTR_TUN_PORT` (u16, network byte order; held here in host order).
    TunnelPort(u16),
    /// `IPVS_DEST_ATTR_TUN_FLAGS` (u16).
    TunnelFlags(u16),
    /// Any attribute this client does not know.
    Other(DefaultNla),
}

impl DestAttr {
    /// Whether the kernel uses this attribute to find an existing destination.
    pub fn is_identity(&self) -> bool {
        matches!(
            self,
            Self::Address(_) | Self::Port(_) | Self::AddressFamily(_)
        )
    }
}

impl Nla for DestAttr {
    fn value_len(&self) -> usize {
        match self {
            Self::Address(_) => InetAddr::LEN,
            Self::TunnelType(_) => 1,
            Self::Port(_) | Self::AddressFamily(_) | Self::TunnelPort(_) | Self::TunnelFlags(_) => {
                2
            }
            Self::FwdMethod(_)
            | Self::Weight(_)
            | Self::UpperThreshold(_)
            | Self::LowerThreshold(_)
            | Self::ActiveConns(_)
            | Self::InactiveConns(_)
            | Self::PersistentConns(_) => 4,
            Self::Stats(nlas) | Self::Stats64(nlas) => nlas.as_slice().buffer_len(),
            Self::Other(nla) => nla.value_len(),
        }
    }

    fn kind(&self) -> u16 {
        match self {
            Self::Address(_) => ADDR,
            Self::Port(_) => PORT,
            Self::FwdMethod(_) => FWD_METHOD,
            Self::Weight(_) => WEIGHT,
            Self::UpperThreshold(_) => U_THRESH,
            Self::LowerThreshold(_) => L_THRESH,
            Self::ActiveConns(_) => ACTIVE_CONNS,
            Self::InactiveConns(_) => INACT_CONNS,
            Self::PersistentConns(_) => PERSIST_CONNS,
            Self::Stats(_) => STATS | NLA_F_NESTED,
            Self::AddressFamily(_) => ADDR_FAMILY,
            Self::Stats64(_) => STATS64 | NLA_F_NESTED,
            Self::TunnelType(_) => TUN_TYPE,
            Self::TunnelPort(_) => TUN_PORT,
            Self::TunnelFlags(_) => TUN_FLAGS,
            Self::Other(nla) => nla.kind(),
        }
    }

    fn emit_value(&self, buf: &mut [u8]) {
        match self {
            Self::Address(addr) => buf.copy_from_slice(&addr.0),
            Self::TunnelType(v) => buf[0] = *v,
            Self::Port(v) | Self::TunnelPort(v) => buf.copy_from_slice(&v.to_be_bytes()),
            Self::AddressFamily(v) | Self::TunnelFlags(v) => buf.copy_from_slice(&v.to_ne_bytes()),
            Self::FwdMethod(v)
            | Self::Weight(v)
            | Self::UpperThreshold(v)
            | Self::LowerThreshold(v)
            | Self::ActiveConns(v)
            | Self::InactiveConns(v)
            | Self::PersistentConns(v) => buf.copy_from_slice(&v.to_ne_bytes()),
            Self::Stats(nlas) | Self::Stats64(nlas) => nlas.as_slice().emit(buf),
            Self::Other(nla) => nla.emit_value(buf),
        }
    }
}

impl<T: AsRef<[u8]> + ?Sized> Parseable<NlaBuffer<&T>> for DestAttr {
    fn parse(buf: &NlaBuffer<&T>) -> Result<Self, DecodeError> {
        let v = buf.value();
        Ok(match buf.kind() {
            ADDR => Self::Address(InetAddr::parse(v)?),
            PORT => Self::Port(parse_u16_be(v)?),
            FWD_METHOD => Self::FwdMethod(parse_u32(v)?),
            WEIGHT => Self::Weight(parse_u32(v)?),
            U_THRESH => Self::UpperThreshold(parse_u32(v)?),
            L_THRESH => Self::LowerThreshold(parse_u32(v)?),
            ACTIVE_CONNS => Self::ActiveConns(parse_u32(v)?),
            INACT_CONNS => Self::InactiveConns(parse_u32(v)?),
            PERSIST_CONNS => Self::PersistentConns(parse_u32(v)?),
            STATS => Self::Stats(parse_nested(v, "IPVS_DEST_ATTR_STATS")?),
            ADDR_FAMILY => Self::AddressFamily(parse_u16(v)?),
            STATS64 => Self::Stats64(parse_nested(v, "IPVS_DEST_ATTR_STATS64")?),
            TUN_TYPE => Self::TunnelType(parse_u8(v)?),
            TUN_PORT => Self::TunnelPort(parse_u16_be(v)?),
            TUN_FLAGS => Self::TunnelFlags(parse_u16(v)?),
            _ => Self::Other(DefaultNla::parse(buf)?),
        })
    }
}
