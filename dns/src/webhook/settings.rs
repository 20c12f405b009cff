//! Flags of `causeway-dns webhook`, and their validation into [`Settings`].

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use super::Error;
use super::patch::{Match, PatchSettings};
use super::provision::SecretSettings;

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

    /// PEM certificate chain served over HTTPS; reloaded when the file changes. With
    /// --tls-key; the other way is --tls-secret.
    #[arg(long, env = "CAUSEWAY_WEBHOOK_TLS_CERT")]
    pub tls_cert: Option<PathBuf>,

    /// PEM private key of the certificate; reloaded when the file changes.
    #[arg(long, env = "CAUSEWAY_WEBHOOK_TLS_KEY")]
    pub tls_key: Option<PathBuf>,

    /// Self-managed TLS: keep an own CA and serving certificate in this Secret of the
    /// webhook's namespace, and publish the CA as caBundle on --webhook-configuration.
    #[arg(long, env = "CAUSEWAY_WEBHOOK_TLS_SECRET", conflicts_with_all = ["tls_cert", "tls_key"])]
    pub tls_secret: Option<String>,

    /// The webhook's namespace (of the Secret and the Service); from the downward API.
    #[arg(long, env = "CAUSEWAY_WEBHOOK_NAMESPACE", default_value = "causeway")]
    pub namespace: String,

    /// The Service the API server calls; the serving certificate is issued for its names.
    #[arg(
        long,
        env = "CAUSEWAY_WEBHOOK_SERVICE",
        default_value = "causeway-webhook"
    )]
    pub service: String,

    /// The MutatingWebhookConfiguration whose entries calling --service get our caBundle.
    #[arg(
        long,
        env = "CAUSEWAY_WEBHOOK_CONFIGURATION",
        default_value = "causeway-dns"
    )]
    pub webhook_configuration: String,

    /// With --tls-secret: how often the Secret and caBundle are checked (renewal, repair).
    #[arg(
        long,
        env = "CAUSEWAY_WEBHOOK_TLS_CHECK_INTERVAL",
        default_value = "1m",
        value_parser = parse_duration
    )]
    pub tls_check_interval: Duration,

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
    /// Where the serving certificate comes from.
    pub tls: TlsSource,
    /// Poll interval of the certificate files.
    pub cert_reload_interval: Duration,
    /// Lifetime of cached namespace labels.
    pub namespace_cache_ttl: Duration,
    /// What the patch needs.
    pub patch: PatchSettings,
}

/// Where the serving certificate comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TlsSource {
    /// Files someone else keeps current (cert-manager, OpenShift's service-ca).
    Files(CertFiles),
    /// Our own CA in a Secret, published as caBundle.
    Secret(SecretSettings),
}

/// A serving certificate is renewed when it expires within this (a year's certificate is
/// renewed after eleven months).
pub const RENEW_BEFORE: Duration = Duration::from_secs(30 * 24 * 3600);

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
        let tls = match (args.tls_secret, args.tls_cert, args.tls_key) {
            (Some(secret), None, None) => {
                if args.tls_check_interval.is_zero() {
                    return Err(invalid("tls-check-interval", "0", "must be positive"));
                }
                for (flag, value) in [
                    ("tls-secret", &secret),
                    ("namespace", &args.namespace),
                    ("service", &args.service),
                    ("webhook-configuration", &args.webhook_configuration),
                ] {
                    if !is_dns_name(value) {
                        return Err(invalid(flag, value, "not a DNS name"));
                    }
                }
                TlsSource::Secret(SecretSettings {
                    secret,
                    namespace: args.namespace,
                    service: args.service,
                    webhook_configuration: args.webhook_configuration,
                    check_interval: args.tls_check_interval,
                    renew_before: RENEW_BEFORE,
                })
            }
            (None, Some(cert), Some(key)) => TlsSource::Files(CertFiles { cert, key }),
            (None, Some(_), None) => {
                return Err(invalid(
                    "tls-key",
                    "",
                    "missing: --tls-cert needs --tls-key",
                ));
            }
            (None, None, Some(_)) => {
                return Err(invalid(
                    "tls-cert",
                    "",
                    "missing: --tls-key needs --tls-cert",
                ));
            }
            _ => {
                return Err(invalid(
                    "tls-secret",
                    "",
                    "missing: give --tls-secret, or --tls-cert and --tls-key",
                ));
            }
        };
        Ok(Self {
            listen: args.listen,
            metrics_listen: args.metrics_listen,
            tls,
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
    fn tls_comes_from_files_or_a_secret() {
        let files = parse(&[]).expect("valid");
        assert_eq!(
            files.tls,
            TlsSource::Files(CertFiles {
                cert: "/tls/tls.crt".into(),
                key: "/tls/tls.key".into()
            })
        );
        let argv = [
            "webhook",
            "--tls-secret=causeway-webhook-tls",
            "--namespace=causeway",
            "--nameserver=192.0.2.53",
        ];
        let secret = Settings::try_from(Cli::try_parse_from(argv).expect("flags parse").args)
            .expect("valid");
        let TlsSource::Secret(s) = secret.tls else {
            panic!("expected a secret source");
        };
        assert_eq!(s.secret, "causeway-webhook-tls");
        assert_eq!(s.service, "causeway-webhook");
        assert_eq!(s.webhook_configuration, "causeway-dns");
        assert_eq!(s.check_interval, Duration::from_secs(60));
        // Both ways at once is refused by the parser; neither by validation.
        assert!(
            Cli::try_parse_from([
                "webhook",
                "--tls-secret=s",
                "--tls-cert=/c",
                "--nameserver=192.0.2.53"
            ])
            .is_err()
        );
        let neither = Cli::try_parse_from(["webhook", "--nameserver=192.0.2.53"]).expect("parses");
        let err = Settings::try_from(neither.args).expect_err("no tls");
        assert_eq!(
            err.to_string(),
            "invalid --tls-secret \"\": missing: give --tls-secret, or --tls-cert and --tls-key"
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
