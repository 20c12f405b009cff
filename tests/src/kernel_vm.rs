//! Running one test inside Debian's stock kernel, for the kernel features this host lacks
//! (IPVS, WireGuard, the Open vSwitch datapath).
//!
//! `tests/lab/kernel-vm.sh` (`CAUSEWAY_KERNEL_VM_SCRIPT` overrides the path) boots that
//! kernel under QEMU, shares the directory of the running test binary
//! over 9p and runs one test of that very binary inside with `CAUSEWAY_KERNEL_VM=1`. The
//! test calls [`inside`] to know which side it is on: inside it does the real work and then
//! [`report_ok`]; on the host it calls [`run`]. The host side passes only if the guest run
//! exited 0 *and* printed the nonce this run handed it, so a stale log or another run's
//! status cannot pass it. Nothing is built: the binary run inside is the one already built.
//! [`test`] is both sides in one call.

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

const IN_VM: &str = "CAUSEWAY_KERNEL_VM";
const NONCE: &str = "CAUSEWAY_KERNEL_VM_NONCE";
const MARKER: &str = "CAUSEWAY_KERNEL_VM_OK";

/// Time since boot on `CLOCK_MONOTONIC` (suspend not counted), as programs that read that
/// clock directly see it; `Instant` measures the same clock but does not expose its origin.
pub fn uptime() -> Duration {
    nix::time::clock_gettime(nix::time::ClockId::CLOCK_MONOTONIC)
        .map_or(Duration::ZERO, Duration::from)
}

/// Whether this process is the run inside the VM.
pub fn inside() -> bool {
    std::env::var(IN_VM).as_deref() == Ok("1")
}

/// Inside the VM, once the test's work succeeded: the line [`run`] looks for, on a line of
/// its own (libtest may have printed `test NAME ... ` without a newline).
pub fn report_ok() {
    println!("\n{MARKER} {}", std::env::var(NONCE).unwrap_or_default());
}

/// Both sides of the VM test `test` (the name of the running test function): inside the VM,
/// runs `inside_vm` and reports success with [`report_ok`]; on the host, boots the VM for it
/// with [`run`] (`guest_timeout_secs`, no extra environment).
pub fn test(
    test: &str,
    guest_timeout_secs: u32,
    inside_vm: impl FnOnce() -> anyhow::Result<()>,
) -> anyhow::Result<()> {
    if inside() {
        inside_vm()?;
        report_ok();
    } else {
        run(test, guest_timeout_secs, &[]);
    }
    Ok(())
}

/// On the host: runs `test` of the current test binary inside the VM, giving the guest
/// `guest_timeout_secs` and the script the extra environment `script_env`. Prints the VM's
/// output; panics unless the guest run passed and reported this run's nonce.
pub fn run(test: &str, guest_timeout_secs: u32, script_env: &[(&str, &str)]) {
    let script = std::env::var_os("CAUSEWAY_KERNEL_VM_SCRIPT").map_or_else(
        || PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("lab/kernel-vm.sh"),
        PathBuf::from,
    );
    assert!(
        script.is_file(),
        "kernel VM script {} not found (set CAUSEWAY_KERNEL_VM_SCRIPT)",
        script.display()
    );
    let exe = std::env::current_exe().expect("current_exe");
    let dir = exe.parent().expect("test binary has a directory");
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let nonce = format!("{}-{nanos}", std::process::id());
    let started = Instant::now();
    // `timeout` bounds a VM that hangs before its own guest timeout can act.
    let out = Command::new("timeout")
        .arg((guest_timeout_secs + 300).to_string())
        .arg(&script)
        .args(["run", "-q", "-t", &guest_timeout_secs.to_string(), "-s"])
        .arg(dir)
        .args(["-e", &format!("{IN_VM}=1"), "-e", "RUST_BACKTRACE=1", "-e"])
        .arg(format!("{NONCE}={nonce}"))
        .arg("--")
        .arg(&exe)
        .args(["--exact", test, "--nocapture", "--test-threads=1"])
        .envs(script_env.iter().copied())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", script.display()));
    let stdout = String::from_utf8_lossy(&out.stdout);
    println!(
        "--- kernel VM stdout ---\n{stdout}\n--- kernel VM stderr ---\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    println!(
        "kernel VM run took {:.1} s",
        started.elapsed().as_secs_f64()
    );
    assert!(
        out.status.success(),
        "{test} failed inside the kernel VM ({})",
        out.status
    );
    let marker = format!("{MARKER} {nonce}");
    assert!(
        stdout.lines().any(|l| l.trim() == marker),
        "the VM run of {test} did not report success ({marker})"
    );
}
