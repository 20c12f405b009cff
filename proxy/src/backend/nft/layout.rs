//! The tables of one layout and what they hold: the names of our tables (a base table
//! and the service tables), which table a virtual service lives in, which tables are
//! ours, and the record of the chains and sets each holds (what a full apply deletes
//! when no longer wanted).

use std::collections::{BTreeMap, BTreeSet};

use super::ops::Op;
use crate::names;
use crate::plan::{DesiredState, VsKey};

/// Service tables unless configured otherwise.
pub const DEFAULT_SHARDS: usize = 16;

/// Chains and sets present in one of our tables.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TableObjects {
    pub chains: BTreeSet<String>,
    pub sets: BTreeSet<String>,
}

/// Our tables and what each holds.
pub type Tables = BTreeMap<String, TableObjects>;

/// Chains and maps of a service table: always present, never deleted.
const SHARD_CHAINS: &[&str] = &["nat-prerouting", "nat-output", "services"];
const SHARD_MAPS: &[&str] = &["service-ips", "service-ips6"];
/// The one chain of the base table.
pub(super) const BASE_CHAIN: &str = "nat-postrouting";

/// The table names of one layout: a base table and `shards` service tables.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Layout {
    pub base: String,
    pub shards: usize,
}

impl Layout {
    pub fn new(base: impl Into<String>, shards: usize) -> Self {
        Layout {
            base: base.into(),
            shards: shards.max(1),
        }
    }

    /// Name of service table `i`.
    pub fn shard(&self, i: usize) -> String {
        format!("{}-{i}", self.base)
    }

    /// The service table holding `key`.
    pub fn table_of(&self, key: &VsKey) -> String {
        self.shard(names::shard_of(key, self.shards))
    }

    /// Whether `table` is one of ours: the base table or `<base>-<number>` (any
    /// number: tables of a larger shard count are ours to delete).
    pub fn owns(&self, table: &str) -> bool {
        table == self.base
            || table
                .strip_prefix(&self.base)
                .and_then(|t| t.strip_prefix('-'))
                .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
    }
}

/// The tables, chains and sets `desired` needs (the fixed ones included).
pub fn objects_of(layout: &Layout, desired: &DesiredState) -> Tables {
    let mut tables = Tables::new();
    tables.insert(
        layout.base.clone(),
        TableObjects {
            chains: [BASE_CHAIN.to_string()].into(),
            sets: BTreeSet::new(),
        },
    );
    for i in 0..layout.shards {
        tables.insert(
            layout.shard(i),
            TableObjects {
                chains: SHARD_CHAINS.iter().map(|c| c.to_string()).collect(),
                sets: SHARD_MAPS.iter().map(|c| c.to_string()).collect(),
            },
        );
    }
    for (k, vs) in &desired.services {
        let o = tables.entry(layout.table_of(k)).or_default();
        o.chains.insert(names::service_chain(k, &vs.origin));
        if vs.affinity.is_some() {
            for real in vs.reals.keys() {
                o.sets.insert(names::affinity_set(k, *real));
            }
        }
    }
    tables
}

pub(super) fn map_of(key: &VsKey) -> &'static str {
    if key.addr.is_ipv4() {
        "service-ips"
    } else {
        "service-ips6"
    }
}

/// Brings the record of our tables, chains and sets up to date with `ops` (applied).
pub fn track(tables: &mut Tables, ops: &[Op]) {
    for op in ops {
        track_one(tables, op);
    }
}

/// [`track`] for one operation.
pub(super) fn track_one(tables: &mut Tables, op: &Op) {
    match op {
        Op::AddTable { table } => {
            tables.entry(table.clone()).or_default();
        }
        Op::DeleteTable { table } => {
            tables.remove(table);
        }
        Op::AddChain { table, chain, .. } => {
            tables
                .entry(table.clone())
                .or_default()
                .chains
                .insert(chain.clone());
        }
        Op::DeleteChain { table, chain } => {
            if let Some(t) = tables.get_mut(table) {
                t.chains.remove(chain);
            }
        }
        Op::AddMap {
            table, map: set, ..
        }
        | Op::AddAffinitySet { table, set, .. } => {
            tables
                .entry(table.clone())
                .or_default()
                .sets
                .insert(set.clone());
        }
        Op::DeleteSet { table, set } => {
            if let Some(t) = tables.get_mut(table) {
                t.sets.remove(set);
            }
        }
        Op::FlushTable { .. }
        | Op::FlushChain { .. }
        | Op::FlushMap { .. }
        | Op::AddRule { .. }
        | Op::AddElements { .. }
        | Op::DeleteElements { .. } => {}
    }
}
