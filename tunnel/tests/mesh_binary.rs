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

use anyhow::{Context as _, Result};
use causeway_tests::daemon::Daemon;
use causeway_tests::node_lab::NodeLab;
use causeway_tests::objects;
use causeway_tests::wait::poll_until;
use causeway_tunnel::keystore::KeyStore;
use causeway_tunnel::wg::PrivateKey;

/// The node's tunnel metrics and probes, on the pod bridge's address inside its namespace.
const TELEMETRY: &str = "http://10.128.0.1:19155";
/// The tunnel's debug views, at their default address (the namespace's loopback).
const DEBUG: &str = "http://127.0.0.1:9165";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn binary_runs_a_node_end_to_end() -> Result<()> {
    // Cluster a's API server, listening on the namespace's loopback; cluster b: a file source
    // with one remote node.
    let lab = NodeLab::new("bin")?;
    let key_b1 = PrivateKey::generate().public_key().to_base64();
    lab.write_b(&[objects::tunnel_endpoint(
        "b1",
        &key_b1,
        "192.0.2.21:51820",
        "10.129.0.0/24",
    )])?;
    let cfg = lab
        .config()
        .section(
            "tunnel",
            "{ endpoint: { address: \"192.0.2.11:51820\" }, metricsListen: \"0.0.0.0:19155\" }",
        )
        .write(&lab.dir.path().join("config.yaml"))?;
    let server = &lab.a.server;
    let get = |path: &str| lab.ns.http_get(&format!("{TELEMETRY}{path}")).1;
    let debug = |path: &str| lab.ns.http_get(&format!("{DEBUG}{path}")).1;

    let state = lab.dir.path().join("state-a1");
    let status = || debug("/status");
    let mut tunnel = spawn_tunnel(&lab, &cfg, &state, "tunnel-1.log")?;
    tunnel.wait_for(
        "the tunnel to peer with b1",
        Duration::from_secs(30),
        || status().contains(&key_b1),
    )?;
    let doc: serde_json::Value = serde_json::from_str(&status())?;
    assert_eq!(doc["backend"], "userspace");
    assert_eq!(doc["interface"], "causeway0");
    assert_eq!(doc["peers"][0]["node"], "b1");
    assert_eq!(doc["peers"][0]["endpoint"], "192.0.2.21:51820");

    let routes = lab.ns.exec("ip", &["route", "show", "proto", "147"])?;
    assert!(
        routes.contains("10.129.0.0/16 dev causeway0 scope link src 10.128.0.1"),
        "{routes}"
    );
    assert!(
        lab.ns
            .exec("nft", &["list", "table", "inet", "causeway_tunnel"])?
            .contains("maxseg size set rt mtu")
    );
    let wg = debug("/wg");
    assert!(
        wg.contains("interface: causeway0 (userspace)") && wg.contains("private key: (hidden)"),
        "{wg}"
    );
    let metrics = get("/metrics");
    assert!(metrics.contains("causeway_tunnel_peers 1"), "{metrics}");
    // The debug views are not on the metrics listener, and listen on loopback only.
    assert_eq!(lab.ns.http_get(&format!("{TELEMETRY}/status")).0, 404);
    assert_eq!(lab.ns.http_get("http://10.128.0.1:9165/status").0, 0);

    poll_until(
        Duration::from_secs(10),
        "the published TunnelEndpoint",
        || {
            lab.a
                .tunnel_endpoint("a1")
                .is_some_and(|te| te["spec"]["endpoint"] == "192.0.2.11:51820")
        },
    )?;
    let published = || {
        lab.a
            .tunnel_endpoint("a1")
            .map(|te| te["spec"]["publicKey"].clone())
    };
    let first_key = doc["publicKey"].clone();
    assert_eq!(published(), Some(first_key.clone()));
    // The key is in the state directory, not in the API.
    let stored = KeyStore::open(&state)?.read()?.context("a1's key file")?;
    assert_eq!(stored.key.public_key().to_base64(), first_key);
    assert_eq!(
        server.list_values("v1", "Secret", None)?,
        Vec::<serde_json::Value>::new()
    );

    // SIGTERM: a clean exit.
    let logs = tunnel.stop(Duration::from_secs(10))?;
    assert!(logs.contains("wireguard backend chosen"), "{logs}");
    assert!(
        !logs.contains(&stored.key.to_base64()),
        "the private key is never logged"
    );

    // A restart on the same state directory is the same node: the same key, published again.
    let mut tunnel = spawn_tunnel(&lab, &cfg, &state, "tunnel-2.log")?;
    tunnel.wait_for(
        "the restarted tunnel to peer with b1",
        Duration::from_secs(30),
        || status().contains(&key_b1),
    )?;
    let doc: serde_json::Value = serde_json::from_str(&status())?;
    assert_eq!(
        doc["publicKey"], first_key,
        "same state directory, same key"
    );
    assert_eq!(published(), Some(first_key.clone()));
    tunnel.stop(Duration::from_secs(10))?;

    // Another state directory (another node's disk, or a reset): a new key, published.
    let other = lab.dir.path().join("state-other");
    let new_key = KeyStore::open(&other)?;
    let mut tunnel = spawn_tunnel(&lab, &cfg, &other, "tunnel-3.log")?;
    tunnel.wait_for(
        "the new key in the TunnelEndpoint",
        Duration::from_secs(30),
        || {
            new_key
                .read()
                .ok()
                .flatten()
                .is_some_and(|k| published() == Some(k.key.public_key().to_base64().into()))
        },
    )?;
    assert_ne!(published(), Some(first_key), "a different key");
    tunnel.stop(Duration::from_secs(10))?;
    Ok(())
}

/// The tunnel of node a1 on state directory `state` (userspace backend), logging to `log`.
fn spawn_tunnel(lab: &NodeLab, cfg: &Path, state: &Path, log: &str) -> Result<Daemon> {
    lab.spawn(
        lab.ns
            .command(env!("CARGO_BIN_EXE_causeway-tunnel"))
            .arg("--config")
            .arg(cfg)
            .args([
                "--node-name",
                "a1",
                "--namespace",
                "causeway",
                "--state-dir",
            ])
            .arg(state)
            .arg("--userspace"),
        log,
    )
}
