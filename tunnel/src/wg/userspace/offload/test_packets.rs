//! Test packets for the offload tests. Addresses: 192.0.2.1 -> 198.51.100.2 and
//! 2001:db8::1 -> 2001:db8::2 (RFC 5737 / 3849).

use super::gso::OffloadError;
use super::*;

pub const MSS: usize = 1368;

/// Whether the IPv4 header checksum and the L4 checksum of `pkt` verify.
pub fn checksums_ok(pkt: &[u8], proto: u8) -> bool {
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
pub fn tcp_packet(v6: bool, payload: usize, flags: u8, seq: u32, partial: bool) -> Vec<u8> {
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

pub fn tso_hdr(v6: bool) -> VnetHdr {
    VnetHdr {
        flags: F_NEEDS_CSUM,
        gso_type: if v6 { GSO_TCPV6 } else { GSO_TCPV4 },
        hdr_len: if v6 { 72 } else { 52 },
        gso_size: MSS as u16,
        csum_start: if v6 { 40 } else { 20 },
        csum_offset: 16,
    }
}

pub fn split_all(hdr: &VnetHdr, pkt: &mut [u8]) -> Result<Vec<Vec<u8>>, OffloadError> {
    let mut scratch = vec![0u8; 2048];
    let mut out = Vec::new();
    let n = split(hdr, pkt, &mut scratch, |s| out.push(s.to_vec()))?;
    assert_eq!(n, out.len());
    Ok(out)
}
