//! causeway-proxy restarted (kill -9) while a remote cluster's API is down: it turns ready
//! within seconds from the local cluster and the remote's last good state on disk (the
//! first-sync wait is set far longer than the test waits), keeps that remote's Service
//! programmed, and converges when the API returns with changed endpoints.
//!
//! Ranges: cluster a pods 10.128.0.0/16, services 172.30.0.0/16; cluster b pods
//! 10.129.0.0/16, services 172.31.0.0/16 (service demo/web 172.31.0.10:80).

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result};
use causeway_tests::apiserver::Mode;
use causeway_tests::cluster::{ConfigFile, TestCluster};
use causeway_tests::daemon::Daemon;
use causeway_tests::netns::{self, Netns};
use causeway_tests::objects;

const TELEMETRY: &str = "http://127.0.0.1:19158";
/// `/ipvs` at its default address, the namespace's loopback.
const DEBUG: &str = "http://127.0.0.1:9164";

fn web(b: &TestCluster, endpoint: &str) -> Result<()> {
    b.apply(&objects::service("demo", "web", "172.31.0.10", 80, 8080))?;
    b.apply(&objects::endpoint_slice(
        "demo",
        "web-1",
        "web",
        8080,
        &[endpoint],
    ))?;
    Ok(())
}

fn start(ns: &Netns, cfg: &Path, state: &Path, log: &Path) -> Result<Daemon> {
    Daemon::spawn(
        ns.command(env!("CARGO_BIN_EXE_causeway-proxy"))
            .arg("--config")
            .arg(cfg)
            .arg("--state-dir")
            .arg(state),
        log,
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_during_a_remote_outage_keeps_the_saved_backends_and_converges() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let ns = Netns::new("plkg")?;
    netns::bridge(&ns, "br0", None)?;
    let a = TestCluster::start_in(&ns, dir.path(), "a", &["10.128.0.0/16"], &["172.30.0.0/16"])?;
    let b = TestCluster::start_in(&ns, dir.path(), "b", &["10.129.0.0/16"], &["172.31.0.0/16"])?;
    web(&b, "10.129.0.5")?;
    let cfg = ConfigFile::new("a")
        .cluster(&a)
        .cluster(&b)
        .section("readiness", "{ remoteSyncTimeout: 120s }")
        .section(
            "proxy",
            "{ interface: br0, backend: nftables, metricsListen: \"127.0.0.1:19158\", minSyncInterval: 10ms, gracefulTerminationPeriod: 0s }",
        )
        .write(&dir.path().join("config.yaml"))?;
    let state = dir.path().join("state");
    let log = |n: u32| dir.path().join(format!("proxy-{n}.log"));
    let readyz = format!("{TELEMETRY}/readyz");
    let ipvs = || ns.http_get(&format!("{DEBUG}/ipvs")).1;
    let serves = |endpoint: &str| {
        let view = ipvs();
        view.contains("172.31.0.10:80") && view.contains(&format!("{endpoint}:8080"))
    };

    // Both APIs up: synced, b's service programmed, b's state saved.
    let mut proxy = start(&ns, &cfg, &state, &log(1))?;
    proxy
        .wait_for("b's service programmed", Duration::from_secs(30), || {
            ns.http_get(&readyz).0 == 200 && serves("10.129.0.5")
        })
        .with_context(|| format!("/ipvs: {}", ipvs()))?;
    let saved = state.join("cluster-b.json");
    proxy.wait_for("b's state file", Duration::from_secs(20), || saved.exists())?;

    // b's API goes down; the proxy is killed without a chance to clean up and restarts.
    b.server.set_mode(Mode::Refuse);
    proxy.kill();
    let started = Instant::now();
    let mut proxy = start(&ns, &cfg, &state, &log(2))?;
    proxy
        .wait_for("ready after the restart", Duration::from_secs(15), || {
            ns.http_get(&readyz).0 == 200
        })
        .with_context(|| format!("/readyz: {}", ns.http_get(&readyz).1))?;
    println!(
        "restart during b's outage: ready after {:.2} s",
        started.elapsed().as_secs_f64()
    );
    assert_eq!(ns.readyz_state(&readyz, "a"), "synced");
    assert_eq!(
        ns.readyz_state(&readyz, "b"),
        "stale-from-disk",
        "{}",
        ns.http_get(&readyz).1
    );
    assert!(serves("10.129.0.5"), "b's backend kept: {}", ipvs());

    // b's API comes back with the service moved to another pod: the fresh list wins.
    web(&b, "10.129.0.6")?;
    b.server.set_mode(Mode::Normal);
    proxy
        .wait_for("b to converge", Duration::from_secs(30), || {
            ns.readyz_state(&readyz, "b") == "synced"
                && serves("10.129.0.6")
                && !serves("10.129.0.5")
        })
        .with_context(|| format!("/ipvs: {}", ipvs()))?;
    Ok(())
}
