//! The nftables operations the backend uses, as data: rendered as `nft -f` text
//! ([`Op::text`], for the golden tests, logs and the `nft` writer) or encoded as the
//! netlink messages `nft` would send for that text ([`encode`], for the netlink writer).
//! The two must agree: a namespace test loads both and compares the kernel's listings
//! (one deliberate difference: [`Stmt::ProtoContext`]).

use std::fmt::Write as _;
use std::net::{IpAddr, SocketAddr};

use causeway_shared::model::Protocol;
use ipnet::IpNet;

use crate::nfnl::Batch;
use crate::nfnl::msg::{Buffer, F_APPEND, F_CREATE};
use crate::plan::VsKey;

/// A base chain's hook (all are `type nat`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Hook {
    Prerouting,
    Output,
    Postrouting,
}

/// One statement of a rule.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Stmt {
    Counter,
    /// `meta mark set meta mark or X`
    MarkOr(u32),
    /// `meta mark and X == 0`
    MarkClear(u32),
    /// `meta mark set meta mark xor X`
    MarkXor(u32),
    Jump(String),
    Return,
    /// `masquerade fully-random`
    Masquerade,
    /// `ip saddr PREFIX` (`ip6` for IPv6)
    Saddr(IpNet),
    /// `ip saddr @SET`
    SaddrIn {
        v6: bool,
        set: String,
    },
    /// `update @SET { ip saddr }`
    UpdateSaddr {
        v6: bool,
        set: String,
    },
    /// `numgen inc|random mod N == 0`
    Numgen {
        random: bool,
        modulus: u32,
    },
    /// `jhash ip saddr mod N seed 0x0 == V`
    Jhash {
        v6: bool,
        modulus: u32,
        value: u32,
    },
    /// `meta l4proto P` in the text, where nft's syntax wants a transport protocol
    /// before a port mapping (`dnat … to A:P`). Not sent to the kernel, which does not
    /// need it: a service chain is reached only through the map keyed on the protocol,
    /// so the match could never fail (and it was a fifth of the kernel's work at a
    /// full sync). nft lists such a rule as `dnat ip to A:P` alone.
    ProtoContext(Protocol),
    /// `dnat ip to A:P`
    Dnat(SocketAddr),
    /// `ip daddr . meta l4proto . th dport vmap @MAP`
    Vmap {
        v6: bool,
        map: String,
    },
}

/// One operation of a transaction, on table `inet <table>`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Op {
    AddTable {
        table: String,
    },
    DeleteTable {
        table: String,
    },
    /// Deletes every rule of the table (chains, sets and elements stay).
    FlushTable {
        table: String,
    },
    AddChain {
        table: String,
        chain: String,
        hook: Option<Hook>,
    },
    FlushChain {
        table: String,
        chain: String,
    },
    DeleteChain {
        table: String,
        chain: String,
    },
    /// The `VIP . proto . port : verdict` map.
    AddMap {
        table: String,
        map: String,
        v6: bool,
    },
    FlushMap {
        table: String,
        map: String,
    },
    /// A session-affinity set of client addresses.
    AddAffinitySet {
        table: String,
        set: String,
        v6: bool,
        timeout_secs: u32,
    },
    DeleteSet {
        table: String,
        set: String,
    },
    AddRule {
        table: String,
        chain: String,
        stmts: Vec<Stmt>,
        comment: Option<String>,
    },
    /// `VIP . proto . port : goto CHAIN` elements of a map.
    AddElements {
        table: String,
        map: String,
        elements: Vec<(VsKey, String)>,
    },
    DeleteElements {
        table: String,
        map: String,
        keys: Vec<VsKey>,
    },
}

fn ip_kw(v6: bool) -> &'static str {
    if v6 { "ip6" } else { "ip" }
}

/// nft's name of the address type.
fn addr_type(v6: bool) -> &'static str {
    if v6 { "ipv6_addr" } else { "ipv4_addr" }
}

fn element_text(key: &VsKey) -> String {
    format!(
        "{} . {} . {}",
        key.addr.ip(),
        key.proto.as_lower(),
        key.addr.port()
    )
}

impl Stmt {
    fn text(&self, out: &mut String) {
        let _ = match self {
            Stmt::Counter => write!(out, "counter"),
            Stmt::MarkOr(m) => write!(out, "meta mark set meta mark or {m:#x}"),
            Stmt::MarkClear(m) => write!(out, "meta mark and {m:#x} == 0"),
            Stmt::MarkXor(m) => write!(out, "meta mark set meta mark xor {m:#x}"),
            Stmt::Jump(c) => write!(out, "jump {c}"),
            Stmt::Return => write!(out, "return"),
            Stmt::Masquerade => write!(out, "masquerade fully-random"),
            Stmt::Saddr(net) => {
                let v6 = matches!(net, IpNet::V6(_));
                if net.prefix_len() == 0 {
                    write!(out, "meta nfproto {}", if v6 { "ipv6" } else { "ipv4" })
                } else {
                    write!(out, "{} saddr {}", ip_kw(v6), net.trunc())
                }
            }
            Stmt::SaddrIn { v6, set } => write!(out, "{} saddr @{set}", ip_kw(*v6)),
            Stmt::UpdateSaddr { v6, set } => {
                write!(out, "update @{set} {{ {} saddr }}", ip_kw(*v6))
            }
            Stmt::Numgen { random, modulus } => write!(
                out,
                "numgen {} mod {modulus} == 0",
                if *random { "random" } else { "inc" }
            ),
            Stmt::Jhash { v6, modulus, value } => {
                // An explicit seed: without one the kernel draws a random seed per
                // rule, and the rules of one service would hash a client differently.
                write!(
                    out,
                    "jhash {} saddr mod {modulus} seed 0x0 == {value}",
                    ip_kw(*v6)
                )
            }
            Stmt::ProtoContext(p) => write!(out, "meta l4proto {}", p.as_lower()),
            Stmt::Dnat(SocketAddr::V4(a)) => write!(out, "dnat ip to {}:{}", a.ip(), a.port()),
            Stmt::Dnat(SocketAddr::V6(a)) => {
                write!(out, "dnat ip6 to [{}]:{}", a.ip(), a.port())
            }
            Stmt::Vmap { v6, map } => write!(
                out,
                "{} daddr . meta l4proto . th dport vmap @{map}",
                ip_kw(*v6)
            ),
        };
    }
}

impl Op {
    /// The `nft -f` line(s) of this operation.
    pub fn text(&self, out: &mut String) {
        let _ = match self {
            Op::AddTable { table } => writeln!(out, "add table inet {table}"),
            Op::DeleteTable { table } => writeln!(out, "delete table inet {table}"),
            Op::FlushTable { table } => writeln!(out, "flush table inet {table}"),
            Op::AddChain { table, chain, hook } => match hook {
                None => writeln!(out, "add chain inet {table} {chain}"),
                Some(h) => {
                    let (name, prio) = match h {
                        Hook::Prerouting => ("prerouting", "dstnat"),
                        Hook::Output => ("output", "-100"),
                        Hook::Postrouting => ("postrouting", "srcnat"),
                    };
                    writeln!(
                        out,
                        "add chain inet {table} {chain} {{ type nat hook {name} priority {prio}; policy accept; }}"
                    )
                }
            },
            Op::FlushChain { table, chain } => writeln!(out, "flush chain inet {table} {chain}"),
            Op::DeleteChain { table, chain } => {
                writeln!(out, "delete chain inet {table} {chain}")
            }
            Op::AddMap { table, map, v6 } => writeln!(
                out,
                "add map inet {table} {map} {{ type {} . inet_proto . inet_service : verdict; }}",
                addr_type(*v6)
            ),
            Op::FlushMap { table, map } => writeln!(out, "flush map inet {table} {map}"),
            Op::AddAffinitySet {
                table,
                set,
                v6,
                timeout_secs,
            } => writeln!(
                out,
                "add set inet {table} {set} {{ type {}; flags dynamic,timeout; timeout {timeout_secs}s; }}",
                addr_type(*v6)
            ),
            Op::DeleteSet { table, set } => writeln!(out, "delete set inet {table} {set}"),
            Op::AddRule {
                table,
                chain,
                stmts,
                comment,
            } => {
                let _ = write!(out, "add rule inet {table} {chain}");
                for s in stmts {
                    out.push(' ');
                    s.text(out);
                }
                if let Some(c) = comment {
                    let _ = write!(out, " comment \"{c}\"");
                }
                writeln!(out)
            }
            Op::AddElements {
                table,
                map,
                elements,
            } => {
                let items: Vec<String> = elements
                    .iter()
                    .map(|(k, chain)| format!("{} : goto {chain}", element_text(k)))
                    .collect();
                writeln!(
                    out,
                    "add element inet {table} {map} {{ {} }}",
                    items.join(", ")
                )
            }
            Op::DeleteElements { table, map, keys } => {
                let items: Vec<String> = keys.iter().map(element_text).collect();
                writeln!(
                    out,
                    "delete element inet {table} {map} {{ {} }}",
                    items.join(", ")
                )
            }
        };
    }
}

/// All operations as one `nft -f` script.
pub fn script(ops: &[Op]) -> String {
    let mut out = String::with_capacity(ops.len() * 160);
    for op in ops {
        op.text(&mut out);
    }
    out
}

// ---- netlink encoding (linux/netfilter/nf_tables.h) ----

const NFPROTO_INET: u8 = 1;
const NFPROTO_IPV4: u8 = 2;
const NFPROTO_IPV6: u8 = 10;

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

const NFTA_LIST_ELEM: u16 = 1;
const NFTA_DATA_VALUE: u16 = 1;
const NFTA_DATA_VERDICT: u16 = 2;
const NFTA_VERDICT_CODE: u16 = 1;
const NFTA_VERDICT_CHAIN: u16 = 2;

const NFT_RETURN: i32 = -5;
const NFT_GOTO: i32 = -4;
const NFT_JUMP: i32 = -3;

const REG_VERDICT: u32 = 0;
const REG_1: u32 = 1;
const REG_2: u32 = 2;

/// `NFT_META_*` keys.
const META_MARK: u32 = 3;
const META_NFPROTO: u32 = 15;
const META_L4PROTO: u32 = 16;

const PAYLOAD_NETWORK: u32 = 1;
const PAYLOAD_TRANSPORT: u32 = 2;

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

/// Encodes one operation into `batch` (one message, or several for long element lists).
pub fn encode(op: &Op, batch: &mut Batch) {
    // A set's id within the transaction: unique, as the message number is.
    let id = batch.messages() as u32 + 1;
    match op {
        Op::AddTable { table } => {
            let b = batch.begin(MSG_NEWTABLE, F_CREATE, NFPROTO_INET);
            b.put_str(1, table); // NFTA_TABLE_NAME
            b.put_be32(2, 0); // NFTA_TABLE_FLAGS
            batch.end();
        }
        Op::DeleteTable { table } => {
            batch.begin(MSG_DELTABLE, 0, NFPROTO_INET).put_str(1, table);
            batch.end();
        }
        Op::FlushTable { table } => {
            batch.begin(MSG_DELRULE, 0, NFPROTO_INET).put_str(1, table);
            batch.end();
        }
        Op::AddChain { table, chain, hook } => {
            let b = batch.begin(MSG_NEWCHAIN, F_CREATE, NFPROTO_INET);
            b.put_str(1, table); // NFTA_CHAIN_TABLE
            b.put_str(3, chain); // NFTA_CHAIN_NAME
            if let Some(h) = hook {
                let (num, prio): (u32, i32) = match h {
                    Hook::Prerouting => (0, -100),
                    Hook::Output => (3, -100),
                    Hook::Postrouting => (4, 100),
                };
                b.begin_nest(4); // NFTA_CHAIN_HOOK
                b.put_be32(1, num); // NFTA_HOOK_HOOKNUM
                b.put_be32(2, prio as u32); // NFTA_HOOK_PRIORITY
                b.end_nest();
                b.put_be32(5, 1); // NFTA_CHAIN_POLICY: NF_ACCEPT
                b.put_str(7, "nat"); // NFTA_CHAIN_TYPE
            }
            batch.end();
        }
        Op::FlushChain { table, chain } => {
            let b = batch.begin(MSG_DELRULE, 0, NFPROTO_INET);
            b.put_str(1, table);
            b.put_str(2, chain);
            batch.end();
        }
        Op::DeleteChain { table, chain } => {
            let b = batch.begin(MSG_DELCHAIN, 0, NFPROTO_INET);
            b.put_str(1, table);
            b.put_str(3, chain);
            batch.end();
        }
        Op::AddMap { table, map, v6 } => {
            let b = batch.begin(MSG_NEWSET, F_CREATE, NFPROTO_INET);
            b.put_str(1, table); // NFTA_SET_TABLE
            b.put_str(2, map); // NFTA_SET_NAME
            b.put_be32(3, SET_MAP); // NFTA_SET_FLAGS
            let (key_type, key_len) = if *v6 {
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
            batch.end();
        }
        Op::FlushMap { table, map } => {
            let b = batch.begin(MSG_DELSETELEM, 0, NFPROTO_INET);
            b.put_str(1, table); // NFTA_SET_ELEM_LIST_TABLE
            b.put_str(2, map); // NFTA_SET_ELEM_LIST_SET
            batch.end();
        }
        Op::AddAffinitySet {
            table,
            set,
            v6,
            timeout_secs,
        } => {
            let b = batch.begin(MSG_NEWSET, F_CREATE, NFPROTO_INET);
            b.put_str(1, table);
            b.put_str(2, set);
            b.put_be32(3, SET_TIMEOUT | SET_EVAL);
            let (key_type, key_len) = if *v6 { (TYPE_IPV6, 16) } else { (TYPE_IPV4, 4) };
            b.put_be32(4, key_type);
            b.put_be32(5, key_len);
            b.put_be32(10, id);
            b.put_be64(11, u64::from(*timeout_secs) * 1000); // NFTA_SET_TIMEOUT (ms)
            b.put(13, ADDR_SET_USERDATA);
            batch.end();
        }
        Op::DeleteSet { table, set } => {
            let b = batch.begin(MSG_DELSET, 0, NFPROTO_INET);
            b.put_str(1, table);
            b.put_str(2, set);
            batch.end();
        }
        Op::AddRule {
            table,
            chain,
            stmts,
            comment,
        } => {
            let b = batch.begin(MSG_NEWRULE, F_CREATE | F_APPEND, NFPROTO_INET);
            b.put_str(1, table); // NFTA_RULE_TABLE
            b.put_str(2, chain); // NFTA_RULE_CHAIN
            b.begin_nest(4); // NFTA_RULE_EXPRESSIONS
            let mut rule = RuleEncoder { b, family: None };
            for s in stmts {
                rule.stmt(s);
            }
            let b = rule.b;
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
            batch.end();
        }
        Op::AddElements {
            table,
            map,
            elements,
        } => element_messages(
            batch,
            (MSG_NEWSETELEM, F_CREATE),
            (table, map),
            elements,
            |b, (key, chain)| {
                b.begin_nest(1); // NFTA_SET_ELEM_KEY
                b.put(NFTA_DATA_VALUE, &element_key(key));
                b.end_nest();
                b.begin_nest(2); // NFTA_SET_ELEM_DATA
                verdict(b, NFT_GOTO, Some(chain));
                b.end_nest();
            },
        ),
        Op::DeleteElements { table, map, keys } => {
            element_messages(batch, (MSG_DELSETELEM, 0), (table, map), keys, |b, key| {
                b.begin_nest(1);
                b.put(NFTA_DATA_VALUE, &element_key(key));
                b.end_nest();
            })
        }
    }
}

/// Set-element messages for `items`, as many as the 64 KiB attribute limit needs.
fn element_messages<T>(
    batch: &mut Batch,
    (msg, flags): (u16, u16),
    (table, set): (&str, &str),
    items: &[T],
    mut one: impl FnMut(&mut Buffer, &T),
) {
    let mut rest = items;
    while !rest.is_empty() {
        let b = batch.begin(msg, flags, NFPROTO_INET);
        b.put_str(1, table); // NFTA_SET_ELEM_LIST_TABLE
        b.put_str(2, set); // NFTA_SET_ELEM_LIST_SET
        b.begin_nest(3); // NFTA_SET_ELEM_LIST_ELEMENTS
        while let Some((item, tail)) = rest.split_first() {
            if b.nest_len() > ELEMENT_BYTES_PER_MESSAGE {
                break;
            }
            b.begin_nest(NFTA_LIST_ELEM);
            one(b, item);
            b.end_nest();
            rest = tail;
        }
        b.end_nest();
        batch.end();
    }
}

/// A map key as the kernel stores it: each part in a 4-byte register slot.
fn element_key(key: &VsKey) -> Vec<u8> {
    let mut out = Vec::with_capacity(24);
    match key.addr.ip() {
        IpAddr::V4(a) => out.extend_from_slice(&a.octets()),
        IpAddr::V6(a) => out.extend_from_slice(&a.octets()),
    }
    out.extend_from_slice(&[key.proto.number(), 0, 0, 0]);
    out.extend_from_slice(&key.addr.port().to_be_bytes());
    out.extend_from_slice(&[0, 0]);
    out
}

/// `NFTA_DATA_VERDICT { code, [chain] }`.
fn verdict(b: &mut Buffer, code: i32, chain: Option<&str>) {
    b.begin_nest(NFTA_DATA_VERDICT);
    b.put_be32(NFTA_VERDICT_CODE, code as u32);
    if let Some(c) = chain {
        b.put_str(NFTA_VERDICT_CHAIN, c);
    }
    b.end_nest();
}

/// Writes a rule's expressions the way nft does for the same text: in an `inet` table
/// the first match on an IPv4/IPv6 header field is preceded by `meta nfproto` (nft's
/// protocol dependency), and the registers are nft's.
struct RuleEncoder<'a> {
    b: &'a mut Buffer,
    /// The network family the rule already checked.
    family: Option<bool>,
}

impl RuleEncoder<'_> {
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
            b.begin_nest(3); // NFTA_CMP_DATA
            b.put(NFTA_DATA_VALUE, data);
            b.end_nest();
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
            b.begin_nest(4); // NFTA_BITWISE_MASK
            b.put(NFTA_DATA_VALUE, mask);
            b.end_nest();
            b.begin_nest(5); // NFTA_BITWISE_XOR
            b.put(NFTA_DATA_VALUE, xor);
            b.end_nest();
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

    fn immediate_value(&mut self, dreg: u32, value: &[u8]) {
        self.expr("immediate", |b| {
            b.put_be32(1, dreg);
            b.begin_nest(2);
            b.put(NFTA_DATA_VALUE, value);
            b.end_nest();
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
    fn saddr(&mut self, v6: bool, dreg: u32) {
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
            b.put_be32(2, META_MARK);
            b.put_be32(3, REG_1); // NFTA_META_SREG
        });
    }

    fn stmt(&mut self, s: &Stmt) {
        match s {
            Stmt::Counter => self.expr("counter", |b| {
                b.put_be64(1, 0); // NFTA_COUNTER_BYTES
                b.put_be64(2, 0); // NFTA_COUNTER_PACKETS
            }),
            Stmt::MarkOr(m) => {
                self.mark_bitwise(!m, *m);
                self.mark_set();
            }
            Stmt::MarkClear(m) => {
                self.mark_bitwise(*m, 0);
                self.cmp_eq(REG_1, &0u32.to_ne_bytes());
            }
            Stmt::MarkXor(m) => {
                self.mark_bitwise(u32::MAX, *m);
                self.mark_set();
            }
            Stmt::Jump(c) => self.immediate_verdict(NFT_JUMP, Some(c)),
            Stmt::Return => self.immediate_verdict(NFT_RETURN, None),
            Stmt::Masquerade => self.expr("masq", |b| {
                b.put_be32(1, 0x10); // NFTA_MASQ_FLAGS: NF_NAT_RANGE_PROTO_RANDOM_FULLY
            }),
            Stmt::Saddr(net) => {
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
            Stmt::SaddrIn { v6, set } => {
                self.saddr(*v6, REG_1);
                self.expr("lookup", |b| {
                    b.put_str(1, set); // NFTA_LOOKUP_SET
                    b.put_be32(2, REG_1); // NFTA_LOOKUP_SREG
                });
            }
            Stmt::UpdateSaddr { v6, set } => {
                self.saddr(*v6, REG_1);
                self.expr("dynset", |b| {
                    b.put_str(1, set); // NFTA_DYNSET_SET_NAME
                    b.put_be32(3, 1); // NFTA_DYNSET_OP: NFT_DYNSET_OP_UPDATE
                    b.put_be32(4, REG_1); // NFTA_DYNSET_SREG_KEY
                });
            }
            Stmt::Numgen { random, modulus } => {
                self.expr("numgen", |b| {
                    b.put_be32(1, REG_1); // NFTA_NG_DREG
                    b.put_be32(2, *modulus); // NFTA_NG_MODULUS
                    b.put_be32(3, u32::from(*random)); // NFTA_NG_TYPE: inc 0, random 1
                    b.put_be32(4, 0); // NFTA_NG_OFFSET
                });
                self.cmp_eq(REG_1, &0u32.to_ne_bytes());
            }
            Stmt::Jhash { v6, modulus, value } => {
                self.saddr(*v6, REG_2);
                self.expr("hash", |b| {
                    b.put_be32(1, REG_2); // NFTA_HASH_SREG
                    b.put_be32(2, REG_1); // NFTA_HASH_DREG
                    b.put_be32(3, if *v6 { 16 } else { 4 }); // NFTA_HASH_LEN
                    b.put_be32(4, *modulus); // NFTA_HASH_MODULUS
                    // One seed for every rule of a service: each rule must compute the
                    // same hash of the same client.
                    b.put_be32(5, 0); // NFTA_HASH_SEED
                    b.put_be32(6, 0); // NFTA_HASH_OFFSET
                    b.put_be32(7, 0); // NFTA_HASH_TYPE: NFT_HASH_JENKINS
                });
                self.cmp_eq(REG_1, &value.to_ne_bytes());
            }
            Stmt::ProtoContext(_) => {}
            Stmt::Dnat(to) => {
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
            Stmt::Vmap { v6, map } => {
                self.family_dependency(*v6);
                // nft's registers for `daddr . l4proto . dport`: 32-bit slots after
                // the address (reg 9/10 for IPv4; reg 2 = slot 4, slot 5 = 13 for IPv6).
                let (len, offset, proto_reg, port_reg) = if *v6 {
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
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn element_keys_use_four_byte_slots() {
        let k = VsKey {
            proto: Protocol::Udp,
            addr: "192.0.2.53:53".parse().unwrap(),
        };
        assert_eq!(
            element_key(&k),
            vec![192, 0, 2, 53, 17, 0, 0, 0, 0, 53, 0, 0]
        );
        assert_eq!(
            concat_type(TYPE_IPV4),
            0x730d,
            "nft's id for the concat type"
        );
    }

    #[test]
    fn prefix_masks_cover_partial_bytes() {
        let mut batch = Batch::new(1, 0);
        let op = Op::AddRule {
            table: "t".into(),
            chain: "c".into(),
            stmts: vec![Stmt::Saddr("10.16.0.0/12".parse().unwrap()), Stmt::Return],
            comment: None,
        };
        encode(&op, &mut batch);
        let bytes = batch.finish().bytes().to_vec();
        // mask for /12 over 2 bytes: ff f0
        assert!(bytes.windows(2).any(|w| w == [0xff, 0xf0]));
    }
}
