//! The objects of an `inet` table as batch messages: tables, chains, sets and verdict
//! maps, rules and map elements, each encoded the way `nft` encodes the same command
//! (`linux/netfilter/nf_tables.h` for the attribute numbers).

use std::net::IpAddr;

use crate::NFPROTO_INET;
use crate::batch::Batch;
use crate::data::{NFT_GOTO, NFTA_LIST_ELEM, value, verdict};
use crate::expr::Rule;
use crate::msg::{Buffer, F_APPEND, F_CREATE};

const MSG_NEWTABLE: u16 = 0;
const MSG_DELTABLE: u16 = 2;
const MSG_NEWCHAIN: u16 = 3;
const MSG_DELCHAIN: u16 = 5;
const MSG_NEWRULE: u16 = 6;
const MSG_DELRULE: u16 = 8;
const MSG_NEWSET: u16 = 9;
const MSG_DELSET: u16 = 11;
const MSG_NEWSETELEM: u16 = 12;
const MSG_DELSETELEM: u16 = 14;

/// `NFT_DATA_VERDICT`: the data type of a verdict map.
const DATA_VERDICT: u32 = 0xffff_ff00;
/// nft's type ids: `ipv4_addr`, `ipv6_addr`, `inet_proto`, `inet_service`.
const TYPE_IPV4: u32 = 7;
const TYPE_IPV6: u32 = 8;
const TYPE_INET_PROTO: u32 = 12;
const TYPE_INET_SERVICE: u32 = 13;
/// nft's concatenated type id: each part shifted in by 6 bits.
const fn concat_type(first: u32) -> u32 {
    (((first << 6) | TYPE_INET_PROTO) << 6) | TYPE_INET_SERVICE
}
const SET_MAP: u32 = 0x8;
const SET_TIMEOUT: u32 = 0x10;
const SET_EVAL: u32 = 0x20;

/// The user data `nft` attaches to our verdict maps (key and data byte order, typeof
/// hints), copied so `nft list` shows the map exactly as if `nft` had made it.
const MAP_USERDATA: &[u8] = &[
    0x00, 0x04, 0x00, 0x00, 0x00, 0x00, 0x01, 0x04, 0x00, 0x00, 0x00, 0x00, 0x03, 0x08, 0x00, 0x04,
    0x0d, 0x00, 0x00, 0x00, 0x01, 0x00, 0x06, 0x04, 0x00, 0x00, 0x00, 0x00,
];
/// The user data of an address set (key byte order: big endian).
const ADDR_SET_USERDATA: &[u8] = &[0x00, 0x04, 0x02, 0x00, 0x00, 0x00];

/// `NFTNL_UDATA_RULE_COMMENT`.
const UDATA_RULE_COMMENT: u8 = 0;

/// Elements per set-element message: a netlink attribute holds at most 64 KiB.
const ELEMENT_BYTES_PER_MESSAGE: usize = 60_000;

/// A netfilter hook a base chain attaches to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Hook {
    Prerouting,
    Input,
    Forward,
    Output,
    Postrouting,
}

impl Hook {
    /// `NF_INET_*`.
    fn number(self) -> u32 {
        match self {
            Hook::Prerouting => 0,
            Hook::Input => 1,
            Hook::Forward => 2,
            Hook::Output => 3,
            Hook::Postrouting => 4,
        }
    }
}

/// What makes a chain a base chain: `type nat hook HOOK priority PRIORITY; policy
/// accept;` (the only kind this crate writes).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BaseChain {
    pub hook: Hook,
    pub priority: i32,
}

/// A key of a `ipv4_addr . inet_proto . inet_service` (or `ipv6_addr . …`) map.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AddrProtoPort {
    pub addr: IpAddr,
    /// IP protocol number (`IPPROTO_TCP` 6, …).
    pub proto: u8,
    pub port: u16,
}

impl AddrProtoPort {
    /// The key as the kernel stores it: each part in a 4-byte register slot.
    fn bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(24);
        match self.addr {
            IpAddr::V4(a) => out.extend_from_slice(&a.octets()),
            IpAddr::V6(a) => out.extend_from_slice(&a.octets()),
        }
        out.extend_from_slice(&[self.proto, 0, 0, 0]);
        out.extend_from_slice(&self.port.to_be_bytes());
        out.extend_from_slice(&[0, 0]);
        out
    }
}

/// Each method adds one message to the batch (the element methods as many as the 64 KiB
/// attribute limit needs), for table `inet <table>`.
impl Batch {
    /// `add table inet T`.
    pub fn add_table(&mut self, table: &str) {
        let b = self.begin(MSG_NEWTABLE, F_CREATE, NFPROTO_INET);
        b.put_str(1, table); // NFTA_TABLE_NAME
        b.put_be32(2, 0); // NFTA_TABLE_FLAGS
        self.end();
    }

    /// `delete table inet T`.
    pub fn delete_table(&mut self, table: &str) {
        self.begin(MSG_DELTABLE, 0, NFPROTO_INET).put_str(1, table);
        self.end();
    }

    /// `flush table inet T`: deletes every rule of the table (chains, sets and
    /// elements stay).
    pub fn flush_table(&mut self, table: &str) {
        self.begin(MSG_DELRULE, 0, NFPROTO_INET).put_str(1, table);
        self.end();
    }

    /// `add chain inet T C`, a base chain when `base` says how.
    pub fn add_chain(&mut self, table: &str, chain: &str, base: Option<BaseChain>) {
        let b = self.begin(MSG_NEWCHAIN, F_CREATE, NFPROTO_INET);
        b.put_str(1, table); // NFTA_CHAIN_TABLE
        b.put_str(3, chain); // NFTA_CHAIN_NAME
        if let Some(BaseChain { hook, priority }) = base {
            b.begin_nest(4); // NFTA_CHAIN_HOOK
            b.put_be32(1, hook.number()); // NFTA_HOOK_HOOKNUM
            b.put_be32(2, priority as u32); // NFTA_HOOK_PRIORITY
            b.end_nest();
            b.put_be32(5, 1); // NFTA_CHAIN_POLICY: NF_ACCEPT
            b.put_str(7, "nat"); // NFTA_CHAIN_TYPE
        }
        self.end();
    }

    /// `flush chain inet T C`.
    pub fn flush_chain(&mut self, table: &str, chain: &str) {
        let b = self.begin(MSG_DELRULE, 0, NFPROTO_INET);
        b.put_str(1, table); // NFTA_RULE_TABLE
        b.put_str(2, chain); // NFTA_RULE_CHAIN
        self.end();
    }

    /// `delete chain inet T C`.
    pub fn delete_chain(&mut self, table: &str, chain: &str) {
        let b = self.begin(MSG_DELCHAIN, 0, NFPROTO_INET);
        b.put_str(1, table);
        b.put_str(3, chain);
        self.end();
    }

    /// `add map inet T M { type ipv4_addr . inet_proto . inet_service : verdict; }`
    /// (`ipv6_addr` when `v6`).
    pub fn add_verdict_map(&mut self, table: &str, map: &str, v6: bool) {
        // A set's id within the transaction: unique, as the message number is.
        let id = self.messages() as u32 + 1;
        let b = self.begin(MSG_NEWSET, F_CREATE, NFPROTO_INET);
        b.put_str(1, table); // NFTA_SET_TABLE
        b.put_str(2, map); // NFTA_SET_NAME
        b.put_be32(3, SET_MAP); // NFTA_SET_FLAGS
        let (key_type, key_len) = if v6 {
            (concat_type(TYPE_IPV6), 24)
        } else {
            (concat_type(TYPE_IPV4), 12)
        };
        b.put_be32(4, key_type); // NFTA_SET_KEY_TYPE
        b.put_be32(5, key_len); // NFTA_SET_KEY_LEN
        b.put_be32(6, DATA_VERDICT); // NFTA_SET_DATA_TYPE
        b.put_be32(7, 0); // NFTA_SET_DATA_LEN
        b.put_be32(10, id); // NFTA_SET_ID (required)
        b.put(13, MAP_USERDATA); // NFTA_SET_USERDATA
        self.end();
    }

    /// `add set inet T S { type ipv4_addr; flags dynamic,timeout; timeout Ns; }`
    /// (`ipv6_addr` when `v6`): addresses that rules add and refresh.
    pub fn add_timeout_addr_set(&mut self, table: &str, set: &str, v6: bool, timeout_secs: u32) {
        let id = self.messages() as u32 + 1;
        let b = self.begin(MSG_NEWSET, F_CREATE, NFPROTO_INET);
        b.put_str(1, table);
        b.put_str(2, set);
        b.put_be32(3, SET_TIMEOUT | SET_EVAL);
        let (key_type, key_len) = if v6 { (TYPE_IPV6, 16) } else { (TYPE_IPV4, 4) };
        b.put_be32(4, key_type);
        b.put_be32(5, key_len);
        b.put_be32(10, id);
        b.put_be64(11, u64::from(timeout_secs) * 1000); // NFTA_SET_TIMEOUT (ms)
        b.put(13, ADDR_SET_USERDATA);
        self.end();
    }

    /// `flush set inet T S` (or `flush map`): deletes every element.
    pub fn flush_set(&mut self, table: &str, set: &str) {
        let b = self.begin(MSG_DELSETELEM, 0, NFPROTO_INET);
        b.put_str(1, table); // NFTA_SET_ELEM_LIST_TABLE
        b.put_str(2, set); // NFTA_SET_ELEM_LIST_SET
        self.end();
    }

    /// `delete set inet T S` (or `delete map`).
    pub fn delete_set(&mut self, table: &str, set: &str) {
        let b = self.begin(MSG_DELSET, 0, NFPROTO_INET);
        b.put_str(1, table);
        b.put_str(2, set);
        self.end();
    }

    /// `add rule inet T C <expressions> [comment "…"]`, appended to the chain; `exprs`
    /// writes the expressions.
    pub fn add_rule(
        &mut self,
        table: &str,
        chain: &str,
        comment: Option<&str>,
        exprs: impl FnOnce(&mut Rule),
    ) {
        let b = self.begin(MSG_NEWRULE, F_CREATE | F_APPEND, NFPROTO_INET);
        b.put_str(1, table); // NFTA_RULE_TABLE
        b.put_str(2, chain); // NFTA_RULE_CHAIN
        b.begin_nest(4); // NFTA_RULE_EXPRESSIONS
        exprs(&mut Rule::new(b));
        b.end_nest();
        if let Some(c) = comment {
            // The kernel keeps at most 255 bytes of user data; the comment's own
            // length is one byte.
            let text = &c.as_bytes()[..c.len().min(250)];
            let mut udata = Vec::with_capacity(text.len() + 3);
            udata.push(UDATA_RULE_COMMENT);
            udata.push((text.len() + 1) as u8);
            udata.extend_from_slice(text);
            udata.push(0);
            b.put(7, &udata); // NFTA_RULE_USERDATA
        }
        self.end();
    }

    /// `add element inet T M { KEY : goto CHAIN, … }`.
    pub fn add_goto_elements<'a>(
        &mut self,
        table: &str,
        map: &str,
        elements: impl IntoIterator<Item = (AddrProtoPort, &'a str)>,
    ) {
        self.element_messages(
            (MSG_NEWSETELEM, F_CREATE),
            (table, map),
            elements,
            |b, (key, chain)| {
                value(b, 1, &key.bytes()); // NFTA_SET_ELEM_KEY
                b.begin_nest(2); // NFTA_SET_ELEM_DATA
                verdict(b, NFT_GOTO, Some(chain));
                b.end_nest();
            },
        );
    }

    /// `delete element inet T M { KEY, … }`.
    pub fn delete_elements(
        &mut self,
        table: &str,
        map: &str,
        keys: impl IntoIterator<Item = AddrProtoPort>,
    ) {
        self.element_messages((MSG_DELSETELEM, 0), (table, map), keys, |b, key| {
            value(b, 1, &key.bytes()); // NFTA_SET_ELEM_KEY
        });
    }

    /// Set-element messages for `items`, as many as the 64 KiB attribute limit needs.
    fn element_messages<T>(
        &mut self,
        (msg, flags): (u16, u16),
        (table, set): (&str, &str),
        items: impl IntoIterator<Item = T>,
        mut one: impl FnMut(&mut Buffer, T),
    ) {
        let mut items = items.into_iter().peekable();
        while items.peek().is_some() {
            let b = self.begin(msg, flags, NFPROTO_INET);
            b.put_str(1, table); // NFTA_SET_ELEM_LIST_TABLE
            b.put_str(2, set); // NFTA_SET_ELEM_LIST_SET
            b.begin_nest(3); // NFTA_SET_ELEM_LIST_ELEMENTS
            while b.nest_len() <= ELEMENT_BYTES_PER_MESSAGE
                && let Some(item) = items.next()
            {
                b.begin_nest(NFTA_LIST_ELEM);
                one(b, item);
                b.end_nest();
            }
            b.end_nest();
            self.end();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn element_keys_use_four_byte_slots() {
        let k = AddrProtoPort {
            addr: "192.0.2.53".parse().unwrap(),
            proto: 17,
            port: 53,
        };
        assert_eq!(k.bytes(), vec![192, 0, 2, 53, 17, 0, 0, 0, 0, 53, 0, 0]);
        assert_eq!(
            concat_type(TYPE_IPV4),
            0x730d,
            "nft's id for the concat type"
        );
    }

    #[test]
    fn long_element_lists_are_split_under_the_attribute_limit() {
        let key = |i: u32| AddrProtoPort {
            addr: IpAddr::from(i.to_be_bytes()),
            proto: 6,
            port: 80,
        };
        let mut batch = Batch::new(1, 0);
        batch.add_goto_elements("t", "m", (0..5000).map(|i| (key(i), "svc-chain")));
        assert!(batch.messages() > 1, "{} messages", batch.messages());
        let mut none = Batch::new(1, 0);
        none.delete_elements("t", "m", []);
        assert_eq!(none.messages(), 0, "no elements, no message");
    }
}
