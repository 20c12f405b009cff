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
