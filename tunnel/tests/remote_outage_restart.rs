//! The `causeway-tunnel` binary restarted (SIGKILL) while the remote cluster's API is down:
//! it turns ready within seconds from the local cluster and the remote's last good state on
//! disk, peers with the remote node it had saved, and converges once the API is back.
//!
//! One network namespace; clusters a (local) and b (remote) are test API servers on its
//! loopback. Ranges: node a1 pod subnet 10.128.0.0/24; cluster b pods 10.129.0.0/16;
//! endpoints 192.0.2.11/.21/.22 (RFC 5737).

use std::time::{Duration, Instant};

use anyhow::{Result, bail};
use causeway_tests::apiserver::{Mode, TestApiServer};
use causeway_tests::netns::{ChildGuard, Netns, Signal};
use causeway_tests::wait::{WaitError, poll};
use causeway_tunnel::wg::PrivateKey;
use serde_json::json;

const TELEMETRY: &str = "http://127.0.0.1:19156";

fn wait_for(what: &str, timeout: Duration, mut f: impl FnMut() -> bool) -> Result<(), WaitError> {
    poll(timeout, Duration::from_millis(100), what, || {
        f().then_some(())
    })
}

fn tunnel_endpoint(node: &str, key: &str, ip: &str, cidr: &str) -> serde_json::Value {
    json!({
        "apiVersion": "causeway.io/v1alpha1", "kind": "TunnelEndpoint",
        "metadata": {"name": node, "namespace": "causeway"},
        "spec": {"node": node, "publicKey": key, "endpoint": format!("{ip}:51820"), "podCIDRs": [cidr]},
    })
}

fn start(ns: &Netns, cfg: &str, state: &str) -> Result<ChildGuard> {
    ns.spawn(
        env!("CARGO_BIN_EXE_causeway-tunnel"),
        &[
            "--config",
            cfg,
            "--node-name",
            "a1",
            "--namespace",
            "causeway",
            "--userspace",
            "--state-dir",
            state,
        ],
    )
}

/// (HTTP status, body) of a GET of the tunnel's telemetry inside the namespace.
fn get(ns: &Netns, path: &str) -> (u16, String) {
    ns.http_get(&format!("{TELEMETRY}{path}"))
}

fn state_of(ns: &Netns, cluster: &str) -> String {
    ns.readyz_state(&format!("{TELEMETRY}/readyz"), cluster)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_during_a_remote_outage_keeps_the_saved_peers_and_converges() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let ns = Netns::new("lkg")?;
    ns.exec("ip", &["link", "add", "br0", "type", "bridge"])?;
    ns.exec("ip", &["addr", "add", "10.128.0.1/24", "dev", "br0"])?;
    ns.exec("ip", &["link", "set", "br0", "up"])?;
    let (a, b) = (TestApiServer::start_in(&ns)?, TestApiServer::start_in(&ns)?);
    let (ka, kb) = (
        dir.path().join("a.kubeconfig"),
        dir.path().join("b.kubeconfig"),
    );
    a.write_kubeconfig(&ka, "a")?;
    b.write_kubeconfig(&kb, "b")?;
    a.apply(&json!({
        "apiVersion": "v1", "kind": "Node", "metadata": {"name": "a1"},
        "spec": {"podCIDR": "10.128.0.0/24", "podCIDRs": ["10.128.0.0/24"]},
        "status": {"addresses": [{"type": "InternalIP", "address": "192.0.2.11"}]},
    }))?;
    let key_b1 = PrivateKey::generate().public_key().to_base64();
    let key_b2 = PrivateKey::generate().public_key().to_base64();
    b.apply(&tunnel_endpoint(
        "b1",
        &key_b1,
        "192.0.2.21",
        "10.129.0.0/24",
    ))?;
    let cfg = dir.path().join("config.yaml");
    // The first-sync wait is far longer than the test waits for readiness: a ready tunnel
    // after the restart proves the saved state counted.
    std::fs::write(
        &cfg,
        format!(
            "cluster: a\nclusters:\n\
             - name: a\n  podCIDRs: [\"10.128.0.0/16\"]\n  source: {{ kubeconfig: {} }}\n\
             - name: b\n  podCIDRs: [\"10.129.0.0/16\"]\n  source: {{ kubeconfig: {} }}\n\
             readiness: {{ remoteSyncTimeout: 120s }}\n\
             tunnel: {{ endpoint: {{ address: \"192.0.2.11:51820\" }}, metricsListen: \"127.0.0.1:19156\" }}\n",
            ka.display(),
            kb.display()
        ),
    )?;
    let cfg = cfg.to_string_lossy().to_string();
    let state = dir.path().join("state");
    let state_s = state.to_string_lossy().to_string();
    let peers = |ns: &Netns| get(ns, "/status").1;

    // Both APIs up: synced, peered with b1, b's state saved.
    let tunnel = start(&ns, &cfg, &state_s)?;
    let up = wait_for("b1 to be peered", Duration::from_secs(30), || {
        get(&ns, "/readyz").0 == 200 && peers(&ns).contains(&key_b1)
    });
    if let Err(e) = up {
        bail!("{e}: {}", tunnel.kill_for_stderr());
    }
    assert_eq!(state_of(&ns, "b"), "synced");
    let saved = state.join("cluster-b.json");
    wait_for("b's state file", Duration::from_secs(20), || saved.exists())?;

    // b's API goes down; the tunnel is killed without a chance to clean up and restarts.
    b.set_mode(Mode::Refuse);
    tunnel.signal(Signal::SIGKILL)?;
    let _ = tunnel.wait(Duration::from_secs(10));
    let started = Instant::now();
    let tunnel = start(&ns, &cfg, &state_s)?;
    let ready = wait_for("ready after the restart", Duration::from_secs(15), || {
        get(&ns, "/readyz").0 == 200
    });
    if let Err(e) = ready {
        bail!(
            "{e}: {}: {}",
            get(&ns, "/readyz").1,
            tunnel.kill_for_stderr()
        );
    }
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
    wait_for("b1 peered from disk", Duration::from_secs(15), || {
        peers(&ns).contains(&key_b1)
    })?;
    let metrics = get(&ns, "/metrics").1;
    assert!(
        metrics.contains("causeway_source_stale{cluster=\"b\"} 1"),
        "{metrics}"
    );

    // b's API comes back with a second node: the fresh list replaces the saved state.
    b.apply(&tunnel_endpoint(
        "b2",
        &key_b2,
        "192.0.2.22",
        "10.129.1.0/24",
    ))?;
    b.set_mode(Mode::Normal);
    let converged = wait_for("b to converge", Duration::from_secs(30), || {
        let p = peers(&ns);
        state_of(&ns, "b") == "synced" && p.contains(&key_b1) && p.contains(&key_b2)
    });
    if let Err(e) = converged {
        bail!(
            "{e}: {}: {}",
            get(&ns, "/readyz").1,
            tunnel.kill_for_stderr()
        );
    }
    let metrics = get(&ns, "/metrics").1;
    assert!(
        metrics.contains("causeway_source_stale{cluster=\"b\"} 0"),
        "{metrics}"
    );
    wait_for("b's state file rewritten", Duration::from_secs(20), || {
        std::fs::read_to_string(&saved).is_ok_and(|t| t.contains(&key_b2))
    })?;
    tunnel.signal(Signal::SIGTERM)?;
    let _ = tunnel.wait(Duration::from_secs(10));
    Ok(())
}
