//! Webhook metrics, registered at construction under the `causeway_webhook` prefix:
//! - `causeway_webhook_admissions_total{result, reason}`: `result` is `patched` (reason `pod` or
//!   `namespace`, what selected it), `skipped` (reason a skip reason such as `not-selected`) or
//!   `error` (reason the error kind; the pod was admitted unchanged).
//! - `causeway_webhook_certificate_reloads_total{result}`: `success` or `failure`.
//! - `causeway_webhook_certificates_issued_total{what}`: with a self-managed CA, `ca` (a new CA
//!   and serving certificate) or `serving` (a renewal from the same CA).
//! - `causeway_webhook_ca_bundle_published`: 1 when every entry of the webhook configuration
//!   that calls our Service carries our CA as `caBundle`, 0 when the last check failed (the API
//!   server then cannot call the webhook and, with `failurePolicy: Ignore`, admits pods
//!   without their DNS patch).

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use super::Error;
use super::patch::{Decision, SelectedBy};

/// Labels of `admissions_total`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct AdmissionLabels {
    /// `patched`, `skipped` or `error`.
    pub result: &'static str,
    /// Why: what selected the pod, the skip reason, or the error kind.
    pub reason: &'static str,
}

/// Labels of `certificate_reloads_total`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct ReloadLabels {
    /// `success` or `failure`.
    pub result: &'static str,
}

/// The webhook's counters. Cloning shares them.
#[derive(Debug, Clone, Default)]
pub struct Metrics {
    admissions: Family<AdmissionLabels, Counter>,
    certificate_reloads: Family<ReloadLabels, Counter>,
    issued: Family<IssuedLabels, Counter>,
    ca_bundle_published: Gauge,
}

/// Labels of `certificates_issued_total`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct IssuedLabels {
    /// `ca` or `serving`.
    pub what: &'static str,
}

impl Metrics {
    /// Creates the counters and registers them in `registry`.
    pub fn new(registry: &mut Registry) -> Self {
        let metrics = Self::default();
        let registry = registry.sub_registry_with_prefix("causeway_webhook");
        registry.register(
            "admissions",
            "Admission reviews answered, by result and reason",
            metrics.admissions.clone(),
        );
        registry.register(
            "certificate_reloads",
            "Reloads of the serving certificate after its files changed",
            metrics.certificate_reloads.clone(),
        );
        registry.register(
            "certificates_issued",
            "Certificates issued by the webhook's own CA: ca (new CA) or serving (renewal)",
            metrics.issued.clone(),
        );
        registry.register(
            "ca_bundle_published",
            "1 if every webhook entry calling our Service carries our CA as caBundle",
            metrics.ca_bundle_published.clone(),
        );
        metrics
    }

    /// Counts certificates issued: `ca` or `serving`.
    pub fn issued(&self, what: &'static str) {
        self.issued.get_or_create(&IssuedLabels { what }).inc();
    }

    /// Records whether `caBundle` is in place.
    pub fn ca_bundle_published(&self, ok: bool) {
        self.ca_bundle_published.set(i64::from(ok));
    }

    /// Counts one decided review.
    pub fn decided(&self, decision: &Decision) {
        let labels = match decision {
            Decision::Patch { selected_by, .. } => AdmissionLabels {
                result: "patched",
                reason: match selected_by {
                    SelectedBy::Pod => "pod",
                    SelectedBy::Namespace => "namespace",
                },
            },
            Decision::Skip(reason) => AdmissionLabels {
                result: "skipped",
                reason: reason.as_str(),
            },
        };
        self.admissions.get_or_create(&labels).inc();
    }

    /// Counts one review answered unchanged because of `error`.
    pub fn failed(&self, error: &Error) {
        let labels = AdmissionLabels {
            result: "error",
            reason: error.kind(),
        };
        self.admissions.get_or_create(&labels).inc();
    }

    /// Counts one certificate reload attempt.
    pub fn reloaded(&self, ok: bool) {
        let result = if ok { "success" } else { "failure" };
        self.certificate_reloads
            .get_or_create(&ReloadLabels { result })
            .inc();
    }
}
