//! The `causeway-tunnel` binary restarted (SIGKILL) while the remote cluster's API is down:
//! it turns ready within seconds from the local cluster and the remote's last good state on
//! disk, peers with the remote node it had saved, and converges once the API is back.
//!
//! One network namespace; clusters a (local) and b (remote) are test API servers on its
//! loopback. Ranges: node a1 pod subnet 10.128.0.0/24; cluster b pods 10.129.0.0/16;
//! endpoints 192.0.2.11/.21/.22 (RFC 5737).

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result};
use causeway_tests::apiserver::Mode;
use causeway_tests::cluster::{ConfigFile, TestCluster};
use causeway_tests::daemon::Daemon;
use causeway_tests::netns::{self, Netns};
use causeway_tests::wait::poll_until;
use causeway_tunnel::wg::PrivateKey;

const TELEMETRY: &str = "http://127.0.0.1:19156";
/// `/status` and `/wg` at their default address, the namespace's loopback.
const DEBUG: &str = "http://127.0.0.1:9165";

fn start(ns: &Netns, cfg: &Path, state: &Path, log: &Path) -> Result<Daemon> {
    Daemon::spawn(
        ns.command(env!("CARGO_BIN_EXE_causeway-tunnel"))
            .arg("--config")
            .arg(cfg)
            .args([
                "--node-name",
                "a1",
                "--namespace",
                "causeway",
                "--userspace",
            ])
            .arg("--state-dir")
            .arg(state),
        log,
    )
}

/// (HTTP status, body) of a GET of the tunnel's telemetry inside the namespace.
fn get(ns: &Netns, path: &str) -> (u16, String) {
    let at = if path.starts_with("/status") || path.starts_with("/wg") {
        DEBUG
    } else {
        TELEMETRY
    };
    ns.http_get(&format!("{at}{path}"))
}

fn state_of(ns: &Netns, cluster: &str) -> String {
    ns.readyz_state(&format!("{TELEMETRY}/readyz"), cluster)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_during_a_remote_outage_keeps_the_saved_peers_and_converges() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let ns = Netns::new("lkg")?;
    netns::bridge(&ns, "br0", Some("10.128.0.1/24"))?;
    let a = TestCluster::start_in(&ns, dir.path(), "a", &["10.128.0.0/16"], &[])?;
    let b = TestCluster::start_in(&ns, dir.path(), "b", &["10.129.0.0/16"], &[])?;
    a.add_node("a1", "10.128.0.0/24", "192.0.2.11")?;
    let key_b1 = PrivateKey::generate().public_key().to_base64();
    let key_b2 = PrivateKey::generate().public_key().to_base64();
    b.add_tunnel_endpoint("b1", &key_b1, "192.0.2.21:51820", "10.129.0.0/24")?;
    // The first-sync wait is far longer than the test waits for readiness: a ready tunnel
    // after the restart proves the saved state counted.
    let cfg = ConfigFile::new("a")
        .cluster(&a)
        .cluster(&b)
        .section("readiness", "{ remoteSyncTimeout: 120s }")
        .section(
            "tunnel",
            "{ endpoint: { address: \"192.0.2.11:51820\" }, metricsListen: \"127.0.0.1:19156\" }",
        )
        .write(&dir.path().join("config.yaml"))?;
    let state = dir.path().join("state");
    let log = |n: u32| dir.path().join(format!("tunnel-{n}.log"));
    let peers = |ns: &Netns| get(ns, "/status").1;

    // Both APIs up: synced, peered with b1, b's state saved.
    let mut tunnel = start(&ns, &cfg, &state, &log(1))?;
    tunnel.wait_for("b1 to be peered", Duration::from_secs(30), || {
        get(&ns, "/readyz").0 == 200 && peers(&ns).contains(&key_b1)
    })?;
    assert_eq!(state_of(&ns, "b"), "synced");
    let saved = state.join("cluster-b.json");
    poll_until(Duration::from_secs(20), "b's state file", || saved.exists())?;

    // b's API goes down; the tunnel is killed without a chance to clean up and restarts.
    b.server.set_mode(Mode::Refuse);
    tunnel.kill();
    let started = Instant::now();
    let mut tunnel = start(&ns, &cfg, &state, &log(2))?;
    tunnel
        .wait_for("ready after the restart", Duration::from_secs(15), || {
            get(&ns, "/readyz").0 == 200
        })
        .with_context(|| format!("/readyz: {}", get(&ns, "/readyz").1))?;
    assert!(started.elapsed() < Duration::from_secs(20));
    println!(
        "restart during b's outage: ready after {:.2} s",
        started.elapsed().as_secs_f64()
    );
    assert_eq!(state_of(&ns, "a"), "synced");
    assert_eq!(
        state_of(&ns, "b"),
        "stale-from-disk",
        "{}",
        get(&ns, "/readyz").1
    );
    tunnel.wait_for("b1 peered from disk", Duration::from_secs(15), || {
        peers(&ns).contains(&key_b1)
    })?;
    let metrics = get(&ns, "/metrics").1;
    assert!(
        metrics.contains("causeway_source_stale{cluster=\"b\"} 1"),
        "{metrics}"
    );

    // b's API comes back with a second node: the fresh list replaces the saved state.
    b.add_tunnel_endpoint("b2", &key_b2, "192.0.2.22:51820", "10.129.1.0/24")?;
    b.server.set_mode(Mode::Normal);
    tunnel
        .wait_for("b to converge", Duration::from_secs(30), || {
            let p = peers(&ns);
            state_of(&ns, "b") == "synced" && p.contains(&key_b1) && p.contains(&key_b2)
        })
        .with_context(|| format!("/readyz: {}", get(&ns, "/readyz").1))?;
    let metrics = get(&ns, "/metrics").1;
    assert!(
        metrics.contains("causeway_source_stale{cluster=\"b\"} 0"),
        "{metrics}"
    );
    poll_until(Duration::from_secs(20), "b's state file rewritten", || {
        std::fs::read_to_string(&saved).is_ok_and(|t| t.contains(&key_b2))
    })?;
    tunnel.signal(causeway_tests::netns::Signal::SIGTERM)?;
    let _ = tunnel.wait(Duration::from_secs(10));
    Ok(())
}
