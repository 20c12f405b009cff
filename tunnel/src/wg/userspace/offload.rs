//! TUN offloads as pure functions on byte buffers: the `virtio_net_hdr` that precedes every
//! packet on a TUN opened with `IFF_VNET_HDR`, GSO splitting of the large TCP/UDP segments the
//! kernel hands us after `TUNSETOFFLOAD`, and GRO coalescing of decrypted in-order TCP segments
//! into one large packet for a single TUN write (what wireguard-go's `tun/offload_linux.go` does).
//!
//! Kernel contract (include/uapi/linux/virtio_net.h, drivers/net/tun.c):
//! - the header is 10 bytes, little-endian on the architectures we run on (the TUN device is
//!   little-endian unless `TUNSETVNETBE`);
//! - with `VIRTIO_NET_HDR_F_NEEDS_CSUM` the L4 checksum field (at `csum_start + csum_offset`)
//!   holds only the folded pseudo-header sum; whoever finishes the packet sums from `csum_start`
//!   to the end into it. We write coalesced packets that way too: the kernel then trusts them as
//!   `CHECKSUM_PARTIAL`, as it trusts kernel WireGuard's decrypted packets
//!   (`CHECKSUM_UNNECESSARY`) since the AEAD already authenticated every byte;
//! - `gso_size` is the payload bytes per segment; `hdr_len` is not trusted (some kernels report
//!   only the linear part), the headers' length is computed from the packet itself.

/// Bytes of `struct virtio_net_hdr`.
pub const VNET_HDR_LEN: usize = 10;
/// The checksum from `csum_start` on is still to be computed.
pub const F_NEEDS_CSUM: u8 = 1;
/// Not a GSO packet.
pub const GSO_NONE: u8 = 0;
/// TCP over IPv4, segmented by `gso_size`.
pub const GSO_TCPV4: u8 = 1;
/// TCP over IPv6.
pub const GSO_TCPV6: u8 = 4;
/// UDP segmentation offload (USO), either IP version.
pub const GSO_UDP_L4: u8 = 5;
/// ECN bit or'ed into `gso_type` (only with `TUN_F_TSO_ECN`, which we do not ask for).
const GSO_ECN: u8 = 0x80;

const PROTO_TCP: u8 = 6;
const PROTO_UDP: u8 = 17;
const TCP_FIN: u8 = 0x01;
const TCP_PSH: u8 = 0x08;
const TCP_ACK: u8 = 0x10;
const TCP_CWR: u8 = 0x80;
/// Largest IP packet (the IPv4 total length and IPv6 payload length fields are 16 bits).
const MAX_PACKET: usize = 65_535;

/// Errors of splitting a packet read from the TUN.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum OffloadError {
    /// The read is shorter than the virtio header, or the headers it names run past the end.
    #[error("truncated packet ({0} bytes)")]
    Truncated(usize),
    /// A GSO type we did not enable.
    #[error("unsupported gso type {0}")]
    UnsupportedGso(u8),
    /// GSO with a zero segment size, or a checksum offset outside the packet.
    #[error("bad virtio header")]
    BadHeader,
    /// The scratch buffer cannot hold one segment.
    #[error("segment of {0} bytes does not fit the scratch buffer")]
    NoRoom(usize),
}

/// `struct virtio_net_hdr`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct VnetHdr {
    /// `VIRTIO_NET_HDR_F_*`.
    pub flags: u8,
    /// `VIRTIO_NET_HDR_GSO_*`.
    pub gso_type: u8,
    /// Length of the headers (Ethernet-less here: IP + L4).
    pub hdr_len: u16,
    /// Payload bytes per segment.
    pub gso_size: u16,
    /// Where checksumming starts (the L4 header).
    pub csum_start: u16,
    /// Offset of the checksum field from `csum_start`.
    pub csum_offset: u16,
}

impl VnetHdr {
    /// Reads the header at the start of `b`.
    pub fn parse(b: &[u8]) -> Option<Self> {
        let b = b.get(..VNET_HDR_LEN)?;
        let u = |i: usize| u16::from_le_bytes([b[i], b[i + 1]]);
        Some(Self {
            flags: b[0],
            gso_type: b[1],
            hdr_len: u(2),
            gso_size: u(4),
            csum_start: u(6),
            csum_offset: u(8),
        })
    }

    /// The wire bytes.
    pub fn to_bytes(self) -> [u8; VNET_HDR_LEN] {
        let mut b = [0u8; VNET_HDR_LEN];
        b[0] = self.flags;
        b[1] = self.gso_type;
        b[2..4].copy_from_slice(&self.hdr_len.to_le_bytes());
        b[4..6].copy_from_slice(&self.gso_size.to_le_bytes());
        b[6..8].copy_from_slice(&self.csum_start.to_le_bytes());
        b[8..10].copy_from_slice(&self.csum_offset.to_le_bytes());
        b
    }
}

/// One's-complement sum of `data` (big-endian 16-bit words, odd tail padded) added to `initial`,
/// not folded. Summing 32-bit words is equivalent because 2^16 = 1 modulo 0xffff.
pub fn sum(data: &[u8], initial: u64) -> u64 {
    let mut acc = initial;
    let mut chunks = data.chunks_exact(8);
    for c in &mut chunks {
        acc += u64::from(u32::from_be_bytes([c[0], c[1], c[2], c[3]]));
        acc += u64::from(u32::from_be_bytes([c[4], c[5], c[6], c[7]]));
    }
    let mut rest = chunks.remainder().chunks_exact(2);
    for c in &mut rest {
        acc += u64::from(u16::from_be_bytes([c[0], c[1]]));
    }
    if let [last] = rest.remainder() {
        acc += u64::from(*last) << 8;
    }
    acc
}

/// Folds a sum to 16 bits (not complemented).
pub fn fold(mut acc: u64) -> u16 {
    while acc > 0xffff {
        acc = (acc & 0xffff) + (acc >> 16);
    }
    acc as u16
}

/// The pseudo-header sum of an IPv4 (`addrs` = 8 bytes) or IPv6 (32 bytes) packet.
fn pseudo_sum(addrs: &[u8], proto: u8, l4_len: usize) -> u64 {
    sum(addrs, u64::from(proto) + l4_len as u64)
}

fn be16(b: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([b[at], b[at + 1]])
}

fn put16(b: &mut [u8], at: usize, v: u16) {
    b[at..at + 2].copy_from_slice(&v.to_be_bytes());
}

/// The source and destination addresses of an IP packet, for the pseudo header.
fn addr_range(pkt: &[u8]) -> Option<std::ops::Range<usize>> {
    match pkt.first()? >> 4 {
        4 if pkt.len() >= 20 => Some(12..20),
        6 if pkt.len() >= 40 => Some(8..40),
        _ => None,
    }
}

/// Recomputes the IPv4 header checksum of `pkt` (header length from IHL).
fn fix_ipv4_checksum(pkt: &mut [u8]) {
    let ihl = usize::from(pkt[0] & 0x0f) * 4;
    put16(pkt, 10, 0);
    let c = !fold(sum(&pkt[..ihl], 0));
    put16(pkt, 10, c);
}

/// Sets the IP length field of `pkt` to its length.
fn set_ip_len(pkt: &mut [u8]) {
    let len = pkt.len();
    if pkt[0] >> 4 == 4 {
        put16(pkt, 2, len as u16);
        fix_ipv4_checksum(pkt);
    } else {
        put16(pkt, 4, (len - 40) as u16);
    }
}

/// Writes the full L4 checksum of `pkt` (L4 header at `l4`, checksum field at `l4 + field`).
fn finish_l4_checksum(pkt: &mut [u8], l4: usize, field: usize, proto: u8) {
    let Some(addrs) = addr_range(pkt) else { return };
    put16(pkt, l4 + field, 0);
    let acc = pseudo_sum(&pkt[addrs], proto, pkt.len() - l4);
    let mut c = !fold(sum(&pkt[l4..], acc));
    if proto == PROTO_UDP && c == 0 {
        c = 0xffff; // zero means "no checksum" in UDP
    }
    put16(pkt, l4 + field, c);
}

/// Turns one read from the TUN (`hdr` and the packet after it) into packets ready for the wire
/// and hands each to `emit`, returning how many. A non-GSO packet is finished in place (its
/// checksum completed if the kernel left it partial); a GSO packet is cut into `gso_size`
/// pieces, each built in `scratch` with its own IP and TCP/UDP header: lengths, IPv4 ID (+1 per
/// segment) and header checksum, TCP sequence number (FIN and PSH only on the last segment, CWR
/// only on the first), full L4 checksum.
pub fn split(
    hdr: &VnetHdr,
    pkt: &mut [u8],
    scratch: &mut [u8],
    mut emit: impl FnMut(&[u8]),
) -> Result<usize, OffloadError> {
    let gso_type = hdr.gso_type & !GSO_ECN;
    if gso_type == GSO_NONE {
        if hdr.flags & F_NEEDS_CSUM != 0 {
            let (start, off) = (usize::from(hdr.csum_start), usize::from(hdr.csum_offset));
            if start + off + 2 > pkt.len() {
                return Err(OffloadError::BadHeader);
            }
            // The kernel summed the pseudo header into the field already: add the rest.
            let partial = be16(pkt, start + off);
            put16(pkt, start + off, 0);
            let c = !fold(sum(&pkt[start..], u64::from(partial)));
            put16(pkt, start + off, c);
        }
        emit(pkt);
        return Ok(1);
    }
    let (proto, v4) = match gso_type {
        GSO_TCPV4 => (PROTO_TCP, true),
        GSO_TCPV6 => (PROTO_TCP, false),
        GSO_UDP_L4 => (PROTO_UDP, pkt.first().is_some_and(|b| b >> 4 == 4)),
        other => return Err(OffloadError::UnsupportedGso(other)),
    };
    let l4 = usize::from(hdr.csum_start);
    let gso = usize::from(hdr.gso_size);
    let ip_ok = if v4 {
        pkt.len() >= 20 && pkt[0] >> 4 == 4 && usize::from(pkt[0] & 0x0f) * 4 == l4
    } else {
        pkt.len() >= 40 && pkt[0] >> 4 == 6 && l4 >= 40
    };
    if !ip_ok || gso == 0 {
        return Err(OffloadError::BadHeader);
    }
    let l4_hdr = if proto == PROTO_TCP {
        let b = *pkt.get(l4 + 12).ok_or(OffloadError::Truncated(pkt.len()))?;
        usize::from(b >> 4) * 4
    } else {
        8
    };
    let hlen = l4 + l4_hdr;
    if hlen > pkt.len() || l4_hdr < 8 {
        return Err(OffloadError::Truncated(pkt.len()));
    }
    if hlen + gso > scratch.len() {
        return Err(OffloadError::NoRoom(hlen + gso));
    }
    let (headers, payload) = pkt.split_at(hlen);
    let count = payload.len().div_ceil(gso).max(1);
    let id0 = if v4 { be16(headers, 4) } else { 0 };
    let seq0 = if proto == PROTO_TCP {
        u32::from_be_bytes([
            headers[l4 + 4],
            headers[l4 + 5],
            headers[l4 + 6],
            headers[l4 + 7],
        ])
    } else {
        0
    };
    for (i, chunk) in payload.chunks(gso).enumerate() {
        let len = hlen + chunk.len();
        let seg = &mut scratch[..len];
        seg[..hlen].copy_from_slice(headers);
        seg[hlen..].copy_from_slice(chunk);
        if proto == PROTO_TCP {
            let seq = seq0.wrapping_add((i * gso) as u32);
            seg[l4 + 4..l4 + 8].copy_from_slice(&seq.to_be_bytes());
            if i + 1 < count {
                seg[l4 + 13] &= !(TCP_FIN | TCP_PSH);
            }
            if i > 0 {
                seg[l4 + 13] &= !TCP_CWR;
            }
        } else {
            put16(seg, l4 + 4, (len - l4) as u16);
        }
        if v4 {
            put16(seg, 4, id0.wrapping_add(i as u16));
        }
        set_ip_len(seg);
        finish_l4_checksum(seg, l4, if proto == PROTO_TCP { 16 } else { 6 }, proto);
        emit(seg);
    }
    Ok(count)
}

/// How many payload-carrying segments a read from the TUN becomes (for sizing output buffers).
pub fn segment_count(hdr: &VnetHdr, pkt_len: usize) -> usize {
    if hdr.gso_type & !GSO_ECN == GSO_NONE || hdr.gso_size == 0 {
        1
    } else {
        pkt_len.div_ceil(usize::from(hdr.gso_size)).max(1)
    }
}

/// The parts of a TCP packet that GRO compares.
#[derive(Clone, Copy)]
struct TcpView {
    /// IP header length (offset of the TCP header).
    l4: usize,
    /// IP + TCP header length.
    hlen: usize,
    seq: u32,
    flags: u8,
    payload: usize,
}

/// Parses `pkt` as a TCP packet that GRO may coalesce: IPv4 without options and unfragmented, or
/// IPv6 with TCP as the first next header; consistent lengths.
fn tcp_view(pkt: &[u8]) -> Option<TcpView> {
    let l4 = match pkt.first()? >> 4 {
        4 => {
            if pkt.len() < 40
                || pkt[0] & 0x0f != 5
                || pkt[9] != PROTO_TCP
                || usize::from(be16(pkt, 2)) != pkt.len()
                || be16(pkt, 6) & 0x3fff != 0
            {
                return None;
            }
            20
        }
        6 => {
            if pkt.len() < 60 || pkt[6] != PROTO_TCP || usize::from(be16(pkt, 4)) + 40 != pkt.len()
            {
                return None;
            }
            40
        }
        _ => return None,
    };
    let hlen = l4 + usize::from(pkt[l4 + 12] >> 4) * 4;
    if hlen < l4 + 20 || hlen > pkt.len() {
        return None;
    }
    Some(TcpView {
        l4,
        hlen,
        seq: u32::from_be_bytes([pkt[l4 + 4], pkt[l4 + 5], pkt[l4 + 6], pkt[l4 + 7]]),
        flags: pkt[l4 + 13],
        payload: pkt.len() - hlen,
    })
}

/// Whether `a` and `b` (both passed `tcp_view` with equal header lengths) are segments of one
/// flow whose headers agree in everything GRO must keep: addresses, ports, IPv4 TOS/TTL/DF or
/// IPv6 class/flow label/hop limit, TCP ack number, window and options.
fn same_headers(a: &[u8], b: &[u8], v: &TcpView) -> bool {
    let l4 = v.l4;
    let ip_same = if l4 == 20 {
        a[1] == b[1] && a[8] == b[8] && a[6] & 0x40 == b[6] & 0x40 && a[12..20] == b[12..20]
    } else {
        a[..4] == b[..4] && a[7] == b[7] && a[8..40] == b[8..40]
    };
    ip_same
        // ports, (seq skipped), ack
        && a[l4..l4 + 4] == b[l4..l4 + 4]
        && a[l4 + 8..l4 + 12] == b[l4 + 8..l4 + 12]
        // window; options
        && a[l4 + 14..l4 + 16] == b[l4 + 14..l4 + 16]
        && a[l4 + 20..v.hlen] == b[l4 + 20..v.hlen]
}

/// Whether two IP packets (at least 44 bytes each) have the same protocol, addresses and ports (for TCP:
/// the same flow).
fn same_flow(a: &[u8], b: &[u8]) -> bool {
    match (a[0] >> 4, b[0] >> 4) {
        (4, 4) => a[9] == b[9] && a[12..20] == b[12..20] && a[20..24] == b[20..24],
        (6, 6) => a[6] == b[6] && a[8..40] == b[8..40] && a[40..44] == b[40..44],
        _ => false,
    }
}

/// One flow's coalesced packet in progress.
struct Pending {
    buf: Vec<u8>,
    view: TcpView,
    /// Payload bytes per segment (the first segment's).
    gso: usize,
    segments: usize,
    next_seq: u32,
    /// A short or PSH segment was appended: nothing may follow.
    closed: bool,
}

/// Coalesces decrypted TCP segments into large packets (GRO), a few flows at a time. Packets are
/// offered with [`Gro::push`]; whatever cannot be held is handed to the writer at once, and
/// [`Gro::flush`] writes what is held (call it at the end of every receive batch). Order within
/// a flow is kept; packets of different flows may pass each other.
pub struct Gro {
    pending: Vec<Pending>,
    /// Recycled buffers.
    free: Vec<Vec<u8>>,
    max_flows: usize,
}

/// Flags a segment may carry and still be coalesced.
fn coalescable_flags(flags: u8) -> bool {
    flags & !TCP_PSH == TCP_ACK
}

impl Gro {
    /// At most `max_flows` flows are held at once (the oldest is written out to make room).
    pub fn new(max_flows: usize) -> Self {
        Self {
            pending: Vec::with_capacity(max_flows),
            free: Vec::new(),
            max_flows: max_flows.max(1),
        }
    }

    /// Offers one packet. `write(hdr, packet)` receives what is ready to go to the TUN.
    pub fn push(&mut self, pkt: &[u8], write: &mut impl FnMut(&VnetHdr, &[u8])) {
        let view = tcp_view(pkt).filter(|v| v.payload > 0 && coalescable_flags(v.flags));
        let Some(v) = view else {
            // Not coalescable; any held segments of its flow go first.
            if pkt.first().is_some_and(|b| b >> 4 == 4 || b >> 4 == 6)
                && pkt.len() >= 44
                && let Some(i) = self.pending.iter().position(|p| same_flow(&p.buf, pkt))
            {
                self.emit(i, write);
            }
            write(&VnetHdr::default(), pkt);
            return;
        };
        if let Some(i) = self.pending.iter().position(|p| same_flow(&p.buf, pkt)) {
            let p = &mut self.pending[i];
            let fits = !p.closed
                && p.view.hlen == v.hlen
                && v.seq == p.next_seq
                && v.payload <= p.gso
                && p.buf.len() + v.payload <= MAX_PACKET
                && same_headers(&p.buf, pkt, &v);
            if fits {
                p.buf.extend_from_slice(&pkt[v.hlen..]);
                p.segments += 1;
                p.next_seq = v.seq.wrapping_add(v.payload as u32);
                if v.flags & TCP_PSH != 0 {
                    p.buf[v.l4 + 13] |= TCP_PSH;
                }
                p.closed = v.payload < p.gso || v.flags & TCP_PSH != 0;
                return;
            }
            self.emit(i, write);
        } else if self.pending.len() >= self.max_flows {
            self.emit(0, write);
        }
        let mut buf = self.free.pop().unwrap_or_default();
        buf.clear();
        buf.reserve(MAX_PACKET);
        buf.extend_from_slice(pkt);
        self.pending.push(Pending {
            buf,
            view: v,
            gso: v.payload,
            segments: 1,
            next_seq: v.seq.wrapping_add(v.payload as u32),
            closed: v.flags & TCP_PSH != 0,
        });
    }

    /// Writes every held packet.
    pub fn flush(&mut self, write: &mut impl FnMut(&VnetHdr, &[u8])) {
        while !self.pending.is_empty() {
            self.emit(0, write);
        }
    }

    fn emit(&mut self, i: usize, write: &mut impl FnMut(&VnetHdr, &[u8])) {
        let mut p = self.pending.remove(i);
        if p.segments == 1 {
            // Unchanged, checksums intact.
            write(&VnetHdr::default(), &p.buf);
        } else {
            let v = p.view;
            let pkt = &mut p.buf[..];
            set_ip_len(pkt);
            // CHECKSUM_PARTIAL: the field holds the folded pseudo-header sum.
            let addrs = addr_range(pkt).expect("checked by tcp_view");
            let partial = fold(pseudo_sum(&pkt[addrs], PROTO_TCP, pkt.len() - v.l4));
            put16(pkt, v.l4 + 16, partial);
            let hdr = VnetHdr {
                flags: F_NEEDS_CSUM,
                gso_type: if v.l4 == 20 { GSO_TCPV4 } else { GSO_TCPV6 },
                hdr_len: v.hlen as u16,
                gso_size: p.gso as u16,
                csum_start: v.l4 as u16,
                csum_offset: 16,
            };
            write(&hdr, pkt);
        }
        self.free.push(p.buf);
    }
}

#[cfg(test)]
mod tests {
    //! Addresses: 192.0.2.1 -> 198.51.100.2 and 2001:db8::1 -> 2001:db8::2 (RFC 5737 / 3849).
    use super::*;

    const MSS: usize = 1368;

    /// Whether the IPv4 header checksum and the L4 checksum of `pkt` verify.
    fn checksums_ok(pkt: &[u8], proto: u8) -> bool {
        let (l4, ip_ok) = if pkt[0] >> 4 == 4 {
            let ihl = usize::from(pkt[0] & 0x0f) * 4;
            (ihl, fold(sum(&pkt[..ihl], 0)) == 0xffff)
        } else {
            (40, true)
        };
        let addrs = addr_range(pkt).unwrap();
        let acc = pseudo_sum(&pkt[addrs], proto, pkt.len() - l4);
        ip_ok && fold(sum(&pkt[l4..], acc)) == 0xffff
    }

    /// A TCP packet with a timestamp option (header 20/40 + 32) and a patterned payload; with
    /// `partial` the TCP checksum holds only the pseudo-header sum (as the kernel hands TSO
    /// packets over), else it is complete.
    fn tcp_packet(v6: bool, payload: usize, flags: u8, seq: u32, partial: bool) -> Vec<u8> {
        let l4 = if v6 { 40 } else { 20 };
        let mut p = vec![0u8; l4 + 32 + payload];
        let len = p.len();
        if v6 {
            p[0] = 0x60;
            p[1] = 0x01; // some flow label bits
            put16(&mut p, 4, (len - 40) as u16);
            p[6] = PROTO_TCP;
            p[7] = 64;
            p[8..24].copy_from_slice(
                &"2001:db8::1"
                    .parse::<std::net::Ipv6Addr>()
                    .unwrap()
                    .octets(),
            );
            p[24..40].copy_from_slice(
                &"2001:db8::2"
                    .parse::<std::net::Ipv6Addr>()
                    .unwrap()
                    .octets(),
            );
        } else {
            p[0] = 0x45;
            put16(&mut p, 2, len as u16);
            put16(&mut p, 4, 0x1234);
            p[6] = 0x40; // DF
            p[8] = 64;
            p[9] = PROTO_TCP;
            p[12..16].copy_from_slice(&[192, 0, 2, 1]);
            p[16..20].copy_from_slice(&[198, 51, 100, 2]);
            fix_ipv4_checksum(&mut p);
        }
        put16(&mut p, l4, 40_000);
        put16(&mut p, l4 + 2, 5201);
        p[l4 + 4..l4 + 8].copy_from_slice(&seq.to_be_bytes());
        p[l4 + 8..l4 + 12].copy_from_slice(&0x0bad_cafe_u32.to_be_bytes());
        p[l4 + 12] = 8 << 4;
        p[l4 + 13] = flags;
        put16(&mut p, l4 + 14, 512);
        // NOP NOP TS(10)
        p[l4 + 20..l4 + 32].copy_from_slice(&[1, 1, 8, 10, 0, 0, 0, 7, 0, 0, 0, 9]);
        for (i, b) in p[l4 + 32..].iter_mut().enumerate() {
            *b = (i % 251) as u8;
        }
        if partial {
            let addrs = addr_range(&p).unwrap();
            let c = fold(pseudo_sum(&p[addrs], PROTO_TCP, len - l4));
            put16(&mut p, l4 + 16, c);
        } else {
            finish_l4_checksum(&mut p, l4, 16, PROTO_TCP);
        }
        p
    }

    fn tso_hdr(v6: bool) -> VnetHdr {
        VnetHdr {
            flags: F_NEEDS_CSUM,
            gso_type: if v6 { GSO_TCPV6 } else { GSO_TCPV4 },
            hdr_len: if v6 { 72 } else { 52 },
            gso_size: MSS as u16,
            csum_start: if v6 { 40 } else { 20 },
            csum_offset: 16,
        }
    }

    fn split_all(hdr: &VnetHdr, pkt: &mut [u8]) -> Result<Vec<Vec<u8>>, OffloadError> {
        let mut scratch = vec![0u8; 2048];
        let mut out = Vec::new();
        let n = split(hdr, pkt, &mut scratch, |s| out.push(s.to_vec()))?;
        assert_eq!(n, out.len());
        Ok(out)
    }

    #[test]
    fn checksum_matches_rfc1071_example() {
        // RFC 1071 section 3: the sum of 0001 f203 f4f5 f6f7 is ddf2.
        assert_eq!(
            fold(sum(&[0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7], 0)),
            0xddf2
        );
        // Odd length: the last byte is padded with zero.
        assert_eq!(fold(sum(&[0x00, 0x01, 0xf2], 0)), 0xf201);
    }

    #[test]
    fn vnet_header_round_trips() {
        let h = tso_hdr(false);
        let b = h.to_bytes();
        assert_eq!(b, [1, 1, 52, 0, 0x58, 0x05, 20, 0, 16, 0]);
        assert_eq!(VnetHdr::parse(&b), Some(h));
        assert_eq!(VnetHdr::parse(&b[..9]), None);
    }

    fn check_tso_split(v6: bool) {
        let l4 = if v6 { 40 } else { 20 };
        let hlen = l4 + 32;
        let payload = 65_535 - hlen;
        let seq0 = u32::MAX - 5000; // wraps inside the super-segment
        let mut big = tcp_packet(v6, payload, TCP_ACK | TCP_PSH | TCP_CWR, seq0, true);
        let orig = big.clone();
        let segs = split_all(&tso_hdr(v6), &mut big).unwrap();
        assert_eq!(segs.len(), payload.div_ceil(MSS));
        let mut joined = Vec::new();
        for (i, s) in segs.iter().enumerate() {
            let last = i + 1 == segs.len();
            let want = if last { payload - i * MSS } else { MSS };
            assert_eq!(s.len(), hlen + want, "segment {i} length");
            assert!(checksums_ok(s, PROTO_TCP), "segment {i} checksums");
            if v6 {
                assert_eq!(usize::from(be16(s, 4)), s.len() - 40);
                assert_eq!(s[..4], orig[..4]);
            } else {
                assert_eq!(usize::from(be16(s, 2)), s.len());
                assert_eq!(be16(s, 4), 0x1234 + i as u16, "ipv4 id");
            }
            let seq = u32::from_be_bytes(s[l4 + 4..l4 + 8].try_into().unwrap());
            assert_eq!(seq, seq0.wrapping_add((i * MSS) as u32));
            assert_eq!(s[l4 + 13] & TCP_PSH != 0, last, "psh only on the last");
            assert_eq!(s[l4 + 13] & TCP_CWR != 0, i == 0, "cwr only on the first");
            assert_eq!(s[l4 + 13] & TCP_ACK, TCP_ACK);
            // Ports, ack, window and options are copied.
            assert_eq!(s[l4..l4 + 4], orig[l4..l4 + 4]);
            assert_eq!(s[l4 + 8..l4 + 12], orig[l4 + 8..l4 + 12]);
            assert_eq!(s[l4 + 14..l4 + 16], orig[l4 + 14..l4 + 16]);
            assert_eq!(s[l4 + 20..hlen], orig[l4 + 20..hlen]);
            joined.extend_from_slice(&s[hlen..]);
        }
        assert!(joined == orig[hlen..], "payload differs");
    }

    #[test]
    fn splits_a_64k_tso_segment_v4() {
        check_tso_split(false);
    }

    #[test]
    fn splits_a_64k_tso_segment_v6() {
        check_tso_split(true);
    }

    #[test]
    fn splits_uso_v4() {
        // UDP: 20 + 8 + 3000 bytes, segments of 1000.
        let mut p = vec![0u8; 20 + 8 + 3000];
        let len = p.len();
        p[0] = 0x45;
        put16(&mut p, 2, len as u16);
        p[8] = 64;
        p[9] = PROTO_UDP;
        p[12..16].copy_from_slice(&[192, 0, 2, 1]);
        p[16..20].copy_from_slice(&[198, 51, 100, 2]);
        put16(&mut p, 20, 1000);
        put16(&mut p, 22, 53);
        put16(&mut p, 24, (len - 20) as u16);
        for (i, b) in p[28..].iter_mut().enumerate() {
            *b = i as u8;
        }
        let hdr = VnetHdr {
            flags: F_NEEDS_CSUM,
            gso_type: GSO_UDP_L4,
            hdr_len: 28,
            gso_size: 1000,
            csum_start: 20,
            csum_offset: 6,
        };
        let segs = split_all(&hdr, &mut p.clone()).unwrap();
        assert_eq!(segs.len(), 3);
        for (i, s) in segs.iter().enumerate() {
            assert_eq!(s.len(), 1028);
            assert_eq!(be16(s, 24), 1008, "udp length");
            assert!(checksums_ok(s, PROTO_UDP), "segment {i}");
            assert_eq!(s[28..], p[28 + i * 1000..28 + (i + 1) * 1000]);
        }
    }

    #[test]
    fn finishes_a_partial_checksum_without_gso() {
        let mut p = tcp_packet(false, 700, TCP_ACK, 1, true);
        assert!(!checksums_ok(&p, PROTO_TCP));
        let hdr = VnetHdr {
            gso_type: GSO_NONE,
            gso_size: 0,
            ..tso_hdr(false)
        };
        let segs = split_all(&hdr, &mut p).unwrap();
        assert_eq!(segs.len(), 1);
        assert!(checksums_ok(&segs[0], PROTO_TCP));
        assert_eq!(segs[0], tcp_packet(false, 700, TCP_ACK, 1, false));
    }

    #[test]
    fn rejects_bad_headers() {
        let mut p = tcp_packet(false, 3000, TCP_ACK, 1, true);
        let zero = VnetHdr {
            gso_size: 0,
            ..tso_hdr(false)
        };
        assert_eq!(split_all(&zero, &mut p), Err(OffloadError::BadHeader));
        let wrong_start = VnetHdr {
            csum_start: 24,
            ..tso_hdr(false)
        };
        assert_eq!(
            split_all(&wrong_start, &mut p),
            Err(OffloadError::BadHeader)
        );
        let ufo = VnetHdr {
            gso_type: 3,
            ..tso_hdr(false)
        };
        assert_eq!(
            split_all(&ufo, &mut p),
            Err(OffloadError::UnsupportedGso(3))
        );
        let mut short = p[..30].to_vec();
        assert_eq!(
            split_all(&tso_hdr(false), &mut short),
            Err(OffloadError::Truncated(30))
        );
    }

    fn gro_all(gro: &mut Gro, pkts: &[Vec<u8>]) -> Vec<(VnetHdr, Vec<u8>)> {
        let mut out = Vec::new();
        let mut w = |h: &VnetHdr, p: &[u8]| out.push((*h, p.to_vec()));
        for p in pkts {
            gro.push(p, &mut w);
        }
        gro.flush(&mut w);
        out
    }

    fn check_gro_round_trip(v6: bool) {
        let l4 = if v6 { 40 } else { 20 };
        let payload = 40 * MSS + 100;
        let mut big = tcp_packet(v6, payload, TCP_ACK | TCP_PSH, 77, true);
        let orig = big.clone();
        let segs = split_all(&tso_hdr(v6), &mut big).unwrap();
        let out = gro_all(&mut Gro::new(4), &segs);
        assert_eq!(out.len(), 1, "one coalesced packet");
        let (hdr, pkt) = &out[0];
        assert_eq!(*hdr, tso_hdr(v6));
        assert_eq!(pkt.len(), orig.len());
        if !v6 {
            assert_eq!(fold(sum(&pkt[..20], 0)), 0xffff, "ipv4 header checksum");
            // The first segment's IPv4 ID is kept.
            assert_eq!(pkt[..10], orig[..10]);
        }
        // Same bytes as the original super-segment, partial checksum included.
        assert!(pkt[l4..] == orig[l4..], "coalesced packet differs");
        // And splitting it again gives the same wire packets.
        let again = split_all(hdr, &mut pkt.clone()).unwrap();
        assert!(again == segs, "resplit differs");
    }

    #[test]
    fn coalesces_split_segments_back_v4() {
        check_gro_round_trip(false);
    }

    #[test]
    fn coalesces_split_segments_back_v6() {
        check_gro_round_trip(true);
    }

    #[test]
    fn gro_keeps_gaps_flags_and_other_flows_apart() {
        let a = |seq: u32, len: usize, flags: u8| tcp_packet(false, len, flags, seq, false);
        let m = MSS as u32;
        let mut other = a(9000, MSS, TCP_ACK);
        other[16..20].copy_from_slice(&[198, 51, 100, 3]); // another flow
        fix_ipv4_checksum(&mut other);
        finish_l4_checksum(&mut other, 20, 16, PROTO_TCP);
        let ping = {
            let mut p = a(0, 10, TCP_ACK);
            p[9] = 1; // ICMP: passes through
            fix_ipv4_checksum(&mut p);
            p
        };
        let input = vec![
            a(0, MSS, TCP_ACK),
            other.clone(),
            a(m, MSS, TCP_ACK),
            ping.clone(),
            a(3 * m, MSS, TCP_ACK), // gap: starts a new packet
            a(4 * m, 10, TCP_ACK | TCP_PSH),
            a(4 * m + 10, MSS, TCP_ACK), // after a short segment: new packet
            a(5 * m + 10, MSS, TCP_ACK | TCP_FIN), // FIN: never coalesced
            a(6 * m + 10, 0, TCP_ACK),   // pure ACK
        ];
        let out = gro_all(&mut Gro::new(4), &input);
        let shape: Vec<(u8, usize)> = out.iter().map(|(h, p)| (h.gso_type, p.len())).collect();
        assert_eq!(
            shape,
            vec![
                (GSO_NONE, ping.len()),
                (GSO_TCPV4, 52 + 2 * MSS),
                (GSO_TCPV4, 52 + MSS + 10),
                (GSO_NONE, 52 + MSS),
                (GSO_NONE, 52 + MSS),
                (GSO_NONE, 52),
                (GSO_NONE, 52 + MSS),
            ]
        );
        // Pass-through and single-segment packets are unchanged.
        assert_eq!(out[0].1, ping);
        assert_eq!(out[3].1, input[6]);
        assert_eq!(out[6].1, other);
        // The short PSH tail's flag is on the coalesced packet.
        assert_ne!(out[2].1[20 + 13] & TCP_PSH, 0);
        // A coalesced packet resplits into its inputs (IPv4 IDs counting up from the first).
        let again = split_all(&out[1].0, &mut out[1].1.clone()).unwrap();
        let mut second = input[2].clone();
        put16(&mut second, 4, 0x1235);
        fix_ipv4_checksum(&mut second);
        assert!(again == [input[0].clone(), second], "resplit differs");
    }

    #[test]
    fn gro_does_not_merge_different_headers() {
        let m = MSS as u32;
        let first = tcp_packet(false, MSS, TCP_ACK, 0, false);
        let mut ttl = tcp_packet(false, MSS, TCP_ACK, m, false);
        ttl[8] = 63;
        fix_ipv4_checksum(&mut ttl);
        let out = gro_all(&mut Gro::new(4), &[first.clone(), ttl.clone()]);
        assert_eq!(out.len(), 2);
        let mut ack = tcp_packet(false, MSS, TCP_ACK, m, false);
        ack[20 + 11] ^= 1;
        let out = gro_all(&mut Gro::new(4), &[first, ack]);
        assert_eq!(out.len(), 2);
    }
}
