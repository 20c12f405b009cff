//! The `causeway-tunnel` binary against a test API server: `rotate` replaces the node's key in
//! its Secret and prints the new public key; a bad configuration exits 2 before anything else.

mod cluster_kit;

use std::time::Duration;

use anyhow::Result;
use causeway_tunnel::keystore::KeyStore;
use cluster_kit::{NS, TestCluster};

async fn run(args: &[&str]) -> Result<std::process::Output> {
    let child = tokio::process::Command::new(env!("CARGO_BIN_EXE_causeway-tunnel"))
        .args(args)
        .env_remove("CAUSEWAY_CONFIG")
        .kill_on_drop(true)
        .output();
    Ok(tokio::time::timeout(Duration::from_secs(30), child).await??)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotate_subcommand_replaces_the_key() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let a = TestCluster::start(dir.path(), "a", "10.128.0.0/16", "172.30.0.0/16").await?;
    let cfg = dir.path().join("config.yaml");
    std::fs::write(
        &cfg,
        format!(
            "cluster: a\nclusters:\n  - name: a\n    podCIDRs: [\"10.128.0.0/16\"]\n    source: {{ kubeconfig: {} }}\n",
            a.kubeconfig.display()
        ),
    )?;
    let store = KeyStore::new(a.client().await?, NS, "a1");
    let (before, _) = store.load_or_create().await?;
    let cfg = cfg.to_string_lossy().to_string();
    let out = run(&[
        "--config",
        &cfg,
        "--node-name",
        "a1",
        "--namespace",
        NS,
        "rotate",
    ])
    .await?;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let printed = String::from_utf8(out.stdout)?.trim().to_string();
    let after = store.read().await?.expect("key");
    assert_eq!(printed, after.key.public_key().to_base64());
    assert_ne!(after.key.public_key(), before.key.public_key());
    let logs = String::from_utf8_lossy(&out.stderr);
    assert!(
        !logs.contains(&after.key.to_base64()),
        "the private key is never logged"
    );
    Ok(())
}

#[tokio::test]
async fn bad_configuration_exits_2_naming_the_field() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let cfg = dir.path().join("config.yaml");
    std::fs::write(
        &cfg,
        "cluster: a\nclusters:\n  - name: a\n    source: { inCluster: true }\ntunnel: { mtu: 100 }\n",
    )?;
    let out = run(&["--config", &cfg.to_string_lossy(), "--node-name", "a1"]).await?;
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("tunnel.mtu"));
    Ok(())
}
