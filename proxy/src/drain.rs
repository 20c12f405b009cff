//! Graceful termination: a real server that leaves the plan stays at weight 0 until its
//! connections end (when the backend can count them) or the grace period passes, as
//! kube-router's `--ipvs-graceful-termination` does.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use tokio::time::Instant;

use crate::plan::{DesiredState, VirtualServer, VsKey};

/// Real servers being drained and when they go for good.
#[derive(Debug, Default)]
pub struct Drains {
    grace: Duration,
    deadlines: BTreeMap<(VsKey, SocketAddr), Instant>,
}

impl Drains {
    pub fn new(grace: Duration) -> Self {
        Drains {
            grace,
            deadlines: BTreeMap::new(),
        }
    }

    /// Adds to `desired`, at weight 0, every real server of `applied` that the plan
    /// dropped from a virtual service it keeps, until its deadline passes or
    /// `connections` reports none left. A removed virtual service goes at once.
    ///
    /// `differ`, when the caller knows it, lists (sorted) every key where `desired` and
    /// `applied` may differ, and only those are looked at; None: every key is.
    pub fn retain(
        &mut self,
        desired: &mut DesiredState,
        applied: &DesiredState,
        differ: Option<&[VsKey]>,
        now: Instant,
        mut connections: impl FnMut(&VsKey, SocketAddr) -> Option<u32>,
    ) {
        let mut next = BTreeMap::new();
        let mut drain = |key: &VsKey, old: &VirtualServer, new: &mut VirtualServer| {
            for real in dropped(&old.reals, &new.reals) {
                let id = (*key, real);
                let deadline = self.deadlines.get(&id).copied().unwrap_or(now + self.grace);
                if now >= deadline || connections(key, real) == Some(0) {
                    tracing::debug!(vs = %key, %real, "drained real server removed");
                    continue;
                }
                new.reals.insert(real, 0);
                next.insert(id, deadline);
            }
        };
        match differ {
            Some(keys) => {
                for key in keys {
                    if let (Some(old), Some(new)) =
                        (applied.services.get(key), desired.services.get_mut(key))
                    {
                        drain(key, old, new);
                    }
                }
            }
            None => {
                // Both maps are sorted by key: one walk pairs them up without a search
                // per key.
                let mut planned = desired.services.iter_mut().peekable();
                for (key, old) in &applied.services {
                    while planned.next_if(|(k, _)| *k < key).is_some() {}
                    if let Some((_, new)) = planned.next_if(|(k, _)| *k == key) {
                        drain(key, old, new);
                    }
                }
            }
        }
        self.deadlines = next;
    }

    /// When the next draining real server is due to go.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.deadlines.values().min().copied()
    }

    /// The virtual services that hold draining real servers.
    pub fn services(&self) -> impl Iterator<Item = VsKey> + '_ {
        self.deadlines.keys().map(|(key, _)| *key)
    }

    pub fn len(&self) -> usize {
        self.deadlines.len()
    }

    pub fn is_empty(&self) -> bool {
        self.deadlines.is_empty()
    }
}

/// The real servers of `old` that `new` does not have (one walk: both are sorted; no
/// allocation when there are none, the usual case).
fn dropped(old: &BTreeMap<SocketAddr, u32>, new: &BTreeMap<SocketAddr, u32>) -> Vec<SocketAddr> {
    let mut kept = new.keys().peekable();
    old.keys()
        .filter(|real| {
            while kept.next_if(|k| k < real).is_some() {}
            kept.next_if(|k| k == real).is_none()
        })
        .copied()
        .collect()
}

#[cfg(test)]
mod tests;
