//! Reading our state back from the kernel: the listing (our tables, their chains and
//! sets, their rules' comments and counters, through netlink dumps) and the parsing of
//! the rule comments (`cw:svc`, `cw:ep`) the renderer wrote into the kernel's state.

use std::collections::BTreeMap;
use std::net::SocketAddr;

use causeway_nfnl::{ListedRule, NFPROTO_INET, NfSocket, NfnlError};
use causeway_shared::model::{Protocol, ServiceKey};

use super::layout::{Layout, TableObjects, Tables};
use crate::backend::{Counters, Header, KernelReal, KernelService, KernelState};
use crate::plan::{Origin, VsKey};

/// What [`NftBackend`] reads back from the kernel: our tables (chains, sets) and the
/// rules in them.
#[derive(Clone, Debug, Default)]
pub struct Listing {
    pub tables: Tables,
    /// `(table, rule)`.
    pub rules: Vec<(String, ListedRule)>,
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

/// Where a virtual service's rules are in the kernel, and how many of ours there are: what
/// a full apply checks before leaving a chain as it is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChainSeen {
    pub table: String,
    pub chain: String,
    /// Rules with a `cw:svc` or `cw:ep` comment of this service (all in `chain`).
    pub rules: usize,
    /// False when its rules are spread over several chains or tables.
    pub whole: bool,
}

/// Rebuilds our state from a listing, using the rule comments; tables the layout does
/// not own are ignored.
pub fn parse_listing(layout: &Layout, listing: &Listing) -> (KernelState, Tables) {
    let (state, tables, _) = parse_listing_seen(layout, listing);
    (state, tables)
}

/// [`parse_listing`], with where each virtual service's rules are.
pub fn parse_listing_seen(
    layout: &Layout,
    listing: &Listing,
) -> (KernelState, Tables, BTreeMap<VsKey, ChainSeen>) {
    let tables: Tables = listing
        .tables
        .iter()
        .filter(|(t, _)| layout.owns(t))
        .map(|(t, o)| (t.clone(), o.clone()))
        .collect();
    let mut services: BTreeMap<String, (VsKey, KernelService)> = BTreeMap::new();
    let mut reals: Vec<(String, SocketAddr, KernelReal)> = Vec::new();
    // By service hash: where its rules are.
    let mut seen: BTreeMap<String, ChainSeen> = BTreeMap::new();
    let mut note = |vs: &str, table: &str, chain: &str| {
        let s = seen.entry(vs.to_string()).or_insert_with(|| ChainSeen {
            table: table.to_string(),
            chain: chain.to_string(),
            rules: 0,
            whole: true,
        });
        s.rules += 1;
        s.whole &= s.table == table && s.chain == chain;
    };
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
            let vs = f.get("vs").unwrap_or(&"").to_string();
            note(&vs, table, &r.chain);
            services.insert(vs, (key, ks));
        } else if comment.starts_with("cw:ep ") {
            let (Some(vs), Some(to)) = (f.get("vs"), f.get("to").and_then(|t| t.parse().ok()))
            else {
                continue;
            };
            note(vs, table, &r.chain);
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
    let seen = services
        .iter()
        .filter_map(|(hash, (key, _))| Some((*key, seen.remove(hash)?)))
        .collect();
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
        seen,
    )
}

/// Our tables, their chains and sets, and their rules' comments and counters: one
/// table dump, then per table of ours a set and a rule dump, and one chain dump for all.
///
/// Each of our tables is listed on its own: a whole-ruleset listing makes the kernel
/// restart its rule dump for every buffer it fills, which took 41 s at 10,000 services
/// (16 tables listed one by one: ~5 s with `nft`, mostly printing JSON).
pub fn list(socket: &mut NfSocket, layout: &Layout) -> Result<Listing, NfnlError> {
    let mut listing = Listing::default();
    for (_, name) in socket
        .tables()?
        .into_iter()
        .filter(|(family, name)| *family == NFPROTO_INET && layout.owns(name))
    {
        // A table deleted between the dumps answers nothing.
        let mut objects = TableObjects::default();
        objects.sets.extend(socket.sets(NFPROTO_INET, &name)?);
        let rules = socket.rules(NFPROTO_INET, &name)?;
        listing
            .rules
            .extend(rules.into_iter().map(|r| (name.clone(), r)));
        listing.tables.insert(name, objects);
    }
    // One dump holds the chains of every table.
    for (table, chain) in socket.chains(NFPROTO_INET)? {
        if let Some(objects) = listing.tables.get_mut(&table) {
            objects.chains.insert(chain);
        }
    }
    Ok(listing)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::nft::render::svc_comment;
    use crate::backend::nft::render::tests::layout;
    use crate::names;
    use crate::testdata::CLUSTER_B;
    use crate::testdata::desired;

    #[test]
    fn listing_round_trips_through_comments() {
        let d = desired(CLUSTER_B);
        // What the dumps read, reduced to what the parser uses.
        let l = layout();
        let rule = |chain: &str, comment: &str, packets| ListedRule {
            chain: chain.into(),
            comment: Some(comment.into()),
            packets: Some(packets),
        };
        let mut listing = Listing::default();
        // Another program's table with a look-alike comment is not ours.
        listing
            .tables
            .insert("other".into(), TableObjects::default());
        listing.rules.push((
            "other".into(),
            rule(
                "x",
                "cw:svc vs=zzzzzzzz key=tcp/192.0.2.99/80 sched=rr aff=0",
                1,
            ),
        ));
        for (k, vs) in &d.services {
            let t = l.table_of(k);
            let chain = names::service_chain(k, &vs.origin);
            let objects = listing.tables.entry(t.clone()).or_default();
            objects.chains.insert(chain.clone());
            listing
                .rules
                .push((t.clone(), rule(&chain, &svc_comment(k, vs), 3)));
            for (r, w) in &vs.reals {
                // A real server of weight w has w slot rules (and an affinity rule).
                for _ in 0..(*w).max(1) + u32::from(vs.affinity.is_some()) {
                    let comment = format!("cw:ep vs={} w={w} to={r}", names::vs_hash(k));
                    listing.rules.push((t.clone(), rule(&chain, &comment, 1)));
                }
            }
        }
        // Rules without a comment (dispatch) or counter are skipped or count nothing.
        listing.rules.push((
            l.table_of(d.services.keys().next().unwrap()),
            ListedRule {
                chain: "services".into(),
                ..Default::default()
            },
        ));
        let (state, tables) = parse_listing(&l, &listing);
        let chains: usize = tables.values().map(|t| t.chains.len()).sum();
        assert_eq!(chains, d.services.len());
        assert!(!tables.contains_key("other"));
        let back = state.to_desired(|_| None);
        assert_eq!(back, d);
        assert!(state.services.values().all(|s| s.stats.conns == 3));
        // Each real's counter is the sum over its rules.
        for (k, vs) in &d.services {
            for (r, w) in &vs.reals {
                let rules = (*w).max(1) + u32::from(vs.affinity.is_some());
                assert_eq!(state.services[k].reals[r].stats.conns, u64::from(rules));
            }
        }
    }
}
