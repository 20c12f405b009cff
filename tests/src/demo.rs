//! Running the demo scripts (`tests/demo/*.sh`) from end-to-end tests, with the workspace's
//! already-built binaries.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Runs `tests/demo/<script>` with `CAUSEWAY_BIN_DIR` set to the directory of the
/// workspace's binaries (which must include `binaries`) and returns its stdout and stderr.
/// Panics with the output when it fails or does not finish within `timeout`; a script that
/// overruns gets SIGTERM first, so that its cleanup runs, and SIGKILL 15 s later.
pub fn run_script(script: &str, binaries: &[&str], timeout: Duration) -> String {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let bin_dir = bin_dir();
    for b in binaries {
        assert!(
            bin_dir.join(b).exists(),
            "{b} is not built in {} (run cargo test --workspace)",
            bin_dir.display()
        );
    }
    let mut child = Command::new("bash")
        .arg(root.join("tests/demo").join(script))
        .env("CAUSEWAY_BIN_DIR", &bin_dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("bash");
    // The scripts print little; reading their pipes after they exit cannot block them.
    let deadline = Instant::now() + timeout;
    let mut overran = false;
    while child.try_wait().expect("wait").is_none() {
        if Instant::now() > deadline && !overran {
            overran = true;
            let _ = Command::new("kill")
                .args(["-TERM", &child.id().to_string()])
                .status();
        }
        if Instant::now() > deadline + Duration::from_secs(15) {
            let _ = child.kill();
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let out = child.wait_with_output().expect("output");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!overran, "{script} did not finish in {timeout:?}:\n{text}");
    assert!(out.status.success(), "{script} failed:\n{text}");
    text
}

/// The lines `text` holds after the line containing `marker`, up to the next empty line.
pub fn lines_after(text: &str, marker: &str) -> Vec<String> {
    let i = text
        .find(marker)
        .unwrap_or_else(|| panic!("no {marker:?} in:\n{text}"));
    text[i + marker.len()..]
        .lines()
        .skip(1)
        .take_while(|l| !l.is_empty())
        .map(String::from)
        .collect()
}

/// A binary of the workspace (`causeway-tunnel`, ...), as `cargo test --workspace` built it.
pub fn workspace_binary(name: &str) -> PathBuf {
    let path = bin_dir().join(name);
    assert!(
        path.exists(),
        "{name} is not built in {} (run cargo test --workspace)",
        path.display()
    );
    path
}

/// Where cargo put the workspace's binaries: test executables live in
/// `target/<profile>/deps`, binaries one level up.
fn bin_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("current exe");
    exe.parent()
        .and_then(Path::parent)
        .expect("target/<profile>")
        .to_path_buf()
}
