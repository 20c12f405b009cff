//! The debug endpoint: the kernel state in `ipvsadm -Ln` layout.
//!
//! - `GET /ipvs`: exactly what `ipvsadm -Ln` prints (same header, columns, widths and
//!   sort order), so existing habits and scripts work;
//! - `GET /ipvs?stats`: like `ipvsadm -Ln --stats`;
//! - `GET /ipvs?explain`: `/ipvs` plus a trailing `# cluster=… service=ns/name:port
//!   generation=…` column on each virtual service line;
//! - `GET /ipvs.json`: the same state as JSON, each service with its origin.
//!
//! The text layout is [`crate::backend::ipvsadm`]'s; this file holds only the routes.

use std::sync::{Arc, Mutex};

use arc_swap::ArcSwap;
use axum::Router;
use axum::extract::{RawQuery, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

use crate::backend::ipvsadm::{View, render_ipvsadm};
use crate::backend::{Backend, KernelState};
use crate::plan::DesiredState;

/// What the debug routes read.
#[derive(Clone)]
pub struct DebugState {
    pub backend: Arc<Mutex<Box<dyn Backend>>>,
    /// The last applied desired state (origins for backends that keep none).
    pub applied: Arc<ArcSwap<DesiredState>>,
}

impl DebugState {
    async fn kernel(&self) -> Result<KernelState, String> {
        let backend = self.backend.clone();
        let applied = self.applied.load_full();
        tokio::task::spawn_blocking(move || {
            let mut b = backend.lock().unwrap_or_else(|e| e.into_inner());
            let mut state = b.read().map_err(|e| e.to_string())?;
            state.annotate(&applied);
            Ok(state)
        })
        .await
        .map_err(|e| e.to_string())?
    }
}

/// `/ipvs` and `/ipvs.json`; merge into the telemetry router.
pub fn router(state: DebugState) -> Router {
    Router::new()
        .route("/ipvs", get(ipvs_text))
        .route("/ipvs.json", get(ipvs_json))
        .with_state(state)
}

async fn ipvs_text(State(st): State<DebugState>, RawQuery(q): RawQuery) -> Response {
    match st.kernel().await {
        Ok(k) => (
            [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
            render_ipvsadm(&k, View::from_query(q.as_deref())),
        )
            .into_response(),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, format!("error: {e}\n")).into_response(),
    }
}

async fn ipvs_json(State(st): State<DebugState>) -> Response {
    match st.kernel().await {
        Ok(k) => {
            let services: Vec<_> = k
                .services
                .iter()
                .map(|(key, s)| {
                    serde_json::json!({
                        "protocol": key.proto,
                        "address": key.addr.ip(),
                        "port": key.addr.port(),
                        "scheduler": s.scheduler,
                        "persistent": s.affinity,
                        "stats": s.stats,
                        "origin": s.origin,
                        "realServers": s.reals.iter().map(|(a, r)| serde_json::json!({
                            "address": a.ip(),
                            "port": a.port(),
                            "forward": "Masq",
                            "weight": r.weight,
                            "activeConns": r.active_conns,
                            "inactiveConns": r.inactive_conns,
                            "stats": r.stats,
                        })).collect::<Vec<_>>(),
                    })
                })
                .collect();
            let body = serde_json::json!({ "header": k.header, "services": services });
            (
                [(header::CONTENT_TYPE, "application/json")],
                format!("{body:#}\n"),
            )
                .into_response()
        }
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, format!("error: {e}\n")).into_response(),
    }
}
