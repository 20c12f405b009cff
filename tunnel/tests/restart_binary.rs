//! Restarts of the real `causeway-tunnel` binary under traffic, in network namespaces: two nodes
//! (a1, b1) of two clusters on one underlay bridge, each with a pod, each node's default route
//! pointing across the underlay (so that traffic for the remote pod range would leave in clear
//! if the tunnel's device and routes vanished). An nftables counter on the underlay side of a1's
//! veth counts packets whose inner (clear) destination is cluster b's pod range.
//!
//! Ranges: underlay 192.0.2.0/24 (a1 .11, b1 .21); pods 10.128.0.11 (a1), 10.129.0.11 (b1).

use std::path::Path;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context as _, Result, bail};
use causeway_tests::daemon::Daemon;
use causeway_tests::netns::{Netns, Signal, ping};
use causeway_tests::node_pair::{NodePair, PairNode, PairSetup};
use causeway_tunnel::keystore::KeyStore;

const TUNNEL: &str = env!("CARGO_BIN_EXE_causeway-tunnel");

/// The public key of the tunnel whose state directory is `state` (created when missing).
fn key_of(state: &Path) -> Result<String> {
    let (stored, _) = KeyStore::open(state)?.load_or_create()?;
    Ok(stored.key.public_key().to_base64())
}

/// The pair with nothing added: the tunnels alone.
fn pair(dir: &Path, short: &str) -> Result<NodePair> {
    NodePair::new(
        dir,
        short,
        &PairSetup {
            sections: &|_| Vec::new(),
            remote_objects: &|_| Vec::new(),
            key_of: &key_of,
        },
    )
}

fn start(node: &PairNode, n: u32) -> Result<Daemon> {
    node.start_tunnel(Path::new(TUNNEL), n)
}

/// Packets counted so far by the underlay counter of clear traffic from a1 towards b's pods.
fn leaked(ul: &Netns) -> Result<u64> {
    let out = ul.exec("nft", &["list", "chain", "netdev", "leak", "a1"])?;
    let n = out
        .split("counter packets ")
        .nth(1)
        .and_then(|s| s.split_whitespace().next())
        .and_then(|s| s.parse().ok())
        .context("counter")?;
    Ok(n)
}

/// Reply timestamps (Unix seconds) of a `ping -D` run.
fn replies(out: &str) -> Vec<f64> {
    out.lines()
        .filter(|l| l.contains("bytes from"))
        .filter_map(|l| l.strip_prefix('[')?.split(']').next()?.parse().ok())
        .collect()
}

fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

fn stop(tunnel: Daemon, signal: Signal) -> Result<()> {
    tunnel.signal(signal)?;
    let (status, log) = tunnel.wait(Duration::from_secs(10))?;
    if signal == Signal::SIGTERM && !status.success() {
        bail!("exit {status}: {log}");
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restarts_leak_nothing_and_recover_within_a_second() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let NodePair { underlay: ul, a, b } = pair(dir.path(), "r")?;
    ul.exec(
        "nft",
        &["add table netdev leak; \
             add chain netdev leak a1 { type filter hook ingress device \"ul-a1\" priority 0 ; } ; \
             add rule netdev leak a1 ip daddr 10.129.0.0/16 counter"],
    )?;
    // Control: with no tunnel at all, traffic for b's pods does leave in clear, and is counted.
    let _ = a
        .pod
        .exec("ping", &["-c", "2", "-i", "0.2", "-W", "1", "10.129.0.11"]);
    let control = leaked(&ul)?;
    assert!(control >= 2, "the counter sees clear traffic: {control}");

    let mut ta = start(&a, 1)?;
    let mut tb = start(&b, 1)?;
    for (n, tunnel, range) in [
        (&a, &mut ta, "10.129.0.0/16 dev causeway0"),
        (&b, &mut tb, "10.128.0.0/16 dev causeway0"),
    ] {
        tunnel.wait_for(
            &format!("the tunnel route {range}"),
            Duration::from_secs(30),
            || {
                n.ns.exec("ip", &["route", "show", "proto", "147"])
                    .is_ok_and(|r| r.contains(range))
            },
        )?;
    }
    let before = leaked(&ul)?;
    ping(&a.pod, "10.129.0.11", Duration::from_secs(30))?;
    ping(&b.pod, "10.128.0.11", Duration::from_secs(30))?;
    assert_eq!(
        leaked(&ul)?,
        before,
        "nothing in clear while the tunnel runs"
    );

    for (run, signal) in [(2, Signal::SIGKILL), (3, Signal::SIGTERM)] {
        let base = leaked(&ul)?;
        // b's pod pings a's pod: after a1's restart only a handshake started by a1 brings the
        // replies back quickly (b1 still holds the old session). a's pod pings b's pod too.
        let pb = b
            .pod
            .spawn("ping", &["-D", "-i", "0.02", "-w", "7", "10.128.0.11"])?;
        let pa = a
            .pod
            .spawn("ping", &["-D", "-i", "0.02", "-w", "7", "10.129.0.11"])?;
        std::thread::sleep(Duration::from_secs(1));
        stop(ta, signal)?;
        std::thread::sleep(Duration::from_secs(2));
        let link = a.ns.exec("ip", &["link", "show", "causeway0"])?;
        let routes = a.ns.exec("ip", &["route", "show", "proto", "147"])?;
        assert!(
            routes.contains("10.129.0.0/16 dev causeway0"),
            "{signal}: {routes} {link}"
        );
        let restart = unix_now();
        let started = Instant::now();
        ta = start(&a, run)?;
        let (out_b, out_a) = (
            pb.wait(Duration::from_secs(15))?,
            pa.wait(Duration::from_secs(15))?,
        );
        let first = |out: &std::process::Output| {
            replies(&String::from_utf8_lossy(&out.stdout))
                .into_iter()
                .find(|&t| t > restart)
                .map(|t| t - restart)
        };
        let (rb, ra) = (first(&out_b), first(&out_a));
        let leak = leaked(&ul)? - base;
        println!(
            "{signal}: clear packets while down {leak}; first reply after restart: b->a {rb:?} s, a->b {ra:?} s (ping runs ended {:?} after the restart)",
            started.elapsed()
        );
        assert_eq!(leak, 0, "{signal}: no packet in clear on the underlay");
        let rb = rb.context("b->a never recovered")?;
        let ra = ra.context("a->b never recovered")?;
        assert!(rb < 1.0 && ra < 1.0, "{signal}: recovery {rb} s / {ra} s");
    }
    drop(ta);
    Ok(())
}
