//! A rule's expressions, written the way nft writes them for the same text: in an
//! `inet` table the first match on an IPv4/IPv6 header field is preceded by
//! `meta nfproto` (nft's protocol dependency), and the registers are nft's. Each public
//! method is one statement of nft's language, named after it.

use std::net::{IpAddr, SocketAddr};

use ipnet::IpNet;

use crate::data::{NFT_JUMP, NFT_RETURN, NFTA_LIST_ELEM, value, verdict};
use crate::msg::Buffer;
use crate::{NFPROTO_IPV4, NFPROTO_IPV6};

const REG_VERDICT: u32 = 0;
const REG_1: u32 = 1;
const REG_2: u32 = 2;

/// `NFT_META_*` keys.
const META_MARK: u32 = 3;
const META_NFPROTO: u32 = 15;
const META_L4PROTO: u32 = 16;

const PAYLOAD_NETWORK: u32 = 1;
const PAYLOAD_TRANSPORT: u32 = 2;

/// The expressions of one rule being written (see [`crate::Batch::add_rule`]).
pub struct Rule<'a> {
    b: &'a mut Buffer,
    /// The network family the rule already checked.
    family: Option<bool>,
}

impl<'a> Rule<'a> {
    pub(crate) fn new(b: &'a mut Buffer) -> Self {
        Rule { b, family: None }
    }
}

/// The statements.
impl Rule<'_> {
    /// `counter`
    pub fn counter(&mut self) {
        self.expr("counter", |b| {
            b.put_be64(1, 0); // NFTA_COUNTER_BYTES
            b.put_be64(2, 0); // NFTA_COUNTER_PACKETS
        });
    }

    /// `meta mark set meta mark or M`
    pub fn mark_or(&mut self, m: u32) {
        self.mark_bitwise(!m, m);
        self.mark_set();
    }

    /// `meta mark and M == 0`
    pub fn mark_clear(&mut self, m: u32) {
        self.mark_bitwise(m, 0);
        self.cmp_eq(REG_1, &0u32.to_ne_bytes());
    }

    /// `meta mark set meta mark xor M`
    pub fn mark_xor(&mut self, m: u32) {
        self.mark_bitwise(u32::MAX, m);
        self.mark_set();
    }

    /// `jump CHAIN`
    pub fn jump(&mut self, chain: &str) {
        self.immediate_verdict(NFT_JUMP, Some(chain));
    }

    /// `return`
    pub fn return_(&mut self) {
        self.immediate_verdict(NFT_RETURN, None);
    }

    /// `masquerade fully-random`
    pub fn masquerade_fully_random(&mut self) {
        self.expr("masq", |b| {
            b.put_be32(1, 0x10); // NFTA_MASQ_FLAGS: NF_NAT_RANGE_PROTO_RANDOM_FULLY
        });
    }

    /// `ip saddr PREFIX` (`ip6` for IPv6); a `/0` prefix is `meta nfproto ipv4|ipv6`.
    pub fn saddr(&mut self, net: IpNet) {
        let v6 = matches!(net, IpNet::V6(_));
        self.family_dependency(v6);
        let bits = u32::from(net.prefix_len());
        if bits == 0 {
            return;
        }
        let addr: Vec<u8> = match net.trunc().addr() {
            IpAddr::V4(a) => a.octets().to_vec(),
            IpAddr::V6(a) => a.octets().to_vec(),
        };
        let offset = if v6 { 8 } else { 12 };
        if bits % 8 == 0 {
            // Whole bytes: nft loads just the prefix.
            let bytes = bits / 8;
            self.payload(PAYLOAD_NETWORK, offset, bytes, REG_1);
            self.cmp_eq(REG_1, &addr[..bytes as usize]);
            return;
        }
        // Otherwise the whole address, masked.
        let len = addr.len() as u32;
        self.payload(PAYLOAD_NETWORK, offset, len, REG_1);
        let mask: Vec<u8> = (0..len)
            .map(|i| {
                let left = bits.saturating_sub(i * 8).min(8);
                (0xffu16 << (8 - left)) as u8
            })
            .collect();
        self.bitwise(REG_1, &mask, &vec![0; addr.len()]);
        self.cmp_eq(REG_1, &addr);
    }

    /// `ip saddr @SET` (`ip6` when `v6`)
    pub fn saddr_in(&mut self, v6: bool, set: &str) {
        self.load_saddr(v6, REG_1);
        self.expr("lookup", |b| {
            b.put_str(1, set); // NFTA_LOOKUP_SET
            b.put_be32(2, REG_1); // NFTA_LOOKUP_SREG
        });
    }

    /// `update @SET { ip saddr }` (`ip6` when `v6`)
    pub fn update_saddr(&mut self, v6: bool, set: &str) {
        self.load_saddr(v6, REG_1);
        self.expr("dynset", |b| {
            b.put_str(1, set); // NFTA_DYNSET_SET_NAME
            b.put_be32(3, 1); // NFTA_DYNSET_OP: NFT_DYNSET_OP_UPDATE
            b.put_be32(4, REG_1); // NFTA_DYNSET_SREG_KEY
        });
    }

    /// `numgen inc mod N == 0` (`random` when `random`)
    pub fn numgen(&mut self, random: bool, modulus: u32) {
        self.expr("numgen", |b| {
            b.put_be32(1, REG_1); // NFTA_NG_DREG
            b.put_be32(2, modulus); // NFTA_NG_MODULUS
            b.put_be32(3, u32::from(random)); // NFTA_NG_TYPE: inc 0, random 1
            b.put_be32(4, 0); // NFTA_NG_OFFSET
        });
        self.cmp_eq(REG_1, &0u32.to_ne_bytes());
    }

    /// `jhash ip saddr mod N seed 0x0 == V` (`ip6` when `v6`)
    pub fn jhash_saddr(&mut self, v6: bool, modulus: u32, value: u32) {
        self.load_saddr(v6, REG_2);
        self.expr("hash", |b| {
            b.put_be32(1, REG_2); // NFTA_HASH_SREG
            b.put_be32(2, REG_1); // NFTA_HASH_DREG
            b.put_be32(3, if v6 { 16 } else { 4 }); // NFTA_HASH_LEN
            b.put_be32(4, modulus); // NFTA_HASH_MODULUS
            // One seed for every rule of a service: each rule must compute the
            // same hash of the same client.
            b.put_be32(5, 0); // NFTA_HASH_SEED
            b.put_be32(6, 0); // NFTA_HASH_OFFSET
            b.put_be32(7, 0); // NFTA_HASH_TYPE: NFT_HASH_JENKINS
        });
        self.cmp_eq(REG_1, &value.to_ne_bytes());
    }

    /// `dnat ip to A:P` (`dnat ip6 to [A]:P`)
    pub fn dnat(&mut self, to: SocketAddr) {
        let family = match to {
            SocketAddr::V4(a) => {
                self.immediate_value(REG_1, &a.ip().octets());
                NFPROTO_IPV4
            }
            SocketAddr::V6(a) => {
                self.immediate_value(REG_1, &a.ip().octets());
                NFPROTO_IPV6
            }
        };
        self.immediate_value(REG_2, &to.port().to_be_bytes());
        self.expr("nat", |b| {
            b.put_be32(1, 1); // NFTA_NAT_TYPE: NFT_NAT_DNAT
            b.put_be32(2, u32::from(family)); // NFTA_NAT_FAMILY
            b.put_be32(3, REG_1); // NFTA_NAT_REG_ADDR_MIN
            b.put_be32(5, REG_2); // NFTA_NAT_REG_PROTO_MIN
            b.put_be32(7, 0x2); // NFTA_NAT_FLAGS: NF_NAT_RANGE_PROTO_SPECIFIED
        });
    }

    /// `ip daddr . meta l4proto . th dport vmap @MAP` (`ip6` when `v6`)
    pub fn vmap(&mut self, v6: bool, map: &str) {
        self.family_dependency(v6);
        // nft's registers for `daddr . l4proto . dport`: 32-bit slots after
        // the address (reg 9/10 for IPv4; reg 2 = slot 4, slot 5 = 13 for IPv6).
        let (len, offset, proto_reg, port_reg) = if v6 {
            (16, 24, REG_2, 13)
        } else {
            (4, 16, 9, 10)
        };
        self.payload(PAYLOAD_NETWORK, offset, len, REG_1);
        self.meta_load(META_L4PROTO, proto_reg);
        self.payload(PAYLOAD_TRANSPORT, 2, 2, port_reg);
        self.expr("lookup", |b| {
            b.put_str(1, map); // NFTA_LOOKUP_SET
            b.put_be32(2, REG_1); // NFTA_LOOKUP_SREG
            b.put_be32(3, REG_VERDICT); // NFTA_LOOKUP_DREG
        });
    }
}

/// The expressions the statements are made of.
impl Rule<'_> {
    fn expr(&mut self, name: &str, body: impl FnOnce(&mut Buffer)) {
        self.b.begin_nest(NFTA_LIST_ELEM);
        self.b.put_str(1, name); // NFTA_EXPR_NAME
        self.b.begin_nest(2); // NFTA_EXPR_DATA
        body(self.b);
        self.b.end_nest();
        self.b.end_nest();
    }

    fn meta_load(&mut self, key: u32, dreg: u32) {
        self.expr("meta", |b| {
            b.put_be32(2, key); // NFTA_META_KEY
            b.put_be32(1, dreg); // NFTA_META_DREG
        });
    }

    fn cmp_eq(&mut self, sreg: u32, data: &[u8]) {
        self.expr("cmp", |b| {
            b.put_be32(1, sreg); // NFTA_CMP_SREG
            b.put_be32(2, 0); // NFTA_CMP_OP: NFT_CMP_EQ
            value(b, 3, data); // NFTA_CMP_DATA
        });
    }

    fn payload(&mut self, base: u32, offset: u32, len: u32, dreg: u32) {
        self.expr("payload", |b| {
            b.put_be32(1, dreg); // NFTA_PAYLOAD_DREG
            b.put_be32(2, base); // NFTA_PAYLOAD_BASE
            b.put_be32(3, offset); // NFTA_PAYLOAD_OFFSET
            b.put_be32(4, len); // NFTA_PAYLOAD_LEN
        });
    }

    fn bitwise(&mut self, reg: u32, mask: &[u8], xor: &[u8]) {
        self.expr("bitwise", |b| {
            b.put_be32(1, reg); // NFTA_BITWISE_SREG
            b.put_be32(2, reg); // NFTA_BITWISE_DREG
            b.put_be32(3, mask.len() as u32); // NFTA_BITWISE_LEN
            value(b, 4, mask); // NFTA_BITWISE_MASK
            value(b, 5, xor); // NFTA_BITWISE_XOR
        });
    }

    fn immediate_verdict(&mut self, code: i32, chain: Option<&str>) {
        self.expr("immediate", |b| {
            b.put_be32(1, REG_VERDICT); // NFTA_IMMEDIATE_DREG
            b.begin_nest(2); // NFTA_IMMEDIATE_DATA
            verdict(b, code, chain);
            b.end_nest();
        });
    }

    fn immediate_value(&mut self, dreg: u32, data: &[u8]) {
        self.expr("immediate", |b| {
            b.put_be32(1, dreg); // NFTA_IMMEDIATE_DREG
            value(b, 2, data); // NFTA_IMMEDIATE_DATA
        });
    }

    /// `meta nfproto ipv4|ipv6`, once per rule.
    fn family_dependency(&mut self, v6: bool) {
        if self.family == Some(v6) {
            return;
        }
        self.family = Some(v6);
        self.meta_load(META_NFPROTO, REG_1);
        let proto = if v6 { NFPROTO_IPV6 } else { NFPROTO_IPV4 };
        self.cmp_eq(REG_1, &[proto]);
    }

    /// Source address into `dreg`: IPv4 at offset 12, IPv6 at offset 8.
    fn load_saddr(&mut self, v6: bool, dreg: u32) {
        self.family_dependency(v6);
        if v6 {
            self.payload(PAYLOAD_NETWORK, 8, 16, dreg);
        } else {
            self.payload(PAYLOAD_NETWORK, 12, 4, dreg);
        }
    }

    fn mark_bitwise(&mut self, mask: u32, xor: u32) {
        self.meta_load(META_MARK, REG_1);
        self.bitwise(REG_1, &mask.to_ne_bytes(), &xor.to_ne_bytes());
    }

    fn mark_set(&mut self) {
        self.expr("meta", |b| {
            b.put_be32(2, META_MARK); // NFTA_META_KEY
            b.put_be32(3, REG_1); // NFTA_META_SREG
        });
    }
}

#[cfg(test)]
mod tests {
    use crate::Batch;

    #[test]
    fn prefix_masks_cover_partial_bytes() {
        let mut batch = Batch::new(1, 0);
        batch.add_rule("t", "c", None, |r| {
            r.saddr("10.16.0.0/12".parse().unwrap());
            r.return_();
        });
        let bytes = batch.finish().bytes().to_vec();
        // mask for /12 over 2 bytes: ff f0
        assert!(bytes.windows(2).any(|w| w == [0xff, 0xf0]));
    }
}
