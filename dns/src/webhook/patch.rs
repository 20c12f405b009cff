//! The mutation itself: a pod (and the labels of its namespace) in, a JSON patch or the reason
//! for leaving the pod alone out. Pure, so every rule is checked by `cargo test` without a cluster.
//!
//! The patch makes the pod resolve through causeway-dns while keeping what `ClusterFirst` gives:
//! `dnsPolicy: None` and a `dnsConfig` listing the causeway-dns Service IP first, the three
//! `ClusterFirst` search domains first, `ndots:5`, then whatever the pod's own `dnsConfig` had,
//! merged the way the kubelet merges a `dnsConfig` into `ClusterFirst`.

use std::collections::BTreeMap;
use std::net::IpAddr;

use json_patch::jsonptr::PointerBuf;
use json_patch::{AddOperation, Patch, PatchOperation};
use k8s_openapi::api::core::v1::{Pod, PodDNSConfig, PodDNSConfigOption};

/// Kubernetes validation limits for `dnsPolicy: None` (`validatePodDNSConfig`, 1.28+). A patch
/// beyond them would make the API server reject the pod, which this webhook must never cause.
const MAX_NAMESERVERS: usize = 3;
const MAX_SEARCHES: usize = 32;
const MAX_SEARCH_CHARS: usize = 2048;

/// A `key: value` pair matched against labels or annotations.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Match {
    /// Label or annotation key, e.g. `causeway.io/dns`.
    pub key: String,
    /// Value the key must have, e.g. `enabled`.
    pub value: String,
}

impl Match {
    fn matches(&self, map: Option<&BTreeMap<String, String>>) -> bool {
        map.and_then(|m| m.get(&self.key)) == Some(&self.value)
    }
}

/// What the patch needs to know: where causeway-dns is, and which pods want it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PatchSettings {
    /// ClusterIP of the causeway-dns Service, written as the pod's first nameserver.
    pub nameserver: IpAddr,
    /// Cluster domain without a trailing dot, e.g. `cluster.local`.
    pub cluster_domain: String,
    /// Label on the pod or on its namespace that selects the pod.
    pub selector: Match,
    /// Annotation on the pod that opts it out even when selected.
    pub opt_out: Match,
    /// The `ndots` option `ClusterFirst` sets (5 in the kubelet).
    pub ndots: u8,
}

/// What selected a patched pod.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SelectedBy {
    /// The selector label is on the pod.
    Pod,
    /// The selector label is on the pod's namespace.
    Namespace,
}

/// Why a pod is admitted unchanged. `as_str` is the metric label and log field.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SkipReason {
    /// The request is not about a pod.
    NotPod,
    /// The operation is not CREATE: a pod's DNS settings cannot change after creation.
    NotCreate,
    /// The pod has no spec to patch.
    NoSpec,
    /// The pod carries the opt-out annotation.
    OptedOut,
    /// The pod uses the node's network namespace; it keeps its policy.
    HostNetwork,
    /// The pod asked for the node's resolver (`dnsPolicy: Default`).
    DefaultPolicy,
    /// The pod already has `dnsPolicy: None` with the causeway-dns nameserver: patched before.
    AlreadyPatched,
    /// The pod has `dnsPolicy: None` with its own `dnsConfig`; its author chose its DNS.
    OwnDnsConfig,
    /// Neither the pod nor its namespace has the selector label.
    NotSelected,
    /// Merging would exceed the API server's dnsConfig limits (3 nameservers, 32 searches).
    DnsConfigLimits,
}

impl SkipReason {
    /// Stable kebab-case name, used as metric label and log field.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::NotPod => "not-pod",
            Self::NotCreate => "not-create",
            Self::NoSpec => "no-spec",
            Self::OptedOut => "opted-out",
            Self::HostNetwork => "host-network",
            Self::DefaultPolicy => "default-policy",
            Self::AlreadyPatched => "already-patched",
            Self::OwnDnsConfig => "own-dns-config",
            Self::NotSelected => "not-selected",
            Self::DnsConfigLimits => "dns-config-limits",
        }
    }
}

/// The outcome for one pod.
#[derive(Debug, Clone, PartialEq)]
pub enum Decision {
    /// Apply this patch.
    Patch {
        /// JSON patch (RFC 6902) against the pod as received.
        patch: Patch,
        /// What selected the pod.
        selected_by: SelectedBy,
    },
    /// Admit the pod unchanged.
    Skip(SkipReason),
}

impl Decision {
    /// The patch, if any.
    pub fn patch(&self) -> Option<&Patch> {
        match self {
            Self::Patch { patch, .. } => Some(patch),
            Self::Skip(_) => None,
        }
    }

    /// The skip reason, if the pod is left alone.
    pub fn skip_reason(&self) -> Option<SkipReason> {
        match self {
            Self::Patch { .. } => None,
            Self::Skip(reason) => Some(*reason),
        }
    }
}

/// Decides what to do with `pod`, created in `namespace`.
///
/// `namespace_labels` is `None` when they were not looked up; then only the pod's own label can
/// select it. Callers look them up only when [`needs_namespace_labels`] says so.
pub fn plan(
    pod: &Pod,
    namespace: &str,
    namespace_labels: Option<&BTreeMap<String, String>>,
    settings: &PatchSettings,
) -> Decision {
    let Some(spec) = &pod.spec else {
        return Decision::Skip(SkipReason::NoSpec);
    };
    if settings.opt_out.matches(pod.metadata.annotations.as_ref()) {
        return Decision::Skip(SkipReason::OptedOut);
    }
    // Every hostNetwork pod keeps its policy, ClusterFirstWithHostNet included: those are node
    // agents, and causeway-dns itself may be one of them.
    if spec.host_network == Some(true) {
        return Decision::Skip(SkipReason::HostNetwork);
    }
    // An absent policy is defaulted to ClusterFirst by the API server before admission; a
    // non-hostNetwork pod with ClusterFirstWithHostNet behaves as ClusterFirst.
    match spec.dns_policy.as_deref() {
        Some("Default") => return Decision::Skip(SkipReason::DefaultPolicy),
        Some("None") => {
            let ours = settings.nameserver.to_string();
            let has_ours = spec
                .dns_config
                .as_ref()
                .and_then(|c| c.nameservers.as_ref())
                .is_some_and(|ns| ns.iter().any(|n| n.trim() == ours));
            return Decision::Skip(if has_ours {
                SkipReason::AlreadyPatched
            } else {
                SkipReason::OwnDnsConfig
            });
        }
        _ => {}
    }
    let selected_by = if settings.selector.matches(pod.metadata.labels.as_ref()) {
        SelectedBy::Pod
    } else if settings.selector.matches(namespace_labels) {
        SelectedBy::Namespace
    } else {
        return Decision::Skip(SkipReason::NotSelected);
    };

    let config = merged_dns_config(namespace, spec.dns_config.as_ref(), settings);
    if !within_limits(&config) {
        return Decision::Skip(SkipReason::DnsConfigLimits);
    }
    let patch = Patch(vec![
        add(&["spec", "dnsPolicy"], serde_json::Value::from("None")),
        add(
            &["spec", "dnsConfig"],
            serde_json::to_value(&config).expect("PodDNSConfig serializes to JSON"),
        ),
    ]);
    Decision::Patch { patch, selected_by }
}

/// Whether [`plan`] would decide differently once the namespace's labels are known: the pod is
/// eligible but its own labels do not select it. Avoids API lookups for every other pod.
pub fn needs_namespace_labels(pod: &Pod, namespace: &str, settings: &PatchSettings) -> bool {
    plan(pod, namespace, None, settings) == Decision::Skip(SkipReason::NotSelected)
}

/// `ClusterFirst`'s resolver settings followed by the pod's own, deduplicated.
fn merged_dns_config(
    namespace: &str,
    own: Option<&PodDNSConfig>,
    settings: &PatchSettings,
) -> PodDNSConfig {
    let domain = &settings.cluster_domain;
    let mut nameservers = vec![settings.nameserver.to_string()];
    let mut searches = vec![
        format!("{namespace}.svc.{domain}"),
        format!("svc.{domain}"),
        domain.clone(),
    ];
    let mut options = vec![PodDNSConfigOption {
        name: Some("ndots".to_owned()),
        value: Some(settings.ndots.to_string()),
    }];
    if let Some(own) = own {
        for ns in own.nameservers.iter().flatten() {
            if !nameservers.iter().any(|n| n == ns.trim()) {
                nameservers.push(ns.clone());
            }
        }
        for search in own.searches.iter().flatten() {
            if !searches.iter().any(|s| same_domain(s, search)) {
                searches.push(search.clone());
            }
        }
        // As the kubelet does: an option the pod sets replaces ClusterFirst's of the same name
        // in place (a pod's `ndots: 2` wins), others are appended.
        for option in own.options.iter().flatten() {
            match options
                .iter_mut()
                .find(|o| o.name.is_some() && o.name == option.name)
            {
                Some(existing) => existing.value.clone_from(&option.value),
                None => options.push(option.clone()),
            }
        }
    }
    PodDNSConfig {
        nameservers: Some(nameservers),
        searches: Some(searches),
        options: Some(options),
    }
}

fn same_domain(a: &str, b: &str) -> bool {
    a.trim_end_matches('.')
        .eq_ignore_ascii_case(b.trim_end_matches('.'))
}

fn within_limits(config: &PodDNSConfig) -> bool {
    let nameservers = config.nameservers.as_deref().unwrap_or_default();
    let searches = config.searches.as_deref().unwrap_or_default();
    // The API server counts the search list as one space-joined string.
    let search_chars = searches.iter().map(String::len).sum::<usize>() + searches.len();
    nameservers.len() <= MAX_NAMESERVERS
        && searches.len() <= MAX_SEARCHES
        && search_chars.saturating_sub(1) <= MAX_SEARCH_CHARS
}

fn add(path: &[&str], value: serde_json::Value) -> PatchOperation {
    PatchOperation::Add(AddOperation {
        path: PointerBuf::from_tokens(path.iter().copied()),
        value,
    })
}

#[cfg(test)]
mod tests {
    //! Merge rules on small pods; the fixture tests in `webhook::tests` cover whole reviews.
    //! causeway-dns is 192.0.2.53 (RFC 5737).

    use serde_json::{Value, json};

    use super::*;

    fn settings() -> PatchSettings {
        PatchSettings {
            nameserver: IpAddr::from([192, 0, 2, 53]),
            cluster_domain: "cluster.b".to_owned(),
            selector: Match {
                key: "causeway.io/dns".to_owned(),
                value: "enabled".to_owned(),
            },
            opt_out: Match {
                key: "causeway.io/dns".to_owned(),
                value: "disabled".to_owned(),
            },
            ndots: 5,
        }
    }

    fn pod(spec: Value) -> Pod {
        serde_json::from_value(json!({
            "metadata": {"name": "p", "labels": {"causeway.io/dns": "enabled"}},
            "spec": spec,
        }))
        .expect("pod")
    }

    fn dns_config(decision: &Decision) -> Value {
        let patch = decision.patch().expect("patched");
        let mut doc = json!({"spec": {}});
        json_patch::patch(&mut doc, patch).expect("applies");
        assert_eq!(doc["spec"]["dnsPolicy"], "None");
        doc["spec"]["dnsConfig"].clone()
    }

    #[test]
    fn cluster_domain_and_ndots_come_from_settings() {
        let mut settings = settings();
        settings.ndots = 3;
        let decision = plan(&pod(json!({"containers": []})), "web", None, &settings);
        assert_eq!(
            dns_config(&decision),
            json!({
                "nameservers": ["192.0.2.53"],
                "searches": ["web.svc.cluster.b", "svc.cluster.b", "cluster.b"],
                "options": [{"name": "ndots", "value": "3"}],
            })
        );
    }

    #[test]
    fn searches_dedupe_ignoring_case_and_trailing_dot() {
        let spec = json!({"containers": [], "dnsConfig": {
            "searches": ["Cluster.B.", "example.org", "example.org"],
            "nameservers": ["192.0.2.53"],
        }});
        let config = dns_config(&plan(&pod(spec), "web", None, &settings()));
        assert_eq!(
            config["searches"],
            json!([
                "web.svc.cluster.b",
                "svc.cluster.b",
                "cluster.b",
                "example.org"
            ])
        );
        assert_eq!(config["nameservers"], json!(["192.0.2.53"]));
    }

    #[test]
    fn non_host_network_cluster_first_with_host_net_is_patched() {
        let spec = json!({"containers": [], "dnsPolicy": "ClusterFirstWithHostNet"});
        assert!(plan(&pod(spec), "web", None, &settings()).patch().is_some());
    }

    #[test]
    fn default_policy_is_left_alone() {
        let spec = json!({"containers": [], "dnsPolicy": "Default"});
        assert_eq!(
            plan(&pod(spec), "web", None, &settings()),
            Decision::Skip(SkipReason::DefaultPolicy)
        );
    }

    #[test]
    fn own_none_policy_is_left_alone() {
        let spec = json!({"containers": [], "dnsPolicy": "None",
            "dnsConfig": {"nameservers": ["192.0.2.10"]}});
        assert_eq!(
            plan(&pod(spec), "web", None, &settings()),
            Decision::Skip(SkipReason::OwnDnsConfig)
        );
    }

    #[test]
    fn merge_beyond_api_server_limits_is_skipped() {
        let spec = json!({"containers": [], "dnsConfig": {
            "nameservers": ["192.0.2.10", "192.0.2.11", "192.0.2.12"],
        }});
        assert_eq!(
            plan(&pod(spec), "web", None, &settings()),
            Decision::Skip(SkipReason::DnsConfigLimits)
        );
        let searches: Vec<String> = (0..30).map(|i| format!("d{i}.example.org")).collect();
        let spec = json!({"containers": [], "dnsConfig": {"searches": searches}});
        assert_eq!(
            plan(&pod(spec), "web", None, &settings()),
            Decision::Skip(SkipReason::DnsConfigLimits)
        );
    }

    #[test]
    fn namespace_labels_are_needed_only_for_unselected_eligible_pods() {
        let unlabelled: Pod = serde_json::from_value(json!({
            "metadata": {"name": "p"}, "spec": {"containers": []},
        }))
        .expect("pod");
        assert!(needs_namespace_labels(&unlabelled, "web", &settings()));
        assert!(!needs_namespace_labels(
            &pod(json!({"containers": []})),
            "web",
            &settings()
        ));
        let host: Pod = serde_json::from_value(json!({
            "metadata": {"name": "p"}, "spec": {"containers": [], "hostNetwork": true},
        }))
        .expect("pod");
        assert!(!needs_namespace_labels(&host, "web", &settings()));
    }
}
