use std::time::Duration;

use tokio::time::Instant;

use super::*;
use crate::plan::{PlanSettings, plan};
use crate::testdata::{CLUSTER_B, catalog_with, snapshot};

/// Two service tables keep the golden files short.
fn layout() -> Layout {
    Layout::new("causeway", 2)
}

fn desired(yaml: &str) -> DesiredState {
    plan(
        &catalog_with(yaml).snapshot(),
        &PlanSettings {
            stale_rules_expiry: Duration::ZERO,
        },
        Instant::now(),
    )
    .desired
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
                "/src/backend/nft/golden_full.nft.new"
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
                "/src/backend/nft/golden_partial.nft.new"
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
fn listing_round_trips_through_comments() {
    let d = desired(CLUSTER_B);
    // What the dumps read, reduced to what the parser uses.
    let l = layout();
    let rule = |chain: &str, comment: &str, packets| ListedRule {
        chain: chain.into(),
        comment: Some(comment.into()),
        packets: Some(packets),
    };
    let mut listing = Listing::default();
    // Another program's table with a look-alike comment is not ours.
    listing
        .tables
        .insert("other".into(), TableObjects::default());
    listing.rules.push((
        "other".into(),
        rule(
            "x",
            "cw:svc vs=zzzzzzzz key=tcp/192.0.2.99/80 sched=rr aff=0",
            1,
        ),
    ));
    for (k, vs) in &d.services {
        let t = l.table_of(k);
        let chain = names::service_chain(k, &vs.origin);
        let objects = listing.tables.entry(t.clone()).or_default();
        objects.chains.insert(chain.clone());
        listing
            .rules
            .push((t.clone(), rule(&chain, &svc_comment(k, vs), 3)));
        for (r, w) in &vs.reals {
            // A real server of weight w has w slot rules (and an affinity rule).
            for _ in 0..(*w).max(1) + u32::from(vs.affinity.is_some()) {
                let comment = format!("cw:ep vs={} w={w} to={r}", names::vs_hash(k));
                listing.rules.push((t.clone(), rule(&chain, &comment, 1)));
            }
        }
    }
    // Rules without a comment (dispatch) or counter are skipped or count nothing.
    listing.rules.push((
        l.table_of(d.services.keys().next().unwrap()),
        ListedRule {
            chain: "services".into(),
            ..Default::default()
        },
    ));
    let (state, tables) = parse_listing(&l, &listing);
    let chains: usize = tables.values().map(|t| t.chains.len()).sum();
    assert_eq!(chains, d.services.len());
    assert!(!tables.contains_key("other"));
    let back = state.to_desired(|_| None);
    assert_eq!(back, d);
    assert!(state.services.values().all(|s| s.stats.conns == 3));
    // Each real's counter is the sum over its rules.
    for (k, vs) in &d.services {
        for (r, w) in &vs.reals {
            let rules = (*w).max(1) + u32::from(vs.affinity.is_some());
            assert_eq!(state.services[k].reals[r].stats.conns, u64::from(rules));
        }
    }
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
