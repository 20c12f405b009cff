//! The IPVS backend through the `Backend` trait, against a real kernel's IPVS, with the
//! same battery as the nftables backend (`conformance`), and our `/ipvs` rendering
//! compared line for line with `ipvsadm -Ln` in the same kernel.
//!
//! This host has no IPVS, so on the host the test boots Debian's stock kernel with
//! `shared/lab/kernel-vm.sh` (as `ipvs_kernel.rs` does) and runs this binary inside with
//! `CAUSEWAY_KERNEL_VM=1`; it passes only if the guest run passed and printed this run's
//! nonce.

mod conformance;

use std::path::PathBuf;
use std::process::Command;

use causeway_proxy::backend::Backend;
use causeway_proxy::backend::ipvs::IpvsBackend;

const TEST_NAME: &str = "ipvs_backend_passes_the_conformance_battery_in_the_kernel_vm";

#[test]
fn ipvs_backend_passes_the_conformance_battery_in_the_kernel_vm() {
    if std::env::var("CAUSEWAY_KERNEL_VM").as_deref() == Ok("1") {
        in_vm();
        println!(
            "CAUSEWAY_KERNEL_VM_OK {}",
            std::env::var("CAUSEWAY_KERNEL_VM_NONCE").unwrap_or_default()
        );
        return;
    }
    let script = std::env::var_os("CAUSEWAY_KERNEL_VM_SCRIPT")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/lab/kernel-vm.sh")
        });
    assert!(
        script.is_file(),
        "kernel VM script {} not found (set CAUSEWAY_KERNEL_VM_SCRIPT)",
        script.display()
    );
    let exe = std::env::current_exe().unwrap();
    let nonce = format!("{}-{:?}", std::process::id(), std::time::SystemTime::now());
    let nonce = nonce.replace([' ', '{', '}', ':', ','], "");
    let out = Command::new(&script)
        .args(["run", "-q", "-t", "300", "-s"])
        .arg(exe.parent().unwrap())
        .args(["-e", "CAUSEWAY_KERNEL_VM=1", "-e"])
        .arg(format!("CAUSEWAY_KERNEL_VM_NONCE={nonce}"))
        .arg("--")
        .arg(&exe)
        .args(["--exact", TEST_NAME, "--nocapture", "--test-threads=1"])
        .output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", script.display()));
    let stdout = String::from_utf8_lossy(&out.stdout);
    println!(
        "--- kernel VM ---\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success(),
        "the IPVS backend tests failed inside the kernel VM ({})",
        out.status
    );
    let marker = format!("CAUSEWAY_KERNEL_VM_OK {nonce}");
    assert!(
        stdout.lines().any(|l| l.trim().ends_with(&marker)),
        "the VM run did not report success"
    );
}

fn backend() -> IpvsBackend {
    IpvsBackend::new(Box::new(|_| true)).expect("IPVS in the VM kernel")
}

fn in_vm() {
    let mut real = backend();
    conformance::run(&mut real, || Box::new(backend()));
    // Our rendering equals ipvsadm's own listing of the same kernel, header included.
    let ours = causeway_proxy::debug::render_ipvsadm(&real.read().unwrap(), Default::default());
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
