//! The nftables backend through the `Backend` trait, against the kernel in a network
//! namespace, checked against the fake with the shared battery (`conformance`).

mod conformance;
mod netns;

use causeway_proxy::backend::Backend;
use causeway_proxy::backend::nft::NftBackend;

#[test]
fn nft_backend_passes_the_conformance_battery() {
    let ns = netns::Netns::new(format!("cwp-{}-conf", std::process::id()));
    let mut real = NftBackend::new("cwtest").shards(2).in_netns(&ns.0);
    assert!(real.read().unwrap().services.is_empty(), "no table yet");
    let name = ns.0.clone();
    conformance::run(&mut real, move || {
        Box::new(NftBackend::new("cwtest").shards(2).in_netns(&name))
    });

    // The tables hold nothing stale: the base table's chain, three per service table,
    // and the one service's chain.
    let table = netns::run(&format!("ip netns exec {} nft list ruleset", ns.0));
    assert_eq!(table.matches("\tchain ").count(), 1 + 2 * 3 + 1, "{table}");
    assert_eq!(table.matches("table inet cwtest").count(), 3, "{table}");
    assert!(
        !table.contains("set aff-"),
        "affinity sets removed:\n{table}"
    );
    // The adopted comments round-trip exactly, origins included.
    let adopted = NftBackend::new("cwtest")
        .shards(2)
        .in_netns(&ns.0)
        .read()
        .unwrap()
        .to_desired(|_| None);
    assert_eq!(adopted, conformance::v3());
}
