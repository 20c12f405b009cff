//! Steering on a real Open vSwitch: `ovsdb-server` and `ovs-vswitchd` (userspace datapath) are
//! started by hand in a test namespace with their own run directory; veth "pods" attach to a
//! `br0` whose base pipeline imitates OpenShift SDN (table 0 classify, table 20 source
//! validation, table 30 routing). The tunnel's control loop installs our flows through
//! [`OvsCli`]; real pings check the steering both ways, an `ovs-vswitchd` restart loses every
//! flow and the recheck restores ours, and a clean shutdown removes them.
//!
//! Ranges: local pods 10.128.0.0/24 (p1 .11, p2 .12, tunnel pod .13, gateway .1); cluster b
//! pods 10.129.0.0/16 (10.129.0.7 answers inside the tunnel pod), services 172.31.0.0/16.

mod cluster_kit;
mod common;

use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context as _, Result, bail};
use causeway_tunnel::fakewg::FakeWg;
use causeway_tunnel::host::{HostInterface, StaticHost};
use causeway_tunnel::mss::FakeNft;
use causeway_tunnel::reconcile::Parts;
use causeway_tunnel::routes::FakeRoutes;
use causeway_tunnel::steering::{COOKIE, OvsCli};
use causeway_tunnel::wg::PrivateKey;
use cluster_kit::{NS, TestCluster, eventually, start_agent, write_config};
use common::{ChildGuard, Netns, ping};
use serde_json::json;

const TUN_MAC: &str = "02:00:00:00:00:0d";
const GW_MAC: &str = "02:00:00:00:00:fe";

/// The SDN's own flows (cookie 0), reloaded after each `ovs-vswitchd` start as the SDN would.
const BASE_FLOWS: &str = "\
table=0,priority=100,arp actions=NORMAL
table=0,priority=100,ip actions=goto_table:20
table=0,priority=0 actions=drop
table=20,priority=100,ip,in_port=1,nw_src=10.128.0.11 actions=goto_table:30
table=20,priority=100,ip,in_port=2,nw_src=10.128.0.12 actions=goto_table:30
table=20,priority=100,ip,in_port=3,nw_src=10.128.0.13 actions=goto_table:30
table=20,priority=0 actions=drop
table=30,priority=100,ip,nw_dst=10.128.0.0/24 actions=NORMAL
table=30,priority=0 actions=drop
";

/// ovsdb-server and ovs-vswitchd of one test, with their state directory.
struct Ovs {
    dir: tempfile::TempDir,
    sw: Netns,
    db: Option<ChildGuard>,
    vswitchd: Option<ChildGuard>,
}

impl Ovs {
    fn tool(&self, tool: &str, args: &[&str], stdin: Option<&str>) -> Result<String> {
        use std::io::Write as _;
        let d = self.dir.path();
        let mut child = Command::new("timeout")
            .arg("20")
            .arg(tool)
            .args(args)
            .env("OVS_RUNDIR", d)
            .env("OVS_DBDIR", d)
            .env("OVS_LOGDIR", d)
            .env("OVS_SYSCONFDIR", d)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .with_context(|| format!("spawn {tool}"))?;
        if let Some(text) = stdin {
            child.stdin.take().unwrap().write_all(text.as_bytes())?;
        }
        drop(child.stdin.take());
        let out = child.wait_with_output()?;
        if !out.status.success() {
            bail!("{tool} {args:?}: {}", String::from_utf8_lossy(&out.stderr));
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    fn start() -> Result<Self> {
        let dir = tempfile::Builder::new().prefix("cw-ovs-").tempdir()?;
        let sw = Netns::new("osw")?;
        let mut ovs = Self {
            dir,
            sw,
            db: None,
            vswitchd: None,
        };
        let d = ovs.dir.path().to_path_buf();
        common::run(
            "ovsdb-tool",
            &[
                "create",
                &d.join("conf.db").to_string_lossy(),
                "/usr/share/openvswitch/vswitch.ovsschema",
            ],
        )?;
        let child = Command::new("ovsdb-server")
            .arg(d.join("conf.db"))
            .arg(format!("--remote=punix:{}", d.join("db.sock").display()))
            .arg(format!(
                "--pidfile={}",
                d.join("ovsdb-server.pid").display()
            ))
            .arg(format!(
                "--log-file={}",
                d.join("ovsdb-server.log").display()
            ))
            .arg("--no-chdir")
            .env("OVS_RUNDIR", &d)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .context("ovsdb-server")?;
        ovs.db = Some(ChildGuard(Some(child)));
        let sock = d.join("db.sock");
        for _ in 0..100 {
            if sock.exists() {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        ovs.tool("ovs-vsctl", &["--no-wait", "init"], None)?;
        // Pitfall: TCP through a netdev bridge needs TSO support, read at start-up only.
        ovs.tool(
            "ovs-vsctl",
            &[
                "--no-wait",
                "set",
                "Open_vSwitch",
                ".",
                "other_config:userspace-tso-enable=true",
            ],
            None,
        )?;
        ovs.start_vswitchd()?;
        Ok(ovs)
    }

    /// Starts ovs-vswitchd inside the switch namespace (the netdev datapath opens its ports'
    /// AF_PACKET sockets in its own namespace).
    fn start_vswitchd(&mut self) -> Result<()> {
        let d = self.dir.path();
        let child = Command::new("ip")
            .args(["netns", "exec", &self.sw.name, "ovs-vswitchd"])
            .arg(format!("unix:{}", d.join("db.sock").display()))
            .arg(format!(
                "--pidfile={}",
                d.join("ovs-vswitchd.pid").display()
            ))
            .arg(format!(
                "--log-file={}",
                d.join("ovs-vswitchd.log").display()
            ))
            .arg("--no-chdir")
            .env("OVS_RUNDIR", d)
            .env("OVS_DBDIR", d)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .context("ovs-vswitchd")?;
        self.vswitchd = Some(ChildGuard(Some(child)));
        // Ready once it answers on the bridge's management socket (or, before br0 exists, on
        // its control socket).
        for _ in 0..100 {
            if self
                .tool("ovs-appctl", &["-t", "ovs-vswitchd", "version"], None)
                .is_ok()
            {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        bail!("ovs-vswitchd did not start")
    }

    fn restart_vswitchd(&mut self) -> Result<()> {
        drop(self.vswitchd.take()); // kills and reaps our child
        self.start_vswitchd()?;
        for _ in 0..100 {
            if self
                .tool(
                    "ovs-ofctl",
                    &["-O", "OpenFlow13", "dump-flows", "br0"],
                    None,
                )
                .is_ok()
            {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        bail!("br0 did not come back")
    }

    fn load_base_flows(&self) -> Result<()> {
        self.tool(
            "ovs-ofctl",
            &["-O", "OpenFlow13", "add-flows", "br0", "-"],
            Some(BASE_FLOWS),
        )?;
        Ok(())
    }

    fn flows(&self) -> Result<String> {
        self.tool(
            "ovs-ofctl",
            &["-O", "OpenFlow13", "dump-flows", "br0"],
            None,
        )
    }

    fn our_flows(&self) -> Result<Vec<String>> {
        let cookie = format!("cookie={COOKIE:#x}");
        Ok(self
            .flows()?
            .lines()
            .filter(|l| l.contains(&cookie))
            .map(str::to_string)
            .collect())
    }

    fn base_flow_count(&self) -> Result<usize> {
        Ok(self
            .flows()?
            .lines()
            .filter(|l| l.contains("cookie=0x0,"))
            .count())
    }
}

/// A "pod" namespace with eth0 attached to br0 as port `ofport`.
fn pod(ovs: &Ovs, short: &str, ofport: u32, mac: &str, ip: &str) -> Result<Netns> {
    let ns = Netns::new(short)?;
    let port = format!("v-{short}");
    ovs.sw.exec(
        "ip",
        &[
            "link", "add", &port, "type", "veth", "peer", "name", "eth0", "netns", &ns.name,
        ],
    )?;
    ovs.sw.exec("ip", &["link", "set", &port, "up"])?;
    ns.exec("ip", &["link", "set", "eth0", "address", mac])?;
    ns.exec("ip", &["addr", "add", &format!("{ip}/24"), "dev", "eth0"])?;
    ns.exec("ip", &["link", "set", "eth0", "up"])?;
    // The SDN's gateway: remote ranges go "via 10.128.0.1" (the MAC the SDN answers ARP with).
    ns.exec(
        "ip",
        &[
            "neigh",
            "add",
            "10.128.0.1",
            "lladdr",
            GW_MAC,
            "dev",
            "eth0",
            "nud",
            "permanent",
        ],
    )?;
    for net in ["10.129.0.0/16", "172.31.0.0/16"] {
        ns.exec("ip", &["route", "add", net, "via", "10.128.0.1"])?;
    }
    ovs.tool(
        "ovs-vsctl",
        &[
            "add-port",
            "br0",
            &port,
            "--",
            "set",
            "Interface",
            &port,
            &format!("ofport_request={ofport}"),
        ],
        None,
    )?;
    Ok(ns)
}

fn fails_to_ping(ns: &Netns, dst: &str) -> bool {
    ns.exec("ping", &["-c", "1", "-W", "1", dst]).is_err()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flows_steer_real_traffic_and_survive_an_ovs_restart() -> Result<()> {
    let mut ovs = Ovs::start()?;
    ovs.tool(
        "ovs-vsctl",
        &[
            "add-br",
            "br0",
            "--",
            "set",
            "bridge",
            "br0",
            "datapath_type=netdev",
            "protocols=OpenFlow10,OpenFlow13",
        ],
        None,
    )?;
    ovs.tool("ovs-ofctl", &["del-flows", "br0"], None)?;
    ovs.load_base_flows()?;
    let p1 = pod(&ovs, "op1", 1, "02:00:00:00:00:0b", "10.128.0.11")?;
    let p2 = pod(&ovs, "op2", 2, "02:00:00:00:00:0c", "10.128.0.12")?;
    let tun = pod(&ovs, "otun", 3, TUN_MAC, "10.128.0.13")?;
    // A remote pod "behind" the tunnel: the tunnel pod answers for 10.129.0.7 itself.
    tun.exec("ip", &["addr", "add", "10.129.0.7/32", "dev", "lo"])?;
    tun.exec(
        "sysctl",
        &[
            "-qw",
            "net.ipv4.conf.all.rp_filter=0",
            "net.ipv4.conf.eth0.rp_filter=0",
        ],
    )?;

    ping(&p1, "10.128.0.12", Duration::from_secs(10)).context("local pods talk through br0")?;
    assert!(
        fails_to_ping(&p1, "10.129.0.7"),
        "no steering yet: the SDN drops remote destinations"
    );
    let base = ovs.base_flow_count()?;

    // The control plane of the tunnel pod, steering: ovs.
    let dir = tempfile::tempdir()?;
    let a = TestCluster::start(dir.path(), "a", "10.128.0.0/16", "172.30.0.0/16").await?;
    let b = TestCluster::start(dir.path(), "b", "10.129.0.0/16", "172.31.0.0/16").await?;
    a.add_node("a1", "10.128.0.0/24", "192.0.2.11")?;
    b.server.apply(&json!({
        "apiVersion": "causeway.io/v1alpha1", "kind": "TunnelEndpoint",
        "metadata": {"name": "b1", "namespace": NS},
        "spec": {"node": "b1", "publicKey": PrivateKey::generate().public_key().to_base64(),
                 "endpoint": "198.51.100.1:51820", "podCIDRs": ["10.129.0.0/24"]},
    }))?;
    let cfg = write_config(
        dir.path(),
        "a",
        &[&a, &b],
        "{ endpoint: { address: \"192.0.2.11:51820\" }, steering: ovs, ovsBridge: br0 }",
    )?;
    let switch = Arc::new(OvsCli {
        rundir: Some(ovs.dir.path().to_path_buf()),
        timeout: Duration::from_secs(10),
    });
    // The port is found the way OpenShift SDN tags it: external_ids:ip of the interface.
    ovs.tool(
        "ovs-vsctl",
        &[
            "set",
            "Interface",
            "v-otun",
            "external_ids:ip=\"10.128.0.13\"",
        ],
        None,
    )?;
    let parts = Parts {
        backend: Arc::new(FakeWg::new("causeway0")),
        routes: Arc::new(FakeRoutes::default()),
        nft: Arc::new(FakeNft::default()),
        switch: Some(switch),
        host: Arc::new(StaticHost(vec![HostInterface {
            name: "eth0".into(),
            mac: Some(TUN_MAC.into()),
            addresses: vec!["10.128.0.13".parse()?],
        }])),
    };
    let running = start_agent(cfg, &a, "a1", None, parts).await?;

    eventually(Duration::from_secs(20), "our 4 flows on br0", || async {
        ovs.our_flows().map(|f| f.len()).unwrap_or(0) == 4
    })
    .await?;
    let ours = ovs.our_flows()?.join("\n");
    for want in [
        "table=0, n_packets=0, n_bytes=0, priority=400,ip,in_port=3,nw_src=10.129.0.0/16 actions=goto_table:30",
        "priority=400,ip,nw_dst=10.129.0.0/16 actions=set_field:02:00:00:00:00:0d->eth_dst,output:3",
        "priority=400,ip,nw_dst=172.31.0.0/16 actions=set_field:02:00:00:00:00:0d->eth_dst,output:3",
    ] {
        assert!(
            ours.contains(want.split(", ").last().unwrap()),
            "missing {want} in\n{ours}"
        );
    }
    assert_eq!(
        ovs.base_flow_count()?,
        base,
        "the SDN's flows are untouched"
    );

    // Real traffic: p1 -> remote pod goes to the tunnel pod's port; the reply (remote source)
    // skips validation and comes back.
    ping(&p1, "10.129.0.7", Duration::from_secs(10))
        .context("steered to the tunnel pod and back")?;
    ping(&p2, "10.129.0.7", Duration::from_secs(10))?;
    let to_tunnel = ovs
        .our_flows()?
        .into_iter()
        .find(|l| l.contains("nw_dst=10.129.0.0/16"))
        .context("steering flow")?;
    assert!(
        !to_tunnel.contains("n_packets=0,"),
        "packets matched the steering flow: {to_tunnel}"
    );
    ping(&p1, "10.128.0.12", Duration::from_secs(5)).context("local traffic still flows")?;

    // ovs-vswitchd restarts: every OpenFlow flow is gone; the SDN reloads its own, our recheck ours.
    ovs.restart_vswitchd()?;
    ovs.load_base_flows()?;
    assert!(ovs.our_flows()?.len() < 4);
    eventually(Duration::from_secs(20), "our flows restored", || async {
        ovs.our_flows().map(|f| f.len()).unwrap_or(0) == 4
    })
    .await?;
    ping(&p1, "10.129.0.7", Duration::from_secs(10)).context("steering works after the restart")?;
    let mut metrics = String::new();
    prometheus_client::encoding::text::encode(&mut metrics, &running.registry.lock().unwrap())?;
    assert!(
        metrics.lines().any(|l| l.starts_with("causeway_tunnel_steering_restores_total") && !l.ends_with(" 0")),
        "{metrics}"
    );

    // Clean shutdown removes only our flows.
    running.shutdown().await;
    assert!(ovs.our_flows()?.is_empty());
    assert_eq!(ovs.base_flow_count()?, base);
    assert!(fails_to_ping(&p1, "10.129.0.7"));
    Ok(())
}
