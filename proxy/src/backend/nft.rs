//! The nftables backend: tables of our own, kube-proxy-nftables style.
//!
//! ```text
//! table inet <t>         (proxy.nftTable, default "causeway")
//!   chain nat-postrouting { type nat hook postrouting priority srcnat; masquerade what we
//!                           DNATed, except what comes from the local cluster's pods }
//! table inet <t>-<i>     (one per shard, i = 0 … shards-1; a service lives in shard
//!                         hash(proto, VIP, port) mod shards)
//!   map service-ips  { ipv4_addr . inet_proto . inet_service : verdict }   VIP.proto.port → goto svc chain
//!   map service-ips6 { ipv6_addr . inet_proto . inet_service : verdict }
//!   chain nat-prerouting  { type nat hook prerouting priority dstnat; jump services }
//!   chain nat-output      { type nat hook output priority -100; jump services }
//!   chain services        { ip daddr . meta l4proto . th dport vmap @service-ips; ip6 … @service-ips6 }
//!   chain svc-HASH-…      { counter meta mark set meta mark or 0x8000 comment "cw:svc …";
//!                           [ip saddr @aff-… <DNAT to that real>, …]        (affinity: one per real)
//!                           numgen inc mod N-i == 0 <DNAT to slot i's real>, …, <DNAT to the last slot's real>
//!                           [counter comment "cw:ep … w=0 …", …] }           (draining reals, never reached)
//!   <DNAT to real>        = counter [update @aff-… { ip saddr }] meta l4proto tcp dnat ip to A:P
//!                           comment "cw:ep vs=… w=… to=A:P"
//!   set aff-HASH-…        { ipv4_addr; flags dynamic,timeout; timeout <affinity>s }   (sessionAffinity: ClientIP only)
//! ```
//!
//! This is kube-proxy's nftables layout with the per-endpoint chains folded into the
//! service chain (each DNAT rule is what kube-proxy's endpoint chain holds), spread over
//! several tables. Both serve one cost of the kernel: a transaction that adds a rule
//! with a DNAT, a jump or a goto makes the kernel re-validate every chain reachable from
//! the base chains **of that table** (twice here: prerouting and output). One table of
//! 10,000 services costs ~45 ms per transaction for that alone; sixteen tables cost a
//! sixteenth of it, and a new connection pays one hash lookup per shard in the nat hook
//! (the nat hook stops at the first chain that translates).
//!
//! Weight-0 (draining) real servers get no slot rule (nor affinity rule), so they get no
//! new connections; established ones keep flowing through their conntrack NAT binding,
//! which no rule change touches.
//!
//! A full apply is one transaction: `flush table` on each of our tables (rules only:
//! chains, sets and the affinity sets' elements stay), flush the maps, rebuild every rule
//! and element, delete chains, sets and tables no longer wanted. A partial apply rewrites
//! only the virtual services that changed. Chain and rule comments (`cw:svc`, `cw:ep`)
//! carry what [`NftBackend::read`] needs to rebuild the state after a restart.
//!
//! Transactions go to the kernel as netlink messages ([`crate::nfnl`]) encoded from
//! [`ops::Op`]s, the same operations [`ops::script`] renders as `nft -f` text (used by
//! the tests, the logs and [`Writer::Nft`]). Reading back uses `nft -j list ruleset`.

pub mod ops;

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write as _;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Command, Stdio};

use causeway_shared::model::{Protocol, ServiceKey};
use ipnet::IpNet;

use super::{
    ApplyReport, Backend, BackendError, Counters, Header, KernelReal, KernelService, KernelState,
};
use crate::names;
use crate::nfnl::dump::ListedRule;
use crate::nfnl::{Batch, NfSocket, NfnlError};
use crate::plan::{DesiredState, Origin, VirtualServer, VsKey};
use ops::{Hook, Op, Stmt};

/// `NFPROTO_INET`: the family of our tables.
const NFPROTO_INET: u8 = 1;

/// Mark bit set on connections we DNAT, masqueraded (and cleared) in nat-postrouting.
pub const MASQ_MARK: u32 = 0x8000;

/// Netlink bytes per virtual service in a full sync (a little above the 2,950 measured
/// with 5 endpoints each): the batch buffer is sized once, since doubling a 30 MB buffer
/// would hold both copies at the peak.
const BYTES_PER_SERVICE: usize = 3072;

/// Service tables unless configured otherwise.
pub const DEFAULT_SHARDS: usize = 16;

/// Why the nftables backend failed.
#[derive(Debug, thiserror::Error)]
pub enum NftError {
    /// `nft` could not be started or talked to.
    #[error("cannot run {program}")]
    Spawn {
        program: String,
        #[source]
        source: std::io::Error,
    },
    /// `nft` refused the transaction.
    #[error("nft {what} failed ({status}): {stderr}")]
    Nft {
        what: &'static str,
        status: String,
        stderr: String,
    },
    /// The kernel refused an operation of the transaction (all of it was undone).
    #[error("nf_tables refused `{op}`: {source}")]
    Refused {
        op: String,
        #[source]
        source: NfnlError,
    },
    /// The netlink socket failed, or the kernel refused the transaction as a whole.
    #[error("nf_tables transaction of {operations} operations failed")]
    Netlink {
        operations: usize,
        #[source]
        source: NfnlError,
    },
}

/// Chains and sets present in one of our tables.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TableObjects {
    pub chains: BTreeSet<String>,
    pub sets: BTreeSet<String>,
}

/// Our tables and what each holds.
pub type Tables = BTreeMap<String, TableObjects>;

/// Where rendered operations go, one at a time (a list, or the netlink encoder).
pub type Sink<'a> = dyn FnMut(Op) + 'a;

/// Chains and maps of a service table: always present, never deleted.
const SHARD_CHAINS: &[&str] = &["nat-prerouting", "nat-output", "services"];
const SHARD_MAPS: &[&str] = &["service-ips", "service-ips6"];
/// The one chain of the base table.
const BASE_CHAIN: &str = "nat-postrouting";

/// How transactions reach the kernel.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Writer {
    /// nf_tables netlink messages, written by us (the default).
    Netlink,
    /// `nft -f -` with the same operations as text.
    Nft,
}

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

/// The nftables backend.
pub struct NftBackend {
    layout: Layout,
    writer: Writer,
    program: PathBuf,
    /// Arguments before nft's own (e.g. `netns exec NAME nft` when `program` is `ip`).
    prefix: Vec<String>,
    /// The network namespace to work in (by name), when not our own.
    netns: Option<String>,
    socket: Option<NfSocket>,
    /// Sources that keep their address (the local cluster's pod CIDRs), see
    /// [`NftBackend::keep_sources`].
    keep: Vec<IpNet>,
    /// Our tables, chains and sets as of the last successful apply; `None` after a
    /// failure (the next full apply lists the ruleset first).
    known: Option<Tables>,
}

impl NftBackend {
    /// A backend for tables `inet <table>` and `inet <table>-<i>`, running `nft` from
    /// `PATH` to read them back.
    pub fn new(table: impl Into<String>) -> Self {
        NftBackend {
            layout: Layout::new(table, DEFAULT_SHARDS),
            writer: Writer::Netlink,
            program: PathBuf::from("nft"),
            prefix: Vec::new(),
            netns: None,
            socket: None,
            keep: Vec::new(),
            known: None,
        }
    }

    /// Number of service tables (at least 1).
    pub fn shards(mut self, shards: usize) -> Self {
        self.layout = Layout::new(self.layout.base.clone(), shards);
        self
    }

    /// How transactions are sent.
    pub fn writer(mut self, writer: Writer) -> Self {
        self.writer = writer;
        self
    }

    /// Connections from these sources (the local cluster's pod CIDRs) are not masqueraded.
    ///
    /// The remote cluster routes our pod CIDRs back through the tunnel, and the remote tunnel
    /// accepts only our pod addresses from us. Masquerading would take the address of the
    /// outgoing interface, and the tunnel interface has none, so the kernel
    /// (`inet_select_addr`) takes the first global address of the namespace, usually the
    /// node's own: the remote tunnel drops the packet.
    pub fn keep_sources(mut self, cidrs: impl IntoIterator<Item = IpNet>) -> Self {
        self.keep = cidrs.into_iter().collect();
        self
    }

    /// Works inside network namespace `netns` (`ip netns exec NAME nft …`, and the
    /// netlink socket opened there), for tests and tools that drive a namespace from
    /// outside.
    pub fn in_netns(mut self, netns: &str) -> Self {
        self.program = PathBuf::from("ip");
        self.prefix = ["netns", "exec", netns, "nft"].map(String::from).to_vec();
        self.netns = Some(netns.to_string());
        self
    }

    pub fn layout(&self) -> &Layout {
        &self.layout
    }

    fn run(
        &self,
        what: &'static str,
        args: &[&str],
        stdin: Option<&str>,
    ) -> Result<String, NftError> {
        let spawn_err = |source| NftError::Spawn {
            program: self.program.display().to_string(),
            source,
        };
        let mut child = Command::new(&self.program)
            .args(&self.prefix)
            .args(args)
            .stdin(if stdin.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(spawn_err)?;
        if let (Some(text), Some(mut pipe)) = (stdin, child.stdin.take()) {
            pipe.write_all(text.as_bytes()).map_err(spawn_err)?;
        }
        let out = child.wait_with_output().map_err(spawn_err)?;
        if !out.status.success() {
            let stderr = String::from_utf8_lossy(&out.stderr);
            let stderr: String = stderr.lines().take(8).collect::<Vec<_>>().join(" | ");
            return Err(NftError::Nft {
                what,
                status: out.status.to_string(),
                stderr,
            });
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// Our tables as `nft -j list table` prints them, in one `{"nftables": [...]}`.
    ///
    /// The table names come from a netlink table dump, and each of our tables is listed on
    /// its own: a whole-ruleset listing makes the kernel restart its rule dump for every
    /// buffer it fills, which took 41 s at 10,000 services (16 tables listed one by one:
    /// ~5 s, mostly `nft` printing JSON).
    /// Our tables, their chains and sets, and their rules' comments and counters: one
    /// table dump, then per table of ours a chain, a set and a rule dump.
    fn list(&mut self) -> Result<Listing, NftError> {
        let layout = self.layout.clone();
        let netlink = |source| NftError::Netlink {
            operations: 0,
            source,
        };
        let socket = self.socket().map_err(netlink)?;
        let mut listing = Listing::default();
        for (_, name) in socket
            .tables()
            .map_err(netlink)?
            .into_iter()
            .filter(|(family, name)| *family == NFPROTO_INET && layout.owns(name))
        {
            // A table deleted between the dumps answers nothing.
            let mut objects = TableObjects::default();
            objects
                .sets
                .extend(socket.sets(NFPROTO_INET, &name).map_err(netlink)?);
            let rules = socket.rules(NFPROTO_INET, &name).map_err(netlink)?;
            listing
                .rules
                .extend(rules.into_iter().map(|r| (name.clone(), r)));
            listing.tables.insert(name, objects);
        }
        // One dump holds the chains of every table.
        for (table, chain) in socket.chains(NFPROTO_INET).map_err(netlink)? {
            if let Some(objects) = listing.tables.get_mut(&table) {
                objects.chains.insert(chain);
            }
        }
        Ok(listing)
    }

    /// The netlink socket, opened on first use (in the namespace, if one is set).
    fn socket(&mut self) -> Result<&mut NfSocket, NfnlError> {
        if self.socket.is_none() {
            let socket = match &self.netns {
                Some(ns) => NfSocket::open_in_netns(ns)?,
                None => NfSocket::open()?,
            };
            self.socket = Some(socket);
        }
        Ok(self.socket.as_mut().expect("opened above"))
    }

    fn apply_inner(
        &mut self,
        desired: &DesiredState,
        previous: Option<&DesiredState>,
    ) -> Result<ApplyReport, NftError> {
        // `known` is taken: a failure below leaves it unset, so the next apply lists the
        // kernel's ruleset first.
        let (previous, existing) = match (previous, self.known.take()) {
            (Some(prev), Some(known)) => (Some(prev), known),
            (_, known) => {
                let existing = match known {
                    Some(k) => k,
                    None => {
                        let listing = self.list()?;
                        parse_listing(&self.layout, &listing).1
                    }
                };
                (None, existing)
            }
        };
        let (layout, keep) = (self.layout.clone(), self.keep.clone());
        // A full render reads what was there while the record is updated; a partial one
        // does not, and updates the record in place (no copy of every chain name).
        let mut tables = existing;
        let before = match previous {
            Some(_) => Tables::new(),
            None => tables.clone(),
        };
        let render = |out: &mut Sink| match previous {
            Some(prev) => render_partial_into(&layout, prev, desired, out),
            None => render_full_into(&layout, &keep, desired, &before, out),
        };
        let operations = match self.writer {
            Writer::Nft => {
                let mut ops = Vec::new();
                render(&mut |op| ops.push(op));
                if !ops.is_empty() {
                    self.run("apply", &["-f", "-"], Some(&ops::script(&ops)))?;
                }
                track(&mut tables, &ops);
                ops.len()
            }
            Writer::Netlink => {
                self.send_netlink(desired, previous.is_none(), &render, &mut tables)?
            }
        };
        self.known = Some(tables);
        Ok(ApplyReport { operations })
    }

    /// Encodes what `render` makes straight into one netlink batch (no list of
    /// operations is kept: at 10,000 services that list alone is tens of MB), tracks it
    /// into `tables`, and sends it. Returns the number of operations.
    fn send_netlink(
        &mut self,
        desired: &DesiredState,
        full: bool,
        render: &dyn Fn(&mut Sink),
        tables: &mut Tables,
    ) -> Result<usize, NftError> {
        let started = std::time::Instant::now();
        let netlink_err = |operations, source| NftError::Netlink { operations, source };
        let socket = self.socket().map_err(|e| netlink_err(0, e))?;
        // Sized once for a full sync: doubling a 30 MB buffer would hold both copies.
        let capacity = if full {
            desired.services.len() * BYTES_PER_SERVICE + 65536
        } else {
            65536
        };
        let mut batch = Batch::new(socket.next_seq(), capacity);
        // For each message, the operation it belongs to (to name a refused one).
        let mut owner: Vec<u32> = Vec::new();
        let mut count = 0usize;
        render(&mut |op| {
            ops::encode(&op, &mut batch);
            owner.resize(batch.messages(), count as u32);
            track_one(tables, &op);
            count += 1;
        });
        if count == 0 {
            return Ok(0);
        }
        let encoded = started.elapsed();
        let batch = batch.finish();
        let bytes = batch.bytes().len();
        let sent = socket.send(batch);
        tracing::debug!(
            operations = count,
            bytes,
            encode_ms = encoded.as_secs_f64() * 1000.0,
            kernel_ms = (started.elapsed() - encoded).as_secs_f64() * 1000.0,
            "nftables transaction"
        );
        match sent {
            Ok(()) => Ok(count),
            Err(source @ NfnlError::Refused { index, .. }) => {
                // Rendering is deterministic: render again to name the operation.
                let wanted = owner.get(index).map(|i| *i as usize);
                let mut op = String::new();
                let mut at = 0usize;
                render(&mut |o| {
                    if Some(at) == wanted {
                        o.text(&mut op);
                    }
                    at += 1;
                });
                Err(NftError::Refused {
                    op: op.trim_end().to_string(),
                    source,
                })
            }
            Err(e @ NfnlError::Socket { .. }) => {
                // A fresh socket next time.
                self.socket = None;
                Err(netlink_err(count, e))
            }
            Err(e) => Err(netlink_err(count, e)),
        }
    }
}

/// Brings the record of our tables, chains and sets up to date with `ops` (applied).
pub fn track(tables: &mut Tables, ops: &[Op]) {
    for op in ops {
        track_one(tables, op);
    }
}

/// [`track`] for one operation.
fn track_one(tables: &mut Tables, op: &Op) {
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

impl Backend for NftBackend {
    fn name(&self) -> &'static str {
        "nftables"
    }

    fn read(&mut self) -> Result<KernelState, BackendError> {
        let listing = self.list()?;
        let (state, objects) = parse_listing(&self.layout, &listing);
        if self.known.is_none() {
            self.known = Some(objects);
        }
        Ok(state)
    }

    fn apply(
        &mut self,
        desired: &DesiredState,
        previous: Option<&DesiredState>,
    ) -> Result<ApplyReport, BackendError> {
        self.apply_inner(desired, previous).map_err(|e| {
            self.known = None;
            BackendError::from(e)
        })
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

fn map_of(key: &VsKey) -> &'static str {
    if key.addr.is_ipv4() {
        "service-ips"
    } else {
        "service-ips6"
    }
}

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

fn svc_comment(key: &VsKey, vs: &VirtualServer) -> String {
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

/// A service table's base chains, maps and dispatch rules (after `flush table`).
fn render_shard_skeleton(ops: &mut Sink, t: &str) {
    let table = || t.to_string();
    ops(Op::AddTable { table: table() });
    ops(Op::FlushTable { table: table() });
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

/// Every table as one transaction; `keep` are the sources not masqueraded, `existing`
/// the tables, chains and sets there now (those not wanted any more are deleted).
pub fn render_full(
    layout: &Layout,
    keep: &[IpNet],
    desired: &DesiredState,
    existing: &Tables,
) -> Vec<Op> {
    let mut ops = Vec::with_capacity(desired.services.len() * 8 + 64);
    render_full_into(layout, keep, desired, existing, &mut |op| ops.push(op));
    ops
}

/// [`render_full`], each operation handed to `out` as it is made.
pub fn render_full_into(
    layout: &Layout,
    keep: &[IpNet],
    desired: &DesiredState,
    existing: &Tables,
    out: &mut Sink,
) {
    let ops = out;
    let wanted = objects_of(layout, desired);
    // Tables of another layout (a larger shard count, or a base table that still holds
    // service chains) go first and whole.
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
        render_shard_skeleton(ops, &layout.shard(i));
    }
    for (k, vs) in &desired.services {
        render_vs(ops, &layout.table_of(k), k, vs, true);
    }
    render_elements(ops, layout, desired.services.iter());
    for (table, want) in &wanted {
        let Some(have) = existing.get(table) else {
            continue;
        };
        if *table == layout.base {
            continue;
        }
        for set in have.sets.difference(&want.sets) {
            ops(Op::DeleteSet {
                table: table.clone(),
                set: set.clone(),
            });
        }
        for chain in have.chains.difference(&want.chains) {
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

fn comment_fields(comment: &str) -> BTreeMap<&str, &str> {
    comment
        .split(' ')
        .skip(1)
        .filter_map(|kv| kv.split_once('='))
        .collect()
}

fn parse_key(text: &str) -> Option<VsKey> {
    let mut parts = text.splitn(2, '/');
    let proto = match parts.next()? {
        "tcp" => Protocol::Tcp,
        "udp" => Protocol::Udp,
        "sctp" => Protocol::Sctp,
        _ => return None,
    };
    let (ip, port) = parts.next()?.rsplit_once('/')?;
    Some(VsKey {
        proto,
        addr: SocketAddr::new(ip.parse().ok()?, port.parse().ok()?),
    })
}

/// What [`NftBackend`] reads back from the kernel: our tables (chains, sets) and the
/// rules in them.
#[derive(Clone, Debug, Default)]
pub struct Listing {
    pub tables: Tables,
    /// `(table, rule)`.
    pub rules: Vec<(String, ListedRule)>,
}

/// Rebuilds our state from a listing, using the rule comments; tables the layout does
/// not own are ignored.
pub fn parse_listing(layout: &Layout, listing: &Listing) -> (KernelState, Tables) {
    let tables: Tables = listing
        .tables
        .iter()
        .filter(|(t, _)| layout.owns(t))
        .map(|(t, o)| (t.clone(), o.clone()))
        .collect();
    let mut services: BTreeMap<String, (VsKey, KernelService)> = BTreeMap::new();
    let mut reals: Vec<(String, SocketAddr, KernelReal)> = Vec::new();
    for (table, r) in &listing.rules {
        if !tables.contains_key(table) {
            continue;
        }
        let Some(comment) = r.comment.as_deref() else {
            continue;
        };
        let conns = r.packets.unwrap_or(0);
        let f = comment_fields(comment);
        if comment.starts_with("cw:svc ") {
            let Some(key) = f.get("key").and_then(|k| parse_key(k)) else {
                continue;
            };
            let origin = match (
                f.get("cluster"),
                f.get("svc").and_then(|s| s.split_once('/')),
            ) {
                (Some(c), Some((ns, name))) => Some(Origin {
                    cluster: c.to_string(),
                    service: ServiceKey::new(ns, name),
                    port: f.get("port").unwrap_or(&"").to_string(),
                    slice_generation: f.get("gen").and_then(|g| g.parse().ok()).unwrap_or(0),
                }),
                _ => None,
            };
            let ks = KernelService {
                scheduler: f.get("sched").unwrap_or(&"rr").to_string(),
                affinity: f.get("aff").and_then(|a| a.parse().ok()).filter(|a| *a > 0),
                reals: BTreeMap::new(),
                stats: Counters {
                    conns,
                    ..Default::default()
                },
                origin,
            };
            services.insert(f.get("vs").unwrap_or(&"").to_string(), (key, ks));
        } else if comment.starts_with("cw:ep ") {
            let (Some(vs), Some(to)) = (f.get("vs"), f.get("to").and_then(|t| t.parse().ok()))
            else {
                continue;
            };
            let real = KernelReal {
                weight: f.get("w").and_then(|w| w.parse().ok()).unwrap_or(0),
                stats: Counters {
                    conns,
                    ..Default::default()
                },
                ..Default::default()
            };
            reals.push((vs.to_string(), to, real));
        }
    }
    // A real server has one rule per slot (and one more for affinity): add them up.
    for (vs, addr, real) in reals {
        if let Some((_, ks)) = services.get_mut(&vs) {
            ks.reals
                .entry(addr)
                .and_modify(|r| r.stats.conns += real.stats.conns)
                .or_insert(real);
        }
    }
    let services = services.into_values().collect();
    (
        KernelState {
            header: Header {
                version: 0,
                size: 0,
            },
            services,
        },
        tables,
    )
}

#[cfg(test)]
mod tests;
