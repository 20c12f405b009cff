//! The `proxy:` section, read by causeway-proxy.

use std::net::SocketAddr;

use serde::{Deserialize, Serialize};

use super::ConfigDuration;

/// Which kernel facility load-balances remote services.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ProxyBackend {
    /// IPVS when the kernel has it, nftables otherwise.
    Auto,
    Ipvs,
    Nftables,
}

/// How the nftables backend sends its transactions.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NftWriter {
    /// nf_tables netlink messages written by causeway-proxy itself.
    Netlink,
    /// The `nft` program (`nft -f -`), with the same operations as text.
    Nft,
}

/// Settings of the service proxy.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct ProxyConfig {
    /// Interface that carries the remote service IPs as aliases.
    pub interface: String,
    pub backend: ProxyBackend,
    /// `/metrics`, `/healthz`, `/readyz`: where Prometheus and the kubelet's probes reach.
    pub metrics_listen: SocketAddr,
    /// `/ipvs`, `/ipvs.json`: the debug views, on loopback unless set otherwise; the same
    /// address as `metricsListen` serves them on that one listener.
    pub debug_listen: SocketAddr,
    /// Minimum time between two syncs.
    pub min_sync_interval: ConfigDuration,
    /// A full resync happens at least this often.
    pub full_resync_interval: ConfigDuration,
    /// How long a remote cluster whose API is unreachable keeps its rules (0: forever).
    pub stale_rules_expiry: ConfigDuration,
    /// How long a terminating endpoint is kept at weight 0 while connections drain.
    pub graceful_termination_period: ConfigDuration,
    /// Name of our nftables table (nftables backend); service tables are named
    /// `<nftTable>-<i>`.
    pub nft_table: String,
    /// Number of nftables service tables (1..=64): a change re-validates only its own
    /// table, while a new connection pays one map lookup per table.
    pub nft_shards: usize,
    /// How nftables transactions reach the kernel.
    pub nft_writer: NftWriter,
}

impl Default for ProxyConfig {
    fn default() -> Self {
        Self {
            interface: "eth0".into(),
            backend: ProxyBackend::Auto,
            metrics_listen: SocketAddr::from(([0, 0, 0, 0], 9154)),
            debug_listen: SocketAddr::from(([127, 0, 0, 1], 9164)),
            min_sync_interval: ConfigDuration::millis(10),
            full_resync_interval: ConfigDuration::secs(300),
            stale_rules_expiry: ConfigDuration::secs(0),
            graceful_termination_period: ConfigDuration::secs(60),
            nft_table: "causeway".into(),
            nft_shards: 16,
            nft_writer: NftWriter::Netlink,
        }
    }
}
