//! The `causeway-tunnel` binary's subcommands: `rotate` replaces the node's key in its state
//! directory (no API server needed) and prints the new public key; a bad configuration exits 2
//! before anything else.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Result;
use causeway_tunnel::keystore::KeyStore;

async fn run(args: &[&str]) -> Result<std::process::Output> {
    let child = tokio::process::Command::new(env!("CARGO_BIN_EXE_causeway-tunnel"))
        .args(args)
        .env_remove("CAUSEWAY_CONFIG")
        .env_remove("CAUSEWAY_STATE_DIR")
        .kill_on_drop(true)
        .output();
    Ok(tokio::time::timeout(Duration::from_secs(30), child).await??)
}

/// A configuration whose local cluster's API does not exist: the key file needs none.
fn config_without_api(dir: &Path) -> Result<PathBuf> {
    let cfg = dir.join("config.yaml");
    std::fs::write(
        &cfg,
        "cluster: a\nclusters:\n  - name: a\n    podCIDRs: [\"10.128.0.0/16\"]\n    source: { kubeconfig: /nonexistent }\n",
    )?;
    Ok(cfg)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotate_subcommand_replaces_the_key() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let cfg = config_without_api(dir.path())?;
    let state = dir.path().join("state");
    let store = KeyStore::open(&state)?;
    let (before, _) = store.load_or_create()?;
    let (cfg, state) = (cfg.to_string_lossy(), state.to_string_lossy());
    let out = run(&[
        "--config",
        &cfg,
        "--node-name",
        "a1",
        "--state-dir",
        &state,
        "rotate",
    ])
    .await?;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let printed = String::from_utf8(out.stdout)?.trim().to_string();
    let after = store.read()?.expect("key");
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
async fn a_corrupt_key_file_stops_the_start_naming_it() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let cfg = config_without_api(dir.path())?;
    let state = dir.path().join("state");
    let key_file = state.join("wireguard.key");
    std::fs::create_dir(&state)?;
    std::fs::write(&key_file, "{\"privateKey\": \"trunc")?;
    let out = run(&[
        "--config",
        &cfg.to_string_lossy(),
        "--node-name",
        "a1",
        "--state-dir",
        &state.to_string_lossy(),
    ])
    .await?;
    assert!(!out.status.success());
    let logs = String::from_utf8_lossy(&out.stderr);
    assert!(
        logs.contains(&format!("key file {}: ", key_file.display())) && logs.contains("delete it"),
        "{logs}"
    );
    assert_eq!(
        std::fs::read_to_string(&key_file)?,
        "{\"privateKey\": \"trunc",
        "the key file is left as it is"
    );
    Ok(())
}

#[tokio::test]
async fn a_file_source_for_the_local_cluster_is_a_configuration_error() -> Result<()> {
    let dir = tempfile::tempdir()?;
    std::fs::write(
        dir.path().join("a.yaml"),
        "apiVersion: v1\nkind: List\nitems: []\n",
    )?;
    let cfg = dir.path().join("config.yaml");
    std::fs::write(
        &cfg,
        "cluster: a\nclusters:\n  - name: a\n    source: { file: a.yaml }\n",
    )?;
    let state = dir.path().join("state");
    let out = run(&[
        "--config",
        &cfg.to_string_lossy(),
        "--node-name",
        "a1",
        "--state-dir",
        &state.to_string_lossy(),
    ])
    .await?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("cluster \"a\" (the local cluster): source:") && stderr.contains("a.yaml"),
        "{stderr}"
    );
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert!(
        !state.exists(),
        "nothing written before the configuration is accepted"
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
