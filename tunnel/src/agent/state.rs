//! What the agent's loops share: their inputs (configuration, identity, the injected kernel
//! parts, timing), the node's key, and what one loop learns for the others — the last plan's
//! peer labels and problems (sync → health), the last health verdict per peer (health → sync),
//! the `/status` document (health → HTTP).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use arc_swap::ArcSwap;
use causeway_shared::catalog::Catalog;
use causeway_shared::config::Config;
use causeway_shared::model::Node;
use causeway_shared::sync_runner::SyncTiming;
use ipnet::IpNet;
use tokio::sync::watch;

use super::metrics::LoopMetrics;
use crate::health::{self, StatusReport};
use crate::host::Host;
use crate::keystore::KeyStore;
use crate::mss::{MssClamp, Nft};
use crate::plan::PeerLabel;
use crate::publish::Publisher;
use crate::routes::RouteTable;
use crate::steering::{Steering, Switch};
use crate::subnets;
use crate::wg::{PrivateKey, PublicKey, WgBackend};

/// Who and where this tunnel is.
#[derive(Clone, Debug)]
pub struct Identity {
    pub node: String,
    /// Namespace of our pod, our Service and our TunnelEndpoint.
    pub namespace: String,
    /// Our pod (labelled for the per-node Service), if running in one.
    pub pod_name: Option<String>,
    /// The pod's interface on the SDN bridge (for steering).
    pub pod_interface: String,
}

/// The kernel-facing parts, injected.
#[derive(Clone)]
pub struct Parts {
    pub backend: Arc<dyn WgBackend>,
    pub routes: Arc<dyn RouteTable>,
    pub nft: Arc<dyn Nft>,
    /// `Some` with `steering: ovs`.
    pub switch: Option<Arc<dyn Switch>>,
    pub host: Arc<dyn Host>,
}

/// Timing of the loops.
#[derive(Clone, Debug)]
pub struct Timing {
    pub sync: SyncTiming,
    pub publish_every: Duration,
    pub key_poll: Duration,
    pub health_every: Duration,
    pub steering_recheck: Duration,
}

impl Default for Timing {
    fn default() -> Self {
        Self {
            sync: SyncTiming {
                min_interval: Duration::from_millis(200),
                ..SyncTiming::default()
            },
            publish_every: Duration::from_secs(5),
            key_poll: Duration::from_secs(10),
            health_every: Duration::from_secs(5),
            steering_recheck: Duration::from_secs(10),
        }
    }
}

/// The state every loop of one agent holds an `Arc` of.
pub(super) struct Inner {
    pub config: Arc<Config>,
    pub id: Identity,
    pub catalog: Arc<Catalog>,
    pub parts: Parts,
    pub timing: Timing,
    pub key: ArcSwap<PrivateKey>,
    pub keystore: Option<KeyStore>,
    pub publisher: Option<Publisher>,
    /// Bumped to mark the sync loop dirty.
    pub trigger: watch::Sender<u64>,
    /// The public key, sent when the key loop switches keys (the publisher follows).
    pub key_changed: watch::Sender<PublicKey>,
    pub metrics: LoopMetrics,
    /// `Some` with `steering: ovs`.
    pub steering: Option<Steering>,
    pub mss: MssClamp,
    /// What the CNI sources say about this node's subnets (`tunnel.nodeSubnets`), when the
    /// node publishes itself; `None`: only `Node.spec.podCIDRs` is read.
    pub subnets: Option<watch::Receiver<subnets::Observed>>,
    /// The last subnet choice, logged when it changes.
    pub subnet_choice: Mutex<Option<subnets::Choice>>,

    // Written by the sync.
    /// Cluster and node of each planned peer (health reports name peers by them).
    pub labels: Mutex<BTreeMap<PublicKey, PeerLabel>>,
    /// What the last plan left out (logged when it changes, shown in `/status`).
    pub problems: Mutex<Vec<String>>,
    /// Endpoint host names resolved so far (cleared by every full sync).
    pub resolved: Mutex<BTreeMap<String, SocketAddr>>,
    /// Per remote cluster, the data generation the last successful sync covered.
    pub applied_generations: Mutex<BTreeMap<String, u64>>,

    // Written by the health check.
    /// When each peer's received-bytes counter last moved.
    pub activity: Mutex<health::Activity>,
    /// Up (true) or down per peer, as the last health check found them; the plan moves a
    /// cluster's service CIDRs off a down peer.
    pub peer_up: Mutex<BTreeMap<PublicKey, bool>>,
    /// The `/status` document.
    pub status: ArcSwap<StatusReport>,

    // Path probes.
    /// What the probes found (targets set by the sync, answers by the probe loop).
    pub probes: Arc<Mutex<crate::probe::Tracker>>,
    /// True once the probe port is bound.
    pub probing: std::sync::atomic::AtomicBool,
    /// Our probe endpoint (set by the sync, published in our TunnelEndpoint).
    pub probe_endpoint: watch::Sender<Option<SocketAddr>>,
}

impl Inner {
    /// Marks the sync loop dirty.
    pub fn mark_dirty(&self) {
        self.trigger.send_modify(|g| *g += 1);
    }

    /// This node's pod subnets, from the source `tunnel.nodeSubnets` names (what the plan
    /// routes to the node and what it publishes).
    pub fn node_subnets(&self, node: &Node) -> Vec<IpNet> {
        let observed = self
            .subnets
            .as_ref()
            .map(|rx| rx.borrow().clone())
            .unwrap_or_default();
        let choice = subnets::choose(self.config.tunnel.node_subnets, &observed, &node.pod_cidrs);
        let mut last = lock(&self.subnet_choice);
        if last.as_ref() != Some(&choice) {
            for p in &choice.problems {
                tracing::warn!(error = %p, "cannot read the node's subnets from this source");
            }
            if choice.subnets.is_empty() {
                tracing::warn!(
                    source = %self.config.tunnel.node_subnets,
                    "no pod subnets found for this node; remote clusters cannot reach its pods"
                );
            } else {
                tracing::info!(subnets = %choice, "node pod subnets");
            }
            *last = Some(choice.clone());
        }
        choice.subnets
    }
}

/// Locks `m`, also when a panicking holder poisoned it (the data stays usable: every writer
/// replaces whole values).
pub(super) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

pub(super) fn now_unix() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default()
}

/// An error with its sources, `a: b: c`.
pub struct DisplayChain<'a>(pub &'a (dyn std::error::Error + 'static));

impl std::fmt::Display for DisplayChain<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.0)?;
        let mut src = self.0.source();
        while let Some(s) = src {
            write!(f, ": {s}")?;
            src = s.source();
        }
        Ok(())
    }
}
