//! `causeway-dns webhook`: a mutating admission webhook that points selected pods at
//! causeway-dns while keeping what `ClusterFirst` would give them.
//!
//! - [`patch`] makes the pure decision: pod in, JSON patch or skip reason out.
//! - [`review`] decodes AdmissionReviews and encodes answers, also pure.
//! - [`namespaces`] reads namespace labels through a small cache (requests do not carry them).
//! - [`server`] serves HTTPS with certificate reload, and the metrics endpoint.
//! - [`settings`] holds the flags and their validation.
//! - [`metrics`] holds the counters.
//!
//! Behaviour, selection rules and flags are described in the crate's README.
//!
//! The webhook never denies a pod: any error is logged, counted, and the pod admitted unchanged.

mod error;
pub mod metrics;
pub mod namespaces;
pub mod patch;
pub mod review;
pub mod server;
pub mod settings;

use std::time::Duration;

use axum_server::Handle;
use prometheus_client::registry::Registry;
use tracing::info;

pub use error::Error;
pub use settings::{Args, Settings};

use metrics::Metrics;
use namespaces::NamespaceLabels;
use server::{ServingCertificate, Webhook};

/// In-flight reviews get this long to finish after SIGTERM; the API server times out sooner.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// Runs the webhook until SIGTERM or Ctrl-C. Flags are checked, the certificate loaded and the
/// Kubernetes client built before anything is bound, so bad configuration fails fast.
pub async fn run(args: Args) -> Result<(), Error> {
    let settings = Settings::try_from(args)?;
    // Another part of the process may have installed it already; either way ring is in use,
    // the only provider compiled in.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let certificate = ServingCertificate::load(settings.cert.clone()).await?;
    let client = kube::Client::try_default()
        .await
        .map_err(Error::KubeClient)?;

    let mut registry = Registry::default();
    let metrics = Metrics::new(&mut registry);
    let namespaces = NamespaceLabels::new(client, settings.namespace_cache_ttl);
    let webhook = Webhook::new(settings.patch.clone(), namespaces, metrics);

    let https = std::net::TcpListener::bind(settings.listen).map_err(|source| Error::Bind {
        addr: settings.listen,
        source,
    })?;
    let metrics_listener = tokio::net::TcpListener::bind(settings.metrics_listen)
        .await
        .map_err(|source| Error::Bind {
            addr: settings.metrics_listen,
            source,
        })?;

    let handle = Handle::new();
    tokio::spawn(shutdown_on_signal(handle.clone()));
    tokio::select! {
        served = server::serve(https, certificate, settings.cert_reload_interval, webhook, handle) => served,
        served = server::serve_metrics(metrics_listener, registry) => served,
    }
}

async fn shutdown_on_signal(handle: Handle<std::net::SocketAddr>) {
    causeway_shared::signal::shutdown_signal().await;
    info!("shutting down admission webhook");
    handle.graceful_shutdown(Some(SHUTDOWN_GRACE));
}

#[cfg(test)]
mod tests;
