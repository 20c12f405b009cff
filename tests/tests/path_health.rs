//! Shared data-path health end to end, with the real binaries: node a1 of cluster a runs
//! causeway-tunnel and causeway-dns, node b1 of cluster b runs causeway-tunnel (userspace data
//! path), both on one underlay (see `causeway_tests::node_pair`). Cluster b's API keeps
//! answering (it is a file) while the underlay towards b1 drops a fifth of its packets (b
//! stays in `cluster.all`: a lossy path is no outage), then while it is cut: with the default
//! `pathHealth` (unreachableAfter 5s, probes every second), b's Service leaves `cluster.all`
//! in under 10 s, `cluster.b` keeps answering, `/readyz` and the metrics say so, and the
//! Service is back within seconds of the path returning. causeway-proxy on a1 does the same
//! for b's ClusterIP: a pod of a reaches b's pod through it and the tunnel; cut, new
//! connections are refused at once (instead of hanging) within 10 s; back, they work again.
//! Then b1's underlay address changes and its TunnelEndpoint follows: b's Service is reached
//! at the new address within seconds. Last, node b1 goes away whole (tunnel killed, link down)
//! and comes back with its tunnel restarted: out of `cluster.all` within 10 s, back after.
//!
//! Ranges as in the kit; b's Service web.demo has ClusterIP 172.31.0.80 (b's pod 10.129.0.11).

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, ensure};
use causeway_tests::daemon::Daemon;
use causeway_tests::demo::workspace_binary;
use causeway_tests::netns::{Echo, Netns, ask, connect};
use causeway_tests::node_pair::{NodePair, PairSetup};
use causeway_tests::objects;
use causeway_tests::probe::free_port;
use causeway_tests::wait::poll;

/// A key in `state`, made by the tunnel binary itself (`rotate` on an empty directory).
fn key_of(state: &Path) -> Result<String> {
    let dir = state.parent().context("state dir parent")?;
    let cfg = dir.join("keygen.yaml");
    std::fs::write(
        &cfg,
        "cluster: k\nclusters:\n  - { name: k, source: { inCluster: true } }\n",
    )?;
    let out = Command::new(workspace_binary("causeway-tunnel"))
        .arg("--config")
        .arg(&cfg)
        .arg("--state-dir")
        .arg(state)
        .args(["--node-name", "keygen", "rotate"])
        .output()?;
    ensure!(out.status.success(), "rotate: {out:?}");
    Ok(String::from_utf8(out.stdout)?.trim().to_string())
}

/// `dig +short` of `name` A at the DNS server on `port` inside `ns`.
fn a_records(ns: &Netns, port: u16, name: &str) -> Vec<String> {
    let port = port.to_string();
    ns.exec(
        "dig",
        &[
            "+short",
            "+time=1",
            "+tries=1",
            "@127.0.0.1",
            "-p",
            &port,
            name,
            "A",
        ],
    )
    .map(|out| out.lines().map(str::to_string).collect())
    .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_path_leaves_cluster_all_within_ten_seconds_and_comes_back() -> Result<()> {
    let tmp = tempfile::tempdir()?;
    let dir = tmp.path();
    let pair = NodePair::new(
        dir,
        "ph",
        &PairSetup {
            sections: &|node| {
                if node == "a1" {
                    vec![
                        ("dns".into(), "{ upstreams: [\"127.0.0.1:9\"] }".into()),
                        (
                            "proxy".into(),
                            "{ interface: br0, backend: nftables, gracefulTerminationPeriod: 1s }"
                                .into(),
                        ),
                    ]
                } else {
                    Vec::new()
                }
            },
            remote_objects: &|node| {
                if node == "a1" {
                    vec![
                        objects::service("demo", "web", "172.31.0.80", 80, 8080),
                        objects::endpoint_slice("demo", "web-1", "web", 8080, &["10.129.0.11"]),
                    ]
                } else {
                    Vec::new()
                }
            },
            key_of: &key_of,
        },
    )?;
    let tunnel = workspace_binary("causeway-tunnel");
    let mut tb = pair.b.start_tunnel(&tunnel, 1)?;
    let ta = pair.a.start_tunnel(&tunnel, 1)?;
    let (dns_port, metrics_port) = (free_port(), free_port());
    let dns = pair.a.spawn(
        pair.a
            .ns
            .command(workspace_binary("causeway-dns"))
            .arg("--config")
            .arg(&pair.a.config)
            .arg("--listen")
            .arg(format!("127.0.0.1:{dns_port}"))
            .arg("--metrics-listen")
            .arg(format!("127.0.0.1:{metrics_port}")),
        "dns.log",
    )?;
    let proxy = pair.a.spawn(
        pair.a
            .ns
            .command(workspace_binary("causeway-proxy"))
            .arg("--config")
            .arg(&pair.a.config),
        "proxy.log",
    )?;
    let _web = Echo::start(&pair.b.pod, 8080, "b-web")?;
    let vip: std::net::SocketAddr = "172.31.0.80:80".parse()?;
    // A pod of a asks b's Service: a1's proxy sends it through the tunnel to b's pod.
    let fetch = || connect(&pair.a.pod, vip).and_then(|mut c| ask(&mut c));
    let ns = &pair.a.ns;
    // Waits until b has left the merged zone.
    let out_of_all = || {
        poll(
            Duration::from_secs(20),
            Duration::from_millis(100),
            "b out of cluster.all",
            || {
                a_records(ns, dns_port, "web.demo.svc.cluster.all")
                    .is_empty()
                    .then_some(())
            },
        )
        .with_context(|| dns.log())
    };
    let readyz = format!("http://127.0.0.1:{metrics_port}/readyz");
    let path_of_b = |body: &str| -> String {
        let v: serde_json::Value = serde_json::from_str(body).unwrap_or_default();
        v["clusters"]
            .as_array()
            .and_then(|cs| cs.iter().find(|c| c["cluster"] == "b"))
            .map(|c| c["path"].as_str().unwrap_or_default().to_string())
            .unwrap_or_default()
    };
    // b1 answers a1's probes through the tunnel; the DNS server reads it.
    let paths = |ns: &Netns| ns.http_get("http://127.0.0.1:19155/paths").1;
    poll(
        Duration::from_secs(30),
        Duration::from_millis(100),
        "b reachable in /paths",
        || {
            let v: serde_json::Value = serde_json::from_str(&paths(ns)).ok()?;
            (v["clusters"][0]["reachable"] == 1).then_some(())
        },
    )
    .with_context(|| ta.log())?;
    poll(
        Duration::from_secs(30),
        Duration::from_millis(100),
        "dns reads b reachable",
        || (path_of_b(&ns.http_get(&readyz).1) == "reachable").then_some(()),
    )
    .with_context(|| dns.log())?;
    assert_eq!(
        a_records(ns, dns_port, "web.demo.svc.cluster.all"),
        ["172.31.0.80"]
    );
    poll(
        Duration::from_secs(30),
        Duration::from_millis(100),
        "b's Service through the proxy",
        || fetch().ok().filter(|n| n == "b-web"),
    )
    .with_context(|| proxy.log())?;
    let status = ns.http_get("http://127.0.0.1:9165/status").1;
    assert!(
        status.contains("\"probe\":{\"target\":\"10.129.0.1:51821\""),
        "{status}"
    );

    // A lossy underlay (a fifth of the packets towards b1 dropped for 8 s) is not an outage: b stays.
    pair.underlay.exec(
        "nft",
        &["add table bridge lossy; \
           add chain bridge lossy c1 { type filter hook forward priority 0 ; } ; \
           add rule bridge lossy c1 oifname \"ul-b1\" numgen random mod 5 == 0 counter drop"],
    )?;
    // Pod traffic through the tunnel meanwhile (what the loss is seen on, besides probes).
    let _pings = pair
        .a
        .pod
        .spawn("ping", &["-q", "-i", "0.02", "-w", "8", "10.129.0.11"])?;
    let lossy = Instant::now();
    while lossy.elapsed() < Duration::from_secs(8) {
        assert_eq!(
            a_records(ns, dns_port, "web.demo.svc.cluster.all"),
            ["172.31.0.80"],
            "b left cluster.all over {:?} of a lossy path",
            lossy.elapsed()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let listed = pair
        .underlay
        .exec("nft", &["list", "chain", "bridge", "lossy", "c1"])?;
    let dropped: u64 = listed
        .split("counter packets ")
        .nth(1)
        .and_then(|s| s.split_whitespace().next()?.parse().ok())
        .context("drop counter")?;
    assert!(dropped >= 2, "the lossy path dropped packets: {listed}");
    pair.underlay.exec("nft", &["delete table bridge lossy"])?;

    // Cut the underlay towards b1: b's API (its file) still answers.
    pair.underlay
        .exec("ip", &["link", "set", "ul-b1", "down"])?;
    let cut = Instant::now();
    out_of_all()?;
    let out = cut.elapsed();
    // The proxy refuses new connections to b's Service at once instead of letting them hang.
    let refused = poll(
        Duration::from_secs(20),
        Duration::from_millis(100),
        "b's Service refused",
        || {
            let asked = Instant::now();
            match connect(&pair.a.pod, vip) {
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => {
                    Some(asked.elapsed())
                }
                _ => None,
            }
        },
    )
    .with_context(|| proxy.log())?;
    let refused_after = cut.elapsed();
    assert!(refused < Duration::from_secs(1), "refused in {refused:?}");
    assert_eq!(
        a_records(ns, dns_port, "web.demo.svc.cluster.b"),
        ["172.31.0.80"],
        "b's own zone keeps answering"
    );
    assert_eq!(path_of_b(&ns.http_get(&readyz).1), "unreachable");
    let metrics = ns
        .http_get(&format!("http://127.0.0.1:{metrics_port}/metrics"))
        .1;
    assert!(
        metrics.contains("causeway_path_reachable{cluster=\"b\"} 0"),
        "{metrics}"
    );

    pair.underlay.exec("ip", &["link", "set", "ul-b1", "up"])?;
    let restored = Instant::now();
    poll(
        Duration::from_secs(20),
        Duration::from_millis(100),
        "b back in cluster.all",
        || (a_records(ns, dns_port, "web.demo.svc.cluster.all") == ["172.31.0.80"]).then_some(()),
    )
    .with_context(|| dns.log())?;
    let back = restored.elapsed();
    poll(
        Duration::from_secs(20),
        Duration::from_millis(100),
        "b's Service back",
        || fetch().ok().filter(|n| n == "b-web"),
    )
    .with_context(|| proxy.log())?;
    let proxy_back = restored.elapsed();

    // b1's underlay address changes (a new VIP), and its TunnelEndpoint says so.
    // (Deleted first: deleting a primary address takes its secondaries with it.)
    let b_ns = &pair.b.ns;
    b_ns.exec("ip", &["addr", "del", "192.0.2.21/24", "dev", "ul0"])?;
    b_ns.exec("ip", &["addr", "add", "192.0.2.22/24", "dev", "ul0"])?;
    b_ns.exec("ip", &["route", "replace", "default", "via", "192.0.2.11"])?;
    let moved = Instant::now();
    let text = std::fs::read_to_string(&pair.a.remote_file)?
        .replace("192.0.2.21:51820", "192.0.2.22:51820");
    let tmp_file = pair.a.remote_file.with_extension("tmp");
    std::fs::write(&tmp_file, text)?;
    std::fs::rename(&tmp_file, &pair.a.remote_file)?;
    poll(
        Duration::from_secs(20),
        Duration::from_millis(100),
        "the peer at its new address",
        || {
            let status = ns.http_get("http://127.0.0.1:9165/status").1;
            (status.contains("\"endpoint\":\"192.0.2.22:51820\"") && fetch().ok()? == "b-web")
                .then_some(())
        },
    )
    .with_context(|| ta.log())?;
    let followed = moved.elapsed();
    assert_eq!(
        a_records(ns, dns_port, "web.demo.svc.cluster.all"),
        ["172.31.0.80"],
        "a moved peer is still a reachable cluster"
    );
    println!(
        "peer address changed: b's Service reached at the new address {:.2} s after",
        followed.as_secs_f64()
    );

    // The remote node goes away whole (its tunnel killed, its link gone) and comes back (the
    // link, then its tunnel restarted with the same key from its state directory).
    tb.kill();
    pair.underlay
        .exec("ip", &["link", "set", "ul-b1", "down"])?;
    let gone = Instant::now();
    out_of_all()?;
    let node_out = gone.elapsed();
    pair.underlay.exec("ip", &["link", "set", "ul-b1", "up"])?;
    let _tb = pair.b.start_tunnel(&tunnel, 2)?;
    let returned = Instant::now();
    poll(
        Duration::from_secs(20),
        Duration::from_millis(100),
        "b's Service after the node returned",
        || {
            (a_records(ns, dns_port, "web.demo.svc.cluster.all") == ["172.31.0.80"]
                && fetch().ok()? == "b-web")
                .then_some(())
        },
    )
    .with_context(|| ta.log())?;
    let node_back = returned.elapsed();
    println!(
        "remote node gone: b out of cluster.all after {:.2} s; node back (tunnel restarted): b answered and reached {:.2} s after",
        node_out.as_secs_f64(),
        node_back.as_secs_f64()
    );
    assert!(node_out < Duration::from_secs(10), "{node_out:?}");
    println!(
        "path lossy for 8 s ({dropped} packets dropped): b kept; path cut: b out of cluster.all after {:.2} s, its Service refused by the proxy after {:.2} s; path restored: back in cluster.all after {:.2} s, through the proxy after {:.2} s",
        out.as_secs_f64(),
        refused_after.as_secs_f64(),
        back.as_secs_f64(),
        proxy_back.as_secs_f64()
    );
    assert!(
        refused_after < Duration::from_secs(10),
        "refused after {refused_after:?}"
    );
    assert!(out < Duration::from_secs(10), "out after {out:?}");
    assert!(
        out > Duration::from_secs(3),
        "not before unreachableAfter: {out:?}"
    );
    assert!(back < Duration::from_secs(5), "back after {back:?}");
    drop::<Daemon>(proxy);
    drop::<Daemon>(dns);
    Ok(())
}
