//! What every binary does at start: read flags and config, start logging, the catalog,
//! the cluster sources and the telemetry server.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use prometheus_client::registry::Registry;

use crate::catalog::Catalog;
use crate::config::Config;
use crate::model::ObjectKind;
use crate::path_health::{PathMetrics, PathWatcher};
use crate::source::{SourceMetrics, SourceOptions, spawn_sources};
use crate::telemetry::{self, LogFormat, SharedRegistry};

/// Flags common to the three binaries.
#[derive(Clone, Debug, clap::Args)]
pub struct CommonArgs {
    /// Configuration file (YAML); each binary reads its own section.
    #[arg(long, env = "CAUSEWAY_CONFIG")]
    pub config: PathBuf,
    /// Log format.
    #[arg(long, env = "CAUSEWAY_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
    /// Directory where each remote cluster's last good state is saved and read back at
    /// start, so a restart during a remote outage serves it (the manifests use
    /// /var/lib/causeway/state/<component>); unset keeps that state in memory only.
    #[arg(long, env = "CAUSEWAY_STATE_DIR")]
    pub state_dir: Option<PathBuf>,
}

impl CommonArgs {
    /// Starts logging and loads the configuration. A bad configuration is printed and
    /// the process exits with status 2 before anything is bound.
    pub fn init(&self) -> Config {
        telemetry::init_tracing(self.log_format);
        crate::supervise::install_panic_hook();
        match Config::load(&self.config) {
            Ok(c) => c,
            Err(e) => {
                eprintln!("error: {e}");
                std::process::exit(2);
            }
        }
    }

    /// Source options watching `kinds`, saving remote state under `--state-dir`.
    pub fn source_options(&self, kinds: &[ObjectKind]) -> SourceOptions {
        SourceOptions {
            state_dir: self.state_dir.clone(),
            ..SourceOptions::new(kinds)
        }
    }
}

/// Where causeway-dns and causeway-proxy read the tunnel's path report.
#[derive(Clone, Debug, clap::Args)]
pub struct PathHealthArgs {
    /// The tunnel's `/paths` URL, overriding `pathHealth.url` (the DNS Deployment passes its
    /// node's tunnel through the Service `causeway-node-local`); empty: shared health off.
    #[arg(long, env = "CAUSEWAY_PATH_HEALTH_URL")]
    pub path_health_url: Option<String>,
}

/// The running core of a binary: config, catalog, metrics registry.
pub struct Process {
    pub config: Arc<Config>,
    pub catalog: Arc<Catalog>,
    pub registry: SharedRegistry,
    pub source_metrics: SourceMetrics,
}

impl Process {
    /// Creates the catalog and registry (no task started yet).
    pub fn new(config: Config) -> Self {
        let mut registry = Registry::default();
        let source_metrics = SourceMetrics::register(&mut registry);
        let catalog = Catalog::for_config(&config);
        Self {
            config: Arc::new(config),
            catalog,
            registry: Arc::new(Mutex::new(registry)),
            source_metrics,
        }
    }

    /// Starts one source per cluster, watching `kinds` on Kubernetes sources.
    pub fn start_sources(&self, options: SourceOptions) {
        spawn_sources(&self.config, &self.catalog, &options, &self.source_metrics);
    }

    /// Starts reading the tunnel's path report into the catalog (`pathHealth`); nothing
    /// when shared health is off. A URL given in `args` replaces the configured one.
    pub fn start_path_health(
        &self,
        args: &PathHealthArgs,
    ) -> Result<Option<tokio::task::JoinHandle<()>>, crate::path_health::PathHealthError> {
        let url = match args.path_health_url.as_deref() {
            Some("") => return Ok(None),
            Some(url) => {
                crate::config::path_health::split_http_url(url)
                    .map_err(crate::path_health::PathHealthError::Url)?;
                Some(url.to_string())
            }
            None => None,
        };
        let metrics = self.with_registry(PathMetrics::register);
        let Some(watcher) = PathWatcher::new(&self.config, self.catalog.clone(), metrics) else {
            return Ok(None);
        };
        let watcher = match url {
            Some(url) => watcher.with_url(url),
            None => watcher,
        };
        Ok(Some(watcher.spawn()))
    }

    /// The `/metrics`, `/healthz`, `/readyz` routes; merge debug routes into it.
    pub fn telemetry_router(&self) -> axum::Router {
        telemetry::router(self.registry.clone(), self.catalog.clone())
    }

    /// [`Self::telemetry_router`] whose `/readyz` also waits for `ready`.
    pub fn telemetry_router_with_ready(&self, ready: telemetry::ReadyCheck) -> axum::Router {
        telemetry::router_with_ready(self.registry.clone(), self.catalog.clone(), Some(ready))
    }

    /// Registers metrics in the shared registry.
    pub fn with_registry<T>(&self, f: impl FnOnce(&mut Registry) -> T) -> T {
        f(&mut self.registry.lock().unwrap_or_else(|e| e.into_inner()))
    }
}
