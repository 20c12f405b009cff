//! The immutable answer index: every name we are authoritative for, with its RRsets
//! pre-encoded in wire format. Built when the catalog changes, swapped in whole
//! (`ArcSwap`), read by every query without locks.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::net::IpAddr;
use std::sync::Arc;

use ipnet::IpNet;

use crate::names::{parse_reverse_wire, to_wire};
use crate::records::{Data, Rr, rtype};
use crate::wire::{Answer, FullRr, NameKey, RrSet, encode_set, push_full_rr};

/// FNV-1a: names are short and trusted to be spread well enough; SipHash costs more
/// than the rest of a lookup. (The key space is ours, queries only probe it.)
#[derive(Default)]
pub struct Fnv(u64);

impl Hasher for Fnv {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        let mut h = if self.0 == 0 {
            0xcbf2_9ce4_8422_2325
        } else {
            self.0
        };
        for b in bytes {
            h ^= u64::from(*b);
            h = h.wrapping_mul(0x0000_0100_0000_01b3);
        }
        self.0 = h;
    }
}

pub type FastMap<K, V> = HashMap<K, V, BuildHasherDefault<Fnv>>;

/// Which kind of zone answered (a metrics label).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ZoneKind {
    /// A `cluster.<name>` zone or its reverse (PTR) names.
    Cluster,
    /// The merged zone or its alias.
    All,
}

/// The RRsets of one existing name (empty for empty non-terminals and empty services).
#[derive(Debug, Default)]
pub struct Node {
    pub sets: Box<[RrSet]>,
}

/// One forward zone.
#[derive(Debug)]
pub struct ZoneTable {
    pub apex: String,
    apex_wire: Box<[u8]>,
    pub kind: ZoneKind,
    /// False until the data behind the zone has been listed once: queries get SERVFAIL.
    pub ready: bool,
    soa: FullRr,
    names: FastMap<Box<[u8]>, Node>,
}

impl ZoneTable {
    /// Encodes `rrs` (which must include the apex SOA) as the zone `apex` (absolute name).
    pub fn build(apex: &str, kind: ZoneKind, ready: bool, rrs: &[Rr], ttl: u32) -> ZoneTable {
        let apex_wire = to_wire(apex).into_boxed_slice();
        // Group by owner, then type, keeping first-seen order.
        let mut order: Vec<&str> = Vec::new();
        let mut groups: HashMap<&str, Vec<(u16, Vec<&Rr>)>> = HashMap::with_capacity(rrs.len());
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
        let mut names: FastMap<Box<[u8]>, Node> =
            FastMap::with_capacity_and_hasher(order.len() * 2, Default::default());
        let mut soa = FullRr::default();
        for owner in &order {
            let sets: Vec<RrSet> = groups[owner]
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
                        soa.wire = w.into_boxed_slice();
                    }
                    encode_set(*t, v, &additional, ttl)
                })
                .collect();
            let key = to_wire(owner);
            // Ancestors up to the apex exist too (empty non-terminals answer NODATA).
            let mut at = 0;
            while at < key.len() && key.len() - at > apex_wire.len() {
                at += usize::from(key[at]) + 1;
                if key.len() - at < apex_wire.len() {
                    break;
                }
                names.entry(key[at..].into()).or_default();
            }
            names.insert(
                key.into_boxed_slice(),
                Node {
                    sets: sets.into_boxed_slice(),
                },
            );
        }
        ZoneTable {
            apex: apex.to_string(),
            apex_wire,
            kind,
            ready,
            soa,
            names,
        }
    }

    /// Number of names (existing ones, empty non-terminals included).
    pub fn len(&self) -> usize {
        self.names.len()
    }

    pub fn is_empty(&self) -> bool {
        self.names.is_empty()
    }

    fn answer(&self, name: &[u8], qtype: u16) -> Answer<'_> {
        if !self.ready {
            return Answer::ServFail;
        }
        let Some(node) = self.names.get(name) else {
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
