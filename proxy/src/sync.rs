//! The sync loop: catalog changes mark dirty, one task plans and applies under the
//! shared [`SyncRunner`] (minimum interval, periodic full resync, retry with backoff
//! that forces a full sync).
//!
//! Each sync: plan the remote clusters from the snapshot (the [`Planner`] builds anew
//! only the Services that changed, and patches the state two syncs old, handed back to
//! it, rather than copying every virtual service); keep the last applied state of
//! clusters not synced yet (never program from a partial view); keep drained real
//! servers at weight 0 ([`Drains`]); apply (full, or the difference to the last
//! successful apply); hand the VIP set to the alias task ([`AliasTask`]), which makes
//! the interface's aliases match on its own time: 10,000 aliases take the kernel seconds
//! (each address insert walks the interface's addresses and routes), and rules need not
//! wait for them.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use arc_swap::ArcSwap;
use causeway_shared::catalog::{Catalog, Snapshot};
use causeway_shared::sync_runner::{SyncRequest, SyncRunner, SyncTiming};
use tokio::sync::watch;
use tokio::time::Instant;
use tracing::Instrument;

use crate::aliases::Aliases;
use crate::backend::{Backend, BackendError};
use crate::drain::Drains;
use crate::metrics::{ClusterLabel, KindLabel, ProxyMetrics};
use crate::plan::{DesiredState, PlanSettings, Planner, VsKey};

/// Why a sync failed (the runner retries with a full sync).
#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    /// Reading or programming the kernel's load balancer failed.
    #[error("backend {backend}: {source}")]
    Backend {
        backend: &'static str,
        #[source]
        source: BackendError,
    },
    /// The blocking backend task panicked.
    #[error("backend task failed: {0}")]
    Task(String),
}

/// Resolves a VIP to the remote cluster whose service CIDRs hold it.
pub type Owner = Arc<dyn Fn(IpAddr) -> Option<String> + Send + Sync>;

/// The state of the sync loop.
pub struct Syncer {
    catalog: Arc<Catalog>,
    backend: Arc<Mutex<Box<dyn Backend>>>,
    aliases: Option<AliasTask>,
    settings: PlanSettings,
    /// Remembers what each Service planned to, so a sync rebuilds only what changed.
    planner: Planner,
    metrics: ProxyMetrics,
    owner: Owner,
    /// What the last successful apply installed (published for the debug endpoint).
    applied: Arc<ArcSwap<DesiredState>>,
    /// The plan the applied state came from and the keys the sync changed in it (carried
    /// over, drained); None for a state read from the kernel.
    applied_from: Option<(u64, Vec<VsKey>)>,
    drains: Drains,
    /// Data generation of each cluster at the last successful apply.
    generations: BTreeMap<String, u64>,
    /// When a timer (drain deadline, stale expiry) wants a sync.
    wake_at: Arc<Mutex<Option<Instant>>>,
    /// Until then, the first programming waits for every remote cluster's first list.
    hold_until: Option<Instant>,
    /// A full sync was asked for while holding: the first real sync is full.
    owe_full: bool,
    hold_logged: bool,
}

impl Syncer {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        catalog: Arc<Catalog>,
        backend: Arc<Mutex<Box<dyn Backend>>>,
        aliases: Option<Aliases>,
        settings: PlanSettings,
        grace: Duration,
        metrics: ProxyMetrics,
        owner: Owner,
        applied: Arc<ArcSwap<DesiredState>>,
    ) -> Self {
        Syncer {
            catalog,
            backend,
            aliases: aliases.map(|a| AliasTask::start(a, metrics.clone())),
            settings,
            planner: Planner::default(),
            metrics,
            owner,
            applied,
            applied_from: None,
            drains: Drains::new(grace),
            generations: BTreeMap::new(),
            wake_at: Arc::new(Mutex::new(None)),
            hold_until: None,
            owe_full: false,
            hold_logged: false,
        }
    }

    /// Holds the first programming until every remote cluster has completed its first
    /// list, for at most `wait` from now (a cluster that never answers delays the others
    /// by `wait` once, at start).
    pub fn hold_first_sync(mut self, wait: Duration) -> Self {
        self.hold_until = Some(Instant::now() + wait);
        self
    }

    fn backend_name(&self) -> &'static str {
        self.backend
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .name()
    }

    /// Reads what the kernel holds and takes it as the applied state, so clusters not
    /// synced yet keep their rules and nothing is flushed (adopt, don't flush).
    pub async fn adopt(&mut self) -> Result<usize, SyncError> {
        let backend = self.backend.clone();
        let name = self.backend_name();
        let kernel = tokio::task::spawn_blocking(move || {
            backend.lock().unwrap_or_else(|e| e.into_inner()).read()
        })
        .await
        .map_err(|e| SyncError::Task(e.to_string()))?
        .map_err(|source| SyncError::Backend {
            backend: name,
            source,
        })?;
        let owner = self.owner.clone();
        let adopted = kernel.to_desired(|ip| owner(ip));
        let n = adopted.services.len();
        tracing::info!(backend = name, services = n, "adopted the kernel state");
        self.applied.store(Arc::new(adopted));
        self.applied_from = None;
        Ok(n)
    }

    /// The last applied state.
    pub fn applied(&self) -> Arc<DesiredState> {
        self.applied.load_full()
    }

    /// One sync.
    pub async fn sync(&mut self, req: SyncRequest) -> Result<(), SyncError> {
        let span = tracing::info_span!("sync", generation = req.generation, full = req.full);
        self.sync_inner(req).instrument(span).await
    }

    async fn sync_inner(&mut self, mut req: SyncRequest) -> Result<(), SyncError> {
        let started = Instant::now();
        let snapshot = self.catalog.snapshot();
        if let Some(deadline) = self.hold_until {
            let waiting: Vec<&str> = snapshot
                .clusters
                .values()
                .filter(|v| !v.local && !v.status.synced)
                .map(|v| v.name.as_str())
                .collect();
            if !waiting.is_empty() && started < deadline {
                // One sync with every cluster instead of one per cluster as each list
                // completes (the kernel keeps what it had meanwhile).
                self.owe_full |= req.full;
                if !self.hold_logged {
                    self.hold_logged = true;
                    tracing::info!(
                        ?waiting,
                        until_ms = (deadline - started).as_millis() as u64,
                        "first programming waits for every remote cluster's first list"
                    );
                } else {
                    tracing::debug!(?waiting, "still waiting for first lists");
                }
                let mut wake = self.wake_at.lock().unwrap_or_else(|e| e.into_inner());
                *wake = Some(wake.map_or(deadline, |t| t.min(deadline)));
                return Ok(());
            }
            self.hold_until = None;
        }
        req.full |= std::mem::take(&mut self.owe_full);
        let plan = self.planner.plan(&snapshot, &self.settings, started);
        let plan_no = self.planner.plans();
        for c in &plan.conflicts {
            tracing::warn!(vs = %c.key, kept = %c.kept, dropped = %c.dropped, "two clusters claim one virtual service");
        }
        let previous = self.applied.load_full();
        let mut desired = plan.desired;
        let mut touched = desired.carry_over(&previous, &plan.unsynced);
        // Where the applied state and the plan can differ: where the plans since its own
        // changed, and where the sync changed it. Unknown for a state read from the
        // kernel, or after many failed syncs: drains then look at every virtual service.
        let differ = self
            .applied_from
            .as_ref()
            .and_then(|(from, changed)| self.planner.changed_since(*from, changed));
        {
            let mut backend = self.backend.lock().unwrap_or_else(|e| e.into_inner());
            self.drains.retain(
                &mut desired,
                &previous,
                differ.as_deref(),
                started,
                |vs, real| backend.connections(vs, real),
            );
        }
        touched.extend(self.drains.services());
        let desired = Arc::new(desired);
        let planned = started.elapsed();
        let backend = self.backend.clone();
        let name = self.backend_name();
        let (d, p, full) = (desired.clone(), previous.clone(), req.full);
        let result = tokio::task::spawn_blocking(move || {
            let mut b = backend.lock().unwrap_or_else(|e| e.into_inner());
            b.apply(&d, if full { None } else { Some(&p) })
        })
        .await
        .map_err(|e| SyncError::Task(e.to_string()))?;
        let applied = started.elapsed();
        let report = match result {
            Ok(r) => r,
            Err(source) => {
                self.metrics.sync_failures.inc();
                return Err(SyncError::Backend {
                    backend: name,
                    source,
                });
            }
        };
        // The state this one replaces is no longer needed: handed back to the planner,
        // the next plan patches it rather than copying every virtual service.
        let replaced = self.applied.swap(desired.clone());
        let replaced_from = self.applied_from.replace((plan_no, touched));
        drop(previous);
        let recycled = match (replaced_from, Arc::try_unwrap(replaced)) {
            (Some((from, touched)), Ok(state)) => {
                self.planner.recycle(state, from, touched);
                true
            }
            _ => false,
        };
        if let Some(task) = &self.aliases {
            // A full sync re-reads the interface even when the set is unchanged.
            task.want(desired.vips(), req.full);
        }
        let elapsed = started.elapsed();
        self.record(&snapshot, &plan.generations, &desired, req.full, elapsed);
        self.schedule_timers(&snapshot);
        tracing::info!(
            services = desired.services.len(),
            operations = report.operations,
            draining = self.drains.len(),
            rebuilt = self.planner.stats().rebuilt,
            copied = self.planner.stats().copied,
            unsynced = plan.unsynced.len(),
            expired = plan.expired.len(),
            elapsed_ms = elapsed.as_secs_f64() * 1000.0,
            plan_ms = planned.as_secs_f64() * 1000.0,
            apply_ms = (applied - planned).as_secs_f64() * 1000.0,
            "synced"
        );
        if !recycled && let Some((from, touched)) = &self.applied_from {
            // Nothing to hand back (the first sync after start, or after a state read
            // from the kernel): a copy of what was just applied, made now rather than by
            // the plan of the next change (~20-40 ms at 10,000 services).
            self.planner
                .recycle(DesiredState::clone(&desired), *from, touched.clone());
        }
        Ok(())
    }

    fn record(
        &mut self,
        snapshot: &Snapshot,
        generations: &BTreeMap<String, u64>,
        desired: &DesiredState,
        full: bool,
        elapsed: Duration,
    ) {
        let m = &self.metrics;
        let kind = if full { "full" } else { "partial" };
        m.sync_duration
            .get_or_create(&KindLabel { kind: kind.into() })
            .observe(elapsed.as_secs_f64());
        let now = SystemTime::now();
        m.last_success.set(
            now.duration_since(UNIX_EPOCH)
                .unwrap_or_default()
                .as_secs_f64(),
        );
        for (cluster, generation) in generations {
            let seen_before = self.generations.get(cluster);
            let changed = snapshot.cluster(cluster).and_then(|c| c.status.last_update);
            if let Some(changed) = changed.filter(|_| seen_before.is_some_and(|g| g != generation))
            {
                let latency = now.duration_since(changed).unwrap_or_default();
                m.programming_latency.observe(latency.as_secs_f64());
            }
            self.generations.insert(cluster.clone(), *generation);
        }
        let counts = desired.counts();
        for view in snapshot.clusters.values().filter(|v| !v.local) {
            let (s, r) = counts.get(view.name.as_str()).copied().unwrap_or_default();
            let label = ClusterLabel {
                cluster: view.name.clone(),
            };
            m.services.get_or_create(&label).set(s as i64);
            m.real_servers.get_or_create(&label).set(r as i64);
        }
        m.draining.set(self.drains.len() as i64);
    }

    /// The next moment a sync is due without any catalog change: a drain deadline, or
    /// a disconnected cluster reaching the stale-rules expiry.
    fn schedule_timers(&self, snapshot: &Snapshot) {
        let mut next = self.drains.next_deadline();
        let expiry = self.settings.stale_rules_expiry;
        if !expiry.is_zero() {
            for view in snapshot.clusters.values().filter(|v| !v.local) {
                if let Some(since) = view.status.disconnected_since {
                    let at = since + expiry + Duration::from_millis(1);
                    if at > Instant::now() {
                        next = Some(next.map_or(at, |n| n.min(at)));
                    }
                }
            }
        }
        *self.wake_at.lock().unwrap_or_else(|e| e.into_inner()) = next;
    }

    /// Runs the loop until the catalog is dropped.
    pub async fn run(self, timing: SyncTiming) {
        let (kick, kicks) = watch::channel(0u64);
        let mut changes = self.catalog.subscribe();
        let wake_at = self.wake_at.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_millis(250));
            loop {
                tokio::select! {
                    r = changes.changed() => {
                        if r.is_err() { break; }
                        kick.send_modify(|g| *g += 1);
                    }
                    _ = tick.tick() => {
                        let due = wake_at.lock().unwrap_or_else(|e| e.into_inner()).is_some_and(|t| t <= Instant::now());
                        if due {
                            *wake_at.lock().unwrap_or_else(|e| e.into_inner()) = None;
                            kick.send_modify(|g| *g += 1);
                        }
                    }
                }
            }
        });
        let me = Arc::new(tokio::sync::Mutex::new(self));
        SyncRunner::new(timing)
            .run(kicks, move |req| {
                let me = me.clone();
                async move { me.lock().await.sync(req).await }
            })
            .await;
    }
}

/// The task that keeps the interface's aliases at the last VIP set it was given.
///
/// The newest set wins (sets handed over while it works are coalesced); a failure is
/// logged, counted in the sync failures and retried with backoff against the newest set.
pub struct AliasTask {
    tx: watch::Sender<(u64, Arc<BTreeSet<IpAddr>>)>,
}

impl AliasTask {
    pub fn start(aliases: Aliases, metrics: ProxyMetrics) -> Self {
        let (tx, rx) = watch::channel((0, Arc::new(BTreeSet::new())));
        tokio::spawn(Self::run(aliases, metrics, rx));
        AliasTask { tx }
    }

    /// Asks for `vips`; an unchanged set is left alone (no interface listing) unless
    /// `force` asks to re-read the interface.
    pub fn want(&self, vips: BTreeSet<IpAddr>, force: bool) {
        self.tx.send_modify(|(generation, current)| {
            if force || **current != vips {
                *generation += 1;
                *current = Arc::new(vips);
            }
        });
    }

    async fn run(
        aliases: Aliases,
        metrics: ProxyMetrics,
        mut rx: watch::Receiver<(u64, Arc<BTreeSet<IpAddr>>)>,
    ) {
        let mut backoff = Duration::from_millis(100);
        // Nothing to do until the first set arrives.
        if rx.changed().await.is_err() {
            return;
        }
        loop {
            let (generation, vips) = rx.borrow_and_update().clone();
            let started = Instant::now();
            match aliases.sync(&vips).await {
                Ok(changes) => {
                    backoff = Duration::from_millis(100);
                    if !changes.added.is_empty() || !changes.removed.is_empty() {
                        tracing::info!(
                            generation,
                            vips = vips.len(),
                            added = changes.added.len(),
                            removed = changes.removed.len(),
                            elapsed_ms = started.elapsed().as_secs_f64() * 1000.0,
                            "aliases synced"
                        );
                    }
                    if rx.changed().await.is_err() {
                        return;
                    }
                }
                Err(e) => {
                    metrics.sync_failures.inc();
                    tracing::warn!(error = %e, retry_in = ?backoff, "aliases");
                    tokio::select! {
                        _ = tokio::time::sleep(backoff) => {}
                        r = rx.changed() => if r.is_err() { return },
                    }
                    backoff = (backoff * 2).min(Duration::from_secs(10));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests;
