//! Logging, metrics and the small HTTP server each binary runs for `/metrics`,
//! `/healthz` and `/readyz` (binaries merge their own debug routes into it).

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use prometheus_client::registry::Registry;

use crate::catalog::Catalog;

/// Log output format.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

/// Installs the global tracing subscriber; `RUST_LOG` filters (default `info`).
pub fn init_tracing(format: LogFormat) {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new("info,hickory_server=warn,hickory_proto=warn"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    // A second call (tests) keeps the first subscriber.
    let _ = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
    };
}

/// The shared Prometheus registry of a process.
pub type SharedRegistry = Arc<Mutex<Registry>>;

/// Why the telemetry server could not start.
#[derive(Debug, thiserror::Error)]
pub enum TelemetryError {
    /// The listen address could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    /// A listener named by its configuration field could not be bound.
    #[error("{field}: {source}")]
    Field {
        field: String,
        source: Box<TelemetryError>,
    },
}

/// Where [`serve_with_debug`] listens.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Listening {
    /// `/metrics`, `/healthz`, `/readyz`.
    pub metrics: SocketAddr,
    /// The component's debug views (the same address when served on one listener).
    pub debug: SocketAddr,
}

/// A binary's own readiness condition on top of the catalog's (causeway-dns: its answer
/// index has been built from a snapshot that met the readiness rule). Called on each
/// `/readyz`.
pub type ReadyCheck = Arc<dyn Fn() -> bool + Send + Sync>;

#[derive(Clone)]
struct TelemetryState {
    registry: SharedRegistry,
    catalog: Arc<Catalog>,
    extra_ready: Option<ReadyCheck>,
}

/// The routes every binary serves: `/metrics`, `/healthz`, `/readyz`.
///
/// `/readyz` answers 200 once [`crate::catalog::Snapshot::ready`] holds (the local
/// cluster has synced; every remote has synced, loaded its last good state from disk, or
/// passed the first-sync wait), and 503 before; its JSON body lists each cluster's state
/// (`synced`, `stale-from-disk`, `waiting`, `failed`), connection and last error either way.
pub fn router(registry: SharedRegistry, catalog: Arc<Catalog>) -> Router {
    router_with_ready(registry, catalog, None)
}

/// [`router`] whose `/readyz` also waits for `extra_ready` (reported as `componentReady`
/// in the body).
pub fn router_with_ready(
    registry: SharedRegistry,
    catalog: Arc<Catalog>,
    extra_ready: Option<ReadyCheck>,
) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .with_state(TelemetryState {
            registry,
            catalog,
            extra_ready,
        })
}

async fn metrics(State(st): State<TelemetryState>) -> Response {
    let mut out = String::new();
    let reg = st.registry.lock().unwrap_or_else(|e| e.into_inner());
    match prometheus_client::encoding::text::encode(&mut out, &reg) {
        Ok(()) => (
            [(
                header::CONTENT_TYPE,
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
            )],
            out,
        )
            .into_response(),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response(),
    }
}

async fn readyz(State(st): State<TelemetryState>) -> Response {
    let snap = st.catalog.snapshot();
    let now = tokio::time::Instant::now();
    let component = st.extra_ready.as_ref().map(|f| f());
    let ready = snap.ready(now) && component.unwrap_or(true);
    let mut body = serde_json::json!({
        "ready": ready,
        "generation": snap.generation,
        "clusters": snap.readiness_at(now),
    });
    if let Some(c) = component {
        body["componentReady"] = c.into();
    }
    let code = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (
        code,
        [(header::CONTENT_TYPE, "application/json")],
        format!("{body:#}\n"),
    )
        .into_response()
}

/// Binds `addr` and serves `router` in a background task; returns the bound address
/// (useful with port 0).
pub async fn serve(addr: SocketAddr, router: Router) -> Result<SocketAddr, TelemetryError> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|source| TelemetryError::Bind { addr, source })?;
    let bound = listener
        .local_addr()
        .map_err(|source| TelemetryError::Bind { addr, source })?;
    tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, router).await {
            tracing::error!(error = %e, "telemetry server stopped");
        }
    });
    Ok(bound)
}

/// Serves `metrics` (the routes of [`router`]) at `metrics_at` and a component's debug views
/// at `debug_at` (loopback by default: they show the kernel state and the peers), on one
/// listener when the two addresses are the same. A bind error names the field,
/// `{section}.metricsListen` or `{section}.debugListen`.
pub async fn serve_with_debug(
    section: &str,
    (metrics_at, metrics): (SocketAddr, Router),
    (debug_at, debug): (SocketAddr, Router),
) -> Result<Listening, TelemetryError> {
    let named = |field: &str| {
        let field = format!("{section}.{field}");
        move |e| TelemetryError::Field {
            field,
            source: Box::new(e),
        }
    };
    if metrics_at == debug_at {
        let at = serve(metrics_at, metrics.merge(debug))
            .await
            .map_err(named("metricsListen"))?;
        return Ok(Listening {
            metrics: at,
            debug: at,
        });
    }
    Ok(Listening {
        metrics: serve(metrics_at, metrics)
            .await
            .map_err(named("metricsListen"))?,
        debug: serve(debug_at, debug).await.map_err(named("debugListen"))?,
    })
}
