//! The webhook against real AdmissionReview bodies (tests/fixtures/webhook/*.json): decode,
//! decide, answer, then apply the answer's patch to the pod as the API server would.
//!
//! Addresses: causeway-dns is 192.0.2.53, a pod's own resolver 192.0.2.10 (RFC 5737).

use std::collections::BTreeMap;
use std::net::Ipv4Addr;

use k8s_openapi::api::core::v1::Pod;
use kube::core::DynamicObject;
use kube::core::admission::AdmissionReview;
use serde_json::{Value, json};

use super::patch::{self, Decision, Match, PatchSettings, SelectedBy, SkipReason};
use super::review::{self, Incoming, Subject};

const NAMESERVER: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 53);

fn settings() -> PatchSettings {
    PatchSettings {
        nameserver: NAMESERVER.into(),
        cluster_domain: "cluster.local".to_owned(),
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

fn fixture(name: &str) -> Vec<u8> {
    let path = format!(
        "{}/tests/fixtures/webhook/{name}",
        env!("CARGO_MANIFEST_DIR")
    );
    std::fs::read(&path).unwrap_or_else(|e| panic!("read {path}: {e}"))
}

/// What one review produced: the decision, the answer as JSON, the pod before and after.
struct Outcome {
    decision: Decision,
    answer: Value,
    before: Value,
    after: Value,
}

/// Runs a review body through the webhook's pure path, with `namespace_labels` standing in for
/// the namespace lookup.
fn review_body(body: &[u8], namespace_labels: &[(&str, &str)]) -> Outcome {
    let Incoming::Request(request) = review::parse(body).expect("review parses") else {
        panic!("request should decode");
    };
    let labels: BTreeMap<String, String> = namespace_labels
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    let decision = match review::subject(&request).expect("subject") {
        Subject::Skip(reason) => Decision::Skip(reason),
        Subject::Pod { pod, namespace } => {
            let looked_up = patch::needs_namespace_labels(&pod, &namespace, &settings());
            patch::plan(&pod, &namespace, looked_up.then_some(&labels), &settings())
        }
    };
    let answer = review::respond(&request, &decision).expect("answer encodes");
    let answer = serde_json::to_value(&answer).expect("answer serializes");
    let before = serde_json::to_value(request.object.as_ref().expect("object")).expect("object");
    let after = apply(&before, &answer);
    Outcome {
        decision,
        answer,
        before,
        after,
    }
}

fn review_fixture(name: &str, namespace_labels: &[(&str, &str)]) -> Outcome {
    review_body(&fixture(name), namespace_labels)
}

/// Applies the answer's patch the way the API server does, after checking the answer admits.
fn apply(pod: &Value, answer: &Value) -> Value {
    let review: AdmissionReview<DynamicObject> =
        serde_json::from_value(answer.clone()).expect("answer is an AdmissionReview");
    let response = review.response.expect("answer has a response");
    assert!(response.allowed, "the webhook never denies: {answer}");
    let mut pod = pod.clone();
    if let Some(bytes) = response.patch {
        assert_eq!(answer["response"]["patchType"], "JSONPatch");
        let patch: json_patch::Patch = serde_json::from_slice(&bytes).expect("patch is JSON");
        json_patch::patch(&mut pod, &patch).expect("patch applies");
    }
    pod
}

/// The same pod submitted again, as a new review: must be left alone.
fn second_pass(after: &Value) -> Decision {
    let pod: Pod = serde_json::from_value(after.clone()).expect("patched pod is a pod");
    let namespace = pod
        .metadata
        .namespace
        .clone()
        .unwrap_or_else(|| "shop".into());
    let labels = BTreeMap::from([("causeway.io/dns".to_owned(), "enabled".to_owned())]);
    patch::plan(&pod, &namespace, Some(&labels), &settings())
}

/// Everything but dnsPolicy and dnsConfig must come through the patch untouched.
fn assert_only_dns_changed(before: &Value, after: &Value) {
    let strip = |pod: &Value| {
        let mut pod = pod.clone();
        let spec = pod["spec"].as_object_mut().expect("spec");
        spec.remove("dnsPolicy");
        spec.remove("dnsConfig");
        pod
    };
    assert_eq!(strip(before), strip(after));
}

#[test]
fn pod_without_dns_config_gets_cluster_first_search_list() {
    let out = review_fixture("pod-without-dns-config.json", &[]);
    assert!(matches!(
        out.decision,
        Decision::Patch {
            selected_by: SelectedBy::Pod,
            ..
        }
    ));
    assert_eq!(out.answer["apiVersion"], "admission.k8s.io/v1");
    assert_eq!(out.answer["kind"], "AdmissionReview");
    assert_eq!(
        out.answer["response"]["uid"],
        "7f4d1c52-0c1e-4b8a-9f57-8d7c1f0e5a01"
    );
    assert_eq!(out.after["spec"]["dnsPolicy"], "None");
    assert_eq!(
        out.after["spec"]["dnsConfig"],
        json!({
            "nameservers": ["192.0.2.53"],
            "searches": ["demo.svc.cluster.local", "svc.cluster.local", "cluster.local"],
            "options": [{"name": "ndots", "value": "5"}],
        })
    );
    assert_only_dns_changed(&out.before, &out.after);
    assert_eq!(
        second_pass(&out.after),
        Decision::Skip(SkipReason::AlreadyPatched)
    );
}

#[test]
fn pod_with_dns_config_keeps_its_searches_options_and_nameservers() {
    let out = review_fixture("pod-with-dns-config.json", &[]);
    assert!(out.decision.patch().is_some());
    assert_eq!(out.after["spec"]["dnsPolicy"], "None");
    // ClusterFirst's entries first; the pod's duplicate `svc.cluster.local` folded in; the
    // pod's own ndots wins over ClusterFirst's, as the kubelet merges them.
    assert_eq!(
        out.after["spec"]["dnsConfig"],
        json!({
            "nameservers": ["192.0.2.53", "192.0.2.10"],
            "searches": [
                "demo.svc.cluster.local", "svc.cluster.local", "cluster.local", "corp.example.com"
            ],
            "options": [{"name": "ndots", "value": "2"}, {"name": "edns0"}],
        })
    );
    assert_only_dns_changed(&out.before, &out.after);
    assert_eq!(
        second_pass(&out.after),
        Decision::Skip(SkipReason::AlreadyPatched)
    );
}

#[test]
fn host_network_pod_keeps_its_policy() {
    let out = review_fixture("host-network-pod.json", &[]);
    assert_eq!(out.decision, Decision::Skip(SkipReason::HostNetwork));
    assert!(out.answer["response"].get("patch").is_none());
    assert_eq!(out.after, out.before);
    assert_eq!(out.after["spec"]["dnsPolicy"], "ClusterFirstWithHostNet");
}

#[test]
fn already_patched_pod_gets_an_empty_answer() {
    let out = review_fixture("already-patched-pod.json", &[]);
    assert_eq!(out.decision, Decision::Skip(SkipReason::AlreadyPatched));
    assert!(out.answer["response"].get("patch").is_none());
    assert_eq!(out.answer["response"]["allowed"], true);
    assert_eq!(out.after, out.before);
}

#[test]
fn opted_out_pod_is_left_alone() {
    let out = review_fixture("opted-out-pod.json", &[]);
    assert_eq!(out.decision, Decision::Skip(SkipReason::OptedOut));
    assert_eq!(out.after, out.before);
}

#[test]
fn namespace_label_selects_a_pod_without_the_label() {
    let out = review_fixture(
        "namespace-selected-pod.json",
        &[("causeway.io/dns", "enabled")],
    );
    assert!(matches!(
        out.decision,
        Decision::Patch {
            selected_by: SelectedBy::Namespace,
            ..
        }
    ));
    // The pod has only generateName and no namespace yet; the request's namespace is used.
    assert_eq!(
        out.after["spec"]["dnsConfig"]["searches"],
        json!([
            "shop.svc.cluster.local",
            "svc.cluster.local",
            "cluster.local"
        ])
    );
    assert_only_dns_changed(&out.before, &out.after);
    assert_eq!(
        second_pass(&out.after),
        Decision::Skip(SkipReason::AlreadyPatched)
    );
}

#[test]
fn pod_in_unselected_namespace_is_left_alone() {
    let out = review_fixture("namespace-selected-pod.json", &[("causeway.io/dns", "off")]);
    assert_eq!(out.decision, Decision::Skip(SkipReason::NotSelected));
    assert_eq!(out.after, out.before);
}

#[test]
fn malformed_request_with_uid_is_admitted_unchanged() {
    let Incoming::Unreadable { uid, error } =
        review::parse(&fixture("malformed-request.json")).expect("uid readable")
    else {
        panic!("the request's kind is not a GroupVersionKind");
    };
    assert_eq!(uid, "7f4d1c52-0c1e-4b8a-9f57-8d7c1f0e5a07");
    assert!(error.to_string().starts_with("malformed AdmissionReview: "));
    let answer = serde_json::to_value(review::allow_uid(&uid)).expect("serializes");
    assert_eq!(answer["apiVersion"], "admission.k8s.io/v1");
    assert_eq!(answer["response"]["uid"], uid.as_str());
    assert_eq!(answer["response"]["allowed"], true);
    assert!(answer["response"].get("patch").is_none());
}

#[test]
fn malformed_request_without_uid_is_refused() {
    let error = review::parse(&fixture("malformed-no-uid.json")).expect_err("no uid");
    assert!(
        error.to_string().starts_with("malformed AdmissionReview: "),
        "{error}"
    );
    let error = review::parse(b"not json").expect_err("not json");
    assert!(
        error
            .to_string()
            .starts_with("malformed AdmissionReview: body is not JSON"),
        "{error}"
    );
}

#[test]
fn update_is_not_patched() {
    let mut body: Value =
        serde_json::from_slice(&fixture("pod-without-dns-config.json")).expect("json");
    body["request"]["operation"] = json!("UPDATE");
    body["request"]["oldObject"] = body["request"]["object"].clone();
    let out = review_body(body.to_string().as_bytes(), &[]);
    assert_eq!(out.decision, Decision::Skip(SkipReason::NotCreate));
}

#[test]
fn other_kinds_are_not_patched() {
    let mut body: Value =
        serde_json::from_slice(&fixture("pod-without-dns-config.json")).expect("json");
    body["request"]["kind"] = json!({"group": "apps", "version": "v1", "kind": "Deployment"});
    let out = review_body(body.to_string().as_bytes(), &[]);
    assert_eq!(out.decision, Decision::Skip(SkipReason::NotPod));
}
