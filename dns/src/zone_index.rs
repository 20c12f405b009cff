//! The immutable answer index: every name we are authoritative for, with its RRsets
//! pre-encoded in wire format. Built when the catalog changes, swapped in whole
//! (`ArcSwap`), read by every query without locks.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;

use causeway_shared::model::ServiceKey;
use ipnet::IpNet;

use crate::names::{is_label, parse_reverse_wire, to_wire};
use crate::records::{Data, Rr, rtype};
use crate::wire::{Answer, FullRr, NameKey, RrSet, encode_set, push_full_rr};

/// The hash maps of the index. foldhash: a few ns for a 40-byte name where SipHash costs
/// more than the rest of a lookup; the key space is ours, queries only probe it.
pub type FastMap<K, V> = HashMap<K, V, foldhash::fast::RandomState>;

/// Which kind of zone answered (a metrics label).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ZoneKind {
    /// A `cluster.<name>` zone or its reverse (PTR) names.
    Cluster,
    /// The merged zone or its alias.
    All,
}

/// The RRsets of one existing name (empty for empty non-terminals and empty services).
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Node {
    pub sets: Box<[RrSet]>,
}

/// Every name of one service: `<svc>.<ns>.svc.<zone>` and the names below it, keyed by
/// the labels in front of `<svc>` in wire form (empty for the service name itself),
/// sorted. The unit of incremental rebuilds: a change re-encodes the blocks of the
/// services it touched and shares every other block with the previous index.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct ServiceBlock {
    names: Box<[(Box<[u8]>, Node)]>,
}

impl ServiceBlock {
    /// Encodes the records of one service (every owner under `<svc>.<ns>.svc.<apex>`,
    /// `key` = `<svc>.<ns>` in wire form); None when there is nothing to answer.
    pub fn build(apex_wire: &[u8], key: &[u8], rrs: &[&Rr], ttl: u32) -> Option<ServiceBlock> {
        let suffix = key.len() + SVC_LABEL.len() + apex_wire.len();
        let mut names: Vec<(Box<[u8]>, Node)> = Vec::new();
        for (owner, sets) in encode_owners(rrs, ttl).0 {
            let inner = &owner[..owner.len().saturating_sub(suffix)];
            // Names between the owner and the service name exist too (empty non-terminals
            // such as `_tcp.<svc>`, `<c>.<svc>` in the merged zone).
            let mut at = 0;
            while at < inner.len() {
                at += usize::from(inner[at]) + 1;
                names.push((inner[at.min(inner.len())..].into(), Node::default()));
            }
            names.push((inner.into(), Node { sets: sets.into() }));
        }
        if names.is_empty() {
            return None;
        }
        // A name with records wins over the same name as an empty non-terminal.
        names.sort_by(|a, b| a.0.cmp(&b.0).then(b.1.sets.len().cmp(&a.1.sets.len())));
        names.dedup_by(|later, first| later.0 == first.0);
        Some(ServiceBlock {
            names: names.into_boxed_slice(),
        })
    }

    fn get(&self, inner: &[u8]) -> Option<&Node> {
        self.names
            .binary_search_by(|(k, _)| k.as_ref().cmp(inner))
            .ok()
            .map(|i| &self.names[i].1)
    }

    pub fn len(&self) -> usize {
        self.names.len()
    }

    pub fn is_empty(&self) -> bool {
        self.names.is_empty()
    }
}

const SVC_LABEL: &[u8] = b"\x03svc";

/// `<svc>.<ns>` of a service in wire form (no final root label); None when either is not
/// a valid label (such services are not answered).
pub fn service_key_wire(key: &ServiceKey) -> Option<Box<[u8]>> {
    if !is_label(&key.name) || !is_label(&key.namespace) {
        return None;
    }
    let mut w = Vec::with_capacity(key.name.len() + key.namespace.len() + 2);
    for l in [&key.name, &key.namespace] {
        w.push(l.len() as u8);
        w.extend_from_slice(l.as_bytes());
    }
    Some(w.into_boxed_slice())
}

/// Splits a name relative to its zone (wire labels without the apex) into the service
/// key `<svc>.<ns>` and the labels in front of it, when it ends in `<svc>.<ns>.svc`.
fn split_service(rel: &[u8]) -> Option<(&[u8], &[u8])> {
    // Starts of the last three labels.
    let (mut a, mut b, mut c) = (None, None, None);
    let mut at = 0;
    while at < rel.len() {
        (a, b, c) = (b, c, Some(at));
        at += usize::from(rel[at]) + 1;
    }
    let (Some(a), Some(c)) = (a, c) else {
        return None;
    };
    (at == rel.len() && &rel[c..] == SVC_LABEL).then(|| (&rel[a..c], &rel[..a]))
}

/// Encoded names (wire owner, RRsets) in first-seen order.
type EncodedNames = Vec<(Vec<u8>, Vec<RrSet>)>;

/// Groups records by owner, then type (first-seen order), and encodes each RRset; SRV
/// sets carry the addresses of their targets found among `rrs` as additional records.
/// Also returns the encoded SOA if `rrs` has one.
fn encode_owners(rrs: &[&Rr], ttl: u32) -> (EncodedNames, Option<FullRr>) {
    let mut order: Vec<&str> = Vec::new();
    let mut groups: HashMap<&str, Vec<(u16, Vec<&Rr>)>, foldhash::fast::RandomState> =
        HashMap::with_capacity_and_hasher(rrs.len(), Default::default());
    for rr in rrs {
        let sets = groups.entry(rr.owner.as_str()).or_insert_with(|| {
            order.push(rr.owner.as_str());
            Vec::new()
        });
        let t = rr.rtype();
        if t == 0 {
            continue;
        }
        match sets.iter_mut().find(|(st, _)| *st == t) {
            Some((_, v)) => v.push(rr),
            None => sets.push((t, vec![rr])),
        }
    }
    let addresses = |owner: &str| -> Vec<&Rr> {
        groups
            .get(owner)
            .into_iter()
            .flatten()
            .filter(|(t, _)| *t == rtype::A || *t == rtype::AAAA)
            .flat_map(|(_, v)| v.iter().copied())
            .collect()
    };
    let mut soa = None;
    let out = order
        .iter()
        .map(|owner| {
            let sets = groups[owner]
                .iter()
                .map(|(t, v)| {
                    let additional: Vec<&Rr> = if *t == rtype::SRV {
                        let mut targets: Vec<&str> = v
                            .iter()
                            .filter_map(|r| match &r.data {
                                Data::Srv { target, .. } => Some(target.as_str()),
                                _ => None,
                            })
                            .collect();
                        targets.dedup();
                        targets.into_iter().flat_map(&addresses).collect()
                    } else {
                        Vec::new()
                    };
                    if *t == rtype::SOA {
                        let mut w = Vec::new();
                        push_full_rr(v[0], ttl, &mut w);
                        soa = Some(FullRr {
                            wire: w.into_boxed_slice(),
                        });
                    }
                    encode_set(*t, v, &additional, ttl)
                })
                .collect();
            (to_wire(owner), sets)
        })
        .collect();
    (out, soa)
}

/// One forward zone: the few names above the services (apex, `dns-version`, the
/// `svc` and `<ns>.svc` empty non-terminals) and one [`ServiceBlock`] per service.
#[derive(Debug)]
pub struct ZoneTable {
    pub apex: String,
    apex_wire: Box<[u8]>,
    pub kind: ZoneKind,
    /// False until the data behind the zone has been listed once: queries get SERVFAIL.
    pub ready: bool,
    soa: FullRr,
    /// Full wire names.
    top: FastMap<Box<[u8]>, Node>,
    /// By `<svc>.<ns>` in wire form.
    services: FastMap<Box<[u8]>, Arc<ServiceBlock>>,
}

impl ZoneTable {
    /// Encodes `rrs` (which must include the apex SOA) as the zone `apex` (absolute name).
    pub fn build(apex: &str, kind: ZoneKind, ready: bool, rrs: &[Rr], ttl: u32) -> ZoneTable {
        let apex_wire = to_wire(apex);
        let mut top_rrs = Vec::new();
        let mut order: Vec<Box<[u8]>> = Vec::new();
        let mut by_service: FastMap<Box<[u8]>, Vec<&Rr>> = FastMap::default();
        for rr in rrs {
            let owner = to_wire(&rr.owner);
            let rel = owner
                .strip_suffix(apex_wire.as_slice())
                .filter(|_| owner.len() > apex_wire.len());
            match rel.and_then(split_service) {
                Some((key, _)) => by_service
                    .entry(key.into())
                    .or_insert_with(|| {
                        order.push(key.into());
                        Vec::new()
                    })
                    .push(rr),
                None => top_rrs.push(rr),
            }
        }
        let services = order
            .into_iter()
            .filter_map(|key| {
                let block = ServiceBlock::build(&apex_wire, &key, &by_service[&key], ttl)?;
                Some((key, Arc::new(block)))
            })
            .collect();
        Self::assemble(apex, kind, ready, &top_rrs, services, ttl)
    }

    /// This zone with new apex records (`top_rrs`, the SOA among them), readiness and the
    /// blocks of the services in `changes` replaced (None: the service has no names any
    /// more). Blocks of other services are shared with `self`.
    pub fn updated(
        &self,
        ready: bool,
        top_rrs: &[Rr],
        changes: impl IntoIterator<Item = (Box<[u8]>, Option<Arc<ServiceBlock>>)>,
        ttl: u32,
    ) -> ZoneTable {
        let mut services = self.services.clone();
        for (key, block) in changes {
            match block {
                Some(b) => services.insert(key, b),
                None => services.remove(&key),
            };
        }
        let top_rrs: Vec<&Rr> = top_rrs.iter().collect();
        Self::assemble(&self.apex, self.kind, ready, &top_rrs, services, ttl)
    }

    fn assemble(
        apex: &str,
        kind: ZoneKind,
        ready: bool,
        top_rrs: &[&Rr],
        mut services: FastMap<Box<[u8]>, Arc<ServiceBlock>>,
        ttl: u32,
    ) -> ZoneTable {
        let apex_wire = to_wire(apex).into_boxed_slice();
        let (owners, soa) = encode_owners(top_rrs, ttl);
        let mut top: FastMap<Box<[u8]>, Node> = FastMap::default();
        let add_ancestors = |key: &[u8], top: &mut FastMap<Box<[u8]>, Node>| {
            // Ancestors up to the apex exist too (empty non-terminals answer NODATA).
            let mut at = 0;
            while at < key.len() && key.len() - at > apex_wire.len() {
                at += usize::from(key[at]) + 1;
                if key.len() - at < apex_wire.len() {
                    break;
                }
                top.entry(key[at..].into()).or_default();
            }
        };
        // `<ns>.svc.<apex>` of every service, with its ancestors.
        let mut namespaces: FastMap<&[u8], ()> = FastMap::default();
        for key in services.keys() {
            namespaces.insert(&key[usize::from(key[0]) + 1..], ());
        }
        for ns in namespaces.keys() {
            let mut name = Vec::with_capacity(ns.len() + SVC_LABEL.len() + apex_wire.len());
            name.extend_from_slice(ns);
            name.extend_from_slice(SVC_LABEL);
            name.extend_from_slice(&apex_wire);
            add_ancestors(&name, &mut top);
            top.insert(name.into_boxed_slice(), Node::default());
        }
        for (owner, sets) in owners {
            add_ancestors(&owner, &mut top);
            top.insert(
                owner.into_boxed_slice(),
                Node {
                    sets: sets.into_boxed_slice(),
                },
            );
        }
        top.shrink_to_fit();
        services.shrink_to_fit();
        ZoneTable {
            apex: apex.to_string(),
            apex_wire,
            kind,
            ready,
            soa: soa.unwrap_or_default(),
            top,
            services,
        }
    }

    /// Number of names (existing ones, empty non-terminals included).
    pub fn len(&self) -> usize {
        self.top.len() + self.services.values().map(|b| b.len()).sum::<usize>()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Approximate heap bytes of the zone (payload and container sizes, not allocator
    /// overhead); blocks shared with another zone are counted in both.
    pub fn heap_bytes(&self) -> usize {
        fn node(n: &Node) -> usize {
            n.sets
                .iter()
                .map(|s| std::mem::size_of::<RrSet>() + s.wire.len() + s.additional.len())
                .sum()
        }
        let entry = std::mem::size_of::<(Box<[u8]>, Node)>();
        let top: usize = self
            .top
            .iter()
            .map(|(k, n)| entry + k.len() + node(n))
            .sum();
        let services: usize = self
            .services
            .iter()
            .map(|(k, b)| {
                entry
                    + k.len()
                    + b.names
                        .iter()
                        .map(|(k, n)| entry + k.len() + node(n))
                        .sum::<usize>()
            })
            .sum();
        top + services
    }

    fn find(&self, name: &[u8]) -> Option<&Node> {
        let rel = &name[..name.len() - self.apex_wire.len()];
        match split_service(rel) {
            Some((key, inner)) => self.services.get(key)?.get(inner),
            None => self.top.get(name),
        }
    }

    fn answer(&self, name: &[u8], qtype: u16) -> Answer<'_> {
        if !self.ready {
            return Answer::ServFail;
        }
        let Some(node) = self.find(name) else {
            return Answer::NxDomain(&self.soa);
        };
        let sets = &node.sets;
        if qtype == rtype::ANY && !sets.is_empty() {
            return Answer::Records(sets);
        }
        if let Some(i) = sets.iter().position(|s| s.rtype == qtype) {
            return Answer::Records(&sets[i..=i]);
        }
        if let Some(i) = sets.iter().position(|s| s.rtype == rtype::CNAME) {
            return Answer::Records(&sets[i..=i]);
        }
        Answer::NoData(&self.soa)
    }

    /// Canonical text of the whole zone (every name, sorted, with its encoded RRsets):
    /// tests compare an incrementally updated zone with one built from scratch.
    pub fn dump(&self) -> String {
        let mut names: Vec<(Vec<u8>, &Node)> =
            self.top.iter().map(|(k, n)| (k.to_vec(), n)).collect();
        for (key, block) in &self.services {
            for (inner, node) in block.names.iter() {
                let mut name = inner.to_vec();
                name.extend_from_slice(key);
                name.extend_from_slice(SVC_LABEL);
                name.extend_from_slice(&self.apex_wire);
                names.push((name, node));
            }
        }
        names.sort_by(|a, b| a.0.cmp(&b.0));
        let mut out = format!(
            "zone {} {:?} ready={} soa={}\n",
            self.apex,
            self.kind,
            self.ready,
            hex(&self.soa.wire)
        );
        for (name, node) in names {
            out.push_str(&format!("{}\n", presentation(&name)));
            for s in node.sets.iter() {
                out.push_str(&format!(
                    "  type={} count={} {} additional={} {}\n",
                    s.rtype,
                    s.count,
                    hex(&s.wire),
                    s.additional_count,
                    hex(&s.additional)
                ));
            }
        }
        out
    }
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// `a.b.` from `\x01a\x01b\x00` (tests and dumps).
fn presentation(wire: &[u8]) -> String {
    let mut out = String::new();
    let mut at = 0;
    while at < wire.len() && wire[at] != 0 {
        let len = usize::from(wire[at]);
        out.push_str(&String::from_utf8_lossy(&wire[at + 1..at + 1 + len]));
        out.push('.');
        at += len + 1;
    }
    out
}

/// The PTR records of one cluster, by address.
#[derive(Debug, Default)]
pub struct PtrTable {
    pub ready: bool,
    by_ip: FastMap<IpAddr, RrSet>,
}

impl PtrTable {
    pub fn build(ready: bool, ptrs: &[(IpAddr, String)], ttl: u32) -> PtrTable {
        let mut grouped: FastMap<IpAddr, Vec<&str>> = FastMap::default();
        for (ip, target) in ptrs {
            let v = grouped.entry(*ip).or_default();
            if !v.contains(&target.as_str()) {
                v.push(target);
            }
        }
        PtrTable {
            ready,
            by_ip: grouped
                .into_iter()
                .map(|(ip, t)| (ip, crate::wire::encode_ptrs(&t, ttl)))
                .collect(),
        }
    }

    /// Canonical text of the table (tests).
    pub fn dump(&self) -> String {
        let mut ips: Vec<_> = self.by_ip.iter().collect();
        ips.sort_by_key(|(ip, _)| **ip);
        let mut out = format!("ptr ready={}\n", self.ready);
        for (ip, s) in ips {
            out.push_str(&format!("  {ip} count={} {}\n", s.count, hex(&s.wire)));
        }
        out
    }
}

/// A CIDR of a cluster: PTR queries for its addresses are ours.
#[derive(Debug)]
pub struct ReverseNet {
    pub net: IpNet,
    pub table: Arc<PtrTable>,
    soa: FullRr,
}

impl ReverseNet {
    pub fn new(
        net: IpNet,
        table: Arc<PtrTable>,
        cluster_zone: &str,
        serial: u32,
        ttl: u32,
    ) -> Self {
        let zone = crate::names::reverse_zone(net);
        let soa = crate::records::soa_record(&zone, cluster_zone, serial, ttl);
        let mut w = Vec::new();
        push_full_rr(&soa, ttl, &mut w);
        ReverseNet {
            net,
            table,
            soa: FullRr {
                wire: w.into_boxed_slice(),
            },
        }
    }
}

/// Everything we answer, at one moment.
#[derive(Debug, Default)]
pub struct Index {
    pub zones: Vec<Arc<ZoneTable>>,
    pub reverse: Vec<ReverseNet>,
    /// Built from a snapshot that met the readiness rule (see [`Index::ready`]).
    pub ready: bool,
}

impl Index {
    /// True when the index was built from a snapshot in which the local cluster had
    /// synced and every remote had synced (from its API or its saved state) or passed the
    /// first-sync wait, and the merged zone answers: `/readyz`. A failed remote's own zone
    /// answers SERVFAIL but does not make the index unready.
    pub fn ready(&self) -> bool {
        self.ready
    }

    /// Canonical text of everything answered (tests).
    pub fn dump(&self) -> String {
        let mut out = String::new();
        for z in &self.zones {
            out.push_str(&z.dump());
        }
        for r in &self.reverse {
            out.push_str(&format!("reverse {} soa={}\n", r.net, hex(&r.soa.wire)));
            out.push_str(&r.table.dump());
        }
        out
    }
}

/// The result of a lookup.
pub enum Lookup<'a> {
    Ours(ZoneKind, Answer<'a>),
    /// Not under any zone we serve: forward it.
    NotOurs,
}

const ARPA: &[u8] = b"\x04arpa\x00";

impl Index {
    /// Answers a lower-case name (wire form) and type from the index.
    pub fn lookup(&self, name: &NameKey, qtype: u16) -> Lookup<'_> {
        for z in &self.zones {
            if name.is_under(&z.apex_wire) {
                return Lookup::Ours(z.kind, z.answer(name.as_bytes(), qtype));
            }
        }
        let bytes = name.as_bytes();
        if bytes.ends_with(ARPA)
            && let Some(ip) = parse_reverse_wire(bytes)
            && let Some(r) = self.reverse.iter().find(|r| r.net.contains(&ip))
        {
            let answer = if !r.table.ready {
                Answer::ServFail
            } else {
                match r.table.by_ip.get(&ip) {
                    Some(set) if qtype == rtype::PTR || qtype == rtype::ANY => {
                        Answer::Records(std::slice::from_ref(set))
                    }
                    Some(_) => Answer::NoData(&r.soa),
                    None => Answer::NxDomain(&r.soa),
                }
            };
            return Lookup::Ours(ZoneKind::Cluster, answer);
        }
        Lookup::NotOurs
    }
}

#[cfg(test)]
mod tests;
