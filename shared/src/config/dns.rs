//! The `dns:` section, read by causeway-dns.

use std::net::SocketAddr;
use std::path::PathBuf;

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

use super::ConfigDuration;

/// Where names outside our zones are forwarded.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Upstreams {
    /// `IP` or `IP:PORT` strings (port 53 when absent).
    List(Vec<String>),
    /// Path of a resolv.conf file whose `nameserver` lines are used.
    ResolvConf(PathBuf),
}

impl Default for Upstreams {
    fn default() -> Self {
        Upstreams::ResolvConf(PathBuf::from("/etc/resolv.conf"))
    }
}

/// Settings of the DNS server.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct DnsConfig {
    /// Addresses served over UDP and TCP.
    pub listen: Vec<SocketAddr>,
    /// `/metrics`, `/healthz`, `/readyz`.
    pub metrics_listen: SocketAddr,
    pub upstreams: Upstreams,
    /// TTL of our answers.
    pub ttl: u32,
    /// Name of the merged zone (the union of every cluster).
    pub all_zone: String,
    /// Also answer the merged zone as `clusterset.local` (KEP-1645 naming).
    pub clusterset_alias: bool,
    /// Put the local cluster's answers first in the merged zone.
    pub local_first: bool,
    /// A cluster whose API has been unreachable this long leaves the merged zone's answers.
    pub drop_unreachable_after: ConfigDuration,
    /// Source addresses whose queries for names outside our zones are forwarded; others
    /// get REFUSED for those names (no open resolver). Unset: every configured cluster's
    /// pod and service CIDRs plus loopback ([`super::Config::dns_allow_from`]).
    pub allow_from: Option<Vec<IpNet>>,
}

impl Default for DnsConfig {
    fn default() -> Self {
        Self {
            listen: vec![SocketAddr::from(([0, 0, 0, 0], 53))],
            metrics_listen: SocketAddr::from(([0, 0, 0, 0], 9153)),
            upstreams: Upstreams::default(),
            ttl: 5,
            all_zone: "cluster.all".into(),
            clusterset_alias: false,
            local_first: true,
            drop_unreachable_after: ConfigDuration::secs(300),
            allow_from: None,
        }
    }
}
