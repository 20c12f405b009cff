//! The agent's health check, every `health_every`: read the peers from the backend, judge each
//! up or down ([`crate::health::assess`]), log the changes, update the metrics and the `/status`
//! document, and trigger a sync when a verdict changed (the plan moves a cluster's service
//! CIDRs off a down peer).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::SystemTime;

use super::state::{DisplayChain, Inner, lock};
use crate::health::{self, StatusReport};
use crate::wg::PublicKey;

impl Inner {
    /// Checks the peers now and publishes the result.
    pub(super) async fn refresh_health(&self) {
        let peers = match self.parts.backend.peers().await {
            Ok(p) => p,
            Err(e) => {
                tracing::warn!(error = %DisplayChain(&e), "cannot read peers");
                return;
            }
        };
        let labels = lock(&self.labels).clone();
        let down_after = self.config.tunnel.peer_down_after.0;
        let now = SystemTime::now();
        let activity = {
            let mut a = lock(&self.activity);
            a.observe(&peers, now);
            a.clone()
        };
        let mut health = health::assess(&peers, &labels, &activity, now, down_after);
        {
            let probes = lock(&self.probes);
            let at = std::time::Instant::now();
            for p in &mut health {
                let label = crate::plan::PeerLabel {
                    cluster: p.cluster.clone(),
                    node: p.node.clone(),
                };
                p.probe = probes.view(&label, at).map(Into::into);
            }
        }
        let previous = self.status.load_full();
        for p in &health {
            let was = previous.peers.iter().find(|o| o.public_key == p.public_key);
            match (was.map(|w| w.up), p.up) {
                (Some(true), false) => tracing::warn!(
                    peer = %format!("{}/{}", p.cluster, p.node),
                    last_handshake_seconds = ?p.last_handshake_seconds,
                    "peer down: no handshake within peerDownAfter"
                ),
                (Some(false), true) => {
                    tracing::info!(peer = %format!("{}/{}", p.cluster, p.node), "peer up")
                }
                _ => {}
            }
        }
        self.metrics.peers.observe(&health, &previous.peers);
        if let Some(stats) = self.parts.backend.datapath_stats() {
            self.metrics.peers.observe_datapath(&stats, &health);
        }
        // A peer going down or coming back can move service CIDRs: plan again.
        let peer_up: BTreeMap<PublicKey, bool> = health
            .iter()
            .filter_map(|p| Some((p.public_key.parse().ok()?, p.up)))
            .collect();
        let changed = {
            let mut current = lock(&self.peer_up);
            let changed = *current != peer_up;
            *current = peer_up;
            changed
        };
        if changed {
            self.mark_dirty();
        }
        let key = self.key.load();
        self.status.store(Arc::new(StatusReport {
            interface: self.config.tunnel.interface.clone(),
            backend: self.parts.backend.kind().to_string(),
            public_key: key.public_key().to_base64(),
            listen_port: self.config.tunnel.listen_port,
            peers: health,
            problems: lock(&self.problems).clone(),
        }));
    }

    /// Checks the peers every `health_every`, until the task is aborted.
    pub(super) async fn health_loop(&self) {
        loop {
            self.refresh_health().await;
            tokio::time::sleep(self.timing.health_every).await;
        }
    }
}
