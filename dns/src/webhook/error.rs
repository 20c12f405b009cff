//! The webhook's one error type.

use std::io;
use std::net::SocketAddr;
use std::path::PathBuf;

/// Everything that can go wrong in the webhook. Errors while handling a review never deny the
/// pod: they are logged, counted, and the pod is admitted unchanged.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A flag has a value the webhook cannot use.
    #[error("invalid --{flag} {value:?}: {reason}")]
    InvalidFlag {
        /// Flag name without the dashes.
        flag: &'static str,
        /// The value given.
        value: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// The certificate or key file could not be read or does not form a usable pair.
    #[error("cannot load tls certificate {cert} with key {key}")]
    LoadCertificate {
        /// PEM certificate chain file.
        cert: PathBuf,
        /// PEM private key file.
        key: PathBuf,
        /// The underlying failure.
        #[source]
        source: io::Error,
    },
    /// A listening socket could not be opened.
    #[error("cannot listen on {addr}")]
    Bind {
        /// The address asked for.
        addr: SocketAddr,
        /// The underlying failure.
        #[source]
        source: io::Error,
    },
    /// A server stopped with an error.
    #[error("{server} server failed")]
    Serve {
        /// Which server: `https` or `metrics`.
        server: &'static str,
        /// The underlying failure.
        #[source]
        source: io::Error,
    },
    /// No Kubernetes client could be built from the environment.
    #[error("cannot create kubernetes client")]
    KubeClient(#[source] kube::Error),
    /// The pod's namespace could not be read to check its labels.
    #[error("cannot read namespace {namespace}")]
    NamespaceLookup {
        /// Namespace name.
        namespace: String,
        /// The API error.
        #[source]
        source: Box<kube::Error>,
    },
    /// The request body is not an AdmissionReview the webhook can answer.
    #[error("malformed AdmissionReview: {0}")]
    MalformedReview(String),
    /// The admission request's object does not decode as a pod.
    #[error("admission object is not a valid pod")]
    DecodePod(#[source] serde_json::Error),
    /// The admission request names no namespace, so the search list cannot be built.
    #[error("admission request names no namespace")]
    NoNamespace,
    /// The TLS Secret could not be read or written.
    #[error("cannot read or write the webhook tls secret {secret}")]
    TlsSecret {
        /// `namespace/name` of the Secret.
        secret: String,
        /// The API error.
        #[source]
        source: Box<kube::Error>,
    },
    /// Other writers kept changing the TLS Secret between our read and our write.
    #[error("the webhook tls secret {secret} changed under every one of {attempts} attempts")]
    TlsSecretContended {
        /// `namespace/name` of the Secret.
        secret: String,
        /// How many read-decide-write cycles were tried.
        attempts: usize,
    },
    /// The CA or serving certificate could not be generated.
    #[error("cannot generate the webhook certificates")]
    Certificate(#[from] super::certs::CertError),
    /// The generated certificate did not load into the TLS server.
    #[error("cannot serve the generated certificate")]
    TlsConfig(#[source] io::Error),
    /// The MutatingWebhookConfiguration could not be read or patched.
    #[error("cannot read or patch MutatingWebhookConfiguration {name}")]
    WebhookConfiguration {
        /// Its name.
        name: String,
        /// The API error.
        #[source]
        source: Box<kube::Error>,
    },
    /// No entry of the webhook configuration calls our Service, so none can get our CA.
    #[error("no webhook of MutatingWebhookConfiguration {configuration} calls service {service}")]
    NoWebhookForService {
        /// The configuration's name.
        configuration: String,
        /// `namespace/name` of our Service.
        service: String,
    },
    /// The patch could not be encoded into the response.
    #[error("cannot encode json patch")]
    EncodePatch(#[source] kube::core::admission::SerializePatchError),
}

impl Error {
    /// Stable kebab-case kind, used as metric label.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::InvalidFlag { .. } => "invalid-flag",
            Self::LoadCertificate { .. } => "load-certificate",
            Self::Bind { .. } => "bind",
            Self::Serve { .. } => "serve",
            Self::KubeClient(_) => "kube-client",
            Self::NamespaceLookup { .. } => "namespace-lookup",
            Self::MalformedReview(_) => "malformed-review",
            Self::DecodePod(_) => "decode-pod",
            Self::NoNamespace => "no-namespace",
            Self::EncodePatch(_) => "encode-patch",
            Self::TlsSecret { .. } => "tls-secret",
            Self::TlsSecretContended { .. } => "tls-secret-contended",
            Self::Certificate(_) => "certificate",
            Self::TlsConfig(_) => "tls-config",
            Self::WebhookConfiguration { .. } => "webhook-configuration",
            Self::NoWebhookForService { .. } => "no-webhook-for-service",
        }
    }
}
