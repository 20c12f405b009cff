//! Forwarding of every name outside our zones to the upstream resolvers, through
//! hickory-resolver (which caches), passing the upstream's RCODE through.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use causeway_shared::config::Upstreams;
use hickory_server::proto::op::ResponseCode;
use hickory_server::proto::rr::{Name, Record, RecordType};
use hickory_server::resolver::config::{NameServerConfig, ResolverConfig, ResolverOpts};
use hickory_server::resolver::net::runtime::TokioRuntimeProvider;
use hickory_server::resolver::net::{DnsError, NetError};
use hickory_server::resolver::{Resolver, TokioResolver};

/// Why forwarding could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum ForwardError {
    /// The resolv.conf named by `dns.upstreams` could not be read.
    #[error("dns.upstreams: cannot read {}: {source}", path.display())]
    ReadResolvConf {
        path: PathBuf,
        source: std::io::Error,
    },
    /// The resolv.conf could not be parsed.
    #[error("dns.upstreams: cannot parse {}: {message}", path.display())]
    ParseResolvConf { path: PathBuf, message: String },
    /// The resolver could not be built.
    #[error("cannot build the upstream resolver: {0}")]
    Build(#[source] NetError),
}

/// The upstream answer to a forwarded query.
#[derive(Debug)]
pub struct Forwarded {
    pub rcode: ResponseCode,
    pub answers: Vec<Record>,
    pub authorities: Vec<Record>,
}

/// Forwards queries to the configured upstreams.
pub struct Forwarder {
    resolver: Option<TokioResolver>,
    pub upstreams: Vec<SocketAddr>,
}

/// Reads the upstream addresses from the configuration (port 53 when absent).
pub fn upstream_addrs(upstreams: &Upstreams) -> Result<Vec<SocketAddr>, ForwardError> {
    match upstreams {
        Upstreams::List(list) => Ok(list
            .iter()
            .filter_map(|u| {
                u.parse::<SocketAddr>()
                    .ok()
                    .or_else(|| u.parse::<IpAddr>().ok().map(|ip| SocketAddr::new(ip, 53)))
            })
            .collect()),
        Upstreams::ResolvConf(path) => {
            let text = std::fs::read(path).map_err(|source| ForwardError::ReadResolvConf {
                path: path.clone(),
                source,
            })?;
            let (config, _) = hickory_server::resolver::system_conf::parse_resolv_conf(&text)
                .map_err(|e| ForwardError::ParseResolvConf {
                    path: path.clone(),
                    message: e.to_string(),
                })?;
            Ok(config
                .name_servers()
                .iter()
                .map(|ns| SocketAddr::new(ns.ip, ns.connections.first().map_or(53, |c| c.port)))
                .collect())
        }
    }
}

/// True when `upstream` is one of our own addresses (listen addresses, and the Service IP in
/// front of us): forwarding there would loop (a resolv.conf pointing back at us, e.g. after
/// our own webhook patched our pod). An unspecified listen address matches loopback and
/// unspecified upstreams on the same port.
pub fn is_self(upstream: SocketAddr, listen: &[SocketAddr]) -> bool {
    listen.iter().any(|l| {
        l.port() == upstream.port()
            && (l.ip() == upstream.ip()
                || (l.ip().is_unspecified()
                    && (upstream.ip().is_loopback() || upstream.ip().is_unspecified())))
    })
}

impl Forwarder {
    /// A forwarder to `upstreams` minus our own addresses; with none left, forwarded
    /// queries are REFUSED.
    pub fn new(upstreams: Vec<SocketAddr>, listen: &[SocketAddr]) -> Result<Self, ForwardError> {
        let (ours, upstreams): (Vec<_>, Vec<_>) =
            upstreams.into_iter().partition(|u| is_self(*u, listen));
        for u in &ours {
            tracing::warn!(upstream = %u, "ignoring upstream that is this server (forwarding loop)");
        }
        if upstreams.is_empty() {
            tracing::warn!("no upstream resolvers: names outside our zones are refused");
            return Ok(Self {
                resolver: None,
                upstreams,
            });
        }
        let servers = upstreams
            .iter()
            .map(|u| {
                let mut ns = NameServerConfig::udp_and_tcp(u.ip());
                for c in &mut ns.connections {
                    c.port = u.port();
                }
                ns.trust_negative_responses = true;
                ns
            })
            .collect();
        let mut opts = ResolverOpts::default();
        opts.ndots = 0;
        opts.timeout = Duration::from_secs(2);
        opts.attempts = 2;
        opts.preserve_intermediates = true;
        opts.cache_size = 10_000;
        opts.edns_payload_len = 1232;
        let resolver = Resolver::builder_with_config(
            ResolverConfig::from_name_servers(servers),
            TokioRuntimeProvider::default(),
        )
        .with_options(opts)
        .build()
        .map_err(ForwardError::Build)?;
        Ok(Self {
            resolver: Some(resolver),
            upstreams,
        })
    }

    /// Resolves `name`/`qtype` upstream. Errors become SERVFAIL and are reported through
    /// `on_error` with a short reason.
    pub async fn forward(
        &self,
        name: Name,
        qtype: RecordType,
        on_error: impl Fn(&str),
    ) -> Forwarded {
        let Some(resolver) = &self.resolver else {
            return Forwarded {
                rcode: ResponseCode::Refused,
                answers: vec![],
                authorities: vec![],
            };
        };
        let mut name = name;
        name.set_fqdn(true);
        match resolver.lookup(name, qtype).await {
            Ok(lookup) => Forwarded {
                rcode: ResponseCode::NoError,
                answers: lookup.answers().to_vec(),
                authorities: vec![],
            },
            Err(NetError::Dns(DnsError::NoRecordsFound(nr))) => Forwarded {
                rcode: nr.response_code,
                answers: vec![],
                authorities: nr
                    .soa
                    .map(|s| vec![(*s).into_record_of_rdata()])
                    .unwrap_or_default(),
            },
            Err(NetError::Dns(DnsError::ResponseCode(rcode))) => Forwarded {
                rcode,
                answers: vec![],
                authorities: vec![],
            },
            Err(e) => {
                tracing::debug!(error = %e, "forwarding failed");
                on_error(match e {
                    NetError::NoConnections => "no_connections",
                    NetError::Proto(_) => "protocol",
                    _ => "other",
                });
                Forwarded {
                    rcode: ResponseCode::ServFail,
                    answers: vec![],
                    authorities: vec![],
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn self_detection() {
        let listen: Vec<SocketAddr> = vec![
            "0.0.0.0:53".parse().unwrap(),
            "127.0.0.1:5353".parse().unwrap(),
        ];
        assert!(is_self("127.0.0.1:53".parse().unwrap(), &listen));
        assert!(is_self("127.0.0.1:5353".parse().unwrap(), &listen));
        assert!(!is_self("192.0.2.1:53".parse().unwrap(), &listen));
        assert!(!is_self("127.0.0.1:54".parse().unwrap(), &listen));
    }

    #[test]
    fn upstreams_from_list_and_resolv_conf() {
        let list = Upstreams::List(vec!["192.0.2.1".into(), "192.0.2.2:5300".into()]);
        assert_eq!(
            upstream_addrs(&list).unwrap(),
            vec![
                "192.0.2.1:53".parse().unwrap(),
                "192.0.2.2:5300".parse().unwrap()
            ]
        );
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("resolv.conf");
        std::fs::write(
            &path,
            "search x.local\nnameserver 192.0.2.53\nnameserver 2001:db8::53\n",
        )
        .unwrap();
        assert_eq!(
            upstream_addrs(&Upstreams::ResolvConf(path)).unwrap(),
            vec![
                "192.0.2.53:53".parse().unwrap(),
                "[2001:db8::53]:53".parse().unwrap()
            ]
        );
    }
}
