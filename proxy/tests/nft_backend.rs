//! The nftables backend through the `Backend` trait, against the kernel in a network
//! namespace, checked against the fake with the shared battery (`conformance`).

mod conformance;
mod netns;

use causeway_proxy::backend::Backend;
use causeway_proxy::backend::nft::NftBackend;

#[test]
fn nft_backend_passes_the_conformance_battery() {
    let ns = netns::Netns::new(format!("cwp-{}-conf", std::process::id()));
    let mut real = NftBackend::new("cwtest").in_netns(&ns.0);
    assert!(real.read().unwrap().services.is_empty(), "no table yet");
    let name = ns.0.clone();
    conformance::run(&mut real, move || {
        Box::new(NftBackend::new("cwtest").in_netns(&name))
    });

    // The table holds nothing stale: base chains plus the one service's chain.
    let table = netns::run(&format!(
        "ip netns exec {} nft list table inet cwtest",
        ns.0
    ));
    assert_eq!(table.matches("\tchain ").count(), 4 + 1, "{table}");
    assert!(
        !table.contains("set aff-"),
        "affinity sets removed:\n{table}"
    );
    // The adopted comments round-trip exactly, origins included.
    let adopted = NftBackend::new("cwtest")
        .in_netns(&ns.0)
        .read()
        .unwrap()
        .to_desired(|_| None);
    assert_eq!(adopted, conformance::v3());
}
