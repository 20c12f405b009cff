//! The IPVS backend through the `Backend` trait, against a real kernel's IPVS, with the
//! same battery as the nftables backend (`conformance`), and our `/ipvs` rendering
//! compared line for line with `ipvsadm -Ln` in the same kernel.
//!
//! This host has no IPVS, so on the host the test runs itself inside Debian's stock
//! kernel with [`causeway_tests::kernel_vm::run`]; it passes only if the guest run passed
//! and reported this run's nonce.

mod conformance;

use std::process::Command;

use causeway_proxy::backend::Backend;
use causeway_proxy::backend::ipvs::IpvsBackend;
use causeway_tests::kernel_vm;

const TEST_NAME: &str = "ipvs_backend_passes_the_conformance_battery_in_the_kernel_vm";

#[test]
fn ipvs_backend_passes_the_conformance_battery_in_the_kernel_vm() -> anyhow::Result<()> {
    kernel_vm::test(TEST_NAME, 300, || {
        in_vm();
        Ok(())
    })
}

fn backend() -> IpvsBackend {
    IpvsBackend::new(Box::new(|_| true)).expect("IPVS in the VM kernel")
}

fn in_vm() {
    let mut real = backend();
    conformance::run(&mut real, || Box::new(backend()));
    // Our rendering equals ipvsadm's own listing of the same kernel, header included.
    let ours =
        causeway_proxy::backend::ipvsadm::render_ipvsadm(&real.read().unwrap(), Default::default());
    let out = Command::new("ipvsadm")
        .arg("-Ln")
        .output()
        .expect("ipvsadm in the VM");
    assert_eq!(
        ours,
        String::from_utf8_lossy(&out.stdout),
        "/ipvs vs ipvsadm -Ln"
    );
}
