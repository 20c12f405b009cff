//! The nftables backend through the `Backend` trait, against the kernel in a network
//! namespace, checked against the fake with the shared battery (`conformance`).

mod conformance;
mod netns;

use causeway_proxy::backend::Backend;
use causeway_proxy::backend::nft::NftBackend;

#[test]
fn nft_backend_passes_the_conformance_battery() {
    let ns = netns::namespace("conf");
    let mut real = NftBackend::new("cwtest").shards(2).in_netns(ns.name());
    assert!(real.read().unwrap().services.is_empty(), "no table yet");
    let name = ns.name().to_string();
    conformance::run(&mut real, move || {
        Box::new(NftBackend::new("cwtest").shards(2).in_netns(&name))
    });

    // The tables hold nothing stale: the base table's chain, three per service table,
    // and the one service's chain.
    let table = ns.exec("nft", &["list", "ruleset"]).unwrap();
    assert_eq!(table.matches("\tchain ").count(), 1 + 2 * 3 + 1, "{table}");
    assert_eq!(table.matches("table inet cwtest").count(), 3, "{table}");
    assert!(
        !table.contains("set aff-"),
        "affinity sets removed:\n{table}"
    );
    // The adopted comments round-trip exactly, origins included.
    let adopted = NftBackend::new("cwtest")
        .shards(2)
        .in_netns(ns.name())
        .read()
        .unwrap()
        .to_desired(|_| None);
    assert_eq!(adopted, conformance::v3());
}

/// `(rule comment, handle)` of every rule of ours, sorted: a rule written again gets a new
/// handle (and a zero counter).
fn handles(ns: &causeway_tests::netns::Netns) -> Vec<(String, String)> {
    let text = ns.exec("nft", &["-a", "list", "ruleset"]).unwrap();
    let mut out: Vec<(String, String)> = text
        .lines()
        .filter(|l| l.contains("comment \"cw:"))
        .map(|l| {
            let comment = l.split("comment \"").nth(1).unwrap_or_default();
            let comment = comment.split('"').next().unwrap_or_default().to_string();
            let handle = l.rsplit("# handle ").next().unwrap_or_default().to_string();
            (comment, handle)
        })
        .collect();
    out.sort();
    out
}

#[test]
fn a_full_apply_keeps_the_rules_that_are_right_and_their_counters() {
    let ns = netns::namespace("keep");
    let open = || NftBackend::new("cwkeep").shards(2).in_netns(ns.name());
    let mut b = open();
    let v1 = conformance::v1();
    b.apply(&v1, None).unwrap();
    let first = handles(&ns);
    assert!(first.len() > 6, "{first:?}");
    // A periodic resync, then a restart (a new backend adopts and applies in full).
    b.apply(&v1, None).unwrap();
    assert_eq!(
        handles(&ns),
        first,
        "a resync rewrites nothing that is right"
    );
    let mut restarted = open();
    restarted.read().unwrap();
    restarted.apply(&v1, None).unwrap();
    assert_eq!(handles(&ns), first, "nor does a restart");
    // One service changes (the SCTP one gets a real server): in a full apply only its
    // rules are new, every other rule keeps its handle.
    let mut changed = v1.clone();
    let sctp = conformance::key(causeway_shared::model::Protocol::Sctp, "192.0.2.30:3868");
    changed
        .services
        .get_mut(&sctp)
        .unwrap()
        .reals
        .insert("198.51.100.30:3868".parse().unwrap(), 1);
    restarted.apply(&changed, None).unwrap();
    let after = handles(&ns);
    let (sctp_rules, others): (Vec<_>, Vec<_>) = after.iter().partition(|(c, _)| {
        c.contains("key=sctp/192.0.2.30/3868") || c.contains("to=198.51.100.30:3868")
    });
    assert_eq!(sctp_rules.len(), 2, "{after:?}");
    assert!(
        sctp_rules.iter().all(|r| !first.contains(r)),
        "the changed service was written again: {sctp_rules:?}"
    );
    let kept: Vec<(String, String)> = first
        .iter()
        .filter(|(c, _)| !c.contains("key=sctp/"))
        .cloned()
        .collect();
    assert_eq!(others.into_iter().cloned().collect::<Vec<_>>(), kept);
    assert_eq!(open().read().unwrap().to_desired(|_| None), changed);
}
