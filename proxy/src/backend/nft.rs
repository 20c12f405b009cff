//! The nftables backend: one table of our own, kube-proxy-nftables style.
//!
//! ```text
//! table inet <proxy.nftTable, default "causeway">
//!   map service-ips  { ipv4_addr . inet_proto . inet_service : verdict }   VIP.proto.port → goto svc chain
//!   map service-ips6 { ipv6_addr . inet_proto . inet_service : verdict }
//!   chain nat-prerouting  { type nat hook prerouting priority dstnat; jump services }
//!   chain nat-output      { type nat hook output priority -100; jump services }
//!   chain nat-postrouting { type nat hook postrouting priority srcnat; masquerade what we DNATed,
//!                           except what comes from the local cluster's pods }
//!   chain services        { ip daddr . meta l4proto . th dport vmap @service-ips; ip6 … @service-ips6 }
//!   chain svc-HASH-…      { counter comment "cw:svc …";
//!                           [ip saddr @aff-… <DNAT to that real>, …]        (affinity: one per real)
//!                           numgen inc mod N-i == 0 <DNAT to slot i's real>, …, <DNAT to the last slot's real>
//!                           [counter comment "cw:ep … w=0 …", …] }           (draining reals, never reached)
//!   <DNAT to real>        = counter meta mark set meta mark or 0x8000 [update @aff-… { ip saddr }]
//!                           meta l4proto tcp dnat ip to A:P comment "cw:ep vs=… w=… to=A:P"
//!   set aff-HASH-…        { ipv4_addr; flags dynamic,timeout; timeout <affinity>s }   (sessionAffinity: ClientIP only)
//! ```
//!
//! This is kube-proxy's nftables layout with the per-endpoint chains folded into the
//! service chain: each DNAT rule is what kube-proxy's endpoint chain holds. Every `nft`
//! transaction first dumps the table's chains, which costs the kernel time growing with
//! the square of their number (0.57 s per transaction at 10,000 services × 5 endpoints
//! = 60,000 chains, 14 ms at 10,000 chains); folding keeps one chain per service.
//!
//! Weight-0 (draining) real servers get no slot rule (nor affinity rule), so they get no
//! new connections; established ones keep flowing through their conntrack NAT binding,
//! which no rule change touches.
//!
//! A full apply is one `nft -f` transaction: `flush table` (rules only: chains, sets and
//! the affinity sets' elements stay), flush the two maps, rebuild every rule and
//! element, delete chains and sets no longer wanted. A partial apply rewrites only the
//! virtual services that changed. Chain and rule comments (`cw:svc`, `cw:ep`) carry
//! what [`NftBackend::read`] needs to rebuild the state after a restart.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
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
use crate::plan::{DesiredState, Origin, VirtualServer, VsKey};

/// Mark bit set on connections we DNAT, masqueraded (and cleared) in nat-postrouting.
pub const MASQ_MARK: u32 = 0x8000;

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
    /// `nft` refused the transaction or the listing.
    #[error("nft {what} failed ({status}): {stderr}")]
    Nft {
        what: &'static str,
        status: String,
        stderr: String,
    },
    /// `nft -j` printed something that is not the JSON we expect.
    #[error("cannot parse the nft listing of table {table}: {reason}")]
    Parse { table: String, reason: String },
}

/// Chains and sets present in our table.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TableObjects {
    pub chains: BTreeSet<String>,
    pub sets: BTreeSet<String>,
}

/// Base chains, maps and the dispatch chain: always present, never deleted.
const FIXED_CHAINS: &[&str] = &[
    "nat-prerouting",
    "nat-output",
    "nat-postrouting",
    "services",
];
const FIXED_SETS: &[&str] = &["service-ips", "service-ips6"];

/// The nftables backend.
pub struct NftBackend {
    table: String,
    program: PathBuf,
    /// Arguments before nft's own (e.g. `netns exec NAME nft` when `program` is `ip`).
    prefix: Vec<String>,
    /// Sources that keep their address (the local cluster's pod CIDRs), see
    /// [`NftBackend::keep_sources`].
    keep: Vec<IpNet>,
    /// Our chains and sets as of the last successful apply; `None` after a failure
    /// (the next full apply lists the table first).
    known: Option<TableObjects>,
}

impl NftBackend {
    /// A backend for table `inet <table>`, running `nft` from `PATH`.
    pub fn new(table: impl Into<String>) -> Self {
        NftBackend {
            table: table.into(),
            program: PathBuf::from("nft"),
            prefix: Vec::new(),
            keep: Vec::new(),
            known: None,
        }
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

    /// Runs `nft` inside network namespace `netns` (`ip netns exec NAME nft …`), for
    /// tests and tools that drive a namespace from outside.
    pub fn in_netns(mut self, netns: &str) -> Self {
        self.program = PathBuf::from("ip");
        self.prefix = ["netns", "exec", netns, "nft"].map(String::from).to_vec();
        self
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

    /// `nft -j list table`; `None` when the table does not exist.
    fn list(&self) -> Result<Option<serde_json::Value>, NftError> {
        match self.run(
            "list table",
            &["-j", "list", "table", "inet", &self.table],
            None,
        ) {
            Ok(text) => serde_json::from_str(&text)
                .map(Some)
                .map_err(|e| NftError::Parse {
                    table: self.table.clone(),
                    reason: e.to_string(),
                }),
            Err(NftError::Nft { stderr, .. }) if stderr.contains("No such file or directory") => {
                Ok(None)
            }
            Err(e) => Err(e),
        }
    }

    fn apply_inner(
        &mut self,
        desired: &DesiredState,
        previous: Option<&DesiredState>,
    ) -> Result<ApplyReport, NftError> {
        let script = match (previous, &self.known) {
            (Some(prev), Some(_)) => render_partial(&self.table, prev, desired),
            _ => {
                let existing = match &self.known {
                    Some(k) => k.clone(),
                    None => self
                        .list()?
                        .map(|v| parse_listing(&self.table, &v).1)
                        .unwrap_or_default(),
                };
                render_full(&self.table, &self.keep, desired, &existing)
            }
        };
        tracing::trace!(table = %self.table, %script, "nft transaction");
        let operations = script.lines().count();
        if operations > 0 {
            self.run("apply", &["-f", "-"], Some(&script))?;
        }
        self.known = Some(objects_of(desired));
        Ok(ApplyReport { operations })
    }
}

impl Backend for NftBackend {
    fn name(&self) -> &'static str {
        "nftables"
    }

    fn read(&mut self) -> Result<KernelState, BackendError> {
        let header = Header {
            version: 0,
            size: 0,
        };
        match self.list()? {
            None => Ok(KernelState {
                header,
                services: BTreeMap::new(),
            }),
            Some(v) => {
                let (state, objects) = parse_listing(&self.table, &v);
                if self.known.is_none() {
                    self.known = Some(objects);
                }
                Ok(state)
            }
        }
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

/// The chains and sets `desired` needs (besides the fixed ones).
pub fn objects_of(desired: &DesiredState) -> TableObjects {
    let mut o = TableObjects::default();
    for (k, vs) in &desired.services {
        o.chains.insert(names::service_chain(k, &vs.origin));
        if vs.affinity.is_some() {
            for real in vs.reals.keys() {
                o.sets.insert(names::affinity_set(k, *real));
            }
        }
    }
    o
}

fn family(key: &VsKey) -> (&'static str, &'static str, &'static str) {
    // (nft address family keyword, address type, map name)
    if key.addr.is_ipv4() {
        ("ip", "ipv4_addr", "service-ips")
    } else {
        ("ip6", "ipv6_addr", "service-ips6")
    }
}

fn element(key: &VsKey) -> String {
    format!(
        "{} . {} . {}",
        key.addr.ip(),
        key.proto.as_lower(),
        key.addr.port()
    )
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

/// Appends the commands creating one virtual service's chain, sets and rules.
/// `fresh`: the chain is known to be empty (after `flush table`), so no `flush chain`.
fn render_vs(out: &mut String, t: &str, key: &VsKey, vs: &VirtualServer, fresh: bool) {
    let (ip, addr_type, _) = family(key);
    let proto = key.proto.as_lower();
    let vs_hash = names::vs_hash(key);
    let svc = names::service_chain(key, &vs.origin);
    let _ = writeln!(out, "add chain inet {t} {svc}");
    if !fresh {
        let _ = writeln!(out, "flush chain inet {t} {svc}");
    }
    let _ = writeln!(
        out,
        "add rule inet {t} {svc} counter comment \"{}\"",
        svc_comment(key, vs)
    );
    // What one connection to real server `real` does: counted, marked for masquerade,
    // remembered for affinity, DNATed. The comment is what `parse_listing` reads back.
    let dnat = |real: &SocketAddr, weight: u32| {
        let target = match real {
            SocketAddr::V4(a) => format!("{}:{}", a.ip(), a.port()),
            SocketAddr::V6(a) => format!("[{}]:{}", a.ip(), a.port()),
        };
        let update = match vs.affinity {
            Some(_) => format!(
                " update @{} {{ {ip} saddr }}",
                names::affinity_set(key, *real)
            ),
            None => String::new(),
        };
        format!(
            "counter meta mark set meta mark or {MASQ_MARK:#x}{update} meta l4proto {proto} dnat {ip} to {target} comment \"cw:ep vs={vs_hash} w={weight} to={real}\""
        )
    };
    let mut slots = Vec::new();
    for (real, weight) in &vs.reals {
        if let Some(timeout) = vs.affinity {
            let set = names::affinity_set(key, *real);
            let _ = writeln!(
                out,
                "add set inet {t} {set} {{ type {addr_type}; flags dynamic,timeout; timeout {timeout}s; }}"
            );
            if *weight > 0 {
                // Clients seen recently go back to the same real server.
                let _ = writeln!(
                    out,
                    "add rule inet {t} {svc} {ip} saddr @{set} {}",
                    dnat(real, *weight)
                );
            }
        }
        for _ in 0..(*weight).min(MAX_SLOTS) {
            slots.push((real, *weight));
        }
    }
    // One rule per slot, each ending in its DNAT (a verdict: later rules are not
    // evaluated). No per-endpoint chains: every transaction makes `nft` dump the table's
    // chains, a cost that grows with the square of their number (0.57 s at 60,000 chains).
    // No `vmap { … }` either: every anonymous map is a set the kernel must name
    // (`__map%d`, found by scanning all sets of the table), which made loading 10,000
    // services quadratic (15 s for 4,000 services on 6.18).
    let n = slots.len();
    for (i, (real, weight)) in slots.iter().enumerate() {
        let pick = match scheduler_kind(&vs.scheduler) {
            // Rule i sees the connections rules 0..i did not take; taking every
            // (n-i)-th of them gives each slot exactly one connection per n, in order.
            Pick::RoundRobin if i + 1 < n => format!("numgen inc mod {} == 0 ", n - i),
            // The same hash in every rule: slot i takes hash value i.
            Pick::SourceHash if i + 1 < n => format!("jhash {ip} saddr mod {n} == {i} "),
            // Probability 1/(n-i) among what is left: uniform over the slots.
            Pick::Random if i + 1 < n => format!("numgen random mod {} == 0 ", n - i),
            _ => String::new(),
        };
        let _ = writeln!(out, "add rule inet {t} {svc} {pick}{}", dnat(real, *weight));
    }
    // Draining (weight 0) real servers get no slot; a rule after the last slot, never
    // reached while any slot exists, keeps them in the table's own record.
    for (real, _) in vs.reals.iter().filter(|(_, w)| **w == 0) {
        let _ = writeln!(
            out,
            "add rule inet {t} {svc} counter comment \"cw:ep vs={vs_hash} w=0 to={real}\""
        );
    }
}

/// Base chains, maps and dispatch rules (after `flush table`).
fn render_skeleton(out: &mut String, t: &str, keep: &[IpNet]) {
    let _ = writeln!(
        out,
        "add table inet {t}
flush table inet {t}
add chain inet {t} nat-prerouting {{ type nat hook prerouting priority dstnat; policy accept; }}
add chain inet {t} nat-output {{ type nat hook output priority -100; policy accept; }}
add chain inet {t} nat-postrouting {{ type nat hook postrouting priority srcnat; policy accept; }}
add chain inet {t} services
add map inet {t} service-ips {{ type ipv4_addr . inet_proto . inet_service : verdict; }}
add map inet {t} service-ips6 {{ type ipv6_addr . inet_proto . inet_service : verdict; }}
flush map inet {t} service-ips
flush map inet {t} service-ips6
add rule inet {t} nat-prerouting jump services
add rule inet {t} nat-output jump services
add rule inet {t} nat-postrouting meta mark and {m:#x} == 0 return
add rule inet {t} nat-postrouting meta mark set meta mark xor {m:#x}",
        m = MASQ_MARK
    );
    for (family, v4) in [("ip", true), ("ip6", false)] {
        let cidrs: Vec<String> = keep
            .iter()
            .filter(|n| matches!(n, IpNet::V4(_)) == v4)
            .map(|n| n.trunc().to_string())
            .collect();
        if !cidrs.is_empty() {
            let _ = writeln!(
                out,
                "add rule inet {t} nat-postrouting {family} saddr {{ {} }} return",
                cidrs.join(", ")
            );
        }
    }
    let _ = writeln!(
        out,
        "add rule inet {t} nat-postrouting masquerade fully-random
add rule inet {t} services ip daddr . meta l4proto . th dport vmap @service-ips
add rule inet {t} services ip6 daddr . meta l4proto . th dport vmap @service-ips6"
    );
}

fn render_elements(out: &mut String, t: &str, desired: &DesiredState) {
    for map in ["service-ips", "service-ips6"] {
        let elements: Vec<String> = desired
            .services
            .iter()
            .filter(|(k, _)| family(k).2 == map)
            .map(|(k, vs)| {
                format!(
                    "{} : goto {}",
                    element(k),
                    names::service_chain(k, &vs.origin)
                )
            })
            .collect();
        // Chunks keep each command line of a reasonable length.
        for chunk in elements.chunks(1000) {
            let _ = writeln!(out, "add element inet {t} {map} {{ {} }}", chunk.join(", "));
        }
    }
}

/// The whole table as one `nft -f` transaction; `keep` are the sources not masqueraded,
/// `existing` the chains and sets the table holds now (those not wanted any more are
/// deleted).
pub fn render_full(
    t: &str,
    keep: &[IpNet],
    desired: &DesiredState,
    existing: &TableObjects,
) -> String {
    let mut out = String::with_capacity(desired.services.len() * 1024 + 2048);
    render_skeleton(&mut out, t, keep);
    for (k, vs) in &desired.services {
        render_vs(&mut out, t, k, vs, true);
    }
    render_elements(&mut out, t, desired);
    let wanted = objects_of(desired);
    for chain in existing.chains.difference(&wanted.chains) {
        if !FIXED_CHAINS.contains(&chain.as_str()) {
            let _ = writeln!(out, "delete chain inet {t} {chain}");
        }
    }
    for set in existing.sets.difference(&wanted.sets) {
        if !FIXED_SETS.contains(&set.as_str()) {
            let _ = writeln!(out, "delete set inet {t} {set}");
        }
    }
    out
}

/// Commands removing one virtual service's element, rules, chain and sets, except
/// the chain and sets `keep` still needs.
fn render_removal(out: &mut String, t: &str, key: &VsKey, vs: &VirtualServer, keep: &TableObjects) {
    let (_, _, map) = family(key);
    let _ = writeln!(out, "delete element inet {t} {map} {{ {} }}", element(key));
    let svc = names::service_chain(key, &vs.origin);
    let _ = writeln!(out, "flush chain inet {t} {svc}");
    if !keep.chains.contains(&svc) {
        let _ = writeln!(out, "delete chain inet {t} {svc}");
    }
    if vs.affinity.is_some() {
        for r in vs.reals.keys() {
            let set = names::affinity_set(key, *r);
            if !keep.sets.contains(&set) {
                let _ = writeln!(out, "delete set inet {t} {set}");
            }
        }
    }
}

/// Only the virtual services that differ between `previous` and `desired`.
pub fn render_partial(t: &str, previous: &DesiredState, desired: &DesiredState) -> String {
    let mut out = String::new();
    let mut changed: Vec<(&VsKey, &VirtualServer)> = Vec::new();
    for (k, old) in &previous.services {
        match desired.services.get(k) {
            Some(new) if new == old => {}
            Some(new) => {
                // Keep the chain and the sets the new version reuses: the chain is
                // flushed and refilled below, and affinity entries survive.
                let mut keep = TableObjects::default();
                keep.chains.insert(names::service_chain(k, &new.origin));
                if new.affinity.is_some() && old.affinity == new.affinity {
                    for r in new.reals.keys() {
                        keep.sets.insert(names::affinity_set(k, *r));
                    }
                }
                render_removal(&mut out, t, k, old, &keep);
                changed.push((k, new));
            }
            None => render_removal(&mut out, t, k, old, &TableObjects::default()),
        }
    }
    for (k, new) in &desired.services {
        if !previous.services.contains_key(k) {
            changed.push((k, new));
        }
    }
    for (k, vs) in &changed {
        render_vs(&mut out, t, k, vs, false);
        let (_, _, map) = family(k);
        let _ = writeln!(
            out,
            "add element inet {t} {map} {{ {} : goto {} }}",
            element(k),
            names::service_chain(k, &vs.origin)
        );
    }
    out
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

fn counter_packets(rule: &serde_json::Value) -> u64 {
    rule["expr"]
        .as_array()
        .into_iter()
        .flatten()
        .find_map(|e| e["counter"]["packets"].as_u64())
        .unwrap_or(0)
}

/// Rebuilds our state from `nft -j list table` output, using the rule comments.
pub fn parse_listing(table: &str, listing: &serde_json::Value) -> (KernelState, TableObjects) {
    let mut objects = TableObjects::default();
    let mut services: BTreeMap<String, (VsKey, KernelService)> = BTreeMap::new();
    let mut reals: Vec<(String, SocketAddr, KernelReal)> = Vec::new();
    for item in listing["nftables"].as_array().into_iter().flatten() {
        if let Some(c) = item.get("chain").filter(|c| c["table"] == table) {
            if let Some(name) = c["name"].as_str() {
                objects.chains.insert(name.to_string());
            }
        } else if let Some(s) = item
            .get("set")
            .or_else(|| item.get("map"))
            .filter(|s| s["table"] == table)
        {
            if let Some(name) = s["name"].as_str() {
                objects.sets.insert(name.to_string());
            }
        } else if let Some(r) = item.get("rule").filter(|r| r["table"] == table) {
            let Some(comment) = r["comment"].as_str() else {
                continue;
            };
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
                        conns: counter_packets(r),
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
                        conns: counter_packets(r),
                        ..Default::default()
                    },
                    ..Default::default()
                };
                reals.push((vs.to_string(), to, real));
            }
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
        objects,
    )
}

#[cfg(test)]
mod tests;
