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
use causeway_tests::apiserver::{Resource, TestApiServer};
use causeway_tests::demo::workspace_binary;
use causeway_tests::manifests::render;
use causeway_tests::netns::{ChildGuard, Netns};
use causeway_tests::rbac::{self, Access};
use causeway_tests::wait::poll;
use serde_json::json;

const NS: &str = "causeway";

/// Waits for `f`, failing with the binaries' logs.
fn until(what: &str, mut f: impl FnMut() -> bool, logs: &std::path::Path) -> Result<()> {
    if let Err(e) = poll(
        Duration::from_secs(30),
        Duration::from_millis(100),
        what,
        || f().then_some(()),
    ) {
        let read = |n: &str| std::fs::read_to_string(logs.join(n)).unwrap_or_default();
        bail!(
            "{e}
--- tunnel ---
{}
--- proxy ---
{}",
            read("tunnel.log"),
            read("proxy.log")
        );
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_node_pod_uses_exactly_what_its_service_account_is_granted() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let ns = Netns::new("nlp")?;
    ns.exec("ip", &["link", "add", "br0", "type", "bridge"])?;
    ns.exec("ip", &["addr", "add", "10.128.0.1/24", "dev", "br0"])?;
    ns.exec("ip", &["link", "set", "br0", "up"])?;
    let a = TestApiServer::start_in(&ns)?;
    for r in [
        Resource::grouped(
            "network.openshift.io",
            "v1",
            "HostSubnet",
            "hostsubnets",
            false,
        ),
        Resource::grouped("cilium.io", "v2", "CiliumNode", "ciliumnodes", false),
        Resource::grouped(
            "crd.projectcalico.org",
            "v1",
            "BlockAffinity",
            "blockaffinities",
            false,
        ),
    ] {
        a.register_resource(r);
    }
    let kubeconfig = dir.path().join("a.kubeconfig");
    a.write_kubeconfig(&kubeconfig, "a")?;
    a.apply(&json!({
        "apiVersion": "v1", "kind": "Node", "metadata": {"name": "a1"},
        "spec": {"podCIDRs": ["10.128.0.0/24"]},
        "status": {"addresses": [{"type": "InternalIP", "address": "192.0.2.11"}]},
    }))?;
    a.apply(&json!({
        "apiVersion": "v1", "kind": "Pod", "metadata": {"name": "causeway-node-x1", "namespace": NS},
        "spec": {"nodeName": "a1", "containers": [{"name": "tunnel", "image": "causeway"}]},
    }))?;
    let b_yaml = dir.path().join("b.yaml");
    let key_b1 = "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=";
    std::fs::write(
        &b_yaml,
        format!(
            "apiVersion: causeway.io/v1alpha1\nkind: TunnelEndpoint\nmetadata: {{ name: b1, namespace: causeway }}\n\
             spec: {{ node: b1, publicKey: \"{key_b1}\", endpoint: \"192.0.2.21:51820\", podCIDRs: [\"10.129.0.0/24\"] }}\n"
        ),
    )?;
    let cfg = dir.path().join("config.yaml");
    std::fs::write(
        &cfg,
        format!(
            "cluster: a\nclusters:\n\
             - name: a\n  podCIDRs: [\"10.128.0.0/16\"]\n  serviceCIDRs: [\"172.30.0.0/16\"]\n  source: {{ kubeconfig: {k} }}\n\
             - name: b\n  podCIDRs: [\"10.129.0.0/16\"]\n  serviceCIDRs: [\"172.31.0.0/16\"]\n  source: {{ file: {b} }}\n\
             tunnel: {{ endpoint: loadBalancer, metricsListen: \"127.0.0.1:19165\" }}\n\
             proxy: {{ interface: br0, backend: nftables, metricsListen: \"127.0.0.1:19164\" }}\n",
            k = kubeconfig.display(),
            b = b_yaml.display()
        ),
    )?;
    let cfg = cfg.to_string_lossy().to_string();
    let state = dir.path().join("state");
    let mut tunnel = ChildGuard::spawn(
        ns.command(workspace_binary("causeway-tunnel"))
            .args(["--config", &cfg, "--node-name", "a1", "--namespace", NS])
            .args([
                "--pod-name",
                "causeway-node-x1",
                "--userspace",
                "--state-dir",
            ])
            .arg(state.join("tunnel"))
            .stderr(std::fs::File::create(dir.path().join("tunnel.log"))?),
    )?;
    let mut proxy = ChildGuard::spawn(
        ns.command(workspace_binary("causeway-proxy"))
            .args(["--config", &cfg, "--state-dir"])
            .arg(state.join("proxy"))
            .stderr(std::fs::File::create(dir.path().join("proxy.log"))?),
    )?;
    let service = |a: &TestApiServer| {
        a.get_value("v1", "Service", NS, "causeway-tunnel-a1")
            .ok()
            .flatten()
    };
    until("the per-node Service", || service(&a).is_some(), dir.path())?;
    let mut svc = service(&a).expect("service");
    svc["status"] = json!({"loadBalancer": {"ingress": [{"ip": "192.0.2.100"}]}});
    a.apply(&svc)?;
    until(
        "the TunnelEndpoint with the VIP",
        || {
            a.get_value("causeway.io/v1alpha1", "TunnelEndpoint", NS, "a1")
                .ok()
                .flatten()
                .is_some_and(|te| te["spec"]["endpoint"] == "192.0.2.100:51820")
        },
        dir.path(),
    )?;
    let ready = |port: u16| {
        ns.exec(
            "curl",
            &[
                "-sf",
                "--max-time",
                "2",
                &format!("http://127.0.0.1:{port}/readyz"),
            ],
        )
        .is_ok()
    };
    until("both ready", || ready(19165) && ready(19164), dir.path())?;
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
