//! GRO on the way in: decrypted in-order TCP segments of one flow are coalesced into one large
//! packet with a `virtio_net_hdr` (partial checksum, `gso_size`), so that the TUN takes a whole
//! batch in one write and the kernel's TCP sees few large segments.

use super::{
    F_NEEDS_CSUM, GSO_TCPV4, GSO_TCPV6, PROTO_TCP, TCP_ACK, TCP_PSH, VnetHdr, addr_range, be16,
    fold, pseudo_sum, put16, set_ip_len,
};

/// Largest IP packet (the IPv4 total length and IPv6 payload length fields are 16 bits).
const MAX_PACKET: usize = 65_535;

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
    use super::super::test_packets::{MSS, split_all, tcp_packet, tso_hdr};
    use super::super::{GSO_NONE, PROTO_TCP, TCP_FIN, finish_l4_checksum, fix_ipv4_checksum, sum};
    use super::*;

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
