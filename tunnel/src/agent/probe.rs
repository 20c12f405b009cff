//! The agent's path probes: the socket is bound at start (a port that cannot be bound turns
//! probing off, never every peer unreachable), the targets follow each plan, and `/paths`
//! is computed on request from the probes and the last health check.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use causeway_shared::path_health::PathReport;
use tokio::task::JoinHandle;

use super::state::{Inner, lock};
use crate::plan::Plan;
use crate::probe;

impl Inner {
    /// Binds the probe port and starts the probe loop; None when probing is off or the
    /// port cannot be bound (logged).
    pub(super) fn start_probes(self: &Arc<Self>) -> Option<JoinHandle<()>> {
        let port = self.config.tunnel.probe_port;
        if port == 0 {
            return None;
        }
        let bound =
            std::net::UdpSocket::bind(SocketAddr::from((std::net::Ipv6Addr::UNSPECIFIED, port)))
                .or_else(|_| std::net::UdpSocket::bind(SocketAddr::from(([0, 0, 0, 0], port))))
                .and_then(|s| {
                    s.set_nonblocking(true)?;
                    tokio::net::UdpSocket::from_std(s)
                });
        let socket = match bound {
            Ok(s) => s,
            Err(e) => {
                tracing::error!(port, error = %e, "cannot bind tunnel.probePort: path probes off; peers are judged by handshakes only");
                return None;
            }
        };
        self.probing
            .store(true, std::sync::atomic::Ordering::Relaxed);
        let tracker = self.probes.clone();
        let interval = self.config.tunnel.probe_interval.0;
        Some(tokio::spawn(probe::run(socket, tracker, interval)))
    }

    /// Points the probes at the plan's targets and publishes our own probe endpoint.
    pub(super) fn follow_plan_probes(&self, plan: &Plan) {
        if !self.probing.load(std::sync::atomic::Ordering::Relaxed) {
            return;
        }
        let targets = plan
            .peers
            .iter()
            .filter_map(|p| Some((p.label.clone(), p.probe?)));
        let allowed = plan
            .peers
            .iter()
            .flat_map(|p| p.config.allowed_ips.iter().copied())
            .collect();
        lock(&self.probes).set_targets(targets, allowed, Instant::now());
        let ours = plan
            .probe_source
            .map(|ip| SocketAddr::new(ip, self.config.tunnel.probe_port));
        self.probe_endpoint.send_if_modified(|e| {
            let changed = *e != ours;
            *e = ours;
            changed
        });
    }

    /// The `/paths` document now.
    pub(super) fn paths_report(&self) -> PathReport {
        let status = self.status.load_full();
        let remotes: Vec<String> = self.config.remotes().map(|c| c.name.clone()).collect();
        lock(&self.probes).report(
            &self.id.node,
            &remotes,
            &status.peers,
            self.config.tunnel.probe_interval.0,
            Instant::now(),
        )
    }
}
