//! Keeps the answer index in step with the catalog: one task wakes on every catalog
//! publication (and when a disconnected cluster crosses `dns.dropUnreachableAfter`),
//! re-encodes only the services whose data changed (in their cluster's zone and in the
//! merged zone), and swaps the new index in.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, Instant as StdInstant};

use arc_swap::ArcSwap;
use causeway_shared::catalog::{Catalog, ClusterView, Snapshot, SourceState};
use causeway_shared::config::Config;
use causeway_shared::model::{ClusterData, Service, ServiceKey};
use tokio::time::Instant;

use crate::merged::{self, Member, merged_records};
use crate::metrics::Metrics;
use crate::names::{cluster_zone, to_wire};
use crate::records::{Rr, apex_records, cluster_ptrs, cluster_records, service_records};
use crate::zone_index::{
    Index, PtrTable, ReverseNet, ServiceBlock, ZoneKind, ZoneTable, service_key_wire,
};

/// What the index is built from, besides the catalog.
#[derive(Clone, Debug)]
pub struct IndexSettings {
    pub ttl: u32,
    /// The merged zone, no final dot (`cluster.all`).
    pub all_zone: String,
    pub clusterset_alias: bool,
    pub local_first: bool,
    pub drop_unreachable_after: Duration,
}

impl IndexSettings {
    pub fn from_config(config: &Config) -> Self {
        Self {
            ttl: config.dns.ttl,
            all_zone: config
                .dns
                .all_zone
                .trim_end_matches('.')
                .to_ascii_lowercase(),
            clusterset_alias: config.dns.clusterset_alias,
            local_first: config.dns.local_first,
            drop_unreachable_after: config.dns.drop_unreachable_after.0,
        }
    }
}

/// The zone and PTR table of one cluster, with the data they were built from.
struct Built {
    data: Arc<ClusterData>,
    serial: u32,
    synced: bool,
    zone: Arc<ZoneTable>,
    ptrs: Arc<PtrTable>,
}

/// The merged zone(s), with the clusters (in order) and data they were built from.
struct MergedBuilt {
    members: Vec<(String, Arc<ClusterData>)>,
    zones: Vec<Arc<ZoneTable>>,
}

/// What the last [`IndexBuilder::build`] did (logged, and read by tests).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct BuildStats {
    /// Cluster zones encoded from scratch.
    pub full_clusters: usize,
    /// Cluster zones updated service by service.
    pub incremental_clusters: usize,
    /// Services re-encoded (cluster zones and merged zone together).
    pub services_encoded: usize,
    /// Whether the merged zone was built from scratch (first build, membership change).
    pub merged_full: bool,
}

/// Builds indexes, re-using work across builds: a cluster whose data did not change keeps
/// its zone; one whose data changed gets only the services that differ re-encoded, and the
/// merged zone only the names of those services (its blocks for every other service are
/// shared with the previous index). The merged zone is rebuilt in full when the set or
/// order of contributing clusters changes.
pub struct IndexBuilder {
    settings: IndexSettings,
    config: Arc<Config>,
    built: BTreeMap<String, Built>,
    merged: Option<MergedBuilt>,
    /// What the last build did.
    pub stats: BuildStats,
}

/// The services whose records may differ between two versions of a cluster's data: the
/// service object or the set of its slices changed. Values are `Arc`s, so unchanged
/// objects are usually the same pointer; a source that re-creates every object (the file
/// source re-parses the file) costs a comparison by value.
pub fn changed_services(old: &ClusterData, new: &ClusterData) -> BTreeSet<ServiceKey> {
    fn same<T: PartialEq>(a: &Arc<T>, b: &Arc<T>) -> bool {
        Arc::ptr_eq(a, b) || a == b
    }
    let mut out = BTreeSet::new();
    for (k, s) in &old.services {
        if !new.services.get(k).is_some_and(|n| same(s, n)) {
            out.insert(k.clone());
        }
    }
    for k in new.services.keys() {
        if !old.services.contains_key(k) {
            out.insert(k.clone());
        }
    }
    let old_slices: BTreeMap<_, _> = old.slices_by_service().collect();
    let new_slices: BTreeMap<_, _> = new.slices_by_service().collect();
    for (k, o) in &old_slices {
        let unchanged = new_slices.get(k).is_some_and(|n| {
            o.len() == n.len()
                && o.iter()
                    .zip(n.iter())
                    .all(|((ka, a), (kb, b))| ka == kb && same(a, b))
        });
        if !unchanged {
            out.insert((*k).clone());
        }
    }
    for k in new_slices.keys() {
        if !old_slices.contains_key(k) {
            out.insert((*k).clone());
        }
    }
    out
}

impl IndexBuilder {
    pub fn new(config: Arc<Config>) -> Self {
        Self {
            settings: IndexSettings::from_config(&config),
            config,
            built: BTreeMap::new(),
            merged: None,
            stats: BuildStats::default(),
        }
    }

    /// True when the cluster is left out of the merged zone at `now`: its API unreachable
    /// for longer than `dns.dropUnreachableAfter`, or its data path reported down
    /// (`pathHealth`).
    fn dropped(&self, view: &ClusterView, now: Instant) -> bool {
        view.path_down()
            || view
                .status
                .unreachable_for(now)
                .is_some_and(|d| d > self.settings.drop_unreachable_after)
    }

    /// When the next cluster will cross the unreachable threshold, or the first-sync wait
    /// for a remote that is still waiting ends (a rebuild is due then).
    pub fn next_deadline(&self, snap: &Snapshot, now: Instant) -> Option<Instant> {
        let waiting = snap
            .clusters
            .values()
            .any(|v| !v.local && snap.source_state(v, now) == SourceState::Waiting);
        let wait_end = waiting.then(|| snap.remote_wait_deadline());
        snap.clusters
            .values()
            .filter(|v| !self.dropped(v, now))
            .filter_map(|v| v.status.disconnected_since)
            .map(|t| t + self.settings.drop_unreachable_after + Duration::from_millis(1))
            .chain(wait_end)
            .min()
    }

    /// The zone and PTR table of one cluster, from `prev` where it can.
    fn cluster(&mut self, name: &str, view: &ClusterView, prev: Option<Built>) -> Built {
        let ttl = self.settings.ttl;
        let zone = cluster_zone(name);
        let serial = view.status.data_generation as u32;
        let synced = view.status.synced;
        let ptrs = || {
            Arc::new(PtrTable::build(
                synced,
                &cluster_ptrs(&zone, &view.data),
                ttl,
            ))
        };
        match prev {
            Some(b) if Arc::ptr_eq(&b.data, &view.data) && b.synced == synced => b,
            Some(b) => {
                let apex_wire = to_wire(&format!("{zone}."));
                let changed = changed_services(&b.data, &view.data);
                self.stats.incremental_clusters += 1;
                self.stats.services_encoded += changed.len();
                let changes = changed.iter().filter_map(|key| {
                    let Some(wire) = service_key_wire(key) else {
                        if let Some(svc) = view.data.services.get(key) {
                            // Logs why it has no name.
                            service_records(&zone, svc, &view.data, &mut Vec::new());
                        }
                        return None;
                    };
                    let block = view.data.services.get(key).and_then(|svc| {
                        let mut rrs = Vec::new();
                        service_records(&zone, svc, &view.data, &mut rrs);
                        let rrs: Vec<&Rr> = rrs.iter().collect();
                        ServiceBlock::build(&apex_wire, &wire, &rrs, ttl)
                    });
                    Some((wire, block.map(Arc::new)))
                });
                let table = b
                    .zone
                    .updated(synced, &apex_records(&zone, serial, ttl), changes, ttl);
                Built {
                    data: view.data.clone(),
                    serial,
                    synced,
                    zone: Arc::new(table),
                    ptrs: ptrs(),
                }
            }
            None => {
                self.stats.full_clusters += 1;
                self.stats.services_encoded += view.data.services.len();
                let mut rrs = apex_records(&zone, serial, ttl);
                rrs.extend(cluster_records(&zone, &view.data));
                let table =
                    ZoneTable::build(&format!("{zone}."), ZoneKind::Cluster, synced, &rrs, ttl);
                Built {
                    data: view.data.clone(),
                    serial,
                    synced,
                    zone: Arc::new(table),
                    ptrs: ptrs(),
                }
            }
        }
    }

    /// A complete index for `snap` at `now`.
    pub fn build(&mut self, snap: &Snapshot, now: Instant) -> Index {
        self.stats = BuildStats::default();
        let ttl = self.settings.ttl;
        let config = self.config.clone();
        let mut zones = Vec::new();
        let mut reverse = Vec::new();
        for c in &config.clusters {
            let Some(view) = snap.cluster(&c.name) else {
                continue;
            };
            let prev = self.built.remove(&c.name);
            let b = self.cluster(&c.name, view, prev);
            zones.push(b.zone.clone());
            let zone = cluster_zone(&c.name);
            for net in c.service_cidrs.iter().chain(&c.pod_cidrs) {
                reverse.push(ReverseNet::new(*net, b.ptrs.clone(), &zone, b.serial, ttl));
            }
            self.built.insert(c.name.clone(), b);
        }
        let merged = self.merged_zones(snap, now);
        let ready = snap.ready(now) && merged.iter().all(|z| z.ready);
        zones.extend(merged);
        // Longest apex first, so a zone nested in another wins.
        zones.sort_by_key(|z| std::cmp::Reverse(z.apex.len()));
        Index {
            zones,
            reverse,
            ready,
        }
    }

    /// The merged zone (and its alias): synced clusters that are not dropped, local first
    /// if asked. It answers once every cluster has synced, been dropped, or (a remote)
    /// passed the first-sync wait.
    fn merged_zones(&mut self, snap: &Snapshot, now: Instant) -> Vec<Arc<ZoneTable>> {
        let ttl = self.settings.ttl;
        let mut members: Vec<(&ClusterView, bool)> = self
            .config
            .clusters
            .iter()
            .filter_map(|c| snap.cluster(&c.name))
            .map(|v| (v, v.status.synced && !self.dropped(v, now)))
            .collect();
        if self.settings.local_first {
            members.sort_by_key(|(v, _)| !v.local);
        }
        // A remote past its first-sync wait no longer holds the merged zone back: it
        // answers from the clusters that have data.
        let ready = members
            .iter()
            .all(|(v, _)| snap.counts_for_readiness(v, now) || self.dropped(v, now));
        let members: Vec<&ClusterView> = members
            .iter()
            .filter(|(_, counts)| *counts)
            .map(|(v, _)| *v)
            .collect();
        let mut zone_names = vec![self.settings.all_zone.clone()];
        if self.settings.clusterset_alias {
            zone_names.push("clusterset.local".into());
        }
        let prev = self.merged.take().filter(|m| {
            m.members.len() == members.len()
                && m.members
                    .iter()
                    .zip(&members)
                    .all(|((n, _), v)| *n == v.name)
        });
        let as_members: Vec<Member<'_>> = members
            .iter()
            .map(|v| Member {
                cluster: &v.name,
                data: &v.data,
            })
            .collect();
        let zones: Vec<Arc<ZoneTable>> = match prev {
            Some(prev) => {
                let mut changed = BTreeSet::new();
                for ((_, old), v) in prev.members.iter().zip(&members) {
                    if !Arc::ptr_eq(old, &v.data) {
                        changed.extend(changed_services(old, &v.data));
                    }
                }
                self.stats.services_encoded += changed.len() * zone_names.len();
                zone_names
                    .iter()
                    .zip(&prev.zones)
                    .map(|(zone, table)| {
                        let apex_wire = to_wire(&format!("{zone}."));
                        let changes = changed.iter().filter_map(|key| {
                            let wire = service_key_wire(key)?;
                            let svcs: Vec<(&Member<'_>, &Service)> = as_members
                                .iter()
                                .filter_map(|m| m.data.services.get(key).map(|s| (m, &**s)))
                                .collect();
                            let mut rrs = Vec::new();
                            merged::service_records(zone, key, &svcs, &mut rrs);
                            let rrs: Vec<&Rr> = rrs.iter().collect();
                            let block = ServiceBlock::build(&apex_wire, &wire, &rrs, ttl);
                            Some((wire, block.map(Arc::new)))
                        });
                        let apex = apex_records(zone, snap.generation as u32, ttl);
                        Arc::new(table.updated(ready, &apex, changes, ttl))
                    })
                    .collect()
            }
            None => {
                self.stats.merged_full = true;
                zone_names
                    .iter()
                    .map(|zone| {
                        let mut rrs = apex_records(zone, snap.generation as u32, ttl);
                        rrs.extend(merged_records(zone, &as_members));
                        Arc::new(ZoneTable::build(
                            &format!("{zone}."),
                            ZoneKind::All,
                            ready,
                            &rrs,
                            ttl,
                        ))
                    })
                    .collect()
            }
        };
        self.merged = Some(MergedBuilt {
            members: members
                .iter()
                .map(|v| (v.name.clone(), v.data.clone()))
                .collect(),
            zones: zones.clone(),
        });
        zones
    }
}

/// Runs forever: rebuilds the index on every change and stores it in `index`.
pub async fn run(
    catalog: Arc<Catalog>,
    config: Arc<Config>,
    index: Arc<ArcSwap<Index>>,
    metrics: Metrics,
) {
    let mut builder = IndexBuilder::new(config);
    let mut changes = catalog.subscribe();
    loop {
        let snap = catalog.snapshot();
        let now = Instant::now();
        let started = StdInstant::now();
        let (b, new) = tokio::task::spawn_blocking(move || {
            let idx = builder.build(&snap, now);
            (builder, (idx, snap))
        })
        .await
        .expect("index build does not panic");
        builder = b;
        let (idx, snap) = new;
        let names: usize = idx.zones.iter().map(|z| z.len()).sum();
        index.store(Arc::new(idx));
        let took = started.elapsed();
        metrics.index_built(took, names);
        let stats = &builder.stats;
        tracing::debug!(
            generation = snap.generation,
            names,
            full_clusters = stats.full_clusters,
            incremental_clusters = stats.incremental_clusters,
            services_encoded = stats.services_encoded,
            merged_full = stats.merged_full,
            took_ms = took.as_secs_f64() * 1e3,
            "answer index rebuilt"
        );
        let deadline = builder.next_deadline(&snap, Instant::now());
        tokio::select! {
            changed = changes.changed() => if changed.is_err() { return },
            _ = async {
                match deadline {
                    Some(d) => tokio::time::sleep_until(d).await,
                    None => std::future::pending().await,
                }
            } => {}
        }
    }
}

#[cfg(test)]
mod tests;
