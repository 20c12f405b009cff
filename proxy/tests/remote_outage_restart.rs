//! causeway-proxy restarted (kill -9) while a remote cluster's API is down: it turns ready
//! within seconds from the local cluster and the remote's last good state on disk (the
//! first-sync wait is set far longer than the test waits), keeps that remote's Service
//! programmed, and converges when the API returns with changed endpoints.
//!
//! Ranges: cluster a pods 10.128.0.0/16, services 172.30.0.0/16; cluster b pods
//! 10.129.0.0/16, services 172.31.0.0/16 (service demo/web 172.31.0.10:80).

use std::time::{Duration, Instant};

use anyhow::{Result, bail};
use causeway_tests::apiserver::{Mode, TestApiServer};
use causeway_tests::netns::{ChildGuard, Netns, Signal};
use causeway_tests::wait::poll;
use serde_json::json;

const TELEMETRY: &str = "http://127.0.0.1:19158";

fn wait_for(what: &str, timeout: Duration, mut f: impl FnMut() -> bool) -> Result<()> {
    poll(timeout, Duration::from_millis(100), what, || {
        f().then_some(())
    })?;
    Ok(())
}

fn web(b: &TestApiServer, endpoint: &str) -> Result<()> {
    b.apply(&json!({
        "apiVersion": "v1", "kind": "Service", "metadata": {"name": "web", "namespace": "demo"},
        "spec": {"clusterIP": "172.31.0.10", "clusterIPs": ["172.31.0.10"], "type": "ClusterIP",
                 "ports": [{"name": "http", "port": 80, "targetPort": 8080, "protocol": "TCP"}]},
    }))?;
    b.apply(&json!({
        "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
        "metadata": {"name": "web-1", "namespace": "demo",
                     "labels": {"kubernetes.io/service-name": "web"}},
        "addressType": "IPv4",
        "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}],
        "endpoints": [{"addresses": [endpoint], "conditions": {"ready": true, "serving": true}}],
    }))?;
    Ok(())
}

fn start(ns: &Netns, cfg: &str, state: &str) -> Result<ChildGuard> {
    ns.spawn(
        env!("CARGO_BIN_EXE_causeway-proxy"),
        &["--config", cfg, "--state-dir", state],
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_during_a_remote_outage_keeps_the_saved_backends_and_converges() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let ns = Netns::new("plkg")?;
    ns.exec("ip", &["link", "add", "br0", "type", "bridge"])?;
    ns.exec("ip", &["link", "set", "br0", "up"])?;
    let (a, b) = (TestApiServer::start_in(&ns)?, TestApiServer::start_in(&ns)?);
    let (ka, kb) = (
        dir.path().join("a.kubeconfig"),
        dir.path().join("b.kubeconfig"),
    );
    a.write_kubeconfig(&ka, "a")?;
    b.write_kubeconfig(&kb, "b")?;
    web(&b, "10.129.0.5")?;
    let cfg = dir.path().join("config.yaml");
    std::fs::write(
        &cfg,
        format!(
            "cluster: a\nclusters:\n\
             - name: a\n  podCIDRs: [\"10.128.0.0/16\"]\n  serviceCIDRs: [\"172.30.0.0/16\"]\n  source: {{ kubeconfig: {} }}\n\
             - name: b\n  podCIDRs: [\"10.129.0.0/16\"]\n  serviceCIDRs: [\"172.31.0.0/16\"]\n  source: {{ kubeconfig: {} }}\n\
             readiness: {{ remoteSyncTimeout: 120s }}\n\
             proxy: {{ interface: br0, backend: nftables, metricsListen: \"127.0.0.1:19158\", minSyncInterval: 10ms, gracefulTerminationPeriod: 0s }}\n",
            ka.display(),
            kb.display()
        ),
    )?;
    let cfg = cfg.to_string_lossy().to_string();
    let state = dir.path().join("state");
    let state_s = state.to_string_lossy().to_string();
    let readyz = format!("{TELEMETRY}/readyz");
    let ipvs = || ns.http_get(&format!("{TELEMETRY}/ipvs")).1;
    let serves = |endpoint: &str| {
        let view = ipvs();
        view.contains("172.31.0.10:80") && view.contains(&format!("{endpoint}:8080"))
    };

    // Both APIs up: synced, b's service programmed, b's state saved.
    let proxy = start(&ns, &cfg, &state_s)?;
    if let Err(e) = wait_for("b's service programmed", Duration::from_secs(30), || {
        ns.http_get(&readyz).0 == 200 && serves("10.129.0.5")
    }) {
        bail!("{e}: {}: {}", ipvs(), proxy.kill_for_stderr());
    }
    let saved = state.join("cluster-b.json");
    wait_for("b's state file", Duration::from_secs(20), || saved.exists())?;

    // b's API goes down; the proxy is killed without a chance to clean up and restarts.
    b.set_mode(Mode::Refuse);
    proxy.signal(Signal::SIGKILL)?;
    let _ = proxy.wait(Duration::from_secs(10));
    let started = Instant::now();
    let proxy = start(&ns, &cfg, &state_s)?;
    if let Err(e) = wait_for("ready after the restart", Duration::from_secs(15), || {
        ns.http_get(&readyz).0 == 200
    }) {
        bail!(
            "{e}: {}: {}",
            ns.http_get(&readyz).1,
            proxy.kill_for_stderr()
        );
    }
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
    b.set_mode(Mode::Normal);
    if let Err(e) = wait_for("b to converge", Duration::from_secs(30), || {
        ns.readyz_state(&readyz, "b") == "synced" && serves("10.129.0.6") && !serves("10.129.0.5")
    }) {
        bail!("{e}: {}: {}", ipvs(), proxy.kill_for_stderr());
    }
    Ok(())
}
