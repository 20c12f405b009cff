//! Webhook TLS without a human: the CA and serving certificate kept in a Secret of the
//! webhook's own namespace, and the CA published as `caBundle` on the webhook's own
//! MutatingWebhookConfiguration.
//!
//! Every replica runs the same steps, so they agree without a leader: read the Secret; if it
//! is missing, create it (losing a create race means reading the winner's); if
//! [`certs::assess`] finds it unusable, replace it with the `resourceVersion` read (losing an
//! update race means reading again). Then every webhook entry whose `clientConfig.service` is
//! ours gets the CA as `caBundle` through a JSON patch guarded by a `test` of the entry's
//! name. The steps repeat every `check_interval`, which renews the serving certificate before
//! it expires, picks up a renewal made by another replica, and puts `caBundle` back if
//! something removed it.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime};

use axum_server::tls_rustls::RustlsConfig;
use json_patch::jsonptr::PointerBuf;
use json_patch::{AddOperation, PatchOperation, TestOperation};
use k8s_openapi::ByteString;
use k8s_openapi::api::admissionregistration::v1::MutatingWebhookConfiguration;
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Patch, PatchParams, PostParams};
use kube::{Api, Client};
use tracing::{info, warn};

use super::Error;
use super::certs::{self, Assessment, Bundle};
use super::metrics::Metrics;

/// Keys of the Secret (`kubernetes.io/tls`, plus the CA).
pub const TLS_CRT: &str = "tls.crt";
pub const TLS_KEY: &str = "tls.key";
pub const CA_CRT: &str = "ca.crt";
pub const CA_KEY: &str = "ca.key";

/// Attempts of the read-decide-write cycle before a round gives up (each lost race costs one).
const ATTEMPTS: usize = 5;

/// Where the webhook keeps and publishes its certificates.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SecretSettings {
    /// The Secret holding CA and serving certificate.
    pub secret: String,
    /// The webhook's namespace: of the Secret and of the Service.
    pub namespace: String,
    /// The Service the API server calls.
    pub service: String,
    /// The MutatingWebhookConfiguration whose entries get `caBundle`.
    pub webhook_configuration: String,
    /// How often the Secret and `caBundle` are checked.
    pub check_interval: Duration,
    /// A serving certificate is renewed when it expires sooner than this.
    pub renew_before: Duration,
}

/// Keeps the Secret and `caBundle` right.
pub struct Provisioner {
    secrets: Api<Secret>,
    configurations: Api<MutatingWebhookConfiguration>,
    settings: SecretSettings,
    names: Vec<String>,
}

impl Provisioner {
    /// A provisioner for `settings`; the certificate is issued for the Service's names under
    /// `cluster_domain`.
    pub fn new(client: Client, settings: SecretSettings, cluster_domain: &str) -> Self {
        let names = certs::service_names(&settings.service, &settings.namespace, cluster_domain);
        Self {
            secrets: Api::namespaced(client.clone(), &settings.namespace),
            configurations: Api::all(client),
            settings,
            names,
        }
    }

    /// The names the serving certificate is valid for.
    pub fn names(&self) -> &[String] {
        &self.names
    }

    /// Reads the Secret and makes it usable, creating or renewing as needed. Returns the
    /// bundle now stored.
    pub async fn ensure(&self, metrics: &Metrics) -> Result<Bundle, Error> {
        let secret_error = |source| Error::TlsSecret {
            secret: format!("{}/{}", self.settings.namespace, self.settings.secret),
            source: Box::new(source),
        };
        for _ in 0..ATTEMPTS {
            let now = SystemTime::now();
            let existing = self
                .secrets
                .get_opt(&self.settings.secret)
                .await
                .map_err(secret_error)?;
            let Some(existing) = existing else {
                let bundle = certs::new_bundle(&self.names, now)?;
                match self
                    .secrets
                    .create(&PostParams::default(), &self.secret(&bundle, None))
                    .await
                {
                    Ok(_) => {
                        info!(secret = %self.settings.secret, "created webhook CA and serving certificate");
                        metrics.issued("ca");
                        return Ok(bundle);
                    }
                    // Another replica created it first: use theirs.
                    Err(kube::Error::Api(e)) if e.code == 409 => continue,
                    Err(e) => return Err(secret_error(e)),
                }
            };
            let stored = read_bundle(&existing);
            let (bundle, what) = match stored.as_ref().map(|b| {
                (
                    b,
                    certs::assess(b, &self.names, now, self.settings.renew_before),
                )
            }) {
                Some((bundle, Assessment::Keep)) => return Ok(bundle.clone()),
                Some((bundle, Assessment::RenewServing(why))) => {
                    info!(secret = %self.settings.secret, reason = %why, "renewing the webhook serving certificate");
                    let (cert, key) = certs::issue_serving(&bundle.ca_key, &self.names, now)?;
                    let renewed = Bundle {
                        cert,
                        key,
                        ..bundle.clone()
                    };
                    (renewed, "serving")
                }
                Some((_, Assessment::NewCa(why))) => {
                    warn!(secret = %self.settings.secret, reason = %why, "replacing the webhook CA");
                    (certs::new_bundle(&self.names, now)?, "ca")
                }
                None => {
                    warn!(secret = %self.settings.secret, "the webhook TLS secret lacks a key; replacing it");
                    (certs::new_bundle(&self.names, now)?, "ca")
                }
            };
            let version = existing.metadata.resource_version.clone();
            match self
                .secrets
                .replace(
                    &self.settings.secret,
                    &PostParams::default(),
                    &self.secret(&bundle, version),
                )
                .await
            {
                Ok(_) => {
                    metrics.issued(what);
                    return Ok(bundle);
                }
                // Changed since we read it (another replica renewed): read again.
                Err(kube::Error::Api(e)) if e.code == 409 => continue,
                Err(e) => return Err(secret_error(e)),
            }
        }
        Err(Error::TlsSecretContended {
            secret: format!("{}/{}", self.settings.namespace, self.settings.secret),
            attempts: ATTEMPTS,
        })
    }

    fn secret(&self, bundle: &Bundle, resource_version: Option<String>) -> Secret {
        let data = [
            (TLS_CRT, &bundle.cert),
            (TLS_KEY, &bundle.key),
            (CA_CRT, &bundle.ca_cert),
            (CA_KEY, &bundle.ca_key),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), ByteString(v.as_bytes().to_vec())))
        .collect();
        Secret {
            metadata: kube::api::ObjectMeta {
                name: Some(self.settings.secret.clone()),
                namespace: Some(self.settings.namespace.clone()),
                resource_version,
                labels: Some(BTreeMap::from([(
                    "app.kubernetes.io/managed-by".to_owned(),
                    "causeway-webhook".to_owned(),
                )])),
                ..Default::default()
            },
            type_: Some("kubernetes.io/tls".to_owned()),
            data: Some(data),
            ..Default::default()
        }
    }

    /// Sets `caBundle` to `ca_cert` on every entry of the webhook configuration that calls
    /// our Service. Returns how many entries it changed.
    pub async fn publish_ca_bundle(&self, ca_cert: &str) -> Result<usize, Error> {
        let name = &self.settings.webhook_configuration;
        let config_error = |source| Error::WebhookConfiguration {
            name: name.clone(),
            source: Box::new(source),
        };
        let configuration = self.configurations.get(name).await.map_err(config_error)?;
        let wanted = ByteString(ca_cert.as_bytes().to_vec());
        let mut ours = 0;
        let mut operations = Vec::new();
        for (i, webhook) in configuration.webhooks.iter().flatten().enumerate() {
            let Some(service) = &webhook.client_config.service else {
                continue;
            };
            if service.name != self.settings.service || service.namespace != self.settings.namespace
            {
                continue;
            }
            ours += 1;
            if webhook.client_config.ca_bundle.as_ref() == Some(&wanted) {
                continue;
            }
            // The test keeps a concurrent edit that reorders the entries from getting our
            // bundle at the wrong index.
            operations.push(PatchOperation::Test(TestOperation {
                path: PointerBuf::from_tokens(["webhooks", &i.to_string(), "name"]),
                value: serde_json::Value::String(webhook.name.clone()),
            }));
            operations.push(PatchOperation::Add(AddOperation {
                path: PointerBuf::from_tokens([
                    "webhooks",
                    &i.to_string(),
                    "clientConfig",
                    "caBundle",
                ]),
                value: serde_json::to_value(&wanted).unwrap_or_default(),
            }));
        }
        if ours == 0 {
            return Err(Error::NoWebhookForService {
                configuration: name.clone(),
                service: format!("{}/{}", self.settings.namespace, self.settings.service),
            });
        }
        let changed = operations.len() / 2;
        if changed > 0 {
            self.configurations
                .patch(
                    name,
                    &PatchParams::default(),
                    &Patch::Json::<()>(json_patch::Patch(operations)),
                )
                .await
                .map_err(config_error)?;
            info!(configuration = %name, entries = changed, "published the webhook CA as caBundle");
        }
        Ok(changed)
    }

    /// One round: the Secret, then `caBundle`. Returns the bundle to serve.
    pub async fn round(&self, metrics: &Metrics) -> Result<Bundle, Error> {
        let bundle = self.ensure(metrics).await?;
        match self.publish_ca_bundle(&bundle.ca_cert).await {
            Ok(_) => metrics.ca_bundle_published(true),
            Err(error) => {
                metrics.ca_bundle_published(false);
                warn!(error = %error, source = ?std::error::Error::source(&error),
                    "caBundle not published: the API server cannot verify this webhook, \
                     and with failurePolicy Ignore pods are admitted without their DNS patch");
            }
        }
        Ok(bundle)
    }

    /// Repeats [`round`](Self::round) every `check_interval`, reloading `tls` when the stored
    /// certificate changes; runs until dropped. A failed round keeps what is served.
    pub async fn run(self, tls: RustlsConfig, mut serving: Bundle, metrics: Metrics) {
        let mut ticks = tokio::time::interval(self.settings.check_interval);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        ticks.tick().await;
        loop {
            ticks.tick().await;
            match self.round(&metrics).await {
                Ok(bundle) if bundle == serving => {}
                Ok(bundle) => {
                    match tls
                        .reload_from_pem(bundle.cert.clone().into(), bundle.key.clone().into())
                        .await
                    {
                        Ok(()) => {
                            info!("serving the renewed webhook certificate");
                            metrics.reloaded(true);
                            serving = bundle;
                        }
                        Err(error) => {
                            warn!(error = %error, "keeping the previous webhook certificate");
                            metrics.reloaded(false);
                        }
                    }
                }
                Err(error) => {
                    warn!(error = %error, source = ?std::error::Error::source(&error),
                        "webhook certificate check failed; serving the current one");
                }
            }
        }
    }
}

/// The bundle in a Secret, if it has all four keys as UTF-8.
fn read_bundle(secret: &Secret) -> Option<Bundle> {
    let data = secret.data.as_ref()?;
    let text = |key: &str| {
        data.get(key)
            .and_then(|v| String::from_utf8(v.0.clone()).ok())
    };
    Some(Bundle {
        ca_cert: text(CA_CRT)?,
        ca_key: text(CA_KEY)?,
        cert: text(TLS_CRT)?,
        key: text(TLS_KEY)?,
    })
}
