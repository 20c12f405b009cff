//! The memoized planner: [`Planner::plan`] answers exactly as [`plan()`](super::plan)
//! does, building anew only the Services whose objects changed since its last plan, and
//! patching a desired state handed back instead of copying every virtual service.

use std::cmp::Ordering;
use std::collections::{BTreeMap, VecDeque};
use std::iter::Peekable;
use std::sync::Arc;

use causeway_shared::catalog::Snapshot;
use causeway_shared::model::{ClusterData, EndpointSlice, Service, ServiceKey};
use tokio::time::Instant;

use super::backends::virtual_servers;
use super::{Conflict, DesiredState, Plan, PlanSettings, VirtualServer, VsKey};

/// The planner with a memory: [`Planner::plan`] answers exactly as [`plan`](super::plan) does, but
/// builds anew only the virtual services of Services that changed since its last call.
///
/// The sources keep the same `Arc` for every object that did not change, so a Service
/// whose object and EndpointSlices are the same `Arc`s as last time has the same virtual
/// services, and a cluster whose whole `ClusterData` is the same `Arc` has the same
/// result. The memo holds those `Arc`s rather than bare addresses: a freed object's
/// address could be reused by a new one, a live `Arc`'s cannot.
///
/// The memo holds a copy of every virtual service, and each plan hands out a desired
/// state of its own (the caller owns and changes it). Copying every virtual service into
/// it would cost more than all the rest of a re-plan, so a caller that is done with a
/// state the planner returned hands it back ([`Planner::recycle`]): the next plan
/// patches it where the plans since differ.
#[derive(Debug, Default)]
pub struct Planner {
    /// The clusters of the last plan, by name (unsynced, expired and gone ones are dropped).
    clusters: BTreeMap<String, ClusterMemo>,
    /// Plans made so far: the number of the last one.
    plans: u64,
    /// The claim that won each key in the last plan, sorted by key.
    winners: Vec<(VsKey, u64)>,
    /// The keys whose virtual service each of the last few plans changed, sorted.
    changes: VecDeque<(u64, Vec<VsKey>)>,
    /// A state handed back, to become the next plan's.
    spare: Option<Spare>,
    /// The id of the last claim built.
    last_claim: u64,
    stats: PlanStats,
}

/// What the last [`Planner::plan`] had to do.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PlanStats {
    /// Services whose virtual services were built anew (the others' were reused).
    pub rebuilt: usize,
    /// Virtual services copied into the desired state: every one, or only the changed
    /// ones when a recycled state was patched.
    pub copied: usize,
}

/// How many plans' changes are kept for patching a recycled state (the sync loop hands
/// back states two plans old).
const KEPT_CHANGES: usize = 4;

/// What one cluster's data planned to.
#[derive(Debug)]
struct ClusterMemo {
    data: Arc<ClusterData>,
    /// Planned with the cluster's data path reported down: every virtual service without
    /// real servers.
    path_down: bool,
    /// In the order of `data.services` (by key): the order [`plan`] meets them in.
    services: Vec<ServiceMemo>,
    /// The virtual services of all of them, sorted by key (then by where [`plan`] meets
    /// them): the desired state is built from these in order, without a search.
    servers: Vec<Claim>,
}

/// What one Service was planned from.
#[derive(Debug)]
struct ServiceMemo {
    service: Arc<Service>,
    slices: Vec<Arc<EndpointSlice>>,
}

/// One virtual service of a cluster.
#[derive(Debug)]
struct Claim {
    key: VsKey,
    /// Unique to this claim: a claim that wins its key in two plans in a row gave both
    /// the same virtual service.
    id: u64,
    /// The position of its Service in [`ClusterMemo::services`], and its own among that
    /// Service's virtual services.
    at: (usize, usize),
    server: VirtualServer,
}

/// The claim that keeps a key: its id, and where it is (cluster, position in `servers`).
struct Winner {
    key: VsKey,
    id: u64,
    cluster: usize,
    claim: usize,
}

/// A desired state handed back by the caller.
#[derive(Debug)]
struct Spare {
    /// The plan that returned it.
    plan: u64,
    state: DesiredState,
    /// The keys the caller changed in it since.
    touched: Vec<VsKey>,
}

/// The slices of one service, as [`ClusterData::slices_by_service`] lists them.
type SliceGroup = BTreeMap<String, Arc<EndpointSlice>>;

impl Planner {
    /// Builds the desired state of every remote cluster in `snapshot`, as [`plan`] does.
    pub fn plan(&mut self, snapshot: &Snapshot, settings: &PlanSettings, now: Instant) -> Plan {
        let mut out = Plan::default();
        let mut previous = std::mem::take(&mut self.clusters);
        self.plans += 1;
        self.stats = PlanStats::default();
        for view in snapshot.clusters.values().filter(|v| !v.local) {
            if !view.status.synced {
                out.unsynced.insert(view.name.clone());
                continue;
            }
            let expired = !settings.stale_rules_expiry.is_zero()
                && view
                    .status
                    .unreachable_for(now)
                    .is_some_and(|d| d > settings.stale_rules_expiry);
            if expired {
                out.expired.insert(view.name.clone());
                continue;
            }
            out.generations
                .insert(view.name.clone(), view.status.data_generation);
            let path_down = view.path_down();
            let memo = match previous.remove(&view.name) {
                Some(memo)
                    if Arc::ptr_eq(&memo.data, &view.data) && memo.path_down == path_down =>
                {
                    memo
                }
                memo => ClusterMemo::update(
                    &view.name,
                    &view.data,
                    // A path going down or coming back changes every virtual service.
                    memo.filter(|m| m.path_down == path_down),
                    path_down,
                    &mut self.last_claim,
                    &mut self.stats.rebuilt,
                ),
            };
            self.clusters.insert(view.name.clone(), memo);
        }
        let clusters: Vec<(&String, &ClusterMemo)> = self.clusters.iter().collect();
        let winners;
        (winners, out.conflicts) = winners_of(&clusters);
        self.changes
            .push_back((self.plans, changed_keys(&self.winners, &winners)));
        if self.changes.len() > KEPT_CHANGES {
            self.changes.pop_front();
        }
        self.winners = winners.iter().map(|w| (w.key, w.id)).collect();
        let spare = self.spare.take().and_then(|spare| {
            let differ = self.changed_since(spare.plan, &spare.touched)?;
            Some((spare.state, differ))
        });
        (out.desired, self.stats.copied) = desired_state(&clusters, &winners, spare);
        out
    }

    /// Hands back a desired state that plan number `plan` returned (see
    /// [`Planner::plans`]), once the caller no longer needs it: the next plan patches it
    /// into its own instead of copying every virtual service. `touched` names every key
    /// whose virtual service the caller added, removed or changed in it since. A state
    /// too old to patch (more plans since than the planner keeps changes of) is dropped.
    pub fn recycle(&mut self, state: DesiredState, plan: u64, touched: Vec<VsKey>) {
        self.spare = Some(Spare {
            plan,
            state,
            touched,
        });
    }

    /// The keys whose virtual service changed in the plans after number `plan`, with
    /// `also` (keys changed elsewhere), sorted, each once; None when more plans were made
    /// since than the planner keeps changes of.
    pub fn changed_since(&self, plan: u64, also: &[VsKey]) -> Option<Vec<VsKey>> {
        let known = plan == self.plans
            || plan < self.plans && self.changes.front().is_some_and(|(p, _)| *p <= plan + 1);
        if !known {
            return None;
        }
        let mut keys: Vec<VsKey> = self
            .changes
            .iter()
            .filter(|(p, _)| *p > plan)
            .flat_map(|(_, changed)| changed.iter().copied())
            .chain(also.iter().copied())
            .collect();
        keys.sort_unstable();
        keys.dedup();
        Some(keys)
    }

    /// How many plans were made: the number of the last one.
    pub fn plans(&self) -> u64 {
        self.plans
    }

    /// What the last plan had to do.
    pub fn stats(&self) -> PlanStats {
        self.stats
    }
}

/// The claim that keeps each key, clusters in name order and the first claimant keeping
/// it; the others are conflicts, listed in the order [`plan`] meets them.
fn winners_of(clusters: &[(&String, &ClusterMemo)]) -> (Vec<Winner>, Vec<Conflict>) {
    let mut claims: Vec<(VsKey, usize, usize)> = clusters
        .iter()
        .enumerate()
        .flat_map(|(c, (_, memo))| {
            memo.servers
                .iter()
                .enumerate()
                .map(move |(i, s)| (s.key, c, i))
        })
        .collect();
    // Each cluster's run is sorted and the runs come in cluster order, so a stable sort
    // by key merges them and keeps each key's claimants in the order `plan` meets them.
    claims.sort_by_key(|c| c.0);
    let mut winners: Vec<Winner> = Vec::with_capacity(claims.len());
    let mut conflicts = Vec::new();
    for (key, c, i) in claims {
        let claim = &clusters[c].1.servers[i];
        match winners.last() {
            Some(kept) if kept.key == key => conflicts.push((
                (c, claim.at),
                Conflict {
                    key,
                    kept: clusters[kept.cluster].0.clone(),
                    dropped: clusters[c].0.clone(),
                },
            )),
            _ => winners.push(Winner {
                key,
                id: claim.id,
                cluster: c,
                claim: i,
            }),
        }
    }
    conflicts.sort_by_key(|(at, _)| *at);
    (winners, conflicts.into_iter().map(|(_, c)| c).collect())
}

/// The desired state of `winners`: `spare` patched at the keys where it may differ from
/// it, or every virtual service copied. Returns it with the number copied.
fn desired_state(
    clusters: &[(&String, &ClusterMemo)],
    winners: &[Winner],
    spare: Option<(DesiredState, Vec<VsKey>)>,
) -> (DesiredState, usize) {
    let server = |w: &Winner| clusters[w.cluster].1.servers[w.claim].server.clone();
    let Some((mut state, differ)) = spare else {
        let state = DesiredState {
            // In key order already: `collect` finds one sorted run and builds the map in
            // bulk, without a search per key.
            services: winners.iter().map(|w| (w.key, server(w))).collect(),
        };
        return (state, winners.len());
    };
    let mut copied = 0;
    for key in differ {
        match winners.binary_search_by_key(&key, |w| w.key) {
            Ok(at) => {
                state.services.insert(key, server(&winners[at]));
                copied += 1;
            }
            Err(_) => {
                state.services.remove(&key);
            }
        }
    }
    (state, copied)
}

/// The keys whose winning claim differs between two plans (gone, new or another), sorted.
fn changed_keys(before: &[(VsKey, u64)], now: &[Winner]) -> Vec<VsKey> {
    let mut before = before.iter().peekable();
    let mut changed = Vec::new();
    for w in now {
        while let Some((gone, _)) = before.next_if(|(k, _)| *k < w.key) {
            changed.push(*gone);
        }
        if before.next_if(|(k, _)| *k == w.key).map(|(_, id)| *id) != Some(w.id) {
            changed.push(w.key);
        }
    }
    changed.extend(before.map(|(gone, _)| *gone));
    changed
}

impl ClusterMemo {
    /// The memo of `data`, reusing from `previous` every Service whose object and
    /// slices did not change.
    fn update(
        cluster: &str,
        data: &Arc<ClusterData>,
        previous: Option<ClusterMemo>,
        path_down: bool,
        last_claim: &mut u64,
        rebuilt: &mut usize,
    ) -> ClusterMemo {
        let (old, mut servers) = previous
            .map(|m| (m.services, m.servers))
            .unwrap_or_default();
        // Where each previous Service went (None: it changed or went).
        let mut moved_to: Vec<Option<usize>> = vec![None; old.len()];
        let mut old = old.into_iter().enumerate().peekable();
        let mut groups = data.slices_by_service().peekable();
        let mut services = Vec::with_capacity(data.services.len());
        let mut added = Vec::new();
        // Services, slice groups and previous memos are all sorted by key: one walk
        // pairs them up without a search.
        for (key, svc) in &data.services {
            // An unchanged Service is the next memo's very object: no key comparison.
            let memo = old
                .next_if(|(_, m)| Arc::ptr_eq(&m.service, svc))
                .or_else(|| {
                    while old.next_if(|(_, m)| m.service.key < *key).is_some() {}
                    old.next_if(|(_, m)| m.service.key == *key)
                });
            let known = memo.as_ref().and_then(|(_, m)| m.slices.first());
            let slices = slices_of(&mut groups, key, known);
            let at = services.len();
            match memo.filter(|(_, m)| m.built_from(svc, slices)) {
                Some((was, memo)) => {
                    moved_to[was] = Some(at);
                    services.push(memo);
                }
                None => {
                    *rebuilt += 1;
                    let built = virtual_servers(cluster, data, svc).into_iter();
                    added.extend(built.enumerate().map(|(v, (key, mut server))| {
                        if path_down {
                            server.reals.clear();
                        }
                        *last_claim += 1;
                        Claim {
                            key,
                            id: *last_claim,
                            at: (at, v),
                            server,
                        }
                    }));
                    services.push(ServiceMemo {
                        service: svc.clone(),
                        slices: slices
                            .into_iter()
                            .flat_map(|g| g.values().cloned())
                            .collect(),
                    });
                }
            }
        }
        // The previous claims, moved along, are still sorted: the sort below only has
        // to merge the new ones in.
        servers.retain_mut(|c| match moved_to[c.at.0] {
            Some(s) => {
                c.at.0 = s;
                true
            }
            None => false,
        });
        servers.append(&mut added);
        servers.sort_by_key(|c| (c.key, c.at));
        ClusterMemo {
            data: data.clone(),
            path_down,
            services,
            servers,
        }
    }
}

/// The slices of the Service `key`, taken from `groups` (sorted by key, the groups of
/// earlier keys taken already). When the next group holds `known`, a slice this Service
/// had, it is this Service's: a slice is filed under its service's key, and the same
/// object names the same service. That spares comparing keys, whose text is elsewhere
/// in memory, for every Service.
fn slices_of<'a>(
    groups: &mut Peekable<impl Iterator<Item = (&'a ServiceKey, &'a SliceGroup)>>,
    key: &ServiceKey,
    known: Option<&Arc<EndpointSlice>>,
) -> Option<&'a SliceGroup> {
    let holds_known = |g: &SliceGroup| {
        known.is_some_and(|k| g.values().next().is_some_and(|s| Arc::ptr_eq(s, k)))
    };
    if let Some((_, group)) = groups.next_if(|(_, g)| holds_known(g)) {
        return Some(group);
    }
    loop {
        match groups.peek().map(|(k, _)| (*k).cmp(key)) {
            Some(Ordering::Less) => {
                groups.next(); // slices of a service that does not exist
            }
            Some(Ordering::Equal) => return groups.next().map(|(_, g)| g),
            _ => return None,
        }
    }
}

impl ServiceMemo {
    /// True when built from this very Service object and these very slices.
    fn built_from(&self, svc: &Arc<Service>, slices: Option<&SliceGroup>) -> bool {
        Arc::ptr_eq(&self.service, svc)
            && self
                .slices
                .iter()
                .map(Arc::as_ptr)
                .eq(slices.into_iter().flat_map(|g| g.values()).map(Arc::as_ptr))
    }
}

#[cfg(test)]
mod tests;
