//! The one configuration file of all three binaries.
//!
//! YAML with camelCase keys; unknown fields are rejected. Loading validates everything
//! before any binary binds a socket, and every problem names the file, the cluster and
//! the field (all problems are reported at once, not just the first).

pub mod dns;
mod duration;
mod lenient;
pub mod path_health;
pub mod proxy;
pub mod readiness;
pub mod tunnel;

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

pub use self::dns::{DnsConfig, Upstreams};
pub use self::path_health::PathHealthConfig;
pub use self::proxy::{NftWriter, ProxyBackend, ProxyConfig};
pub use self::readiness::ReadinessConfig;
pub use self::tunnel::{EndpointMode, NodeSubnetSource, StaticPeer, SteeringMode, TunnelConfig};
pub use duration::{ConfigDuration, parse_duration};

/// The file as written (after serde, before validation).
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct FileConfig {
    pub cluster: String,
    pub clusters: Vec<FileCluster>,
    #[serde(default)]
    pub dns: DnsConfig,
    #[serde(default)]
    pub proxy: ProxyConfig,
    #[serde(default)]
    pub tunnel: TunnelConfig,
    #[serde(default)]
    pub readiness: ReadinessConfig,
    #[serde(default)]
    pub path_health: PathHealthConfig,
}

/// One entry of `clusters:` as written.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct FileCluster {
    pub name: String,
    #[serde(rename = "podCIDRs", default)]
    pub pod_cidrs: Vec<String>,
    #[serde(rename = "serviceCIDRs", default)]
    pub service_cidrs: Vec<String>,
    pub source: FileSource,
}

/// `source:` as written: exactly one of its kinds must be set.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct FileSource {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub in_cluster: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kubeconfig: Option<PathBuf>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub context: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file: Option<PathBuf>,
}

/// Where a cluster's objects come from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SourceSpec {
    /// The pod's own service account.
    InCluster,
    /// A kubeconfig file (path resolved against the config file's directory).
    Kubeconfig {
        path: PathBuf,
        context: Option<String>,
    },
    /// Kubernetes objects in a YAML file (path resolved against the config file's directory).
    File { path: PathBuf },
}

/// A validated cluster.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClusterConfig {
    pub name: String,
    pub pod_cidrs: Vec<IpNet>,
    pub service_cidrs: Vec<IpNet>,
    pub source: SourceSpec,
}

impl ClusterConfig {
    /// True when `ip` lies in one of this cluster's pod or service CIDRs.
    pub fn owns(&self, ip: std::net::IpAddr) -> bool {
        self.pod_cidrs
            .iter()
            .chain(&self.service_cidrs)
            .any(|n| n.contains(&ip))
    }
}

/// A validated configuration.
#[derive(Clone, Debug, PartialEq)]
pub struct Config {
    /// The file it was read from.
    pub path: PathBuf,
    /// Name of the cluster this process runs in.
    pub local_cluster: String,
    /// Every connected cluster, the local one included, in file order.
    pub clusters: Vec<ClusterConfig>,
    pub dns: DnsConfig,
    pub proxy: ProxyConfig,
    pub tunnel: TunnelConfig,
    pub readiness: ReadinessConfig,
    pub path_health: PathHealthConfig,
}

impl Config {
    /// Where causeway-dns and causeway-proxy read the tunnel's `/paths` report: `pathHealth.url`
    /// (empty: off), else the tunnel's `metricsListen` port on this host.
    pub fn path_health_url(&self) -> Option<String> {
        match self.path_health.url.as_deref() {
            Some("") => None,
            Some(url) => Some(url.to_string()),
            None => {
                let listen = self.tunnel.metrics_listen;
                let host = match listen.ip() {
                    ip if ip.is_unspecified() && ip.is_ipv6() => "[::1]".to_string(),
                    ip if ip.is_unspecified() => "127.0.0.1".to_string(),
                    std::net::IpAddr::V6(ip) => format!("[{ip}]"),
                    ip => ip.to_string(),
                };
                Some(format!("http://{host}:{}/paths", listen.port()))
            }
        }
    }

    /// Who may have names outside our zones forwarded: `dns.allowFrom` when set, else
    /// every configured cluster's pod and service CIDRs plus loopback.
    pub fn dns_allow_from(&self) -> Vec<IpNet> {
        if let Some(list) = &self.dns.allow_from {
            return list.clone();
        }
        let loopback = ["127.0.0.0/8", "::1/128"].map(|n| n.parse().expect("a valid CIDR"));
        self.clusters
            .iter()
            .flat_map(|c| c.pod_cidrs.iter().chain(&c.service_cidrs))
            .copied()
            .chain(loopback)
            .collect()
    }

    /// Reads and validates a configuration file.
    pub fn load(path: impl AsRef<Path>) -> Result<Config, ConfigError> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Self::from_yaml(path, &text)
    }

    /// Parses and validates configuration text; `path` names it in errors and anchors
    /// relative paths.
    pub fn from_yaml(path: &Path, text: &str) -> Result<Config, ConfigError> {
        let typed = serde_saphyr::from_str::<FileConfig>(text);
        let first = match typed {
            Ok(file) => return validate(path, file),
            Err(e) => e.to_string(),
        };
        // A syntax error stops here; a field error is looked for again, with every other
        // problem of the file, field by field.
        let Ok(tree) = serde_saphyr::from_str::<serde_json::Value>(text) else {
            return Err(ConfigError::Parse {
                path: path.to_path_buf(),
                message: first,
            });
        };
        let read = lenient::read(tree);
        if read.problems.is_empty() {
            return Err(ConfigError::Parse {
                path: path.to_path_buf(),
                message: first,
            });
        }
        let mut problems = read.problems;
        if let Err(ConfigError::Invalid { problems: more, .. }) = validate(path, read.file) {
            problems.extend(more.into_iter().filter(|p| {
                !read.clusters_incomplete
                    || !matches!(p, Problem::NoClusters | Problem::UnknownLocalCluster { .. })
            }));
        }
        Err(ConfigError::Invalid {
            path: path.to_path_buf(),
            problems,
        })
    }

    pub fn cluster(&self, name: &str) -> Option<&ClusterConfig> {
        self.clusters.iter().find(|c| c.name == name)
    }

    pub fn local(&self) -> &ClusterConfig {
        self.cluster(&self.local_cluster)
            .expect("validated: the local cluster is one of the clusters")
    }

    /// Every cluster but the local one.
    pub fn remotes(&self) -> impl Iterator<Item = &ClusterConfig> {
        self.clusters
            .iter()
            .filter(|c| c.name != self.local_cluster)
    }

    /// The cluster whose pod or service CIDRs hold `ip` (CIDRs never overlap).
    pub fn owner_of(&self, ip: std::net::IpAddr) -> Option<&ClusterConfig> {
        self.clusters.iter().find(|c| c.owns(ip))
    }
}

/// Why a configuration could not be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("{}: cannot read: {source}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    /// The file is not valid YAML.
    #[error("{}: {message}", path.display())]
    Parse { path: PathBuf, message: String },
    /// Some fields are unknown or their values unusable: every one of them, each naming
    /// its field.
    #[error("{}: invalid configuration:{}", path.display(), Problems(problems))]
    Invalid {
        path: PathBuf,
        problems: Vec<Problem>,
    },
}

impl ConfigError {
    /// The validation problems (empty for read and parse errors).
    pub fn problems(&self) -> &[Problem] {
        match self {
            ConfigError::Invalid { problems, .. } => problems,
            _ => &[],
        }
    }
}

struct Problems<'a>(&'a [Problem]);

impl fmt::Display for Problems<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for p in self.0 {
            write!(f, "\n  - {p}")?;
        }
        Ok(())
    }
}

/// One validation problem, naming the cluster and the field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Problem {
    /// `clusters` is empty.
    #[error("clusters: at least one cluster is required")]
    NoClusters,
    /// A cluster name is not a DNS label (RFC 1123: 1-63 of a-z, 0-9, '-', alphanumeric at both ends).
    #[error("clusters[{index}].name: {name:?} is not a valid DNS label: {reason}")]
    InvalidName {
        index: usize,
        name: String,
        reason: &'static str,
    },
    /// Two clusters share a name.
    #[error("clusters[{index}].name: {name:?} is already the name of clusters[{first}]")]
    DuplicateName {
        index: usize,
        first: usize,
        name: String,
    },
    /// `cluster` does not name one of `clusters`.
    #[error("cluster: {name:?} is not one of the clusters ({known})")]
    UnknownLocalCluster { name: String, known: String },
    /// A CIDR does not parse.
    #[error("cluster {cluster:?}: {field}: invalid CIDR {value:?}: {reason}")]
    InvalidCidr {
        cluster: String,
        field: String,
        value: String,
        reason: String,
    },
    /// A CIDR has host bits set (`10.0.0.1/8`), which usually hides a typo.
    #[error(
        "cluster {cluster:?}: {field}: {value:?} has host bits set (did you mean {suggestion}?)"
    )]
    HostBitsSet {
        cluster: String,
        field: String,
        value: String,
        suggestion: String,
    },
    /// Two CIDRs overlap; routing and DNS ownership depend on them being disjoint.
    #[error(
        "cluster {a_cluster:?} {a_field} {a_cidr} overlaps cluster {b_cluster:?} {b_field} {b_cidr}"
    )]
    Overlap {
        a_cluster: String,
        a_field: String,
        a_cidr: IpNet,
        b_cluster: String,
        b_field: String,
        b_cidr: IpNet,
    },
    /// `source` sets zero or several kinds.
    #[error(
        "cluster {cluster:?}: source: exactly one of inCluster, kubeconfig, file must be set (found {found})"
    )]
    SourceKinds { cluster: String, found: String },
    /// `source.context` without `source.kubeconfig`.
    #[error("cluster {cluster:?}: source.context: only allowed with source.kubeconfig")]
    ContextWithoutKubeconfig { cluster: String },
    /// A section field is out of range.
    #[error("{field}: {reason}")]
    InvalidValue { field: String, reason: String },
}

fn dns_label_problem(name: &str) -> Option<&'static str> {
    if name.is_empty() {
        return Some("empty");
    }
    if name.len() > 63 {
        return Some("longer than 63 characters");
    }
    if !name
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
    {
        return Some("only lower-case letters, digits and '-' are allowed");
    }
    if name.starts_with('-') || name.ends_with('-') {
        return Some("must start and end with a letter or digit");
    }
    None
}

fn resolve(base: &Path, p: &Path) -> PathBuf {
    if p.is_absolute() {
        p.to_path_buf()
    } else {
        base.join(p)
    }
}

fn validate(path: &Path, file: FileConfig) -> Result<Config, ConfigError> {
    let base = path.parent().map(Path::to_path_buf).unwrap_or_default();
    let mut problems = Vec::new();
    if file.clusters.is_empty() {
        problems.push(Problem::NoClusters);
    }
    let mut first_index: BTreeMap<&str, usize> = BTreeMap::new();
    let mut clusters = Vec::new();
    // (cluster, field, cidr) of every CIDR, for the overlap check.
    let mut all_cidrs: Vec<(String, String, IpNet)> = Vec::new();
    for (index, c) in file.clusters.iter().enumerate() {
        if let Some(reason) = dns_label_problem(&c.name) {
            problems.push(Problem::InvalidName {
                index,
                name: c.name.clone(),
                reason,
            });
        }
        if let Some(first) = first_index.get(c.name.as_str()) {
            problems.push(Problem::DuplicateName {
                index,
                first: *first,
                name: c.name.clone(),
            });
        } else {
            first_index.insert(&c.name, index);
        }
        let mut parse = |field: &str, list: &[String]| -> Vec<IpNet> {
            let mut out = Vec::new();
            for (i, raw) in list.iter().enumerate() {
                let field = format!("{field}[{i}]");
                match raw.trim().parse::<IpNet>() {
                    Ok(net) if net.trunc() != net => problems.push(Problem::HostBitsSet {
                        cluster: c.name.clone(),
                        field,
                        value: raw.clone(),
                        suggestion: net.trunc().to_string(),
                    }),
                    Ok(net) => {
                        all_cidrs.push((c.name.clone(), field, net));
                        out.push(net);
                    }
                    Err(e) => problems.push(Problem::InvalidCidr {
                        cluster: c.name.clone(),
                        field,
                        value: raw.clone(),
                        reason: e.to_string(),
                    }),
                }
            }
            out
        };
        let pod_cidrs = parse("podCIDRs", &c.pod_cidrs);
        let service_cidrs = parse("serviceCIDRs", &c.service_cidrs);
        let s = &c.source;
        let mut kinds = Vec::new();
        if s.in_cluster == Some(true) {
            kinds.push("inCluster");
        }
        if s.kubeconfig.is_some() {
            kinds.push("kubeconfig");
        }
        if s.file.is_some() {
            kinds.push("file");
        }
        if s.context.is_some() && s.kubeconfig.is_none() {
            problems.push(Problem::ContextWithoutKubeconfig {
                cluster: c.name.clone(),
            });
        }
        let source = match kinds.as_slice() {
            ["inCluster"] => Some(SourceSpec::InCluster),
            ["kubeconfig"] => Some(SourceSpec::Kubeconfig {
                path: resolve(&base, s.kubeconfig.as_deref().unwrap_or(Path::new(""))),
                context: s.context.clone(),
            }),
            ["file"] => Some(SourceSpec::File {
                path: resolve(&base, s.file.as_deref().unwrap_or(Path::new(""))),
            }),
            _ => {
                problems.push(Problem::SourceKinds {
                    cluster: c.name.clone(),
                    found: if kinds.is_empty() {
                        "none".into()
                    } else {
                        kinds.join(", ")
                    },
                });
                None
            }
        };
        if let Some(source) = source {
            clusters.push(ClusterConfig {
                name: c.name.clone(),
                pod_cidrs,
                service_cidrs,
                source,
            });
        }
    }
    for (i, (ac, af, an)) in all_cidrs.iter().enumerate() {
        for (bc, bf, bn) in &all_cidrs[i + 1..] {
            if an.contains(&bn.network()) || bn.contains(&an.network()) {
                problems.push(Problem::Overlap {
                    a_cluster: ac.clone(),
                    a_field: af.clone(),
                    a_cidr: *an,
                    b_cluster: bc.clone(),
                    b_field: bf.clone(),
                    b_cidr: *bn,
                });
            }
        }
    }
    if !file.clusters.is_empty() && !file.clusters.iter().any(|c| c.name == file.cluster) {
        problems.push(Problem::UnknownLocalCluster {
            name: file.cluster.clone(),
            known: file
                .clusters
                .iter()
                .map(|c| c.name.as_str())
                .collect::<Vec<_>>()
                .join(", "),
        });
    }
    validate_sections(&file, &mut problems);
    if !problems.is_empty() {
        return Err(ConfigError::Invalid {
            path: path.to_path_buf(),
            problems,
        });
    }
    Ok(Config {
        path: path.to_path_buf(),
        local_cluster: file.cluster,
        clusters,
        dns: file.dns,
        proxy: file.proxy,
        tunnel: file.tunnel,
        readiness: file.readiness,
        path_health: file.path_health,
    })
}

fn validate_sections(file: &FileConfig, problems: &mut Vec<Problem>) {
    let mut bad = |field: &str, reason: String| {
        problems.push(Problem::InvalidValue {
            field: field.into(),
            reason,
        })
    };
    let all = file.dns.all_zone.trim_end_matches('.');
    if all.is_empty() || all.split('.').any(|l| dns_label_problem(l).is_some()) {
        bad("dns.allZone", format!("{all:?} is not a valid domain name"));
    }
    if let Some(c) = file
        .clusters
        .iter()
        .find(|c| format!("cluster.{}", c.name) == all)
    {
        bad(
            "dns.allZone",
            format!("{all:?} is also the zone of cluster {:?}", c.name),
        );
    }
    if let Upstreams::List(list) = &file.dns.upstreams {
        for (i, u) in list.iter().enumerate() {
            let ok =
                u.parse::<std::net::IpAddr>().is_ok() || u.parse::<std::net::SocketAddr>().is_ok();
            if !ok {
                bad(
                    &format!("dns.upstreams[{i}]"),
                    format!("{u:?} is neither IP nor IP:PORT"),
                );
            }
        }
    }
    if file.tunnel.mtu < 576 || file.tunnel.mtu > 9000 {
        bad(
            "tunnel.mtu",
            format!("{} is outside 576..9000", file.tunnel.mtu),
        );
    }
    if file.readiness.remote_sync_timeout.0 > std::time::Duration::from_secs(3600) {
        bad(
            "readiness.remoteSyncTimeout",
            format!("{} is longer than 1h", file.readiness.remote_sync_timeout),
        );
    }
    let ph = &file.path_health;
    if let Some(url) = ph.url.as_deref().filter(|u| !u.is_empty())
        && let Err(reason) = path_health::split_http_url(url)
    {
        bad("pathHealth.url", reason);
    }
    let interval = file.tunnel.probe_interval.0;
    if interval.is_zero() || interval > std::time::Duration::from_secs(60) {
        bad(
            "tunnel.probeInterval",
            format!("{} is outside 1ms..60s", file.tunnel.probe_interval),
        );
    } else if ph.unreachable_after.0 < 2 * interval {
        bad(
            "pathHealth.unreachableAfter",
            format!(
                "{} is shorter than two probes (tunnel.probeInterval {})",
                ph.unreachable_after, file.tunnel.probe_interval
            ),
        );
    }
    if ph.poll_interval.0.is_zero() || ph.poll_interval.0 > ph.unreachable_after.0 {
        bad(
            "pathHealth.pollInterval",
            format!(
                "{} must be above zero and at most pathHealth.unreachableAfter",
                ph.poll_interval
            ),
        );
    }
    if file.tunnel.probe_port != 0 && file.tunnel.probe_port == file.tunnel.listen_port {
        bad(
            "tunnel.probePort",
            format!(
                "{} is also tunnel.listenPort; the probe needs a port of its own",
                file.tunnel.probe_port
            ),
        );
    }
    if file.proxy.interface.is_empty() {
        bad("proxy.interface", "must not be empty".into());
    }
    for (section, metrics, debug) in [
        ("proxy", file.proxy.metrics_listen, file.proxy.debug_listen),
        (
            "tunnel",
            file.tunnel.metrics_listen,
            file.tunnel.debug_listen,
        ),
    ] {
        if let Some(reason) = listeners_clash(metrics, debug) {
            bad(&format!("{section}.debugListen"), reason);
        }
    }
    if !(1..=64).contains(&file.proxy.nft_shards) {
        bad(
            "proxy.nftShards",
            format!("{} is outside 1..64", file.proxy.nft_shards),
        );
    }
}

/// Why a debug listener cannot sit beside the metrics one: the same port on overlapping
/// addresses (one of them the wildcard) cannot be bound twice. The very same address is
/// fine: both are served on one listener.
fn listeners_clash(metrics: std::net::SocketAddr, debug: std::net::SocketAddr) -> Option<String> {
    if metrics == debug || metrics.port() != debug.port() || debug.port() == 0 {
        return None;
    }
    let overlap =
        metrics.ip() == debug.ip() || metrics.ip().is_unspecified() || debug.ip().is_unspecified();
    overlap.then(|| {
        format!(
            "{debug} takes the port of metricsListen {metrics}; use another port, or \
             metricsListen's very address to serve both on one listener"
        )
    })
}

#[cfg(test)]
mod tests;
