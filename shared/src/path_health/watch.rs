//! Reads the tunnel's `/paths` report every `pathHealth.pollInterval` and sets each remote
//! cluster's [`PathState`] in the catalog (which wakes DNS and the proxy only on a change).
//!
//! The verdicts are a pure function ([`verdicts`]): a cluster in the report is unreachable
//! when none of its nodes showed a working path for longer than `unreachableAfter`; one the
//! report does not name is unknown. A report that cannot be read keeps the last verdicts
//! until reads have failed for `unreachableAfter`, then everything becomes unknown: a tunnel
//! that is restarting (or not deployed) never takes clusters out.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use super::{PathHealthError, PathReport, http};
use crate::catalog::{Catalog, PathState};
use crate::config::Config;

/// The verdict for each of `remotes` from `report` (None: no report could be read).
pub fn verdicts(
    remotes: &[String],
    report: Option<&PathReport>,
    unreachable_after: Duration,
) -> BTreeMap<String, PathState> {
    remotes
        .iter()
        .map(|name| {
            let state = match report.and_then(|r| r.cluster(name)) {
                None => PathState::Unknown,
                Some(c) if c.unreachable_ms > unreachable_after.as_millis() as u64 => {
                    PathState::Unreachable
                }
                Some(_) => PathState::Reachable,
            };
            (name.clone(), state)
        })
        .collect()
}

/// Labels of the per-cluster gauge.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ClusterLabel {
    pub cluster: String,
}

/// The watcher's metrics.
#[derive(Clone, Default)]
pub struct PathMetrics {
    reachable: Family<ClusterLabel, Gauge>,
    unreachable_ms: Family<ClusterLabel, Gauge>,
    read_errors: Counter,
}

impl PathMetrics {
    pub fn register(reg: &mut Registry) -> Self {
        let m = Self::default();
        reg.register(
            "causeway_path_reachable",
            "Remote cluster reachable through the tunnel: 1 yes, 0 no (left out of merged answers), -1 unknown",
            m.reachable.clone(),
        );
        reg.register(
            "causeway_path_unreachable_milliseconds",
            "Milliseconds since a node of the remote cluster last answered a probe, as last read",
            m.unreachable_ms.clone(),
        );
        reg.register(
            "causeway_path_report_read_errors",
            "Failed reads of the tunnel's path report",
            m.read_errors.clone(),
        );
        m
    }

    fn observe(&self, states: &BTreeMap<String, PathState>, report: Option<&PathReport>) {
        for (cluster, state) in states {
            let l = ClusterLabel {
                cluster: cluster.clone(),
            };
            self.reachable.get_or_create(&l).set(match state {
                PathState::Reachable => 1,
                PathState::Unreachable => 0,
                PathState::Unknown => -1,
            });
            match report.and_then(|r| r.cluster(cluster)) {
                Some(c) => {
                    self.unreachable_ms
                        .get_or_create(&l)
                        .set(i64::try_from(c.unreachable_ms).unwrap_or(i64::MAX));
                }
                None => {
                    self.unreachable_ms.remove(&l);
                }
            }
        }
    }
}

/// Polls the report into the catalog.
pub struct PathWatcher {
    url: String,
    remotes: Vec<String>,
    unreachable_after: Duration,
    poll: Duration,
    catalog: Arc<Catalog>,
    metrics: PathMetrics,
    /// The last report read, and when reads started failing (None while they succeed).
    last: Option<PathReport>,
    failing_since: Option<Instant>,
}

impl PathWatcher {
    /// A watcher of `config`'s report, or None when shared health is off.
    pub fn new(config: &Config, catalog: Arc<Catalog>, metrics: PathMetrics) -> Option<Self> {
        let url = config.path_health_url()?;
        Some(Self {
            url,
            remotes: config.remotes().map(|c| c.name.clone()).collect(),
            unreachable_after: config.path_health.unreachable_after.0,
            poll: config.path_health.poll_interval.0,
            catalog,
            metrics,
            last: None,
            failing_since: None,
        })
    }

    /// Replaces the URL (a flag or environment variable given at start).
    pub fn with_url(mut self, url: String) -> Self {
        self.url = url;
        self
    }

    /// Reads the report once and publishes the verdicts.
    pub async fn poll_once(&mut self) {
        let timeout = self.poll.max(Duration::from_millis(500));
        let read = match http::get(&self.url, timeout).await {
            Ok(body) => serde_json::from_slice::<PathReport>(&body).map_err(|source| {
                PathHealthError::Decode {
                    url: self.url.clone(),
                    source,
                }
            }),
            Err(e) => Err(e),
        };
        let now = Instant::now();
        match read {
            Ok(report) => {
                if self.failing_since.take().is_some() {
                    tracing::info!(url = %self.url, "path report readable again");
                }
                self.last = Some(report);
            }
            Err(e) => {
                self.metrics.read_errors.inc();
                let since = *self.failing_since.get_or_insert_with(|| {
                    tracing::warn!(error = %e, "cannot read the tunnel's path report; keeping the last verdicts");
                    now
                });
                if now.duration_since(since) > self.unreachable_after && self.last.take().is_some()
                {
                    tracing::warn!(url = %self.url, "no path report for pathHealth.unreachableAfter: every cluster's path is unknown (none left out)");
                }
            }
        }
        let states = verdicts(&self.remotes, self.last.as_ref(), self.unreachable_after);
        let before = self.catalog.snapshot();
        for (cluster, state) in &states {
            let was = before.cluster(cluster).map(|v| v.path);
            if was != Some(*state) {
                match state {
                    PathState::Unreachable => tracing::warn!(
                        cluster,
                        "unreachable through the tunnel: left out of merged answers"
                    ),
                    PathState::Reachable => tracing::info!(cluster, "reachable through the tunnel"),
                    PathState::Unknown => tracing::info!(cluster, "path state unknown"),
                }
            }
            self.catalog.set_path(cluster, *state);
        }
        self.metrics.observe(&states, self.last.as_ref());
    }

    /// Polls until the task is aborted.
    pub fn spawn(mut self) -> JoinHandle<()> {
        tracing::info!(url = %self.url, unreachable_after = ?self.unreachable_after, "reading the tunnel's path report");
        tokio::spawn(async move {
            loop {
                self.poll_once().await;
                tokio::time::sleep(self.poll).await;
            }
        })
    }
}

#[cfg(test)]
mod tests;
