//! The mesh with real traffic through the userspace WireGuard backend: two clusters of two
//! nodes each, every node a network namespace with a bridge and a pod, all nodes on one
//! underlay bridge. Each node runs the tunnel control plane in-process, with its device,
//! routes (rtnetlink) and MSS clamp (`nft`) inside its namespace, discovering the others
//! through two test API servers.
//!
//! Ranges: underlay 192.0.2.0/24 (RFC 5737; node a1 .11, a2 .12, b1 .21, b2 .22); cluster a
//! pods 10.128.0.0/16 (node aN: 10.128.(N-1).0/24, gateway .1, pod .11), services
//! 172.30.0.0/16; cluster b pods 10.129.0.0/16 likewise, services 172.31.0.0/16.

mod cluster_kit;

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context as _, Result, bail};
use causeway_tests::netns::{Netns, ping, routed_node};
use causeway_tests::wait::eventually;
use causeway_tunnel::agent::Parts;
use causeway_tunnel::host::NetlinkHost;
use causeway_tunnel::keystore::KeyStore;
use causeway_tunnel::mss::NftCli;
use causeway_tunnel::routes::{NetlinkRoutes, RouteTable};
use causeway_tunnel::wg::userspace::{UserspaceOptions, UserspaceWg};
use causeway_tunnel::wg::{PublicKey, WgBackend};
use cluster_kit::{NS, RunningAgent, TestCluster, start_agent, write_config};

const TUNNEL: &str = "{ endpoint: { address: \"ADDR:51820\" }, persistentKeepalive: 1s, peerDownAfter: 4s, mtu: 1380 }";

/// One node: its namespace, its pod, and its running tunnel.
struct Node {
    name: String,
    ns: Netns,
    pod: Netns,
    pod_ip: String,
    underlay_ip: String,
    wg: Arc<dyn WgBackend>,
    running: Option<RunningAgent>,
}

/// Creates the device and the netlink handles inside the node's namespace.
fn kernel_parts(ns: &Netns) -> Result<(Arc<dyn WgBackend>, Parts)> {
    let rt = tokio::runtime::Handle::current();
    let nft_ns = ns.name().to_string();
    let made = tokio::task::block_in_place(|| {
        ns.enter(move || {
            rt.block_on(async {
                let mut opts = UserspaceOptions::new("causeway0");
                opts.mtu = 1380;
                opts.threads = 1;
                opts.socket_buffer = 1 << 20;
                let wg = UserspaceWg::create(opts).await?;
                let routes = NetlinkRoutes::connect()?;
                let (conn, handle, _) = rtnetlink::new_connection()?;
                tokio::spawn(conn);
                anyhow::Ok((wg, routes, handle))
            })
        })
    })??;
    let (wg, routes, handle) = made;
    let wg: Arc<dyn WgBackend> = Arc::new(wg);
    let parts = Parts {
        backend: wg.clone(),
        routes: Arc::new(routes),
        nft: Arc::new(NftCli {
            netns: Some(nft_ns),
            timeout: Duration::from_secs(10),
        }),
        switch: None,
        host: Arc::new(NetlinkHost(handle)),
    };
    Ok((wg, parts))
}

struct Mesh {
    _dir: tempfile::TempDir,
    _ul: Netns,
    a: TestCluster,
    b: TestCluster,
    cfg_dir: std::path::PathBuf,
    nodes: Vec<Node>,
}

impl Mesh {
    async fn new() -> Result<Self> {
        let dir = tempfile::tempdir()?;
        let ul = Netns::new("mul")?;
        ul.exec("ip", &["link", "add", "ulbr", "type", "bridge"])?;
        ul.exec("ip", &["link", "set", "ulbr", "up"])?;
        let a = TestCluster::start(dir.path(), "a", "10.128.0.0/16", "172.30.0.0/16").await?;
        let b = TestCluster::start(dir.path(), "b", "10.129.0.0/16", "172.31.0.0/16").await?;
        let cfg_dir = dir.path().to_path_buf();
        Ok(Self {
            _dir: dir,
            _ul: ul,
            a,
            b,
            cfg_dir,
            nodes: Vec::new(),
        })
    }

    /// Adds and starts node `name` ("a1", "b2", ...).
    async fn join(&mut self, name: &str) -> Result<()> {
        let (cluster, pre, last) = match name.as_bytes() {
            [b'a', n] => (&self.a, "10.128", 10 + n - b'0'),
            [b'b', n] => (&self.b, "10.129", 20 + n - b'0'),
            _ => bail!("bad node name {name}"),
        };
        let i = name.as_bytes()[1] - b'1';
        let underlay_ip = format!("192.0.2.{last}");
        let (ns, pod) = routed_node(
            &self._ul,
            "ulbr",
            name,
            &format!("m{name}"),
            &format!("{pre}.{i}"),
            &format!("{underlay_ip}/24"),
        )?;
        cluster.add_node(name, &format!("{pre}.{i}.0/24"), &underlay_ip)?;
        let (wg, parts) = kernel_parts(&ns)?;
        let cfg = write_config(
            &self.cfg_dir.join(name).tap_mkdir()?,
            &cluster.name,
            &[&self.a, &self.b],
            &TUNNEL.replace("ADDR", &underlay_ip),
        )?;
        let running = start_agent(cfg, cluster, name, None, parts).await?;
        self.nodes.push(Node {
            name: name.into(),
            ns,
            pod,
            pod_ip: format!("{pre}.{i}.11"),
            underlay_ip,
            wg,
            running: Some(running),
        });
        Ok(())
    }

    fn node(&self, name: &str) -> &Node {
        self.nodes.iter().find(|n| n.name == name).expect("node")
    }

    async fn peer_keys(&self, name: &str) -> Result<Vec<PublicKey>> {
        Ok(self
            .node(name)
            .wg
            .peers()
            .await?
            .into_iter()
            .map(|p| p.public_key)
            .collect())
    }

    fn key(&self, name: &str) -> PublicKey {
        self.node(name)
            .running
            .as_ref()
            .expect("running")
            .agent
            .public_key()
    }
}

trait TapMkdir {
    fn tap_mkdir(self) -> Result<std::path::PathBuf>;
}

impl TapMkdir for std::path::PathBuf {
    fn tap_mkdir(self) -> Result<std::path::PathBuf> {
        std::fs::create_dir_all(&self)?;
        Ok(self)
    }
}

/// Pings every pod of the other cluster from every pod, both ways.
fn ping_all(mesh: &Mesh, names: &[&str]) -> Result<()> {
    for from in names {
        for to in names {
            if from.as_bytes()[0] == to.as_bytes()[0] {
                continue;
            }
            let (f, t) = (mesh.node(from), mesh.node(to));
            ping(&f.pod, &t.pod_ip, Duration::from_secs(20))
                .with_context(|| format!("pod of {from} -> pod of {to}"))?;
        }
    }
    Ok(())
}

/// `ping` output's "N received".
fn received(out: &str) -> Result<u32> {
    let line = out
        .lines()
        .find(|l| l.contains("received"))
        .context("ping summary")?;
    let n = line
        .split(',')
        .find(|p| p.contains("received"))
        .context("received")?;
    Ok(n.trim().split(' ').next().unwrap_or("0").parse()?)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_clusters_join_leave_rotate_and_report_down() -> Result<()> {
    let mut mesh = Mesh::new().await?;
    for n in ["a1", "a2", "b1"] {
        mesh.join(n).await?;
    }
    // Every node peers with every node of the other cluster.
    let t = Duration::from_secs(20);
    eventually(t, "a1 peers with b1", || async {
        mesh.peer_keys("a1")
            .await
            .is_ok_and(|k| k == [mesh.key("b1")])
    })
    .await?;
    ping_all(&mesh, &["a1", "a2", "b1"])?;

    // Routes and clamp are in the node's kernel.
    let routes = mesh
        .node("a1")
        .ns
        .exec("ip", &["route", "show", "proto", "147"])?;
    assert!(
        routes.contains("10.129.0.0/16 dev causeway0 scope link src 10.128.0.1"),
        "{routes}"
    );
    assert!(
        routes.contains("172.31.0.0/16 dev causeway0 scope link src 10.128.0.1"),
        "{routes}"
    );
    let nft = mesh
        .node("a1")
        .ns
        .exec("nft", &["list", "table", "inet", "causeway_tunnel"])?;
    assert!(nft.contains("tcp option maxseg size set rt mtu"), "{nft}");

    // A node joins cluster b: the a nodes add it without touching the other peer.
    mesh.join("b2").await?;
    let expected = {
        let mut k = vec![mesh.key("b1"), mesh.key("b2")];
        k.sort();
        k
    };
    eventually(t, "a1 and a2 peer with b2", || async {
        mesh.peer_keys("a1").await.is_ok_and(|k| k == expected)
            && mesh.peer_keys("a2").await.is_ok_and(|k| k == expected)
    })
    .await?;
    ping_all(&mesh, &["a1", "a2", "b1", "b2"])?;

    // Key rotation of b1 while a1's pod pings b1's pod: at most a few seconds lost.
    let pinger = mesh.node("a1").pod.spawn(
        "ping",
        &["-i", "0.2", "-c", "60", "-W", "1", &mesh.node("b1").pod_ip],
    )?;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let old_b1 = mesh.key("b1");
    let new_b1 = KeyStore::open(mesh.b.state_dir("b1"))?.rotate()?;
    assert_ne!(old_b1, new_b1);
    eventually(t, "a1 follows b1's new key", || async {
        mesh.peer_keys("a1")
            .await
            .is_ok_and(|k| k.contains(&new_b1) && !k.contains(&old_b1))
    })
    .await?;
    let out = tokio::task::block_in_place(|| pinger.wait(Duration::from_secs(40)))?;
    let got = received(&String::from_utf8_lossy(&out.stdout))?;
    eprintln!("key rotation under ping: {got} of 60 answered");
    assert!(
        got >= 45,
        "only {got} of 60 pings (every 200 ms) survived the rotation"
    );
    ping_all(&mesh, &["a1", "b1"])?;

    // b2 leaves: its TunnelEndpoint goes and the a nodes drop it.
    let b2 = mesh.nodes.pop().expect("b2");
    assert_eq!(b2.name, "b2");
    if let Some(r) = b2.running {
        r.shutdown().await;
    }
    drop(b2.wg);
    mesh.b
        .server
        .delete_value("causeway.io/v1alpha1", "TunnelEndpoint", NS, "b2")?;
    eventually(t, "a1 drops b2", || async {
        mesh.peer_keys("a1").await.is_ok_and(|k| k == [new_b1])
    })
    .await?;
    assert!(
        mesh.node("a1")
            .pod
            .exec("ping", &["-c", "1", "-W", "1", "10.129.1.11"])
            .is_err()
    );
    ping(&mesh.node("a2").pod, &mesh.node("b1").pod_ip, t)?;

    // b1 goes away without a word (its tunnel stops; its TunnelEndpoint stays): a1 reports it down.
    assert_eq!(
        b1_seen_up_by_a1(&mesh).await,
        Some(true),
        "b1 is up while it answers"
    );
    let b1 = mesh.nodes.iter_mut().find(|n| n.name == "b1").expect("b1");
    if let Some(r) = b1.running.take() {
        r.shutdown().await;
    }
    b1.ns.exec("ip", &["link", "set", "ul0", "down"])?;
    eventually(Duration::from_secs(15), "a1 reports b1 down", || async {
        b1_seen_up_by_a1(&mesh).await == Some(false)
    })
    .await?;
    let wg_text = {
        let r = mesh.node("a1").running.as_ref().expect("a1").agent.status();
        causeway_tunnel::health::render_wg(&r)
    };
    assert!(wg_text.contains("(b/b1) DOWN"), "{wg_text}");
    let _ = &mesh.node("a1").underlay_ip;
    Ok(())
}

async fn b1_seen_up_by_a1(mesh: &Mesh) -> Option<bool> {
    let r = mesh
        .node("a1")
        .running
        .as_ref()
        .expect("a1")
        .agent
        .refresh_status()
        .await;
    r.peers.iter().find(|p| p.node == "b1").map(|p| p.up)
}

#[allow(dead_code)]
async fn dump_routes(r: &dyn RouteTable) -> Result<String> {
    Ok(r.dump().await?.iter().map(|r| format!("{r}\n")).collect())
}
