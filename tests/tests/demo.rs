//! The README's demo, run as an end-to-end test: real binaries, two test API servers,
//! answers checked.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

#[test]
fn demo_resolves_both_clusters_and_follows_changes() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    // Test binaries live in target/<profile>/deps; the workspace's binaries one level up.
    let bin_dir = std::env::current_exe()
        .unwrap()
        .parent()
        .unwrap()
        .parent()
        .unwrap()
        .to_path_buf();
    for b in ["causeway-dns", "causeway-test-apiserver"] {
        assert!(
            bin_dir.join(b).exists(),
            "{b} is not built in {} (run cargo test --workspace)",
            bin_dir.display()
        );
    }
    let mut child = Command::new("bash")
        .arg(root.join("tests/demo/demo.sh"))
        .env("CAUSEWAY_BIN_DIR", &bin_dir)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    while child.try_wait().unwrap().is_none() {
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            panic!("the demo did not finish in 120 s");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let out = child.wait_with_output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "demo failed:\n{text}");
    let after = |marker: &str| -> String {
        let i = text
            .find(marker)
            .unwrap_or_else(|| panic!("no {marker:?} in:\n{text}"));
        text[i + marker.len()..]
            .lines()
            .skip(1)
            .take_while(|l| !l.is_empty())
            .collect::<Vec<_>>()
            .join("\n")
    };
    assert_eq!(after("dig +short A web.demo.svc.cluster.a"), "172.30.0.80");
    assert_eq!(after("dig +short A web.demo.svc.cluster.b"), "172.31.0.80");
    let all = after("dig +short A web.demo.svc.cluster.all");
    assert!(
        all.contains("172.30.0.80") && all.contains("172.31.0.80"),
        "{all}"
    );
    let srv = after("dig +short SRV _http._tcp.web.demo.svc.cluster.all");
    assert!(
        srv.contains("web.demo.svc.cluster.a.") && srv.contains("web.demo.svc.cluster.b."),
        "{srv}"
    );
    assert_eq!(
        after("dig +short A db-0.db.demo.svc.cluster.b"),
        "10.132.1.30"
    );
    assert_eq!(
        after("dig +short PTR 80.0.31.172.in-addr.arpa"),
        "web.demo.svc.cluster.b."
    );
    assert!(text.contains("status: NXDOMAIN"), "{text}");
    assert_eq!(
        after("dig +short A cache.demo.svc.cluster.b"),
        "172.31.0.99",
        "live update"
    );
    // After cluster b's API is killed, its last answer is still served.
    let tail = &text[text.find("API goes away").unwrap()..];
    assert!(tail.contains("172.31.0.80"), "{tail}");
    assert!(tail.contains("\"connected\": false"), "{tail}");
}
