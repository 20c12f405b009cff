//! The pure rendering: a desired state (and, for a full apply, the tables there now; for a
//! partial one, the previous state) in, the operations of one transaction out, in the
//! layout the backend's documentation draws. No I/O: the golden tests beside this file
//! check its output as `nft -f` text.

use std::collections::BTreeMap;
use std::net::SocketAddr;

use ipnet::IpNet;

use super::layout::{BASE_CHAIN, Layout, TableObjects, Tables, map_of, objects_of};
use super::ops::{Hook, Op, Stmt};
use super::readback::ChainSeen;
use crate::names;
use crate::plan::{DesiredState, VirtualServer, VsKey};

/// Mark bit set on connections we DNAT, masqueraded (and cleared) in nat-postrouting.
pub const MASQ_MARK: u32 = 0x8000;

/// Where rendered operations go, one at a time (a list, or the netlink encoder).
pub type Sink<'a> = dyn FnMut(Op) + 'a;

/// How a scheduler picks among a service's slots. nftables has no connection counts, so
/// the least-connection family falls back to random choice.
enum Pick {
    RoundRobin,
    SourceHash,
    Random,
}

fn scheduler_kind(scheduler: &str) -> Pick {
    match scheduler {
        "rr" | "wrr" => Pick::RoundRobin,
        "sh" | "mh" => Pick::SourceHash,
        _ => Pick::Random,
    }
}

/// Most slots (rules) one real server may take (its weight; weights above are capped).
const MAX_SLOTS: u32 = 100;

pub(super) fn svc_comment(key: &VsKey, vs: &VirtualServer) -> String {
    let o = &vs.origin;
    let base = format!(
        "cw:svc vs={} key={}/{}/{} sched={} aff={}",
        names::vs_hash(key),
        key.proto.as_lower(),
        key.addr.ip(),
        key.addr.port(),
        vs.scheduler,
        vs.affinity.unwrap_or(0)
    );
    let full = format!(
        "{base} cluster={} svc={}/{} port={} gen={}",
        o.cluster, o.service.namespace, o.service.name, o.port, o.slice_generation
    );
    // The kernel keeps at most 255 bytes of user data per rule.
    if full.len() <= 240 { full } else { base }
}

/// Appends the operations creating one virtual service's chain, sets and rules in
/// table `t`. `fresh`: the chain is known to be empty (after `flush table`), so no
/// `flush chain`.
fn render_vs(ops: &mut Sink, t: &str, key: &VsKey, vs: &VirtualServer, fresh: bool) {
    let v6 = key.addr.is_ipv6();
    let vs_hash = names::vs_hash(key);
    let svc = names::service_chain(key, &vs.origin);
    let rule = |stmts: Vec<Stmt>, comment: String| Op::AddRule {
        table: t.to_string(),
        chain: svc.clone(),
        stmts,
        comment: Some(comment),
    };
    ops(Op::AddChain {
        table: t.to_string(),
        chain: svc.clone(),
        hook: None,
    });
    if !fresh {
        ops(Op::FlushChain {
            table: t.to_string(),
            chain: svc.clone(),
        });
    }
    // Every connection entering the chain is marked for masquerade once, here.
    ops(rule(
        vec![Stmt::Counter, Stmt::MarkOr(MASQ_MARK)],
        svc_comment(key, vs),
    ));
    // What one connection to real server `real` does: counted, remembered for affinity,
    // DNATed. The comment is what `parse_listing` reads back.
    let dnat = |mut stmts: Vec<Stmt>, real: &SocketAddr, weight: u32| {
        stmts.push(Stmt::Counter);
        if vs.affinity.is_some() {
            stmts.push(Stmt::UpdateSaddr {
                v6,
                set: names::affinity_set(key, *real),
            });
        }
        stmts.push(Stmt::ProtoContext(key.proto));
        stmts.push(Stmt::Dnat(*real));
        rule(stmts, format!("cw:ep vs={vs_hash} w={weight} to={real}"))
    };
    let mut slots = Vec::new();
    for (real, weight) in &vs.reals {
        if let Some(timeout) = vs.affinity {
            let set = names::affinity_set(key, *real);
            ops(Op::AddAffinitySet {
                table: t.to_string(),
                set: set.clone(),
                v6,
                timeout_secs: timeout,
            });
            if *weight > 0 {
                // Clients seen recently go back to the same real server.
                ops(dnat(vec![Stmt::SaddrIn { v6, set }], real, *weight));
            }
        }
        for _ in 0..(*weight).min(MAX_SLOTS) {
            slots.push((real, *weight));
        }
    }
    // One rule per slot, each ending in its DNAT (a verdict: later rules are not
    // evaluated). No per-endpoint chains: `nft` dumps the table's chains before every
    // transaction, a cost that grows with the square of their number. No anonymous
    // `vmap { … }` either: every anonymous map is a set the kernel must name (`__map%d`,
    // found by scanning all sets of the table), which made loading 10,000 services
    // quadratic.
    let n = slots.len() as u32;
    for (i, (real, weight)) in slots.iter().enumerate() {
        let i = i as u32;
        let last = i + 1 == n;
        let pick = match scheduler_kind(&vs.scheduler) {
            _ if last => vec![],
            // Rule i sees the connections rules 0..i did not take; taking every
            // (n-i)-th of them gives each slot exactly one connection per n, in order.
            Pick::RoundRobin => vec![Stmt::Numgen {
                random: false,
                modulus: n - i,
            }],
            // The same hash (same seed) in every rule: slot i takes hash value i.
            Pick::SourceHash => vec![Stmt::Jhash {
                v6,
                modulus: n,
                value: i,
            }],
            // Probability 1/(n-i) among what is left: uniform over the slots.
            Pick::Random => vec![Stmt::Numgen {
                random: true,
                modulus: n - i,
            }],
        };
        ops(dnat(pick, real, *weight));
    }
    // Draining (weight 0) real servers get no slot; a rule after the last slot, never
    // reached while any slot exists, keeps them in the table's own record.
    for (real, _) in vs.reals.iter().filter(|(_, w)| **w == 0) {
        ops(rule(
            vec![Stmt::Counter],
            format!("cw:ep vs={vs_hash} w=0 to={real}"),
        ));
    }
}

/// The base table: masquerade what we DNATed (marked), except `keep` sources.
fn render_base(ops: &mut Sink, t: &str, keep: &[IpNet]) {
    let table = || t.to_string();
    let rule = |stmts: Vec<Stmt>| Op::AddRule {
        table: table(),
        chain: BASE_CHAIN.to_string(),
        stmts,
        comment: None,
    };
    ops(Op::AddTable { table: table() });
    ops(Op::FlushTable { table: table() });
    ops(Op::AddChain {
        table: table(),
        chain: BASE_CHAIN.to_string(),
        hook: Some(Hook::Postrouting),
    });
    ops(rule(vec![Stmt::MarkClear(MASQ_MARK), Stmt::Return]));
    ops(rule(vec![Stmt::MarkXor(MASQ_MARK)]));
    for net in keep {
        ops(rule(vec![Stmt::Saddr(net.trunc()), Stmt::Return]));
    }
    ops(rule(vec![Stmt::Masquerade]));
}

/// A service table's base chains, maps and dispatch rules (after `flush table`, or, with
/// `whole_table` false, after flushing only those chains: service chains keep their rules
/// and counters).
fn render_shard_skeleton(ops: &mut Sink, t: &str, whole_table: bool) {
    let table = || t.to_string();
    ops(Op::AddTable { table: table() });
    if whole_table {
        ops(Op::FlushTable { table: table() });
    }
    for (chain, hook) in [
        ("nat-prerouting", Some(Hook::Prerouting)),
        ("nat-output", Some(Hook::Output)),
        ("services", None),
    ] {
        ops(Op::AddChain {
            table: table(),
            chain: chain.to_string(),
            hook,
        });
        if !whole_table {
            ops(Op::FlushChain {
                table: table(),
                chain: chain.to_string(),
            });
        }
    }
    for (map, v6) in [("service-ips", false), ("service-ips6", true)] {
        ops(Op::AddMap {
            table: table(),
            map: map.to_string(),
            v6,
        });
        ops(Op::FlushMap {
            table: table(),
            map: map.to_string(),
        });
    }
    for chain in ["nat-prerouting", "nat-output"] {
        ops(Op::AddRule {
            table: table(),
            chain: chain.to_string(),
            stmts: vec![Stmt::Jump("services".to_string())],
            comment: None,
        });
    }
    for (map, v6) in [("service-ips", false), ("service-ips6", true)] {
        ops(Op::AddRule {
            table: table(),
            chain: "services".to_string(),
            stmts: vec![Stmt::Vmap {
                v6,
                map: map.to_string(),
            }],
            comment: None,
        });
    }
}

/// Map elements, by table and map, in chunks of at most 1,000.
fn render_elements<'a>(
    ops: &mut Sink,
    layout: &Layout,
    services: impl Iterator<Item = (&'a VsKey, &'a VirtualServer)>,
) {
    let mut by_map: BTreeMap<(String, &'static str), Vec<(VsKey, String)>> = BTreeMap::new();
    for (k, vs) in services {
        by_map
            .entry((layout.table_of(k), map_of(k)))
            .or_default()
            .push((*k, names::service_chain(k, &vs.origin)));
    }
    for ((table, map), elements) in by_map {
        for chunk in elements.chunks(1000) {
            ops(Op::AddElements {
                table: table.clone(),
                map: map.to_string(),
                elements: chunk.to_vec(),
            });
        }
    }
}

/// The rules [`render_vs`] writes for `vs`.
fn rule_count(vs: &VirtualServer) -> usize {
    let affinity = usize::from(vs.affinity.is_some());
    1 + vs
        .reals
        .values()
        .map(|w| match *w {
            0 => 1,
            w => w.min(MAX_SLOTS) as usize + affinity,
        })
        .sum::<usize>()
}

/// What the kernel holds now, as a full apply compares it ([`Kernel::default`]: nothing).
#[derive(Clone, Debug, Default)]
pub struct Kernel {
    /// Our tables, chains and sets.
    pub tables: Tables,
    /// The virtual services its rule comments describe.
    pub services: DesiredState,
    /// Where each one's rules are.
    pub seen: BTreeMap<VsKey, ChainSeen>,
}

impl Kernel {
    /// Only these tables, chains and sets (no service rules listed).
    pub fn tables(tables: Tables) -> Self {
        Self {
            tables,
            ..Self::default()
        }
    }

    /// True when `vs` is in the kernel exactly as [`render_vs`] would write it into `t`
    /// (same scheduler, affinity, reals, weights and origin by its comments; every rule in
    /// its own chain, as many as it should have).
    fn intact(&self, t: &str, key: &VsKey, vs: &VirtualServer) -> bool {
        self.services.services.get(key) == Some(vs)
            && self.seen.get(key).is_some_and(|s| {
                s.whole
                    && s.table == t
                    && s.chain == names::service_chain(key, &vs.origin)
                    && s.rules == rule_count(vs)
            })
    }
}

/// Every table as one transaction, keeping what is already right; `keep` are the sources
/// not masqueraded, `kernel` what is there now. Tables of another layout are deleted whole.
/// The base table (masquerade rules only) is rewritten whole; in each service table the base
/// chains, dispatch rules and maps are rewritten, each service chain the kernel holds intact
/// ([`Kernel::intact`]) is left as it is (its counters and its rules' handles stay), every
/// other one is flushed and written again, and chains and sets no longer wanted are flushed
/// and deleted.
pub fn render_full(
    layout: &Layout,
    keep: &[IpNet],
    desired: &DesiredState,
    kernel: &Kernel,
) -> Vec<Op> {
    let mut ops = Vec::with_capacity(desired.services.len() * 8 + 64);
    render_full_into(layout, keep, desired, kernel, &mut |op| ops.push(op));
    ops
}

/// [`render_full`], each operation handed to `out` as it is made.
pub fn render_full_into(
    layout: &Layout,
    keep: &[IpNet],
    desired: &DesiredState,
    kernel: &Kernel,
    out: &mut Sink,
) {
    let ops = out;
    let existing = &kernel.tables;
    let wanted = objects_of(layout, desired);
    for (table, objects) in existing {
        let unwanted = !wanted.contains_key(table);
        let foreign_base = *table == layout.base
            && (objects.chains.iter().any(|c| c != BASE_CHAIN) || !objects.sets.is_empty());
        if unwanted || foreign_base {
            ops(Op::DeleteTable {
                table: table.clone(),
            });
        }
    }
    render_base(ops, &layout.base, keep);
    for i in 0..layout.shards {
        let t = layout.shard(i);
        render_shard_skeleton(ops, &t, !existing.contains_key(&t));
    }
    for (k, vs) in &desired.services {
        let t = layout.table_of(k);
        if !kernel.intact(&t, k, vs) {
            let fresh = !existing
                .get(&t)
                .is_some_and(|o| o.chains.contains(&names::service_chain(k, &vs.origin)));
            render_vs(ops, &t, k, vs, fresh);
        }
    }
    render_elements(ops, layout, desired.services.iter());
    for (table, want) in &wanted {
        let Some(have) = existing.get(table) else {
            continue;
        };
        if *table == layout.base {
            continue;
        }
        let gone: Vec<&String> = have.chains.difference(&want.chains).collect();
        // Rules go before the sets they update and the chains that hold them.
        for chain in &gone {
            ops(Op::FlushChain {
                table: table.clone(),
                chain: (*chain).clone(),
            });
        }
        for set in have.sets.difference(&want.sets) {
            ops(Op::DeleteSet {
                table: table.clone(),
                set: set.clone(),
            });
        }
        for chain in gone {
            ops(Op::DeleteChain {
                table: table.clone(),
                chain: chain.clone(),
            });
        }
    }
}

/// Operations removing one virtual service's element, rules, chain and sets, except
/// the chain and sets `keep` still needs.
fn render_removal(ops: &mut Sink, t: &str, key: &VsKey, vs: &VirtualServer, keep: &TableObjects) {
    ops(Op::DeleteElements {
        table: t.to_string(),
        map: map_of(key).to_string(),
        keys: vec![*key],
    });
    let svc = names::service_chain(key, &vs.origin);
    ops(Op::FlushChain {
        table: t.to_string(),
        chain: svc.clone(),
    });
    if !keep.chains.contains(&svc) {
        ops(Op::DeleteChain {
            table: t.to_string(),
            chain: svc,
        });
    }
    if vs.affinity.is_some() {
        for r in vs.reals.keys() {
            let set = names::affinity_set(key, *r);
            if !keep.sets.contains(&set) {
                ops(Op::DeleteSet {
                    table: t.to_string(),
                    set,
                });
            }
        }
    }
}

/// Only the virtual services that differ between `previous` and `desired`.
///
/// Both maps are walked side by side in key order (one comparison per step instead of a
/// lookup per service), so an unchanged service costs one equality check.
pub fn render_partial(layout: &Layout, previous: &DesiredState, desired: &DesiredState) -> Vec<Op> {
    let mut ops = Vec::new();
    render_partial_into(layout, previous, desired, &mut |op| ops.push(op));
    ops
}

/// [`render_partial`], each operation handed to `out` as it is made.
pub fn render_partial_into(
    layout: &Layout,
    previous: &DesiredState,
    desired: &DesiredState,
    out: &mut Sink,
) {
    use std::cmp::Ordering;
    let ops = out;
    let mut changed: Vec<(&VsKey, &VirtualServer)> = Vec::new();
    let mut old_iter = previous.services.iter().peekable();
    let mut new_iter = desired.services.iter().peekable();
    loop {
        let order = match (old_iter.peek(), new_iter.peek()) {
            (None, None) => break,
            (Some(_), None) => Ordering::Less,
            (None, Some(_)) => Ordering::Greater,
            (Some((ko, _)), Some((kn, _))) => ko.cmp(kn),
        };
        match order {
            // Gone.
            Ordering::Less => {
                let (k, old) = old_iter.next().expect("peeked");
                let t = layout.table_of(k);
                render_removal(ops, &t, k, old, &TableObjects::default());
            }
            // New.
            Ordering::Greater => changed.push(new_iter.next().expect("peeked")),
            Ordering::Equal => {
                let (k, old) = old_iter.next().expect("peeked");
                let (_, new) = new_iter.next().expect("peeked");
                if new == old {
                    continue;
                }
                // Keep the chain and the sets the new version reuses: the chain is
                // flushed and refilled below, and affinity entries survive.
                let mut keep = TableObjects::default();
                keep.chains.insert(names::service_chain(k, &new.origin));
                if new.affinity.is_some() && old.affinity == new.affinity {
                    for r in new.reals.keys() {
                        keep.sets.insert(names::affinity_set(k, *r));
                    }
                }
                render_removal(ops, &layout.table_of(k), k, old, &keep);
                changed.push((k, new));
            }
        }
    }
    for (k, vs) in &changed {
        render_vs(ops, &layout.table_of(k), k, vs, false);
    }
    render_elements(ops, layout, changed.into_iter());
}

#[cfg(test)]
pub(super) mod tests;
