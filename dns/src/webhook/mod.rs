//! `causeway-dns webhook`: a mutating admission webhook that points selected pods at
//! causeway-dns while keeping what `ClusterFirst` would give them.
//!
//! - [`patch`] makes the pure decision: pod in, JSON patch or skip reason out.
//! - [`review`] decodes AdmissionReviews and encodes answers, also pure.
//! - [`namespaces`] reads namespace labels through a small cache (requests do not carry them).
//! - [`server`] serves HTTPS with certificate reload, and the metrics endpoint.
//! - [`certs`] issues the self-managed CA and serving certificate and judges a stored one;
//!   [`provision`] keeps them in a Secret and publishes the CA as `caBundle`.
//! - [`settings`] holds the flags and their validation.
//! - [`metrics`] holds the counters.
//!
//! Behaviour, selection rules and flags are described in the crate's README.
//!
//! The webhook never denies a pod: any error is logged, counted, and the pod admitted unchanged.

pub mod certs;
mod error;
pub mod metrics;
pub mod namespaces;
pub mod patch;
pub mod provision;
pub mod review;
pub mod server;
pub mod settings;

use std::time::Duration;

use axum_server::Handle;
use axum_server::tls_rustls::RustlsConfig;
use prometheus_client::registry::Registry;
use tracing::info;

pub use error::Error;
pub use settings::{Args, Settings};

use metrics::Metrics;
use namespaces::NamespaceLabels;
use provision::Provisioner;
use server::{ServingCertificate, Webhook};
use settings::TlsSource;

/// In-flight reviews get this long to finish after SIGTERM; the API server times out sooner.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// What keeps the serving certificate current, run beside the server.
type Keeper = std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>;

/// Runs the webhook until SIGTERM or Ctrl-C. Flags are checked, the certificate loaded and the
/// Kubernetes client built before anything is bound, so bad configuration fails fast.
pub async fn run(args: Args) -> Result<(), Error> {
    let settings = Settings::try_from(args)?;
    // Another part of the process may have installed it already; either way ring is in use,
    // the only provider compiled in.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let client = kube::Client::try_default()
        .await
        .map_err(Error::KubeClient)?;

    let mut registry = Registry::default();
    let metrics = Metrics::new(&mut registry);
    let namespaces = NamespaceLabels::new(client.clone(), settings.namespace_cache_ttl);
    let webhook = Webhook::new(settings.patch.clone(), namespaces, metrics.clone());

    // The certificate is in hand before anything is bound.
    let (tls, keeper): (_, Keeper) = match &settings.tls {
        TlsSource::Files(files) => {
            let certificate = ServingCertificate::load(files.clone()).await?;
            let tls = certificate.config();
            let keeper = certificate.watch(settings.cert_reload_interval, metrics.clone());
            (tls, Box::pin(keeper))
        }
        TlsSource::Secret(secret) => {
            let provisioner =
                Provisioner::new(client, secret.clone(), &settings.patch.cluster_domain);
            let bundle = provisioner.round(&metrics).await?;
            let tls = RustlsConfig::from_pem(bundle.cert.clone().into(), bundle.key.clone().into())
                .await
                .map_err(Error::TlsConfig)?;
            info!(names = ?provisioner.names(), "serving the webhook's own certificate");
            let keeper = provisioner.run(tls.clone(), bundle, metrics.clone());
            (tls, Box::pin(keeper))
        }
    };

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
        served = server::serve_with(https, tls, keeper, webhook, handle) => served,
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
