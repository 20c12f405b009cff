//! The accept loop. Each connection is served by hyper directly (not `axum::serve`) so that the
//! fault modes can close every connection at once, and refuse new ones, at the TCP level.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use hyper::server::conn::http1;
use hyper_util::rt::TokioIo;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;

use super::faults::{Faults, Mode};

/// Accepts connections until the task is aborted.
pub(crate) async fn serve(listener: TcpListener, router: Router, faults: Arc<Faults>) {
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(e) => {
                // Out of file descriptors and the like: wait instead of spinning.
                tracing::warn!(error = %e, "test apiserver: accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        if faults.mode() == Mode::Refuse {
            tracing::debug!(%peer, "test apiserver: refusing connection");
            drop(stream);
            continue;
        }
        let mut kills = faults.subscribe_kills();
        let service = TowerToHyperService::new(router.clone());
        tokio::spawn(async move {
            let connection = http1::Builder::new().serve_connection(TokioIo::new(stream), service);
            tokio::select! {
                result = connection => {
                    if let Err(e) = result {
                        tracing::debug!(%peer, error = %e, "test apiserver: connection error");
                    }
                }
                // Dropping the connection closes the socket mid-response, as a crash would.
                _ = kills.changed() => tracing::debug!(%peer, "test apiserver: connection killed"),
            }
        });
    }
}
