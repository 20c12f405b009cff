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
    let text = scrub(
        &ops::script(&render_full(&layout(), &[], &d, &Kernel::tables(stale))),
        &d,
    );
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
    let text = ops::script(&render_full(&layout(), &keep, &d, &Kernel::default()));
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
    let text = ops::script(&render_full(&layout(), &[], &d, &Kernel::default()));
    assert!(!text.contains("nat-postrouting ip"), "{text}");
}

/// The kernel after `render_full` of `d` on an empty kernel, as a listing reads it back.
fn kernel_after(d: &DesiredState) -> Kernel {
    let ops = render_full(&layout(), &[], d, &Kernel::default());
    let mut tables = Tables::new();
    crate::backend::nft::layout::track(&mut tables, &ops);
    let mut seen = BTreeMap::new();
    let mut counts: BTreeMap<(String, String), usize> = BTreeMap::new();
    for op in &ops {
        if let Op::AddRule {
            table,
            chain,
            comment: Some(_),
            ..
        } = op
        {
            *counts.entry((table.clone(), chain.clone())).or_default() += 1;
        }
    }
    for (k, vs) in &d.services {
        let table = layout().table_of(k);
        let chain = names::service_chain(k, &vs.origin);
        let rules = counts[&(table.clone(), chain.clone())];
        seen.insert(
            *k,
            ChainSeen {
                table,
                chain,
                rules,
                whole: true,
            },
        );
    }
    Kernel {
        tables,
        services: d.clone(),
        seen,
    }
}

fn rules_in_service_chains(ops: &[Op]) -> Vec<String> {
    ops.iter()
        .filter_map(|op| match op {
            Op::AddRule { chain, .. } | Op::FlushChain { chain, .. }
                if chain.starts_with("svc-") =>
            {
                Some(chain.clone())
            }
            _ => None,
        })
        .collect()
}

#[tokio::test]
async fn a_full_apply_leaves_intact_service_chains_alone_and_rewrites_the_rest() {
    let d = desired(CLUSTER_B);
    assert!(d.services.len() >= 3, "{d:?}");
    let mut kernel = kernel_after(&d);
    // The same desired state again: only base chains, dispatch and maps are written.
    let ops = render_full(&layout(), &[], &d, &kernel);
    assert_eq!(rules_in_service_chains(&ops), Vec::<String>::new());
    assert!(
        !ops.iter()
            .any(|op| matches!(op, Op::FlushTable { table } if table != "causeway")),
        "service tables are not flushed"
    );
    assert!(
        ops.iter().any(|op| matches!(op, Op::AddElements { .. })),
        "maps refilled"
    );
    // One service lost a rule behind our back, another's comment names another scheduler,
    // a third's rules are not found: exactly those three are rewritten.
    let keys: Vec<VsKey> = d.services.keys().copied().collect();
    kernel.seen.get_mut(&keys[0]).unwrap().rules -= 1;
    kernel
        .services
        .services
        .get_mut(&keys[1])
        .unwrap()
        .scheduler = "lc".into();
    kernel.seen.remove(&keys[2]);
    let chain_of = |k: &VsKey| names::service_chain(k, &d.services[k].origin);
    let mut rewritten = rules_in_service_chains(&render_full(&layout(), &[], &d, &kernel));
    let mut expected: Vec<String> = keys[..3].iter().map(chain_of).collect();
    expected.sort();
    rewritten.sort();
    rewritten.dedup();
    assert_eq!(rewritten, expected);
    // A service no longer wanted: its chain is flushed, then deleted.
    let mut fewer = d.clone();
    fewer.services.remove(&keys[0]);
    let ops = render_full(&layout(), &[], &fewer, &kernel_after(&d));
    let gone = chain_of(&keys[0]);
    let flush = ops
        .iter()
        .position(|op| matches!(op, Op::FlushChain { chain, .. } if *chain == gone));
    let delete = ops
        .iter()
        .position(|op| matches!(op, Op::DeleteChain { chain, .. } if *chain == gone));
    assert!(flush.is_some() && flush < delete, "{ops:?}");
}
