//! The fast-path codec: just enough DNS wire format to read a standard query (header, one
//! question, an optional EDNS OPT record) and to write an answer from pre-encoded
//! sections, into a reused buffer, without allocating.
//!
//! Anything unusual (other opcodes, several questions, compression in the question, EDNS
//! versions other than 0, classes other than IN) is left to the hickory-server path,
//! which answers it properly or with FORMERR/NOTIMP.

use std::net::IpAddr;

use crate::records::{Data, Rr, rtype};

/// Size of the DNS header.
pub const HEADER_LEN: usize = 12;
/// The payload size we announce in our OPT record (the DNS flag day 2020 value).
pub const OUR_UDP_PAYLOAD: u16 = 1232;
/// Messages over TCP are limited by their 16-bit length prefix.
pub const TCP_MAX: usize = 65535;
/// Compression pointer to the question name, which always starts at offset 12.
const QNAME_POINTER: [u8; 2] = [0xC0, 0x0C];
const CLASS_IN: u16 = 1;

/// RCODE values we write.
pub mod rcode {
    pub const NOERROR: u8 = 0;
    pub const FORMERR: u8 = 1;
    pub const SERVFAIL: u8 = 2;
    pub const NXDOMAIN: u8 = 3;
}

/// Appends one record with its owner written as a pointer to the question name (the
/// owner of every answer record is the question name).
pub fn push_answer_rr(rr: &Rr, ttl: u32, out: &mut Vec<u8>) {
    out.extend_from_slice(&QNAME_POINTER);
    push_rr_tail(rr, ttl, out);
}

/// Appends one record with its owner written in full (additional and authority records).
pub fn push_full_rr(rr: &Rr, ttl: u32, out: &mut Vec<u8>) {
    crate::names::push_wire(&rr.owner, out);
    push_rr_tail(rr, ttl, out);
}

fn push_rr_tail(rr: &Rr, ttl: u32, out: &mut Vec<u8>) {
    out.extend_from_slice(&rr.rtype().to_be_bytes());
    out.extend_from_slice(&CLASS_IN.to_be_bytes());
    out.extend_from_slice(&ttl.to_be_bytes());
    let len_at = out.len();
    out.extend_from_slice(&[0, 0]);
    push_rdata(&rr.data, out);
    let rdlen = (out.len() - len_at - 2) as u16;
    out[len_at..len_at + 2].copy_from_slice(&rdlen.to_be_bytes());
}

/// RDATA; names in RDATA are never compressed (RFC 2782 forbids it for SRV targets,
/// and it keeps pre-encoded sections position-independent).
fn push_rdata(data: &Data, out: &mut Vec<u8>) {
    use crate::names::push_wire;
    match data {
        Data::A(ip) => out.extend_from_slice(&ip.octets()),
        Data::Aaaa(ip) => out.extend_from_slice(&ip.octets()),
        Data::Cname(n) | Data::Ns(n) | Data::Ptr(n) => push_wire(n, out),
        Data::Srv {
            priority,
            weight,
            port,
            target,
        } => {
            out.extend_from_slice(&priority.to_be_bytes());
            out.extend_from_slice(&weight.to_be_bytes());
            out.extend_from_slice(&port.to_be_bytes());
            push_wire(target, out);
        }
        Data::Txt(t) => {
            for chunk in t.as_bytes().chunks(255) {
                out.push(chunk.len() as u8);
                out.extend_from_slice(chunk);
            }
            if t.is_empty() {
                out.push(0);
            }
        }
        Data::Soa(s) => {
            push_wire(&s.mname, out);
            push_wire(&s.rname, out);
            for v in [s.serial, s.refresh, s.retry, s.expire, s.minimum] {
                out.extend_from_slice(&v.to_be_bytes());
            }
        }
        Data::Empty => {}
    }
}

/// EDNS of a query.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Edns {
    /// The requestor's UDP payload size (at least 512).
    pub payload: u16,
}

/// The lower-cased question name in wire form, with its label boundaries.
pub struct NameKey {
    buf: [u8; 255],
    len: u8,
    /// Bit i set when a label starts at offset i.
    starts: [u64; 4],
}

impl NameKey {
    pub fn as_bytes(&self) -> &[u8] {
        &self.buf[..usize::from(self.len)]
    }

    /// True when a label starts at `offset` (so the name ends with the suffix there).
    pub fn is_label_start(&self, offset: usize) -> bool {
        offset < 256 && self.starts[offset / 64] & (1 << (offset % 64)) != 0
    }

    /// True when the name is `suffix` or below it (`suffix` lower-case wire form).
    pub fn is_under(&self, suffix: &[u8]) -> bool {
        let name = self.as_bytes();
        name.len() >= suffix.len()
            && self.is_label_start(name.len() - suffix.len())
            && name.ends_with(suffix)
    }
}

/// A standard query the fast path can answer.
pub struct Query<'a> {
    pub id: u16,
    /// The flags word of the request (RD and CD are echoed).
    pub flags: u16,
    /// The question as received (name, type, class), echoed verbatim.
    pub question: &'a [u8],
    pub qtype: u16,
    pub name: NameKey,
    pub edns: Option<Edns>,
}

/// What to do with a packet. The query stays inline (not boxed): no allocation per query.
#[allow(clippy::large_enum_variant)]
pub enum Parsed<'a> {
    Query(Query<'a>),
    /// Valid enough for the full decoder: let hickory-server handle it.
    Slow,
    /// Not worth an answer (shorter than a header, or a response).
    Drop,
}

fn be16(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_be_bytes([*b.get(at)?, *b.get(at + 1)?]))
}

/// Reads a packet far enough to decide how it is answered.
pub fn parse(pkt: &[u8]) -> Parsed<'_> {
    if pkt.len() < HEADER_LEN || pkt[2] & 0x80 != 0 {
        return Parsed::Drop;
    }
    let flags = u16::from_be_bytes([pkt[2], pkt[3]]);
    let opcode = (flags >> 11) & 0xf;
    let counts = [be16(pkt, 4), be16(pkt, 6), be16(pkt, 8), be16(pkt, 10)];
    let [Some(qd), Some(an), Some(ns), Some(ar)] = counts else {
        return Parsed::Drop;
    };
    if opcode != 0 || qd != 1 || an != 0 || ns != 0 || ar > 1 {
        return Parsed::Slow;
    }
    let mut name = NameKey {
        buf: [0; 255],
        len: 0,
        starts: [0; 4],
    };
    let mut at = HEADER_LEN;
    let mut out = 0usize;
    loop {
        let Some(&len) = pkt.get(at) else {
            return Parsed::Slow;
        };
        let len = usize::from(len);
        if len == 0 {
            if out >= 255 {
                return Parsed::Slow;
            }
            name.buf[out] = 0;
            out += 1;
            at += 1;
            break;
        }
        if len > 63 || out + len + 2 > 255 || at + 1 + len > pkt.len() {
            return Parsed::Slow;
        }
        name.starts[out / 64] |= 1 << (out % 64);
        name.buf[out] = len as u8;
        for (dst, src) in name.buf[out + 1..out + 1 + len]
            .iter_mut()
            .zip(&pkt[at + 1..at + 1 + len])
        {
            *dst = src.to_ascii_lowercase();
        }
        out += 1 + len;
        at += 1 + len;
    }
    // The root name starts a label too (for `is_under(b"\0")`).
    name.starts[(out - 1) / 64] |= 1 << ((out - 1) % 64);
    name.len = out as u8;
    let (Some(qtype), Some(qclass)) = (be16(pkt, at), be16(pkt, at + 2)) else {
        return Parsed::Slow;
    };
    if qclass != CLASS_IN {
        return Parsed::Slow;
    }
    let question = &pkt[HEADER_LEN..at + 4];
    at += 4;
    let mut edns = None;
    if ar == 1 {
        // OPT: root name, TYPE 41, CLASS = payload size, TTL = ext-rcode, version, flags.
        if pkt.get(at) != Some(&0) || be16(pkt, at + 1) != Some(rtype::OPT) {
            return Parsed::Slow;
        }
        let (Some(payload), Some(version), Some(rdlen)) =
            (be16(pkt, at + 3), pkt.get(at + 6), be16(pkt, at + 9))
        else {
            return Parsed::Slow;
        };
        if *version != 0 || at + 11 + usize::from(rdlen) > pkt.len() {
            return Parsed::Slow;
        }
        edns = Some(Edns {
            payload: payload.max(512),
        });
    }
    Parsed::Query(Query {
        id: u16::from_be_bytes([pkt[0], pkt[1]]),
        flags,
        question,
        qtype,
        name,
        edns,
    })
}

/// One pre-encoded RRset: answer records (owner = question name) and the additional
/// records that go with them (addresses of SRV targets).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RrSet {
    pub rtype: u16,
    pub count: u16,
    pub wire: Box<[u8]>,
    pub additional_count: u16,
    pub additional: Box<[u8]>,
}

/// A whole record with its owner in full (an SOA for the authority section).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FullRr {
    pub wire: Box<[u8]>,
}

/// What the answer to a query is.
pub enum Answer<'a> {
    /// NOERROR with these RRsets in the answer section.
    Records(&'a [RrSet]),
    /// NOERROR, no records; the zone's SOA in the authority section.
    NoData(&'a FullRr),
    /// NXDOMAIN; the zone's SOA in the authority section.
    NxDomain(&'a FullRr),
    /// SERVFAIL (the zone has no data yet).
    ServFail,
}

/// Writes the response to `q` into `out` (cleared first), fitting it in `max` bytes:
/// additional records go first, then everything with TC set. Returns the RCODE and
/// whether the answer was truncated.
pub fn write_response(
    q: &Query<'_>,
    answer: &Answer<'_>,
    max: usize,
    out: &mut Vec<u8>,
) -> (u8, bool) {
    let (rc, sets, soa): (u8, &[RrSet], Option<&FullRr>) = match answer {
        Answer::Records(sets) => (rcode::NOERROR, sets, None),
        Answer::NoData(soa) => (rcode::NOERROR, &[], Some(soa)),
        Answer::NxDomain(soa) => (rcode::NXDOMAIN, &[], Some(soa)),
        Answer::ServFail => (rcode::SERVFAIL, &[], None),
    };
    let opt_len = if q.edns.is_some() { 11 } else { 0 };
    let base = HEADER_LEN + q.question.len() + opt_len;
    let an_len: usize = sets.iter().map(|s| s.wire.len()).sum();
    let ns_len = soa.map_or(0, |s| s.wire.len());
    let ad_len: usize = sets.iter().map(|s| s.additional.len()).sum();
    let (with_records, with_additional) = if base + an_len + ns_len + ad_len <= max {
        (true, true)
    } else {
        (base + an_len + ns_len <= max, false)
    };
    let truncated = !with_records;
    let an: u16 = if with_records {
        sets.iter().map(|s| s.count).sum()
    } else {
        0
    };
    let ns: u16 = u16::from(with_records && soa.is_some());
    let ad: u16 = if with_additional {
        sets.iter().map(|s| s.additional_count).sum()
    } else {
        0
    };
    // QR, AA, RA; RD and CD echoed; TC when the records did not fit.
    let aa = if rc == rcode::SERVFAIL { 0 } else { 0x0400 };
    let flags = 0x8000
        | aa
        | (q.flags & 0x0110)
        | 0x0080
        | u16::from(rc)
        | if truncated { 0x0200 } else { 0 };
    out.clear();
    out.extend_from_slice(&q.id.to_be_bytes());
    out.extend_from_slice(&flags.to_be_bytes());
    out.extend_from_slice(&1u16.to_be_bytes());
    out.extend_from_slice(&an.to_be_bytes());
    out.extend_from_slice(&ns.to_be_bytes());
    out.extend_from_slice(&(ad + u16::from(q.edns.is_some())).to_be_bytes());
    out.extend_from_slice(q.question);
    if with_records {
        for s in sets {
            out.extend_from_slice(&s.wire);
        }
        if let Some(soa) = soa {
            out.extend_from_slice(&soa.wire);
        }
    }
    if with_additional {
        for s in sets {
            out.extend_from_slice(&s.additional);
        }
    }
    if q.edns.is_some() {
        out.extend_from_slice(&[0, 0, 41]);
        out.extend_from_slice(&OUR_UDP_PAYLOAD.to_be_bytes());
        out.extend_from_slice(&[0, 0, 0, 0, 0, 0]);
    }
    (rc, truncated)
}

/// The largest response a UDP client accepts.
pub fn udp_limit(q: &Query<'_>) -> usize {
    q.edns.map_or(512, |e| usize::from(e.payload))
}

/// Encodes a set of records as one RRset (all with the question name as owner).
pub fn encode_set(rtype: u16, rrs: &[&Rr], additional: &[&Rr], ttl: u32) -> RrSet {
    let mut wire = Vec::with_capacity(rrs.len() * 28);
    for rr in rrs {
        push_answer_rr(rr, ttl, &mut wire);
    }
    let mut add = Vec::new();
    for rr in additional {
        push_full_rr(rr, ttl, &mut add);
    }
    RrSet {
        rtype,
        count: rrs.len() as u16,
        wire: wire.into_boxed_slice(),
        additional_count: additional.len() as u16,
        additional: add.into_boxed_slice(),
    }
}

/// A PTR RRset for one address (used by the reverse tables).
pub fn encode_ptrs(targets: &[&str], ttl: u32) -> RrSet {
    let rrs: Vec<Rr> = targets
        .iter()
        .map(|t| Rr::new(String::new(), Data::Ptr((*t).to_string())))
        .collect();
    let refs: Vec<&Rr> = rrs.iter().collect();
    encode_set(rtype::PTR, &refs, &[], ttl)
}

/// Address of a record, for additional-section lookups.
pub fn address_of(rr: &Rr) -> Option<IpAddr> {
    match rr.data {
        Data::A(ip) => Some(IpAddr::V4(ip)),
        Data::Aaaa(ip) => Some(IpAddr::V6(ip)),
        _ => None,
    }
}

#[cfg(test)]
mod tests;
