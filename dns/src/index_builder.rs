//! Keeps the answer index in step with the catalog: one task wakes on every catalog
//! publication (and when a disconnected cluster crosses `dns.dropUnreachableAfter`),
//! re-encodes only the clusters whose data changed, rebuilds the merged zone, and swaps
//! the new index in.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant as StdInstant};

use arc_swap::ArcSwap;
use causeway_shared::catalog::{Catalog, ClusterView, Snapshot};
use causeway_shared::config::Config;
use causeway_shared::model::ClusterData;
use tokio::time::Instant;

use crate::merged::{Member, merged_records};
use crate::metrics::Metrics;
use crate::names::cluster_zone;
use crate::records::{apex_records, cluster_ptrs, cluster_records};
use crate::zone_index::{Index, PtrTable, ReverseNet, ZoneKind, ZoneTable};

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

/// Builds indexes, re-using per-cluster work across builds.
pub struct IndexBuilder {
    settings: IndexSettings,
    config: Arc<Config>,
    built: BTreeMap<String, Built>,
}

impl IndexBuilder {
    pub fn new(config: Arc<Config>) -> Self {
        Self {
            settings: IndexSettings::from_config(&config),
            config,
            built: BTreeMap::new(),
        }
    }

    /// True when the cluster is left out of the merged zone at `now`.
    fn dropped(&self, view: &ClusterView, now: Instant) -> bool {
        view.status
            .unreachable_for(now)
            .is_some_and(|d| d > self.settings.drop_unreachable_after)
    }

    /// When the next cluster will cross the unreachable threshold (a rebuild is due then).
    pub fn next_deadline(&self, snap: &Snapshot, now: Instant) -> Option<Instant> {
        snap.clusters
            .values()
            .filter(|v| !self.dropped(v, now))
            .filter_map(|v| v.status.disconnected_since)
            .map(|t| t + self.settings.drop_unreachable_after + Duration::from_millis(1))
            .min()
    }

    /// A complete index for `snap` at `now`.
    pub fn build(&mut self, snap: &Snapshot, now: Instant) -> Index {
        let ttl = self.settings.ttl;
        let mut zones = Vec::new();
        let mut reverse = Vec::new();
        for c in &self.config.clusters {
            let Some(view) = snap.cluster(&c.name) else {
                continue;
            };
            let reuse = self.built.get(&c.name).is_some_and(|b| {
                Arc::ptr_eq(&b.data, &view.data) && b.synced == view.status.synced
            });
            if !reuse {
                let zone = cluster_zone(&c.name);
                let mut rrs = apex_records(&zone, view.status.data_generation as u32, ttl);
                rrs.extend(cluster_records(&zone, &view.data));
                let table = ZoneTable::build(
                    &format!("{zone}."),
                    ZoneKind::Cluster,
                    view.status.synced,
                    &rrs,
                    ttl,
                );
                let ptrs =
                    PtrTable::build(view.status.synced, &cluster_ptrs(&zone, &view.data), ttl);
                self.built.insert(
                    c.name.clone(),
                    Built {
                        data: view.data.clone(),
                        serial: view.status.data_generation as u32,
                        synced: view.status.synced,
                        zone: Arc::new(table),
                        ptrs: Arc::new(ptrs),
                    },
                );
            }
            let b = &self.built[&c.name];
            zones.push(b.zone.clone());
            let zone = cluster_zone(&c.name);
            for net in c.service_cidrs.iter().chain(&c.pod_cidrs) {
                reverse.push(ReverseNet::new(*net, b.ptrs.clone(), &zone, b.serial, ttl));
            }
        }
        // The merged zone: synced clusters that are not dropped, local first if asked.
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
        let ready = members
            .iter()
            .all(|(v, _)| v.status.synced || self.dropped(v, now));
        let members: Vec<Member<'_>> = members
            .iter()
            .filter(|(_, counts)| *counts)
            .map(|(v, _)| Member {
                cluster: &v.name,
                data: &v.data,
            })
            .collect();
        let mut merged_zones = vec![self.settings.all_zone.clone()];
        if self.settings.clusterset_alias {
            merged_zones.push("clusterset.local".into());
        }
        for zone in merged_zones {
            let mut rrs = apex_records(&zone, snap.generation as u32, ttl);
            rrs.extend(merged_records(&zone, &members));
            zones.push(Arc::new(ZoneTable::build(
                &format!("{zone}."),
                ZoneKind::All,
                ready,
                &rrs,
                ttl,
            )));
        }
        // Longest apex first, so a zone nested in another wins.
        zones.sort_by_key(|z| std::cmp::Reverse(z.apex.len()));
        Index { zones, reverse }
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
        tracing::debug!(
            generation = snap.generation,
            names,
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
