//! Where cluster objects come from: a Kubernetes API (reflectors) or a YAML file.
//!
//! Each configured cluster gets its own task. Tasks share nothing but the [`Catalog`]
//! they publish to, so a slow or failing cluster never delays the others.

mod file;
mod kube;
mod metrics;
mod objects;
pub mod persist;

use crate::supervise::{Backoff, spawn_restarting};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::task::JoinHandle;

pub use self::file::FileSource;
pub use self::kube::{KubeSource, client_for};
pub use self::metrics::SourceMetrics;
pub use self::objects::{ObjectCache, ObjectsError, ParseSummary, parse_objects};
pub use self::persist::StateDir;
use crate::catalog::Catalog;
use crate::config::{Config, SourceSpec};
use crate::model::ObjectKind;

/// What the sources watch and how.
#[derive(Clone, Debug)]
pub struct SourceOptions {
    /// Kinds watched on Kubernetes sources (file sources take every kind they find).
    pub kinds: Vec<ObjectKind>,
    /// How often file sources check their file.
    pub file_poll: Duration,
    /// Read timeout of API requests; a stalled API is noticed after about this long.
    pub api_timeout: Duration,
    /// Longest wait between retries against an unreachable API.
    pub max_backoff: Duration,
    /// Where remote Kubernetes sources keep their cluster's last good state; None keeps
    /// it in memory only.
    pub state_dir: Option<PathBuf>,
    /// At most one state write per this interval per cluster.
    pub state_debounce: Duration,
}

impl SourceOptions {
    pub fn new(kinds: &[ObjectKind]) -> Self {
        Self {
            kinds: kinds.to_vec(),
            file_poll: Duration::from_millis(20),
            api_timeout: Duration::from_secs(30),
            max_backoff: Duration::from_secs(10),
            state_dir: None,
            state_debounce: Duration::from_secs(5),
        }
    }
}

/// Starts one source task per configured cluster. Remote Kubernetes sources save their
/// state under `options.state_dir` (the local cluster must be listed to be ready anyway,
/// and file sources re-read their file). A source that panics is restarted after a backoff
/// (the catalog keeps its last data meanwhile, and its `lastError` says so); the other
/// clusters' sources never notice.
pub fn spawn_sources(
    config: &Config,
    catalog: &Arc<Catalog>,
    options: &SourceOptions,
    metrics: &SourceMetrics,
) -> Vec<JoinHandle<()>> {
    config
        .clusters
        .iter()
        .map(|c| {
            let catalog = catalog.clone();
            let metrics = metrics.clone();
            let on_panic = {
                let catalog = catalog.clone();
                let cluster = c.name.clone();
                move |msg: &str| {
                    catalog.update_status(&cluster, |s| {
                        s.last_error = Some(format!("source task panicked: {msg}; restarting"));
                    })
                }
            };
            let task = format!("source {}", c.name);
            match &c.source {
                SourceSpec::File { path } => {
                    let src = FileSource {
                        cluster: c.name.clone(),
                        path: path.clone(),
                        poll: options.file_poll,
                    };
                    spawn_restarting(
                        task,
                        Backoff::default(),
                        move || src.clone().run(catalog.clone(), metrics.clone()),
                        on_panic,
                    )
                }
                spec => {
                    let src = KubeSource {
                        cluster: c.name.clone(),
                        spec: spec.clone(),
                        kinds: options.kinds.clone(),
                        api_timeout: options.api_timeout,
                        max_backoff: options.max_backoff,
                        state: options
                            .state_dir
                            .as_ref()
                            .filter(|_| c.name != config.local_cluster)
                            .map(|dir| StateDir {
                                dir: dir.clone(),
                                debounce: options.state_debounce,
                            }),
                    };
                    spawn_restarting(
                        task,
                        Backoff::default(),
                        move || src.clone().run(catalog.clone(), metrics.clone()),
                        on_panic,
                    )
                }
            }
        })
        .collect()
}
