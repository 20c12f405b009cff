//! The `/paths` document of causeway-tunnel: per remote cluster, how many of its nodes the
//! tunnel has as peers, how many answered lately, and how long none has.

use serde::{Deserialize, Serialize};

/// The whole `/paths` document.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PathReport {
    /// The node whose tunnel wrote it.
    pub node: String,
    /// One entry per configured remote cluster, in configuration order.
    pub clusters: Vec<ClusterPath>,
}

/// One remote cluster as this node's tunnel sees it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ClusterPath {
    pub cluster: String,
    /// Peers of the cluster on this node's tunnel.
    pub peers: usize,
    /// Of those, the ones with a probe endpoint (the others are judged by handshakes and
    /// received traffic).
    pub probed: usize,
    /// Of those, the ones that showed a working path within the last two probe intervals.
    pub reachable: usize,
    /// Milliseconds since any of its peers last showed a working path (counted from the
    /// tunnel's start when none has yet).
    pub unreachable_ms: u64,
}

impl PathReport {
    pub fn cluster(&self, name: &str) -> Option<&ClusterPath> {
        self.clusters.iter().find(|c| c.cluster == name)
    }
}
