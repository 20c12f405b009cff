//! The debug endpoint: the kernel state in `ipvsadm -Ln` layout.
//!
//! - `GET /ipvs`: exactly what `ipvsadm -Ln` prints (same header, columns, widths and
//!   sort order), so existing habits and scripts work;
//! - `GET /ipvs?stats`: like `ipvsadm -Ln --stats`;
//! - `GET /ipvs?explain`: `/ipvs` plus a trailing `# cluster=… service=ns/name:port
//!   generation=…` column on each virtual service line;
//! - `GET /ipvs.json`: the same state as JSON, each service with its origin.
//!
//! For the nftables backend the same view is rendered from our own table (version and
//! size print as 0.0.0 and 0, ActiveConn/InActConn as 0: nftables does not count them).

use std::fmt::Write as _;
use std::sync::{Arc, Mutex};

use arc_swap::ArcSwap;
use axum::Router;
use axum::extract::{RawQuery, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

use crate::backend::{Backend, KernelState};
use crate::plan::DesiredState;

/// Which `ipvsadm -Ln` variant to print.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct View {
    /// `--stats` columns.
    pub stats: bool,
    /// Trailing comment naming the origin of each virtual service.
    pub explain: bool,
}

impl View {
    /// From a query string such as `stats&explain`.
    pub fn from_query(query: Option<&str>) -> View {
        let mut v = View::default();
        for part in query.unwrap_or("").split('&') {
            match part.split('=').next().unwrap_or("") {
                "stats" => v.stats = true,
                "explain" => v.explain = true,
                _ => {}
            }
        }
        v
    }
}

/// `print_largenum` of ipvsadm: 9 columns, K/M/G/T beyond 100 million.
fn largenum(out: &mut String, i: u64) {
    let _ = match i {
        i if i < 100_000_000 => write!(out, "{i:>9}"),
        i if i < 1_000_000_000 => write!(out, "{:>8}K", i / 1_000),
        i if i < 100_000_000_000 => write!(out, "{:>8}M", i / 1_000_000),
        i if i < 100_000_000_000_000 => write!(out, "{:>8}G", i / 1_000_000_000),
        i => write!(out, "{:>8}T", i / 1_000_000_000_000),
    };
}

/// Renders `state` as `ipvsadm -Ln` (or `--stats`) does.
pub fn render_ipvsadm(state: &KernelState, view: View) -> String {
    let mut out = String::new();
    let v = state.header.version;
    let _ = writeln!(
        out,
        "IP Virtual Server version {}.{}.{} (size={})",
        (v >> 16) & 0xff,
        (v >> 8) & 0xff,
        v & 0xff,
        state.header.size
    );
    if view.stats {
        let _ = writeln!(
            out,
            "{:<33} {:>8} {:>8} {:>8} {:>8} {:>8}\n  -> RemoteAddress:Port",
            "Prot LocalAddress:Port", "Conns", "InPkts", "OutPkts", "InBytes", "OutBytes"
        );
    } else {
        out.push_str("Prot LocalAddress:Port Scheduler Flags\n");
        out.push_str("  -> RemoteAddress:Port           Forward Weight ActiveConn InActConn\n");
    }
    for (key, svc) in &state.services {
        // ipvsadm cuts IPv4 names at 33 and real servers at 28 characters.
        let mut name = format!("{}  {}", key.proto, key.addr);
        if key.addr.is_ipv4() {
            name.truncate(33);
        }
        if view.stats {
            let _ = write!(out, "{name:<33}");
            for n in [
                svc.stats.conns,
                svc.stats.in_pkts,
                svc.stats.out_pkts,
                svc.stats.in_bytes,
                svc.stats.out_bytes,
            ] {
                largenum(&mut out, n);
            }
        } else {
            let _ = write!(out, "{name} {}", svc.scheduler);
            if let Some(t) = svc.affinity {
                let _ = write!(out, " persistent {t}");
            }
        }
        if view.explain {
            match &svc.origin {
                Some(o) => {
                    let port = if o.port.is_empty() {
                        String::new()
                    } else {
                        format!(":{}", o.port)
                    };
                    let _ = write!(
                        out,
                        "  # cluster={} service={}{} generation={}",
                        o.cluster, o.service, port, o.slice_generation
                    );
                }
                None => out.push_str("  # origin unknown"),
            }
        }
        out.push('\n');
        for (addr, real) in &svc.reals {
            let mut dname = addr.to_string();
            if addr.is_ipv4() {
                dname.truncate(28);
            }
            if view.stats {
                let _ = write!(out, "  -> {dname:<28}");
                for n in [
                    real.stats.conns,
                    real.stats.in_pkts,
                    real.stats.out_pkts,
                    real.stats.in_bytes,
                    real.stats.out_bytes,
                ] {
                    largenum(&mut out, n);
                }
                out.push('\n');
            } else {
                let _ = writeln!(
                    out,
                    "  -> {dname:<28} {:<7} {:<6} {:<10} {:<10}",
                    "Masq", real.weight, real.active_conns, real.inactive_conns
                );
            }
        }
    }
    out
}

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
