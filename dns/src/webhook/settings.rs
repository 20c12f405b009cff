//! Flags of `causeway-dns webhook`, and their validation into [`Settings`].

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use super::Error;
use super::patch::{Match, PatchSettings};

/// Flags of the `webhook` subcommand: the mutating admission webhook that points selected pods
/// at causeway-dns.
#[derive(Debug, Clone, clap::Args)]
pub struct Args {
    /// Address of the HTTPS server (POST /mutate, GET /healthz).
    #[arg(long, env = "CAUSEWAY_WEBHOOK_LISTEN", default_value = "0.0.0.0:8443")]
    pub listen: SocketAddr,

    /// Address of the plain-HTTP metrics server (GET /metrics, GET /healthz).
    #[arg(
        long,
        env = "CAUSEWAY_WEBHOOK_METRICS_LISTEN",
        default_value = "0.0.0.0:9090"
    )]
    pub metrics_listen: SocketAddr,

    /// PEM certificate chain served over HTTPS; reloaded when the file changes.
    #[arg(long, env = "CAUSEWAY_WEBHOOK_TLS_CERT")]
    pub tls_cert: PathBuf,

    /// PEM private key of the certificate; reloaded when the file changes.
    #[arg(long, env = "CAUSEWAY_WEBHOOK_TLS_KEY")]
    pub tls_key: PathBuf,

    /// How often the certificate and key files are checked for changes (e.g. 10s, 500ms, 1m).
    #[arg(
        long,
        env = "CAUSEWAY_WEBHOOK_CERT_RELOAD_INTERVAL",
        default_value = "10s",
        value_parser = parse_duration
    )]
    pub cert_reload_interval: Duration,

    /// ClusterIP of the causeway-dns Service: the nameserver written into patched pods.
    #[arg(long, env = "CAUSEWAY_WEBHOOK_NAMESERVER")]
    pub nameserver: IpAddr,

    /// Cluster domain used to rebuild ClusterFirst's search list.
    #[arg(
        long,
        env = "CAUSEWAY_WEBHOOK_CLUSTER_DOMAIN",
        default_value = "cluster.local"
    )]
    pub cluster_domain: String,

    /// Label key that selects a pod, on the pod or on its namespace.
    #[arg(
        long,
        env = "CAUSEWAY_WEBHOOK_SELECTOR_KEY",
        default_value = "causeway.io/dns"
    )]
    pub selector_key: String,

    /// Value the selector label must have.
    #[arg(
        long,
        env = "CAUSEWAY_WEBHOOK_SELECTOR_VALUE",
        default_value = "enabled"
    )]
    pub selector_value: String,

    /// Pod annotation key that opts a selected pod out.
    #[arg(
        long,
        env = "CAUSEWAY_WEBHOOK_OPT_OUT_KEY",
        default_value = "causeway.io/dns"
    )]
    pub opt_out_key: String,

    /// Value the opt-out annotation must have.
    #[arg(
        long,
        env = "CAUSEWAY_WEBHOOK_OPT_OUT_VALUE",
        default_value = "disabled"
    )]
    pub opt_out_value: String,

    /// The ndots option written into patched pods (ClusterFirst uses 5).
    #[arg(long, env = "CAUSEWAY_WEBHOOK_NDOTS", default_value_t = 5)]
    pub ndots: u8,

    /// How long a namespace's labels are reused before being read again (e.g. 10s).
    #[arg(
        long,
        env = "CAUSEWAY_WEBHOOK_NAMESPACE_CACHE_TTL",
        default_value = "10s",
        value_parser = parse_duration
    )]
    pub namespace_cache_ttl: Duration,
}

/// Validated settings of the webhook.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    /// HTTPS listen address.
    pub listen: SocketAddr,
    /// Metrics listen address.
    pub metrics_listen: SocketAddr,
    /// Certificate and key files.
    pub cert: CertFiles,
    /// Poll interval of the certificate files.
    pub cert_reload_interval: Duration,
    /// Lifetime of cached namespace labels.
    pub namespace_cache_ttl: Duration,
    /// What the patch needs.
    pub patch: PatchSettings,
}

/// The serving certificate chain and its key, both PEM files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertFiles {
    /// Certificate chain, leaf first.
    pub cert: PathBuf,
    /// Private key (PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
}

impl TryFrom<Args> for Settings {
    type Error = Error;

    fn try_from(args: Args) -> Result<Self, Error> {
        let cluster_domain = args
            .cluster_domain
            .trim_end_matches('.')
            .to_ascii_lowercase();
        if !is_dns_name(&cluster_domain) {
            return Err(invalid(
                "cluster-domain",
                &args.cluster_domain,
                "not a DNS name",
            ));
        }
        if args.selector_key.is_empty() {
            return Err(invalid("selector-key", &args.selector_key, "empty"));
        }
        if args.opt_out_key.is_empty() {
            return Err(invalid("opt-out-key", &args.opt_out_key, "empty"));
        }
        if args.ndots > 15 {
            // resolv.conf caps ndots at 15; larger values are silently clamped by libc.
            return Err(invalid("ndots", &args.ndots.to_string(), "above 15"));
        }
        if args.cert_reload_interval.is_zero() {
            return Err(invalid("cert-reload-interval", "0", "must be positive"));
        }
        Ok(Self {
            listen: args.listen,
            metrics_listen: args.metrics_listen,
            cert: CertFiles {
                cert: args.tls_cert,
                key: args.tls_key,
            },
            cert_reload_interval: args.cert_reload_interval,
            namespace_cache_ttl: args.namespace_cache_ttl,
            patch: PatchSettings {
                nameserver: args.nameserver,
                cluster_domain,
                selector: Match {
                    key: args.selector_key,
                    value: args.selector_value,
                },
                opt_out: Match {
                    key: args.opt_out_key,
                    value: args.opt_out_value,
                },
                ndots: args.ndots,
            },
        })
    }
}

fn invalid(flag: &'static str, value: &str, reason: &'static str) -> Error {
    Error::InvalidFlag {
        flag,
        value: value.to_owned(),
        reason,
    }
}

/// Letters, digits and `-` in labels of 1..=63 characters, not starting or ending with `-`.
fn is_dns_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 253
        && name.split('.').all(|label| {
            (1..=63).contains(&label.len())
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        })
}

/// Parses `500ms`, `10s`, `2m` or a bare number of seconds.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let (number, unit) = match text.find(|c: char| !c.is_ascii_digit()) {
        Some(at) => text.split_at(at),
        None => (text, "s"),
    };
    let n: u64 = number
        .parse()
        .map_err(|_| format!("{text:?} is not a duration such as 500ms, 10s or 2m"))?;
    match unit {
        "ms" => Ok(Duration::from_millis(n)),
        "s" => Ok(Duration::from_secs(n)),
        "m" => Ok(Duration::from_secs(n * 60)),
        _ => Err(format!(
            "{text:?} has unknown unit {unit:?}; use ms, s or m"
        )),
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        args: Args,
    }

    fn parse(extra: &[&str]) -> Result<Settings, Error> {
        let mut argv = vec![
            "webhook",
            "--tls-cert=/tls/tls.crt",
            "--tls-key=/tls/tls.key",
            "--nameserver=192.0.2.53",
        ];
        argv.extend_from_slice(extra);
        Settings::try_from(Cli::try_parse_from(argv).expect("flags parse").args)
    }

    #[test]
    fn defaults_select_with_causeway_label() {
        let settings = parse(&[]).expect("valid");
        assert_eq!(settings.patch.selector.key, "causeway.io/dns");
        assert_eq!(settings.patch.selector.value, "enabled");
        assert_eq!(settings.patch.opt_out.value, "disabled");
        assert_eq!(settings.patch.cluster_domain, "cluster.local");
        assert_eq!(settings.patch.ndots, 5);
        assert_eq!(settings.cert_reload_interval, Duration::from_secs(10));
    }

    #[test]
    fn cluster_domain_is_normalised_and_checked() {
        let settings = parse(&["--cluster-domain=Cluster.B."]).expect("valid");
        assert_eq!(settings.patch.cluster_domain, "cluster.b");
        let err = parse(&["--cluster-domain=bad_domain"]).expect_err("invalid");
        assert_eq!(
            err.to_string(),
            "invalid --cluster-domain \"bad_domain\": not a DNS name"
        );
    }

    #[test]
    fn durations_parse() {
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("10s"), Ok(Duration::from_secs(10)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("7"), Ok(Duration::from_secs(7)));
        assert!(parse_duration("1h").is_err());
        assert!(parse_duration("soon").is_err());
    }
}
