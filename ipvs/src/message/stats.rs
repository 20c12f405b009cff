//! `IPVS_STATS_ATTR_*`: the counters nested in `IPVS_SVC_ATTR_STATS{,64}` and
//! `IPVS_DEST_ATTR_STATS{,64}`.

use netlink_packet_core::{DecodeError, DefaultNla, Nla, NlaBuffer, Parseable};

const CONNS: u16 = 1;
const INPKTS: u16 = 2;
const OUTPKTS: u16 = 3;
const INBYTES: u16 = 4;
const OUTBYTES: u16 = 5;
const CPS: u16 = 6;
const INPPS: u16 = 7;
const OUTPPS: u16 = 8;
const INBPS: u16 = 9;
const OUTBPS: u16 = 10;

/// One counter value. The old `*_STATS` nest carries most counters as u32 and the
/// byte counters as u64; `*_STATS64` carries everything as u64. The width is kept so
/// that a decoded nest encodes back to the same bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Counter {
    /// A 4-byte value.
    U32(u32),
    /// An 8-byte value.
    U64(u64),
}

impl Counter {
    /// The value, widened.
    pub fn get(self) -> u64 {
        match self {
            Self::U32(v) => v.into(),
            Self::U64(v) => v,
        }
    }

    fn len(self) -> usize {
        match self {
            Self::U32(_) => 4,
            Self::U64(_) => 8,
        }
    }

    fn emit(self, buf: &mut [u8]) {
        match self {
            Self::U32(v) => buf[..4].copy_from_slice(&v.to_ne_bytes()),
            Self::U64(v) => buf[..8].copy_from_slice(&v.to_ne_bytes()),
        }
    }

    fn parse(value: &[u8]) -> Result<Self, DecodeError> {
        match *value {
            [a, b, c, d] => Ok(Self::U32(u32::from_ne_bytes([a, b, c, d]))),
            [a, b, c, d, e, f, g, h] => Ok(Self::U64(u64::from_ne_bytes([a, b, c, d, e, f, g, h]))),
            _ => Err(DecodeError::invalid_number(8, value.len())),
        }
    }
}

/// Which counter an `IPVS_STATS_ATTR_*` attribute holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum StatsKind {
    /// `IPVS_STATS_ATTR_CONNS`: connections scheduled.
    Conns,
    /// `IPVS_STATS_ATTR_INPKTS`: incoming packets.
    InPkts,
    /// `IPVS_STATS_ATTR_OUTPKTS`: outgoing packets.
    OutPkts,
    /// `IPVS_STATS_ATTR_INBYTES`: incoming bytes.
    InBytes,
    /// `IPVS_STATS_ATTR_OUTBYTES`: outgoing bytes.
    OutBytes,
    /// `IPVS_STATS_ATTR_CPS`: current connection rate.
    Cps,
    /// `IPVS_STATS_ATTR_INPPS`: current incoming packet rate.
    InPps,
    /// `IPVS_STATS_ATTR_OUTPPS`: current outgoing packet rate.
    OutPps,
    /// `IPVS_STATS_ATTR_INBPS`: current incoming byte rate.
    InBps,
    /// `IPVS_STATS_ATTR_OUTBPS`: current outgoing byte rate.
    OutBps,
}

impl StatsKind {
    fn number(self) -> u16 {
        match self {
            Self::Conns => CONNS,
            Self::InPkts => INPKTS,
            Self::OutPkts => OUTPKTS,
            Self::InBytes => INBYTES,
            Self::OutBytes => OUTBYTES,
            Self::Cps => CPS,
            Self::InPps => INPPS,
            Self::OutPps => OUTPPS,
            Self::InBps => INBPS,
            Self::OutBps => OUTBPS,
        }
    }

    fn from_number(n: u16) -> Option<Self> {
        Some(match n {
            CONNS => Self::Conns,
            INPKTS => Self::InPkts,
            OUTPKTS => Self::OutPkts,
            INBYTES => Self::InBytes,
            OUTBYTES => Self::OutBytes,
            CPS => Self::Cps,
            INPPS => Self::InPps,
            OUTPPS => Self::OutPps,
            INBPS => Self::InBps,
            OUTBPS => Self::OutBps,
            _ => return None,
        })
    }
}

/// An attribute of a stats nest.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StatsAttr {
    /// A known counter.
    Counter(StatsKind, Counter),
    /// Anything else, e.g. `IPVS_STATS_ATTR_PAD`, which the kernel inserts to align
    /// the 64-bit values.
    Other(DefaultNla),
}

impl Nla for StatsAttr {
    fn value_len(&self) -> usize {
        match self {
            Self::Counter(_, c) => c.len(),
            Self::Other(nla) => nla.value_len(),
        }
    }

    fn kind(&self) -> u16 {
        match self {
            Self::Counter(kind, _) => kind.number(),
            Self::Other(nla) => nla.kind(),
        }
    }

    fn emit_value(&self, buffer: &mut [u8]) {
        match self {
            Self::Counter(_, c) => c.emit(buffer),
            Self::Other(nla) => nla.emit_value(buffer),
        }
    }
}

impl<T: AsRef<[u8]> + ?Sized> Parseable<NlaBuffer<&T>> for StatsAttr {
    fn parse(buf: &NlaBuffer<&T>) -> Result<Self, DecodeError> {
        Ok(match StatsKind::from_number(buf.kind()) {
            Some(kind) => Self::Counter(kind, Counter::parse(buf.value())?),
            None => Self::Other(DefaultNla::parse(buf)?),
        })
    }
}
