//! Restarts of the real `causeway-tunnel` binary under traffic, in network namespaces: two nodes
//! (a1, b1) of two clusters on one underlay bridge, each with a pod, each node's default route
//! pointing across the underlay (so that traffic for the remote pod range would leave in clear
//! if the tunnel's device and routes vanished). An nftables counter on the underlay side of a1's
//! veth counts packets whose inner (clear) destination is cluster b's pod range.
//!
//! Ranges: underlay 192.0.2.0/24 (a1 .11, b1 .21); pods 10.128.0.11 (a1), 10.129.0.11 (b1).

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context as _, Result, bail};
use causeway_tests::apiserver::TestApiServer;
use causeway_tests::netns::{self, ChildGuard, Netns, ping};
use causeway_tunnel::keystore::KeyStore;
use causeway_tunnel::wg::PublicKey;
use serde_json::json;

struct Node {
    ns: Netns,
    pod: Netns,
    _server: TestApiServer,
    args: Vec<String>,
}

/// The state directory (key file) of node `name`'s tunnel.
fn state_dir(dir: &std::path::Path, name: &str) -> std::path::PathBuf {
    dir.join(format!("state-{name}"))
}

/// Node `name`; `other` is the remote node's name, underlay address, pod prefix and key.
fn node(
    ul: &Netns,
    dir: &std::path::Path,
    name: &str,
    pre: &str,
    ip: &str,
    other: (&str, &str, &str, PublicKey),
) -> Result<Node> {
    let ns = Netns::new(&format!("r{name}"))?;
    let pod = Netns::new(&format!("r{name}p"))?;
    ns.exec("sysctl", &["-qw", "net.ipv4.ip_forward=1"])?;
    ns.exec("ip", &["link", "add", "br0", "type", "bridge"])?;
    ns.exec(
        "ip",
        &["addr", "add", &format!("{pre}.0.1/24"), "dev", "br0"],
    )?;
    ns.exec("ip", &["link", "set", "br0", "up"])?;
    ns.exec(
        "ip",
        &[
            "link",
            "add",
            "veth1",
            "type",
            "veth",
            "peer",
            "name",
            "eth0",
            "netns",
            pod.name(),
        ],
    )?;
    ns.exec("ip", &["link", "set", "veth1", "master", "br0", "up"])?;
    pod.exec(
        "ip",
        &["addr", "add", &format!("{pre}.0.11/24"), "dev", "eth0"],
    )?;
    pod.exec("ip", &["link", "set", "eth0", "up"])?;
    pod.exec(
        "ip",
        &["route", "add", "default", "via", &format!("{pre}.0.1")],
    )?;
    let port = format!("ul-{name}");
    ul.exec(
        "ip",
        &[
            "link",
            "add",
            &port,
            "type",
            "veth",
            "peer",
            "name",
            "ul0",
            "netns",
            ns.name(),
        ],
    )?;
    ul.exec("ip", &["link", "set", &port, "master", "ulbr", "up"])?;
    ns.exec("ip", &["addr", "add", &format!("{ip}/24"), "dev", "ul0"])?;
    ns.exec("ip", &["link", "set", "ul0", "up"])?;
    // The route clear traffic would take without the tunnel's routes.
    ns.exec("ip", &["route", "add", "default", "via", other.1])?;

    let server = TestApiServer::start_in(&ns)?;
    let kubeconfig = dir.join(format!("{name}.kubeconfig"));
    server.write_kubeconfig(&kubeconfig, name)?;
    server.apply(&json!({
        "apiVersion": "v1", "kind": "Node", "metadata": {"name": name},
        "spec": {"podCIDR": format!("{pre}.0.0/24"), "podCIDRs": [format!("{pre}.0.0/24")]},
        "status": {"addresses": [{"type": "InternalIP", "address": ip}]},
    }))?;
    let (other_name, other_ip, other_pre, other_key) = other;
    let remote = dir.join(format!("{name}-remote.yaml"));
    std::fs::write(
        &remote,
        format!(
            "apiVersion: causeway.io/v1alpha1\nkind: TunnelEndpoint\nmetadata: {{ name: {other_name}, namespace: causeway }}\n\
             spec: {{ node: {other_name}, publicKey: \"{}\", endpoint: \"{other_ip}:51820\", podCIDRs: [\"{other_pre}.0.0/24\"] }}\n",
            other_key.to_base64()
        ),
    )?;
    let (local, remote_cluster, local_pre) = if name == "a1" {
        ("a", "b", pre)
    } else {
        ("b", "a", pre)
    };
    let cfg = dir.join(format!("{name}.yaml"));
    std::fs::write(
        &cfg,
        format!(
            "cluster: {local}\nclusters:\n\
             - name: {local}\n  podCIDRs: [\"{local_pre}.0.0/16\"]\n  serviceCIDRs: [\"172.30.0.0/16\"]\n  source: {{ kubeconfig: {} }}\n\
             - name: {remote_cluster}\n  podCIDRs: [\"{other_pre}.0.0/16\"]\n  serviceCIDRs: [\"172.31.0.0/16\"]\n  source: {{ file: {} }}\n\
             tunnel: {{ endpoint: {{ address: \"{ip}:51820\" }}, metricsListen: \"127.0.0.1:19155\" }}\n",
            kubeconfig.display(),
            remote.display()
        ),
    )?;
    let args = [
        "--config",
        &cfg.to_string_lossy(),
        "--node-name",
        name,
        "--namespace",
        "causeway",
        "--state-dir",
        &state_dir(dir, name).to_string_lossy(),
        "--userspace",
    ]
    .map(String::from)
    .to_vec();
    Ok(Node {
        ns,
        pod,
        _server: server,
        args,
    })
}

impl Node {
    fn start(&self) -> Result<ChildGuard> {
        let args: Vec<&str> = self.args.iter().map(String::as_str).collect();
        self.ns.spawn(env!("CARGO_BIN_EXE_causeway-tunnel"), &args)
    }
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

fn stop(tunnel: ChildGuard, signal: &str) -> Result<()> {
    let pid = tunnel.id().context("child")?;
    netns::run("kill", &[signal, &pid.to_string()])?;
    let out = tunnel.wait(Duration::from_secs(10))?;
    if signal == "-TERM" && !out.status.success() {
        bail!(
            "exit {}: {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restarts_leak_nothing_and_recover_within_a_second() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let ul = Netns::new("rul")?;
    ul.exec("ip", &["link", "add", "ulbr", "type", "bridge"])?;
    ul.exec("ip", &["link", "set", "ulbr", "up"])?;
    // Each node's key is in its state directory before its first start (as a restart finds
    // it), so that each configuration can name the other's public key.
    let key_of = |name| -> Result<PublicKey> {
        let (stored, _) = KeyStore::open(state_dir(dir.path(), name))?.load_or_create()?;
        Ok(stored.key.public_key())
    };
    let (ka, kb) = (key_of("a1")?, key_of("b1")?);
    let a = node(
        &ul,
        dir.path(),
        "a1",
        "10.128",
        "192.0.2.11",
        ("b1", "192.0.2.21", "10.129", kb),
    )?;
    let b = node(
        &ul,
        dir.path(),
        "b1",
        "10.129",
        "192.0.2.21",
        ("a1", "192.0.2.11", "10.128", ka),
    )?;
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

    let mut ta = a.start()?;
    let _tb = b.start()?;
    for (n, range) in [
        (&a, "10.129.0.0/16 dev causeway0"),
        (&b, "10.128.0.0/16 dev causeway0"),
    ] {
        let deadline = Instant::now() + Duration::from_secs(30);
        while !n
            .ns
            .exec("ip", &["route", "show", "proto", "147"])?
            .contains(range)
        {
            if Instant::now() > deadline {
                bail!("no tunnel route {range}");
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
    let before = leaked(&ul)?;
    ping(&a.pod, "10.129.0.11", Duration::from_secs(30))?;
    ping(&b.pod, "10.128.0.11", Duration::from_secs(30))?;
    assert_eq!(
        leaked(&ul)?,
        before,
        "nothing in clear while the tunnel runs"
    );

    for signal in ["-KILL", "-TERM"] {
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
        ta = a.start()?;
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
