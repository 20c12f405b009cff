//! causeway-dns restarted (kill -9) while a remote cluster's API is down: it turns ready
//! within seconds from the local cluster and the remote's last good state on disk, keeps
//! answering the remote's names, and converges once the API is back.
//!
//! Two test API servers on loopback: "a" (local) and "b" (remote), with the objects of
//! the DNS fixtures (services 198.51.100.0/25 and 198.51.100.128/25, RFC 5737).

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use causeway_tests::apiserver::{Mode, TestApiServer};
use common::{Dns, FIXTURES, answers, ask, free_port, http_get};
use hickory_server::proto::rr::RecordType;

/// Much longer than the test waits for readiness: a ready binary proves the saved state
/// counted, not the wait running out.
const REMOTE_SYNC_TIMEOUT: &str = "120s";

fn config(dir: &Path) -> String {
    format!(
        "cluster: a
clusters:
- name: a
  podCIDRs: [192.0.2.0/25]
  serviceCIDRs: [198.51.100.0/25]
  source: {{kubeconfig: {a}}}
- name: b
  podCIDRs: [192.0.2.128/25]
  serviceCIDRs: [198.51.100.128/25]
  source: {{kubeconfig: {b}}}
readiness:
  remoteSyncTimeout: {REMOTE_SYNC_TIMEOUT}
dns:
  upstreams: [\"127.0.0.1:9\"]
",
        a = dir.join("a.kubeconfig").display(),
        b = dir.join("b.kubeconfig").display(),
    )
}

fn a_records(dns: &Dns, name: &str) -> Vec<String> {
    answers(&ask(dns.addr, name, RecordType::A, false))
}

fn until(what: &str, timeout: Duration, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn cluster_state(body: &str, cluster: &str) -> String {
    let v: serde_json::Value = serde_json::from_str(body).unwrap_or_default();
    v["clusters"]
        .as_array()
        .and_then(|cs| cs.iter().find(|c| c["cluster"] == cluster))
        .map(|c| c["state"].as_str().unwrap_or_default().to_string())
        .unwrap_or_default()
}

#[test]
fn restart_during_a_remote_outage_serves_the_saved_state_and_converges() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let (a, b) =
        rt.block_on(async { (TestApiServer::start().await, TestApiServer::start().await) });
    a.load_file(&Path::new(FIXTURES).join("cluster-a.yaml"))
        .unwrap();
    b.load_file(&Path::new(FIXTURES).join("cluster-b.yaml"))
        .unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    a.write_kubeconfig(&dir.join("a.kubeconfig"), "a").unwrap();
    b.write_kubeconfig(&dir.join("b.kubeconfig"), "b").unwrap();
    let state = dir.join("state");
    let state_arg = state.to_string_lossy().to_string();
    let flags = ["--state-dir", state_arg.as_str()];
    let config = config(dir);
    let port = free_port();
    let web_b = ["web.demo.svc.cluster.b. A 198.51.100.140"];

    // Both APIs up: synced, and b's state is saved.
    let mut dns = Dns::launch_with(dir, &config, true, port, &flags);
    assert_eq!(a_records(&dns, "web.demo.svc.cluster.b."), web_b);
    let (_, body) = http_get(dns.metrics, "/readyz");
    assert_eq!(cluster_state(&body, "b"), "synced", "{body}");
    let saved = state.join("cluster-b.json");
    until("b's state file", Duration::from_secs(20), || saved.exists());
    assert!(
        !state.join("cluster-a.json").exists(),
        "the local cluster is not saved: it must be listed to be ready anyway"
    );

    // b's API goes down, the binary is killed without a chance to clean up, and restarts.
    b.set_mode(Mode::Refuse);
    dns.child.kill().unwrap(); // SIGKILL
    dns.child.wait().unwrap();
    drop(dns);
    let started = Instant::now();
    let dns = Dns::launch_with(dir, &config, false, port, &flags);
    assert_eq!(
        dns.wait_readyz(200, Duration::from_secs(10)),
        200,
        "ready from the local cluster and b's saved state: {}",
        http_get(dns.metrics, "/readyz").1
    );
    assert!(started.elapsed() < Duration::from_secs(15));
    println!(
        "restart during b's outage: ready after {:.2} s",
        started.elapsed().as_secs_f64()
    );
    let (_, body) = http_get(dns.metrics, "/readyz");
    assert_eq!(cluster_state(&body, "a"), "synced", "{body}");
    assert_eq!(cluster_state(&body, "b"), "stale-from-disk", "{body}");
    assert_eq!(
        a_records(&dns, "web.demo.svc.cluster.b."),
        web_b,
        "b's names are served from disk"
    );
    let merged = a_records(&dns, "web.demo.svc.cluster.all.");
    assert!(
        merged.contains(&"web.demo.svc.cluster.all. A 198.51.100.140".to_string()),
        "{merged:?}"
    );
    let (_, metrics) = http_get(dns.metrics, "/metrics");
    assert!(
        metrics.contains("causeway_source_stale{cluster=\"b\"} 1"),
        "{metrics}"
    );
    until(
        "b's outage to show in /readyz",
        Duration::from_secs(10),
        || {
            let (_, body) = http_get(dns.metrics, "/readyz");
            body.contains("\"lastError\"")
        },
    );

    // b's API comes back with a changed service: the fresh list replaces the saved state.
    b.load_yaml(
        "apiVersion: v1
kind: Service
metadata: {name: web, namespace: demo}
spec:
  clusterIP: 198.51.100.141
  ports:
  - {name: http, port: 8080, protocol: TCP}
",
    )
    .unwrap();
    b.set_mode(Mode::Normal);
    until("b to converge", Duration::from_secs(20), || {
        let (_, body) = http_get(dns.metrics, "/readyz");
        cluster_state(&body, "b") == "synced"
            && a_records(&dns, "web.demo.svc.cluster.b.")
                == ["web.demo.svc.cluster.b. A 198.51.100.141"]
    });
    let (_, metrics) = http_get(dns.metrics, "/metrics");
    assert!(
        metrics.contains("causeway_source_stale{cluster=\"b\"} 0"),
        "{metrics}"
    );
    until(
        "b's state file to be rewritten",
        Duration::from_secs(20),
        || std::fs::read_to_string(&saved).is_ok_and(|t| t.contains("198.51.100.141")),
    );
}

#[test]
fn a_remote_that_never_synced_stops_holding_readiness_after_the_wait() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let (a, b) =
        rt.block_on(async { (TestApiServer::start().await, TestApiServer::start().await) });
    a.load_file(&Path::new(FIXTURES).join("cluster-a.yaml"))
        .unwrap();
    b.set_mode(Mode::Refuse);
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    a.write_kubeconfig(&dir.join("a.kubeconfig"), "a").unwrap();
    b.write_kubeconfig(&dir.join("b.kubeconfig"), "b").unwrap();
    let config = config(dir).replace(REMOTE_SYNC_TIMEOUT, "2s");
    let dns = Dns::launch_with(dir, &config, false, free_port(), &[]);
    assert_eq!(
        dns.wait_readyz(200, Duration::from_secs(15)),
        200,
        "{}",
        http_get(dns.metrics, "/readyz").1
    );
    let (_, body) = http_get(dns.metrics, "/readyz");
    assert_eq!(cluster_state(&body, "b"), "failed", "{body}");
    assert_eq!(
        a_records(&dns, "web.demo.svc.cluster.a."),
        ["web.demo.svc.cluster.a. A 198.51.100.10"]
    );
    let merged = a_records(&dns, "web.demo.svc.cluster.all.");
    assert_eq!(merged, ["web.demo.svc.cluster.all. A 198.51.100.10"]);
}
