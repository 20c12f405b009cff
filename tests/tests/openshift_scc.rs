//! The OpenShift overlay's SecurityContextConstraints: every workload it ships is admitted,
//! by `restricted-v2` (OpenShift's default) when that suffices, otherwise by an SCC the
//! overlay ships naming its service account; and no SCC names a service account whose pods
//! `restricted-v2` already admits.

use causeway_tests::manifests::render;
use causeway_tests::scc;
use serde_json::Value;

#[test]
fn every_openshift_workload_is_admitted_by_the_least_scc_it_needs() {
    let docs = render("openshift");
    let restricted = scc::restricted_v2();
    let shipped: Vec<&Value> = docs
        .iter()
        .filter(|d| d["kind"] == "SecurityContextConstraints")
        .collect();
    let workloads: Vec<&Value> = docs
        .iter()
        .filter(|d| matches!(d["kind"].as_str(), Some("Deployment" | "DaemonSet")))
        .collect();
    assert!(workloads.len() >= 3, "node DaemonSet, DNS and webhook");
    let mut needed = Vec::new();
    for w in &workloads {
        let what = format!(
            "{} {}",
            w["kind"].as_str().unwrap_or("?"),
            w["metadata"]["name"].as_str().unwrap_or("?")
        );
        let ns = w["metadata"]["namespace"].as_str().unwrap_or_default();
        let spec = &w["spec"]["template"]["spec"];
        let sa = spec["serviceAccountName"].as_str().unwrap_or("default");
        let naming: Vec<&&Value> = shipped
            .iter()
            .filter(|s| {
                scc::service_accounts(s)
                    .iter()
                    .any(|(n, a)| n == ns && a == sa)
            })
            .collect();
        let under_restricted = scc::refusals(&restricted, spec);
        if under_restricted.is_empty() {
            assert!(
                naming.is_empty(),
                "{what}: restricted-v2 admits it, yet an SCC is shipped for {ns}/{sa}"
            );
            continue;
        }
        assert!(
            !naming.is_empty(),
            "{what} needs more than restricted-v2 ({under_restricted:?}) and no shipped SCC names {ns}/{sa}"
        );
        for s in naming {
            let refused = scc::refusals(s, spec);
            assert!(
                refused.is_empty(),
                "{what}: SCC {} names {ns}/{sa} but refuses it: {refused:?}",
                s["metadata"]["name"]
            );
            needed.push(s["metadata"]["name"].clone());
        }
    }
    for s in &shipped {
        assert!(
            needed.contains(&s["metadata"]["name"]),
            "SCC {} is shipped but admits no workload that needs it",
            s["metadata"]["name"]
        );
    }
}
