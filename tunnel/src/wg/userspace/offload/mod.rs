//! TUN offloads as pure functions on byte buffers: the `virtio_net_hdr` that precedes every
//! packet on a TUN opened with `IFF_VNET_HDR` and the checksum arithmetic (here), GSO splitting
//! of the large TCP/UDP segments the kernel hands us after `TUNSETOFFLOAD` ([`gso`], on the way
//! out), and GRO coalescing of decrypted in-order TCP segments into one large packet for a single
//! TUN write ([`gro`], on the way in; what wireguard-go's `tun/offload_linux.go` does).
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

mod gro;
mod gso;
#[cfg(test)]
mod test_packets;

pub use gro::Gro;
pub use gso::{segment_count, split};

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

#[cfg(test)]
mod tests {
    use super::test_packets::tso_hdr;
    use super::*;

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
}
