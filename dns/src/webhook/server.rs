//! The HTTPS server (POST /mutate, GET /healthz) with a certificate reloaded when its files
//! change, and the plain-HTTP metrics server.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Json, Response};
use axum::routing::{get, post};
use axum_server::Handle;
use axum_server::tls_rustls::RustlsConfig;
use prometheus_client::registry::Registry;
use tracing::{Instrument, debug, info, info_span, warn};

use super::Error;
use super::metrics::Metrics;
use super::namespaces::NamespaceLabels;
use super::patch::{self, Decision, PatchSettings};
use super::review::{self, Incoming, Subject};
use super::settings::CertFiles;

/// The API server caps request bodies at 3 MiB, so no genuine review is larger.
const MAX_BODY_BYTES: usize = 3 * 1024 * 1024;

/// Answers admission reviews.
pub struct Webhook {
    settings: PatchSettings,
    namespaces: NamespaceLabels,
    metrics: Metrics,
}

impl Webhook {
    /// A webhook patching pods per `settings`, reading namespace labels through `namespaces`.
    pub fn new(settings: PatchSettings, namespaces: NamespaceLabels, metrics: Metrics) -> Self {
        Self {
            settings,
            namespaces,
            metrics,
        }
    }

    /// The HTTPS routes: `POST /mutate` and `GET /healthz`.
    pub fn router(self) -> Router {
        Router::new()
            .route("/mutate", post(mutate))
            .route("/healthz", get(healthz))
            .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
            .with_state(Arc::new(self))
    }

    /// Answers one request body. Only a body without a readable uid gets an error status;
    /// everything else admits the pod, patched or not.
    async fn answer(&self, body: &[u8]) -> Response {
        let request = match review::parse(body) {
            Ok(Incoming::Request(request)) => request,
            Ok(Incoming::Unreadable { uid, error }) => {
                warn!(%uid, error = %error, "admitting unreadable admission request unchanged");
                self.metrics.failed(&error);
                return Json(review::allow_uid(&uid)).into_response();
            }
            Err(error) => {
                warn!(error = %error, "refusing admission review without a uid");
                self.metrics.failed(&error);
                return (StatusCode::BAD_REQUEST, error.to_string()).into_response();
            }
        };
        let span = info_span!(
            "review",
            uid = %request.uid,
            namespace = request.namespace.as_deref().unwrap_or_default(),
            name = %request.name,
        );
        let answer = async {
            let decision = self.decide(&request).await?;
            let answer = review::respond(&request, &decision)?;
            match &decision {
                Decision::Patch { selected_by, .. } => {
                    info!(selected_by = ?selected_by, "patching pod dns")
                }
                Decision::Skip(reason) => debug!(reason = reason.as_str(), "leaving pod alone"),
            }
            self.metrics.decided(&decision);
            Ok::<_, Error>(answer)
        }
        .instrument(span.clone())
        .await;
        match answer {
            Ok(answer) => Json(answer).into_response(),
            Err(error) => {
                span.in_scope(|| {
                    warn!(error = %error, source = ?std::error::Error::source(&error),
                        "admitting pod unchanged after an error")
                });
                self.metrics.failed(&error);
                Json(review::allow(&request)).into_response()
            }
        }
    }

    async fn decide(
        &self,
        request: &kube::core::admission::AdmissionRequest<kube::core::DynamicObject>,
    ) -> Result<Decision, Error> {
        let (pod, namespace) = match review::subject(request)? {
            Subject::Skip(reason) => return Ok(Decision::Skip(reason)),
            Subject::Pod { pod, namespace } => (pod, namespace),
        };
        let namespace_labels = if patch::needs_namespace_labels(&pod, &namespace, &self.settings) {
            Some(self.namespaces.get(&namespace).await?)
        } else {
            None
        };
        Ok(patch::plan(
            &pod,
            &namespace,
            namespace_labels.as_ref(),
            &self.settings,
        ))
    }
}

async fn mutate(State(webhook): State<Arc<Webhook>>, body: Bytes) -> Response {
    webhook.answer(&body).await
}

async fn healthz() -> &'static str {
    "ok"
}

/// Size and modification time of the certificate and key files. Kubernetes updates a mounted
/// Secret by swapping a symlink; `metadata` follows it, so the swap shows as a change.
type Stamp = [(SystemTime, u64); 2];

/// The serving certificate, and what is needed to notice its files changing.
pub struct ServingCertificate {
    files: CertFiles,
    config: RustlsConfig,
    loaded: Stamp,
    /// Files that failed to load, not retried until they change again.
    failed: Option<Stamp>,
}

impl ServingCertificate {
    /// Loads the certificate and key. Needs a rustls crypto provider installed.
    pub async fn load(files: CertFiles) -> Result<Self, Error> {
        let load_error = |source| Error::LoadCertificate {
            cert: files.cert.clone(),
            key: files.key.clone(),
            source,
        };
        // Stamp before reading, so a change racing the load is seen by the next poll.
        let loaded = stamp(&files).await.map_err(load_error)?;
        let config = RustlsConfig::from_pem_file(&files.cert, &files.key)
            .await
            .map_err(load_error)?;
        Ok(Self {
            files,
            config,
            loaded,
            failed: None,
        })
    }

    /// The live TLS configuration; reloads are visible through every clone.
    pub fn config(&self) -> RustlsConfig {
        self.config.clone()
    }

    /// Reloads the certificate if its files changed since the last load. `Ok(true)` if it did.
    pub async fn reload_if_changed(&mut self) -> Result<bool, Error> {
        let load_error = |source| Error::LoadCertificate {
            cert: self.files.cert.clone(),
            key: self.files.key.clone(),
            source,
        };
        let now = stamp(&self.files).await.map_err(load_error)?;
        if now == self.loaded || Some(now) == self.failed {
            return Ok(false);
        }
        match self
            .config
            .reload_from_pem_file(&self.files.cert, &self.files.key)
            .await
        {
            Ok(()) => {
                self.loaded = now;
                self.failed = None;
                Ok(true)
            }
            Err(source) => {
                // Often a rotation caught half-way (new certificate, old key): the next write
                // changes the stamp again and the load is retried.
                self.failed = Some(now);
                Err(load_error(source))
            }
        }
    }

    /// Polls the files every `interval` and reloads on change; runs until dropped. A failed
    /// reload keeps serving the previous certificate.
    pub async fn watch(mut self, interval: Duration, metrics: Metrics) {
        let mut ticks = tokio::time::interval(interval);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticks.tick().await;
            match self.reload_if_changed().await {
                Ok(false) => {}
                Ok(true) => {
                    info!(cert = %self.files.cert.display(), "reloaded tls certificate");
                    metrics.reloaded(true);
                }
                Err(error) => {
                    warn!(error = %error, source = ?std::error::Error::source(&error),
                        "keeping the previous tls certificate");
                    metrics.reloaded(false);
                }
            }
        }
    }
}

async fn stamp(files: &CertFiles) -> std::io::Result<Stamp> {
    let cert = tokio::fs::metadata(&files.cert).await?;
    let key = tokio::fs::metadata(&files.key).await?;
    Ok([(cert.modified()?, cert.len()), (key.modified()?, key.len())])
}

/// Serves `webhook` over HTTPS on `listener` until `handle` shuts it down, watching the
/// certificate files every `reload_interval`.
pub async fn serve(
    listener: std::net::TcpListener,
    certificate: ServingCertificate,
    reload_interval: Duration,
    webhook: Webhook,
    handle: Handle<SocketAddr>,
) -> Result<(), Error> {
    let config = certificate.config();
    let keeper = certificate.watch(reload_interval, webhook.metrics.clone());
    serve_with(listener, config, keeper, webhook, handle).await
}

/// Serves `webhook` over HTTPS with `tls` until `handle` shuts it down, while `keeper` (what
/// keeps the certificate current: a file watcher, or the Secret provisioner) runs beside it.
pub async fn serve_with(
    listener: std::net::TcpListener,
    tls: RustlsConfig,
    keeper: impl std::future::Future<Output = ()> + Send + 'static,
    webhook: Webhook,
    handle: Handle<SocketAddr>,
) -> Result<(), Error> {
    let addr = listener.local_addr().map_err(|source| Error::Serve {
        server: "https",
        source,
    })?;
    let server = axum_server::from_tcp_rustls(listener, tls)
        .map_err(|source| Error::Bind { addr, source })?
        .handle(handle);
    let keeper = tokio::spawn(keeper);
    info!(%addr, "admission webhook listening");
    let served = server.serve(webhook.router().into_make_service()).await;
    keeper.abort();
    served.map_err(|source| Error::Serve {
        server: "https",
        source,
    })
}

/// Serves `GET /metrics` (OpenMetrics text) and `GET /healthz` over plain HTTP.
pub async fn serve_metrics(
    listener: tokio::net::TcpListener,
    registry: Registry,
) -> Result<(), Error> {
    let registry = Arc::new(registry);
    let router = Router::new()
        .route(
            "/metrics",
            get(|State(registry): State<Arc<Registry>>| async move {
                let mut text = String::new();
                match prometheus_client::encoding::text::encode(&mut text, &registry) {
                    Ok(()) => (
                        [(
                            header::CONTENT_TYPE,
                            "application/openmetrics-text; version=1.0.0; charset=utf-8",
                        )],
                        text,
                    )
                        .into_response(),
                    Err(_) => StatusCode::INTERNAL_SERVER_ERROR.into_response(),
                }
            }),
        )
        .route("/healthz", get(healthz))
        .with_state(registry);
    axum::serve(listener, router)
        .await
        .map_err(|source| Error::Serve {
            server: "metrics",
            source,
        })
}
