//! The kernel-VM runner (`tests/lab/kernel-vm.sh`) itself: one boot of Debian's stock kernel
//! that must (1) hand the guest command's exit status back, (2) pass `-e` variables in,
//! (3) share a host directory read-write over 9p at the same path, and (4) offer the kernel
//! features the VM tests rely on: the IPVS, WireGuard and Open vSwitch netlink families, and
//! the tools `ipvsadm`, `wg`, `ovs-vsctl`, `nft`.

use std::path::PathBuf;
use std::process::Command;

#[test]
fn runner_returns_status_passes_env_and_shares_a_directory() {
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("lab/kernel-vm.sh");
    let share = tempfile::tempdir().expect("tempdir");
    let share_path = share.path().to_str().expect("utf-8 path").to_string();
    let code = format!(
        r#"echo "value=$CAUSEWAY_VM_PROBE"
genl ctrl list | awk '/^Name:/{{print "family=" $2}}'
for t in ipvsadm wg ovs-vsctl ovs-vswitchd nft ip; do command -v "$t" >/dev/null && echo "tool=$t"; done
uname -r > {share_path}/guest-kernel
exit 7"#
    );
    let out = Command::new("timeout")
        .arg("900")
        .arg(&script)
        .args(["run", "-q", "-t", "600", "-s", &share_path])
        .args(["-e", "CAUSEWAY_VM_PROBE=it's passed"])
        .args(["-c", &code])
        .output()
        .expect("run kernel-vm.sh");
    let stdout = String::from_utf8_lossy(&out.stdout);
    println!(
        "--- stdout ---\n{stdout}\n--- stderr ---\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(out.status.code(), Some(7), "the guest's exit status");
    assert!(
        stdout.lines().any(|l| l == "value=it's passed"),
        "variable passed"
    );
    for family in ["IPVS", "wireguard", "ovs_datapath", "ovs_flow", "ovs_vport"] {
        assert!(
            stdout.lines().any(|l| l == format!("family={family}")),
            "netlink family {family} in the guest"
        );
    }
    for tool in ["ipvsadm", "wg", "ovs-vsctl", "ovs-vswitchd", "nft", "ip"] {
        assert!(
            stdout.lines().any(|l| l == format!("tool={tool}")),
            "{tool} in the guest"
        );
    }
    let kernel = std::fs::read_to_string(share.path().join("guest-kernel"))
        .expect("the guest wrote into the shared directory");
    let host = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    assert!(
        !kernel.trim().is_empty() && kernel.trim() != host.trim(),
        "the guest runs its own kernel ({}), not the host's",
        kernel.trim()
    );
}

#[test]
fn runner_reports_a_crashed_guest_and_a_timeout() {
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("lab/kernel-vm.sh");
    // `poweroff -f` before /init prints the status: the runner must not invent one.
    let crashed = Command::new(&script)
        .args(["run", "-q", "-t", "600", "-c", "poweroff -f; sleep 60"])
        .output()
        .expect("run kernel-vm.sh");
    assert_eq!(crashed.status.code(), Some(125), "no status line: 125");
    let timed_out = Command::new(&script)
        .args(["run", "-q", "-t", "20", "-c", "sleep 600"])
        .output()
        .expect("run kernel-vm.sh");
    assert_eq!(timed_out.status.code(), Some(124), "timeout: 124");
}
