//! The nftables operations the backend uses, as data: rendered as `nft -f` text
//! ([`Op::text`], for the golden tests, logs and the `nft` writer) or added to a
//! `causeway_nfnl` batch as the netlink messages `nft` would send for that text
//! ([`encode`], for the netlink writer; the crate knows the attribute numbers). The two
//! must agree: a namespace test loads both and compares the kernel's listings (one
//! deliberate difference: [`Stmt::ProtoContext`]).

use std::fmt::Write as _;
use std::net::SocketAddr;

use causeway_shared::model::Protocol;
use ipnet::IpNet;

use causeway_nfnl::{AddrProtoPort, BaseChain, Batch, Rule};

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

/// Adds `op` to `batch` (one message, or several for long element lists).
pub fn encode(op: &Op, batch: &mut Batch) {
    match op {
        Op::AddTable { table } => batch.add_table(table),
        Op::DeleteTable { table } => batch.delete_table(table),
        Op::FlushTable { table } => batch.flush_table(table),
        Op::AddChain { table, chain, hook } => {
            batch.add_chain(table, chain, hook.map(Hook::base_chain))
        }
        Op::FlushChain { table, chain } => batch.flush_chain(table, chain),
        Op::DeleteChain { table, chain } => batch.delete_chain(table, chain),
        Op::AddMap { table, map, v6 } => batch.add_verdict_map(table, map, *v6),
        Op::FlushMap { table, map } => batch.flush_set(table, map),
        Op::AddAffinitySet {
            table,
            set,
            v6,
            timeout_secs,
        } => batch.add_timeout_addr_set(table, set, *v6, *timeout_secs),
        Op::DeleteSet { table, set } => batch.delete_set(table, set),
        Op::AddRule {
            table,
            chain,
            stmts,
            comment,
        } => batch.add_rule(table, chain, comment.as_deref(), |rule| {
            for s in stmts {
                s.encode(rule);
            }
        }),
        Op::AddElements {
            table,
            map,
            elements,
        } => batch.add_goto_elements(
            table,
            map,
            elements
                .iter()
                .map(|(k, chain)| (map_key(k), chain.as_str())),
        ),
        Op::DeleteElements { table, map, keys } => {
            batch.delete_elements(table, map, keys.iter().map(map_key))
        }
    }
}

/// A virtual service's key as a `service-ips` map key.
fn map_key(key: &VsKey) -> AddrProtoPort {
    AddrProtoPort {
        addr: key.addr.ip(),
        proto: key.proto.number(),
        port: key.addr.port(),
    }
}

impl Hook {
    /// The base chain as netlink gives it: the priorities the text names `dstnat`
    /// (-100), `-100` and `srcnat` (100).
    fn base_chain(self) -> BaseChain {
        let (hook, priority) = match self {
            Hook::Prerouting => (causeway_nfnl::Hook::Prerouting, -100),
            Hook::Output => (causeway_nfnl::Hook::Output, -100),
            Hook::Postrouting => (causeway_nfnl::Hook::Postrouting, 100),
        };
        BaseChain { hook, priority }
    }
}

impl Stmt {
    /// The statement's expressions, as nft writes them for its text.
    fn encode(&self, rule: &mut Rule) {
        match self {
            Stmt::Counter => rule.counter(),
            Stmt::MarkOr(m) => rule.mark_or(*m),
            Stmt::MarkClear(m) => rule.mark_clear(*m),
            Stmt::MarkXor(m) => rule.mark_xor(*m),
            Stmt::Jump(c) => rule.jump(c),
            Stmt::Return => rule.return_(),
            Stmt::Masquerade => rule.masquerade_fully_random(),
            Stmt::Saddr(net) => rule.saddr(*net),
            Stmt::SaddrIn { v6, set } => rule.saddr_in(*v6, set),
            Stmt::UpdateSaddr { v6, set } => rule.update_saddr(*v6, set),
            Stmt::Numgen { random, modulus } => rule.numgen(*random, *modulus),
            Stmt::Jhash { v6, modulus, value } => rule.jhash_saddr(*v6, *modulus, *value),
            // Text only: see the variant.
            Stmt::ProtoContext(_) => {}
            Stmt::Dnat(to) => rule.dnat(*to),
            Stmt::Vmap { v6, map } => rule.vmap(*v6, map),
        }
    }
}
