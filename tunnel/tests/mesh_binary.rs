//! The `causeway-tunnel` binary end to end in a network namespace: its local cluster is a test
//! API server listening on the namespace's loopback (bound from inside it), the remote cluster
//! a YAML file source. It must pick the userspace backend, publish its key Secret and
//! TunnelEndpoint, peer with the remote node, program routes and the MSS clamp in its
//! namespace, serve `/status` and `/wg`, and exit cleanly on SIGTERM.
//!
//! Ranges: node a1 pod subnet 10.128.0.0/24 (bridge 10.128.0.1); cluster b pods
//! 10.129.0.0/16, services 172.31.0.0/16; endpoints 192.0.2.11/.21 (RFC 5737).

use std::time::Duration;

use anyhow::{Context as _, Result, bail};
use causeway_tests::apiserver::TestApiServer;
use causeway_tests::netns::{Netns, Signal};
use causeway_tests::wait::{WaitError, poll};
use causeway_tunnel::wg::PrivateKey;

use serde_json::json;

fn wait_for(what: &str, timeout: Duration, mut f: impl FnMut() -> bool) -> Result<(), WaitError> {
    poll(timeout, Duration::from_millis(100), what, || {
        f().then_some(())
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn binary_runs_a_node_end_to_end() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let ns = Netns::new("bin")?;
    ns.exec("ip", &["link", "add", "br0", "type", "bridge"])?;
    ns.exec("ip", &["addr", "add", "10.128.0.1/24", "dev", "br0"])?;
    ns.exec("ip", &["link", "set", "br0", "up"])?;

    // Cluster a's API server, listening on the namespace's loopback.
    let rt = tokio::runtime::Handle::current();
    let server = tokio::task::block_in_place(|| {
        ns.enter(move || {
            rt.block_on(TestApiServer::start_on(
                "127.0.0.1:0".parse().expect("addr"),
            ))
        })
    })??;
    let kubeconfig = dir.path().join("a.kubeconfig");
    server.write_kubeconfig(&kubeconfig, "a")?;
    server.apply(&json!({
        "apiVersion": "v1", "kind": "Node", "metadata": {"name": "a1"},
        "spec": {"podCIDR": "10.128.0.0/24", "podCIDRs": ["10.128.0.0/24"]},
        "status": {"addresses": [{"type": "InternalIP", "address": "192.0.2.11"}]},
    }))?;
    // Cluster b: a file source with one remote node.
    let key_b1 = PrivateKey::generate().public_key().to_base64();
    let b_yaml = dir.path().join("b.yaml");
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
             - name: a\n  podCIDRs: [\"10.128.0.0/16\"]\n  serviceCIDRs: [\"172.30.0.0/16\"]\n  source: {{ kubeconfig: {} }}\n\
             - name: b\n  podCIDRs: [\"10.129.0.0/16\"]\n  serviceCIDRs: [\"172.31.0.0/16\"]\n  source: {{ file: {} }}\n\
             tunnel: {{ endpoint: {{ address: \"192.0.2.11:51820\" }}, metricsListen: \"127.0.0.1:19155\" }}\n",
            kubeconfig.display(),
            b_yaml.display()
        ),
    )?;

    let cfg_s = cfg.to_string_lossy().to_string();
    let tunnel = ns.spawn(
        env!("CARGO_BIN_EXE_causeway-tunnel"),
        &[
            "--config",
            &cfg_s,
            "--node-name",
            "a1",
            "--namespace",
            "causeway",
            "--userspace",
        ],
    )?;
    let status = || {
        ns.exec(
            "curl",
            &["-s", "--max-time", "2", "http://127.0.0.1:19155/status"],
        )
        .unwrap_or_default()
    };
    let ready = wait_for(
        "the tunnel to peer with b1",
        Duration::from_secs(30),
        || status().contains(&key_b1),
    );
    if let Err(e) = ready {
        bail!("{e}: {}", tunnel.kill_for_stderr());
    }
    let doc: serde_json::Value = serde_json::from_str(&status())?;
    assert_eq!(doc["backend"], "userspace");
    assert_eq!(doc["interface"], "causeway0");
    assert_eq!(doc["peers"][0]["node"], "b1");
    assert_eq!(doc["peers"][0]["endpoint"], "192.0.2.21:51820");

    let routes = ns.exec("ip", &["route", "show", "proto", "147"])?;
    assert!(
        routes.contains("10.129.0.0/16 dev causeway0 scope link src 10.128.0.1"),
        "{routes}"
    );
    assert!(
        ns.exec("nft", &["list", "table", "inet", "causeway_tunnel"])?
            .contains("maxseg size set rt mtu")
    );
    let wg = ns.exec(
        "curl",
        &["-s", "--max-time", "2", "http://127.0.0.1:19155/wg"],
    )?;
    assert!(
        wg.contains("interface: causeway0 (userspace)") && wg.contains("private key: (hidden)"),
        "{wg}"
    );
    let metrics = ns.exec(
        "curl",
        &["-s", "--max-time", "2", "http://127.0.0.1:19155/metrics"],
    )?;
    assert!(metrics.contains("causeway_tunnel_peers 1"), "{metrics}");

    wait_for(
        "the published TunnelEndpoint",
        Duration::from_secs(10),
        || {
            server
                .get_value("causeway.io/v1alpha1", "TunnelEndpoint", "causeway", "a1")
                .ok()
                .flatten()
                .is_some_and(|te| te["spec"]["endpoint"] == "192.0.2.11:51820")
        },
    )?;
    let te = server
        .get_value("causeway.io/v1alpha1", "TunnelEndpoint", "causeway", "a1")?
        .context("te")?;
    assert_eq!(te["spec"]["publicKey"], doc["publicKey"]);
    assert!(
        server
            .get_value("v1", "Secret", "causeway", "causeway-tunnel-key-a1")?
            .is_some()
    );

    // SIGTERM: a clean exit.
    tunnel.signal(Signal::SIGTERM)?;
    let out = tunnel
        .wait(Duration::from_secs(10))
        .context("no exit within 10 s of SIGTERM")?;
    let logs = String::from_utf8_lossy(&out.stderr);
    let code = out.status;
    assert!(code.success(), "exit {code}: {logs}");
    assert!(logs.contains("wireguard backend chosen"), "{logs}");
    assert!(
        !logs.contains(&PrivateKeyText::of(&server)?),
        "the private key is never logged"
    );
    Ok(())
}

/// The base64 private key stored in a1's Secret.
struct PrivateKeyText;

impl PrivateKeyText {
    fn of(server: &TestApiServer) -> Result<String> {
        let s = server
            .get_value("v1", "Secret", "causeway", "causeway-tunnel-key-a1")?
            .context("secret")?;
        let b64 = s["data"]["privateKey"].as_str().context("data")?;
        use base64::Engine as _;
        Ok(String::from_utf8(
            base64::engine::general_purpose::STANDARD.decode(b64)?,
        )?)
    }
}
