//! Least privilege of causeway-dns: the real binary follows a local and a remote test API
//! server until ready; the requests it made to its own cluster must be exactly what the
//! rendered manifests grant the `causeway-dns` service account (both ways), and those to the
//! remote cluster must be within what `manifests/remote-access` grants the remote reader
//! (one way: that role also serves the other binaries).

mod common;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use causeway_tests::apiserver::TestApiServer;
use causeway_tests::manifests::render;
use causeway_tests::rbac::{self, Access};
use common::free_port;

fn accesses(api: &TestApiServer) -> Vec<Access> {
    api.requests()
        .iter()
        .filter_map(Access::from_record)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn causeway_dns_uses_exactly_what_its_service_account_is_granted() {
    let a = TestApiServer::start().await;
    let b = TestApiServer::start().await;
    let fixtures = Path::new(common::FIXTURES);
    a.load_file(&fixtures.join("cluster-a.yaml")).unwrap();
    b.load_file(&fixtures.join("cluster-b.yaml")).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = dir.path().join("kubeconfig");
    TestApiServer::write_kubeconfig_for(&kubeconfig, &[("a", &a), ("b", &b)]).unwrap();
    let (port, metrics) = (free_port(), free_port());
    let config = format!(
        "cluster: a
clusters:
- name: a
  podCIDRs: [192.0.2.0/25]
  serviceCIDRs: [198.51.100.0/25]
  source: {{kubeconfig: {k}, context: a}}
- name: b
  podCIDRs: [192.0.2.128/25]
  serviceCIDRs: [198.51.100.128/25]
  source: {{kubeconfig: {k}, context: b}}
dns:
  listen: [\"127.0.0.1:{port}\"]
  metricsListen: \"127.0.0.1:{metrics}\"
  upstreams: []
",
        k = kubeconfig.display()
    );
    let path = dir.path().join("config.yaml");
    std::fs::write(&path, config).unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_causeway-dns"))
        .arg("--config")
        .arg(&path)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let ready = Command::new("curl")
            .args(["-sf", &format!("http://127.0.0.1:{metrics}/readyz")])
            .output()
            .unwrap();
        if ready.status.success() {
            break;
        }
        assert!(Instant::now() < deadline, "causeway-dns not ready in 20 s");
        std::thread::sleep(Duration::from_millis(100));
    }
    // Past the first lists: the watches are open too.
    std::thread::sleep(Duration::from_millis(500));
    let _ = child.kill();
    let _ = child.wait();

    let base = render("kubernetes");
    let own = rbac::grants(&base, "causeway", "causeway-dns");
    if let Err(problems) = rbac::check(&own, &accesses(&a)) {
        panic!("causeway-dns's own RBAC is not least privilege:\n{problems}");
    }
    let remote = rbac::grants(
        &render("remote-access"),
        "causeway",
        "causeway-remote-reader",
    );
    let used_remotely = accesses(&b);
    assert!(!used_remotely.is_empty());
    if let Err(problems) = rbac::check_allowed(&remote, &used_remotely) {
        panic!("the remote reader role does not cover causeway-dns:\n{problems}");
    }
}
