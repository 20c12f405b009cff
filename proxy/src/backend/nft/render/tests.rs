use ipnet::IpNet;

use super::*;
use crate::backend::nft::layout::{TableObjects, Tables};
use crate::backend::nft::ops;
use crate::testdata::{CLUSTER_B, desired, snapshot};

/// Two service tables keep the golden files short.
pub(in crate::backend::nft) fn layout() -> Layout {
    Layout::new("causeway", 2)
}

/// Replaces the 8-character hashes so the golden text reads well and survives no
/// accidental change (the hashes themselves are pinned in `names`).
fn scrub(text: &str, d: &DesiredState) -> String {
    let mut out = text.to_string();
    for (i, (k, vs)) in d.services.iter().enumerate() {
        out = out.replace(&names::vs_hash(k), &format!("VS{i:06}"));
        for (j, r) in vs.reals.keys().enumerate() {
            let aff = names::affinity_set(k, *r);
            let hash = &aff[4..12];
            out = out.replace(hash, &format!("E{i}{j:06}"));
        }
    }
    out
}

#[tokio::test]
async fn golden_full_ruleset() {
    let _ = snapshot();
    let d = desired(CLUSTER_B);
    let stale: Tables = [
        (
            "causeway".to_string(),
            TableObjects {
                chains: ["nat-postrouting".to_string()].into(),
                sets: Default::default(),
            },
        ),
        (
            "causeway-0".to_string(),
            TableObjects {
                chains: ["services".to_string(), "svc-old".to_string()].into(),
                sets: ["service-ips".to_string(), "aff-old".to_string()].into(),
            },
        ),
        // A service table of a larger shard count: deleted whole.
        ("causeway-7".to_string(), TableObjects::default()),
    ]
    .into();
    let text = scrub(&ops::script(&render_full(&layout(), &[], &d, &stale)), &d);
    let expected = include_str!("golden_full.nft");
    if text != expected {
        std::fs::write(
            concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/src/backend/nft/render/golden_full.nft.new"
            ),
            &text,
        )
        .unwrap();
    }
    assert_eq!(text, expected, "see golden_full.nft.new");
}

#[tokio::test]
async fn golden_partial_update() {
    let before = desired(CLUSTER_B);
    // One endpoint of web goes, and dns loses its affinity.
    let after_yaml = CLUSTER_B
        .replace("  - addresses: [198.51.100.12]\n    conditions: {ready: true}\n", "")
        .replace("    sessionAffinity: ClientIP\n    sessionAffinityConfig: {clientIP: {timeoutSeconds: 600}}\n", "");
    let after = desired(&after_yaml);
    let mut both = before.clone();
    both.services.extend(after.services.clone());
    let text = scrub(
        &ops::script(&render_partial(&layout(), &before, &after)),
        &before,
    );
    let expected = include_str!("golden_partial.nft");
    if text != expected {
        std::fs::write(
            concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/src/backend/nft/render/golden_partial.nft.new"
            ),
            &text,
        )
        .unwrap();
    }
    assert_eq!(text, expected, "see golden_partial.nft.new");
    assert_eq!(
        render_partial(&layout(), &after, &after),
        [],
        "no change, no command"
    );
}

#[test]
fn local_pods_keep_their_source_address() {
    let d = desired(CLUSTER_B);
    let keep: Vec<IpNet> = ["10.128.0.0/14", "fd00:128::/48", "10.132.0.1/16"]
        .iter()
        .map(|s| s.parse().unwrap())
        .collect();
    let text = ops::script(&render_full(&layout(), &keep, &d, &Tables::new()));
    let postrouting: Vec<&str> = text
        .lines()
        .filter(|l| l.starts_with("add rule inet causeway nat-postrouting"))
        .collect();
    assert_eq!(
        postrouting,
        [
            "add rule inet causeway nat-postrouting meta mark and 0x8000 == 0 return",
            "add rule inet causeway nat-postrouting meta mark set meta mark xor 0x8000",
            "add rule inet causeway nat-postrouting ip saddr 10.128.0.0/14 return",
            "add rule inet causeway nat-postrouting ip6 saddr fd00:128::/48 return",
            "add rule inet causeway nat-postrouting ip saddr 10.132.0.0/16 return",
            "add rule inet causeway nat-postrouting masquerade fully-random",
        ]
    );
    // Without local CIDRs everything we DNAT is masqueraded, as before.
    let text = ops::script(&render_full(&layout(), &[], &d, &Tables::new()));
    assert!(!text.contains("nat-postrouting ip"), "{text}");
}
