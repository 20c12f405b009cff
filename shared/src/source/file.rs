//! The file source: a cluster's objects in a YAML file, re-read when the file changes.
//!
//! A changed file is a whole new state. A file that fails to read or parse keeps the
//! previous state (and the cluster's `synced` flag); the error is logged, counted and
//! shown in the cluster status until a good version appears.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio::time::Instant;

use super::metrics::SourceMetrics;
use super::objects::ObjectCache;
use crate::catalog::{Catalog, ClusterStatus};

/// What identifies a version of the file without reading it. Following symlinks means a
/// Kubernetes ConfigMap volume's `..data` swap is seen as a change too.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Stamp {
    modified: Option<SystemTime>,
    len: u64,
    ino: u64,
}

fn stamp(path: &Path) -> std::io::Result<Stamp> {
    use std::os::unix::fs::MetadataExt;
    let m = std::fs::metadata(path)?;
    Ok(Stamp {
        modified: m.modified().ok(),
        len: m.len(),
        ino: m.ino(),
    })
}

/// Watches one file for one cluster.
#[derive(Clone, Debug)]
pub struct FileSource {
    pub cluster: String,
    pub path: PathBuf,
    /// How often the file's metadata is checked.
    pub poll: Duration,
}

impl FileSource {
    /// Runs forever, publishing each good version of the file.
    pub async fn run(self, catalog: Arc<Catalog>, metrics: SourceMetrics) {
        let cluster = self.cluster.as_str();
        let mut status = ClusterStatus::default();
        let mut seen: Option<Stamp> = None;
        let mut last_text: Option<String> = None;
        // Unchanged parts of the file are not parsed again (and keep their `Arc`s).
        let mut cache = Some(ObjectCache::default());
        let mut ticker = tokio::time::interval(self.poll);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticker.tick().await;
            let current = stamp(&self.path);
            let now_stamp = current.as_ref().ok().copied();
            if now_stamp.is_some() && now_stamp == seen {
                continue;
            }
            let text = current.and_then(|_| std::fs::read_to_string(&self.path));
            let result = match text {
                Err(e) => Err(format!("{}: cannot read: {e}", self.path.display())),
                Ok(text) if Some(&text) == last_text.as_ref() => {
                    seen = now_stamp;
                    continue;
                }
                Ok(text) => {
                    // Parsing a large file takes a while: keep it off the async workers.
                    let mut c = cache.take().unwrap_or_default();
                    let (c, text, parsed) = tokio::task::spawn_blocking(move || {
                        let parsed = c.parse(&text);
                        (c, text, parsed)
                    })
                    .await
                    .expect("the parser does not panic");
                    cache = Some(c);
                    match parsed {
                        Ok((data, summary)) => Ok((text, data, summary)),
                        Err(e) => Err(format!("{}: {e}", self.path.display())),
                    }
                }
            };
            match result {
                Ok((text, data, summary)) => {
                    seen = now_stamp;
                    last_text = Some(text);
                    status = ClusterStatus {
                        synced: true,
                        connected: true,
                        disconnected_since: None,
                        last_error: None,
                        ..status
                    };
                    tracing::info!(
                        cluster,
                        path = %self.path.display(),
                        services = data.services.len(),
                        nodes = data.nodes.len(),
                        ignored = summary.ignored,
                        "loaded cluster objects from file"
                    );
                    metrics.observe(cluster, &status, Some(&data));
                    catalog.publish(cluster, Arc::new(data), status.clone());
                }
                Err(message) => {
                    // Remember the broken version so it is reported once, not at every poll.
                    seen = now_stamp;
                    tracing::warn!(cluster, error = %message, "keeping the previous state of the cluster");
                    metrics.error(cluster, "file");
                    status.last_error = Some(message);
                    if status.connected || status.disconnected_since.is_none() {
                        status.connected = false;
                        status.disconnected_since = Some(Instant::now());
                    }
                    metrics.observe(cluster, &status, None);
                    catalog.set_status(cluster, status.clone());
                }
            }
        }
    }
}
