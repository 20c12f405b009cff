//! Least privilege of the node pod's service account (`causeway-node`, shared by
//! causeway-tunnel and causeway-proxy): both real binaries run in a network namespace against a
//! test API server for their own cluster that serves every kind they may read (the CNI node
//! subnet kinds included), until the tunnel has labelled its pod, created its per-node
//! LoadBalancer Service, published its TunnelEndpoint and then the Service's VIP, and the proxy
//! is ready. Every request they made must be granted to `causeway-node` by the rendered
//! manifests, and every grant must have been used (both ways).
//!
//! Ranges: node a1 pod subnet 10.128.0.0/24 (bridge 10.128.0.1); cluster b pods
//! 10.129.0.0/16, services 172.31.0.0/16; VIP 192.0.2.100 (RFC 5737).

use std::time::Duration;

use anyhow::{Result, bail};
use causeway_tests::apiserver::CNI_RESOURCES;
use causeway_tests::daemon::Daemon;
use causeway_tests::demo::workspace_binary;
use causeway_tests::manifests::render;
use causeway_tests::node_lab::NodeLab;
use causeway_tests::objects;
use causeway_tests::rbac::{self, Access};
use causeway_tests::wait::poll_until;
use serde_json::json;

const NS: &str = "causeway";

/// Waits up to 30 s for `f`, failing with both binaries' logs.
fn until(what: &str, mut f: impl FnMut() -> bool, tunnel: &Daemon, proxy: &Daemon) -> Result<()> {
    if let Err(e) = poll_until(Duration::from_secs(30), what, &mut f) {
        bail!(
            "{e}
--- tunnel ---
{}
--- proxy ---
{}",
            tunnel.log(),
            proxy.log()
        );
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_node_pod_uses_exactly_what_its_service_account_is_granted() -> Result<()> {
    let lab = NodeLab::new("nlp")?;
    let a = &lab.a.server;
    for r in CNI_RESOURCES {
        a.register_resource(*r);
    }
    a.apply(&json!({
        "apiVersion": "v1", "kind": "Pod", "metadata": {"name": "causeway-node-x1", "namespace": NS},
        "spec": {"nodeName": "a1", "containers": [{"name": "tunnel", "image": "causeway"}]},
    }))?;
    let key_b1 = "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=";
    lab.write_b(&[objects::tunnel_endpoint(
        "b1",
        key_b1,
        "192.0.2.21:51820",
        "10.129.0.0/24",
    )])?;
    let cfg = lab
        .config()
        .section(
            "tunnel",
            "{ endpoint: loadBalancer, metricsListen: \"127.0.0.1:19165\" }",
        )
        .section(
            "proxy",
            "{ interface: br0, backend: nftables, metricsListen: \"127.0.0.1:19164\" }",
        )
        .write(&lab.dir.path().join("config.yaml"))?;
    let state = lab.dir.path().join("state");
    let mut tunnel = lab.spawn(
        lab.ns
            .command(workspace_binary("causeway-tunnel"))
            .arg("--config")
            .arg(&cfg)
            .args(["--node-name", "a1", "--namespace", NS])
            .args([
                "--pod-name",
                "causeway-node-x1",
                "--userspace",
                "--state-dir",
            ])
            .arg(state.join("tunnel")),
        "tunnel.log",
    )?;
    let mut proxy = lab.spawn(
        lab.ns
            .command(workspace_binary("causeway-proxy"))
            .arg("--config")
            .arg(&cfg)
            .arg("--state-dir")
            .arg(state.join("proxy")),
        "proxy.log",
    )?;
    let service = || {
        a.get_value("v1", "Service", NS, "causeway-tunnel-a1")
            .ok()
            .flatten()
    };
    until(
        "the per-node Service",
        || service().is_some(),
        &tunnel,
        &proxy,
    )?;
    let mut svc = service().expect("service");
    svc["status"] = json!({"loadBalancer": {"ingress": [{"ip": "192.0.2.100"}]}});
    a.apply(&svc)?;
    until(
        "the TunnelEndpoint with the VIP",
        || {
            lab.a
                .tunnel_endpoint("a1")
                .is_some_and(|te| te["spec"]["endpoint"] == "192.0.2.100:51820")
        },
        &tunnel,
        &proxy,
    )?;
    let ready = |port: u16| {
        lab.ns
            .http_get(&format!("http://127.0.0.1:{port}/readyz"))
            .0
            == 200
    };
    until(
        "both ready",
        || ready(19165) && ready(19164),
        &tunnel,
        &proxy,
    )?;
    // Past the first lists: the watches are open too.
    std::thread::sleep(Duration::from_millis(500));
    tunnel.kill();
    proxy.kill();

    let used: Vec<Access> = rbac::accesses(&a.requests());
    for overlay in ["kubernetes", "openshift"] {
        let granted = rbac::grants(&render(overlay), NS, "causeway-node");
        if let Err(problems) = rbac::check(&granted, &used) {
            panic!("{overlay}: causeway-node's RBAC is not least privilege:\n{problems}");
        }
    }
    Ok(())
}
