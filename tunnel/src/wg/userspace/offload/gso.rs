//! GSO on the way out: one read from the TUN (a `virtio_net_hdr` and a TCP or UDP packet of up
//! to 64 KiB) becomes the MTU-sized packets the wire carries, each with its own headers and
//! finished checksums.

use super::{
    F_NEEDS_CSUM, GSO_ECN, GSO_NONE, GSO_TCPV4, GSO_TCPV6, GSO_UDP_L4, PROTO_TCP, PROTO_UDP,
    TCP_CWR, TCP_FIN, TCP_PSH, VnetHdr, be16, finish_l4_checksum, fold, put16, set_ip_len, sum,
};

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

#[cfg(test)]
mod tests {
    use super::super::test_packets::{MSS, checksums_ok, split_all, tcp_packet, tso_hdr};
    use super::super::{TCP_ACK, put16};
    use super::*;

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
}
