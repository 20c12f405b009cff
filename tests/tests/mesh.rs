//! The two-cluster mesh demo (`tests/demo/mesh.sh`) run as an end-to-end test: the real
//! causeway-dns, causeway-proxy and causeway-tunnel of two clusters in network namespaces,
//! each cluster's API a test API server. A pod of cluster a resolves cluster b's service
//! through glibc and fetches it over the tunnel, and the other way round.
//!
//! Ranges (all inside namespaces the script creates): pods 10.128.0.0/14 (a) and
//! 10.132.0.0/14 (b), services 172.30.0.0/16 (a) and 172.31.0.0/16 (b), underlay
//! 192.0.2.0/24 and 198.51.100.0/24, API servers 203.0.113.10 and .20.

use std::time::Duration;

use causeway_tests::demo::{lines_after, run_script};

#[test]
fn mesh_demo_reaches_services_across_the_tunnel_both_ways() {
    let text = run_script(
        "mesh.sh",
        &[
            "causeway-dns",
            "causeway-proxy",
            "causeway-tunnel",
            "causeway-test-apiserver",
        ],
        Duration::from_secs(100),
    );
    // A command's output lines, runs of blanks squeezed (getent pads with spaces and tabs).
    let after = |marker: &str| -> Vec<String> {
        lines_after(&text, marker)
            .iter()
            .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
            .collect()
    };
    // Each tunnel published itself to its own cluster.
    let te_a = after("$ kubectl --context a get tunnelendpoints -A");
    assert!(
        te_a[0].starts_with(
            "causeway/a-node-1 node=a-node-1 endpoint=192.0.2.2:51820 podCIDRs=10.128.1.0/24"
        ),
        "{te_a:?}"
    );
    let te_b = after("$ kubectl --context b get tunnelendpoints -A");
    assert!(
        te_b[0].starts_with(
            "causeway/b-node-1 node=b-node-1 endpoint=198.51.100.2:51820 podCIDRs=10.132.1.0/24"
        ),
        "{te_b:?}"
    );
    // a → b: glibc resolves through cluster a's causeway-dns; both of b's pods answer (round
    // robin), and they see the client pod's own address (not masqueraded).
    assert_eq!(
        after("$ getent hosts web.demo.svc.cluster.b"),
        ["172.31.0.80 web.demo.svc.cluster.b"]
    );
    let mut answers: Vec<String> = text
        .lines()
        .filter(|l| l.starts_with("hello from pod b-web"))
        .map(String::from)
        .collect();
    answers.sort();
    assert_eq!(
        answers,
        [
            "hello from pod b-web1, client 10.128.1.20",
            "hello from pod b-web2, client 10.128.1.20"
        ],
        "{text}"
    );
    let routes = after("$ ip route show proto 147");
    assert!(
        routes.contains(&"10.132.0.0/14 dev causeway0 scope link src 10.128.1.1".to_string())
            && routes
                .contains(&"172.31.0.0/16 dev causeway0 scope link src 10.128.1.1".to_string()),
        "{routes:?}"
    );
    // b → a.
    assert_eq!(
        after("$ getent hosts web.demo.svc.cluster.a"),
        ["172.30.0.80 web.demo.svc.cluster.a"]
    );
    assert_eq!(
        after("$ curl -s http://web.demo.svc.cluster.a/"),
        ["hello from pod a-web, client 10.132.1.20"]
    );
    // The merged zone: both ClusterIPs, the local cluster's first.
    let all = after("$ getent ahostsv4 web.demo.svc.cluster.all | grep STREAM");
    assert_eq!(all.len(), 2, "{all:?}");
    assert!(all[0].starts_with("172.30.0.80 STREAM"), "{all:?}");
    assert!(all[1].starts_with("172.31.0.80 STREAM"), "{all:?}");
    // The tunnel's own view: the userspace backend, the peer up after a handshake.
    let status = after("$ curl /status (the tunnel)");
    assert!(
        status[0].starts_with(
            "backend=userspace peer b/b-node-1 endpoint=198.51.100.2:51820 \
             allowedIPs=10.132.1.0/24,172.31.0.0/16 up=True lastHandshake="
        ),
        "{status:?}"
    );
    assert!(text.contains("==> done"), "{text}");
}
