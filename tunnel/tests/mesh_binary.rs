//! The `causeway-tunnel` binary end to end in a network namespace: its local cluster is a test
//! API server listening on the namespace's loopback (bound from inside it), the remote cluster
//! a YAML file source. It must pick the userspace backend, keep its key in its state directory
//! (never in the API), publish its TunnelEndpoint, peer with the remote node, program routes
//! and the MSS clamp in its namespace, serve `/status` and `/wg`, and exit cleanly on SIGTERM;
//! restarted on the same state directory it publishes the same key, on another a new one.
//!
//! Ranges: node a1 pod subnet 10.128.0.0/24 (bridge 10.128.0.1); cluster b pods
//! 10.129.0.0/16, services 172.31.0.0/16; endpoints 192.0.2.11/.21 (RFC 5737).

use std::path::Path;
use std::time::Duration;

use anyhow::{Context as _, Result, bail};
use causeway_tests::apiserver::TestApiServer;
use causeway_tests::netns::{ChildGuard, Netns, Signal};
use causeway_tests::wait::{WaitError, poll};
use causeway_tunnel::keystore::KeyStore;
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
    let server = TestApiServer::start_in(&ns)?;
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

    let state = dir.path().join("state-a1");
    let status = || {
        ns.exec(
            "curl",
            &["-s", "--max-time", "2", "http://127.0.0.1:19155/status"],
        )
        .unwrap_or_default()
    };
    let tunnel = wait_running(
        spawn_tunnel(&ns, &cfg, &state)?,
        "the tunnel to peer with b1",
        || status().contains(&key_b1),
    )?;
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
    let published = |server: &TestApiServer| {
        server
            .get_value("causeway.io/v1alpha1", "TunnelEndpoint", "causeway", "a1")
            .ok()
            .flatten()
            .map(|te| te["spec"]["publicKey"].clone())
    };
    let first_key = doc["publicKey"].clone();
    assert_eq!(published(&server), Some(first_key.clone()));
    // The key is in the state directory, not in the API.
    let stored = KeyStore::open(&state)?.read()?.context("a1's key file")?;
    assert_eq!(stored.key.public_key().to_base64(), first_key);
    assert_eq!(
        server.list_values("v1", "Secret", None)?,
        Vec::<serde_json::Value>::new()
    );

    // SIGTERM: a clean exit.
    let logs = stop(tunnel)?;
    assert!(logs.contains("wireguard backend chosen"), "{logs}");
    assert!(
        !logs.contains(&stored.key.to_base64()),
        "the private key is never logged"
    );

    // A restart on the same state directory is the same node: the same key, published again.
    let tunnel = wait_running(
        spawn_tunnel(&ns, &cfg, &state)?,
        "the restarted tunnel to peer with b1",
        || status().contains(&key_b1),
    )?;
    let doc: serde_json::Value = serde_json::from_str(&status())?;
    assert_eq!(
        doc["publicKey"], first_key,
        "same state directory, same key"
    );
    assert_eq!(published(&server), Some(first_key.clone()));
    stop(tunnel)?;

    // Another state directory (another node's disk, or a reset): a new key, published.
    let other = dir.path().join("state-other");
    let new_key = KeyStore::open(&other)?;
    let tunnel =
        wait_running(
            spawn_tunnel(&ns, &cfg, &other)?,
            "the new key in the TunnelEndpoint",
            || {
                new_key.read().ok().flatten().is_some_and(|k| {
                    published(&server) == Some(k.key.public_key().to_base64().into())
                })
            },
        )?;
    assert_ne!(published(&server), Some(first_key), "a different key");
    stop(tunnel)?;
    Ok(())
}

fn spawn_tunnel(ns: &Netns, cfg: &Path, state: &Path) -> Result<ChildGuard> {
    ns.spawn(
        env!("CARGO_BIN_EXE_causeway-tunnel"),
        &[
            "--config",
            &cfg.to_string_lossy(),
            "--node-name",
            "a1",
            "--namespace",
            "causeway",
            "--state-dir",
            &state.to_string_lossy(),
            "--userspace",
        ],
    )
}

/// Waits up to 30 s for `f` while `tunnel` runs; on a timeout, kills it and adds its logs.
fn wait_running(tunnel: ChildGuard, what: &str, f: impl FnMut() -> bool) -> Result<ChildGuard> {
    match wait_for(what, Duration::from_secs(30), f) {
        Ok(()) => Ok(tunnel),
        Err(e) => bail!("{e}: {}", tunnel.kill_for_stderr()),
    }
}

/// SIGTERM and a clean exit within 10 s; returns the logs.
fn stop(tunnel: ChildGuard) -> Result<String> {
    tunnel.signal(Signal::SIGTERM)?;
    let out = tunnel
        .wait(Duration::from_secs(10))
        .context("no exit within 10 s of SIGTERM")?;
    let logs = String::from_utf8_lossy(&out.stderr).into_owned();
    let code = out.status;
    assert!(code.success(), "exit {code}: {logs}");
    Ok(logs)
}
