//! The agent's publishing loop: prepares the per-node Service and our pod's label once, then
//! keeps our TunnelEndpoint equal to what this node is now (public key, endpoint, pod subnets)
//! through the [`Publisher`](crate::publish::Publisher), writing only on change. It wakes on a
//! key change, a catalog change, a subnet change, or every `publish_every` (a load balancer's
//! ingress appears without any event of ours).

use causeway_shared::model::NodeAddress;

use super::state::{DisplayChain, Inner};
use crate::publish::Publication;

impl Inner {
    /// What we would publish now, and our Node's addresses (for `nodePort` endpoints).
    fn publication(&self) -> (Publication, Vec<NodeAddress>) {
        let snap = self.catalog.snapshot();
        let node = snap
            .cluster(&self.config.local_cluster)
            .and_then(|l| l.data.nodes.get(&self.id.node).cloned());
        (
            Publication {
                public_key: self.key.load().public_key(),
                endpoint: None,
                pod_cidrs: node
                    .as_ref()
                    .map(|n| self.node_subnets(n))
                    .unwrap_or_default(),
                probe_endpoint: *self.probe_endpoint.borrow(),
            },
            node.map(|n| n.addresses.clone()).unwrap_or_default(),
        )
    }

    /// Publishes until the agent is gone (nothing without a publisher).
    pub(super) async fn publish_loop(&self) {
        let Some(p) = &self.publisher else { return };
        let mut key_rx = self.key_changed.subscribe();
        let mut subnets_rx = self.subnets.clone();
        let mut catalog_rx = self.catalog.subscribe();
        let mut probe_rx = self.probe_endpoint.subscribe();
        let mut prepared = false;
        let mut last: Option<Publication> = None;
        loop {
            if !prepared {
                let r = async {
                    p.label_own_pod().await?;
                    p.ensure_service().await
                }
                .await;
                match r {
                    Ok(()) => prepared = true,
                    Err(e) => {
                        tracing::warn!(error = %DisplayChain(&e), "cannot prepare the per-node service; retrying")
                    }
                }
            }
            // Never publish from a partial view: our Node (pod subnets, addresses) counts only
            // once the local cluster's first list is complete.
            let local_synced = self
                .catalog
                .snapshot()
                .cluster(&self.config.local_cluster)
                .is_some_and(|c| c.status.synced);
            if local_synced {
                let (mut publication, addresses) = self.publication();
                match p.endpoint(&addresses).await {
                    Ok(e) => publication.endpoint = e,
                    Err(e) => {
                        tracing::warn!(error = %DisplayChain(&e), "cannot read the per-node service");
                        publication.endpoint = last.as_ref().and_then(|l| l.endpoint.clone());
                    }
                }
                if last.as_ref() != Some(&publication) {
                    match p.publish(&publication).await {
                        Ok(()) => last = Some(publication),
                        Err(e) => {
                            tracing::warn!(error = %DisplayChain(&e), "cannot publish the TunnelEndpoint; retrying")
                        }
                    }
                }
            }
            tokio::select! {
                _ = tokio::time::sleep(self.timing.publish_every) => {}
                r = key_rx.changed() => if r.is_err() { return },
                r = catalog_rx.changed() => if r.is_err() { return },
                r = probe_rx.changed() => if r.is_err() { return },
                Some(r) = async { match subnets_rx.as_mut() {
                    Some(rx) => Some(rx.changed().await),
                    None => std::future::pending().await,
                } } => if r.is_err() { return },
            }
        }
    }
}
