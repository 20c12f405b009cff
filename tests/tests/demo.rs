//! The README's demo, run as an end-to-end test: real binaries, two test API servers,
//! answers checked.

use std::time::Duration;

use causeway_tests::demo::{lines_after, run_script};

#[test]
fn demo_resolves_both_clusters_and_follows_changes() {
    let text = run_script(
        "demo.sh",
        &["causeway-dns", "causeway-test-apiserver"],
        Duration::from_secs(120),
    );
    let after = |marker: &str| lines_after(&text, marker).join("\n");
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
