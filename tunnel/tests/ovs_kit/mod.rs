//! Open vSwitch harness of the steering tests (ovs_*): `ovsdb-server` and `ovs-vswitchd` started
//! by hand as our own children, with their own state directory, the switch daemon inside a
//! test namespace; veth "pods" on a `br0` whose base pipeline imitates OpenShift SDN.
#![allow(dead_code)]

use std::process::Command;
use std::time::Duration;

use anyhow::{Context as _, Result, bail};
use causeway_tunnel::steering::COOKIE;

use causeway_tests::kernel_vm;
use causeway_tests::netns::{self, ChildGuard, Netns, veth_pair};

pub const TUN_MAC: &str = "02:00:00:00:00:0d";
pub const GW_MAC: &str = "02:00:00:00:00:fe";

/// The SDN's own flows (cookie 0), reloaded after each `ovs-vswitchd` start as the SDN would.
pub const BASE_FLOWS: &str = "\
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

/// Pitfall of Debian bookworm's Open vSwitch 3.1.0 on the kernel datapath, and the cause of
/// this kit's first ping failing in a freshly booted VM: `count_cpu_cores()` caches the CPU
/// count for 10 s and its "last updated" time starts at 0 ms of `CLOCK_MONOTONIC`, so until the
/// machine has been up 10 s it returns the cache's initial 0 (checked in the disassembly of the
/// packaged `ovs-vswitchd`: `if (time_msec() - last_updated > 9999) recount; return cached;`).
/// With the per-CPU upcall dispatch that the VM's kernel (6.1) offers, the number of upcall
/// handler threads is that count: ovs-vswitchd logs "Overriding n-handler-threads to 0" and runs none, so no upcall (the
/// first packet of every flow, ARP included) is ever answered until a reconfiguration after the
/// 10 s recounts. The VM reaches this kit at about 5 s of uptime; whether br0 and its ports were
/// configured before or after 10 s depended on how fast the emulation ran, which is why the
/// test failed more often on an idle host than on a busy one.
const OVS_CPU_COUNT_VALID_AFTER: Duration = Duration::from_secs(11);

/// How long ovs-vswitchd may take to start its upcall handler threads (emulated VM).
const HANDLERS_TIMEOUT: Duration = Duration::from_secs(60);

/// ovsdb-server and ovs-vswitchd of one test, with their state directory.
pub struct Ovs {
    pub dir: tempfile::TempDir,
    pub sw: Netns,
    /// The netdev (userspace) datapath, else the kernel's.
    userspace: bool,
    db: Option<ChildGuard>,
    vswitchd: Option<ChildGuard>,
}

impl Ovs {
    pub fn tool(&self, tool: &str, args: &[&str], stdin: Option<&str>) -> Result<String> {
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

    /// Starts the daemons; `userspace` picks the netdev datapath (else the kernel's).
    pub fn start(userspace: bool) -> Result<Self> {
        let dir = tempfile::Builder::new().prefix("cw-ovs-").tempdir()?;
        let sw = Netns::new("osw")?;
        let mut ovs = Self {
            dir,
            sw,
            userspace,
            db: None,
            vswitchd: None,
        };
        let d = ovs.dir.path().to_path_buf();
        netns::run(
            "ovsdb-tool",
            &[
                "create",
                &d.join("conf.db").to_string_lossy(),
                "/usr/share/openvswitch/vswitch.ovsschema",
            ],
        )?;
        let child = ChildGuard::spawn(
            Command::new("ovsdb-server")
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
                .stderr(std::process::Stdio::null()),
        )
        .context("ovsdb-server")?;
        ovs.db = Some(child);
        let sock = d.join("db.sock");
        for _ in 0..100 {
            if sock.exists() {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        ovs.tool("ovs-vsctl", &["--no-wait", "init"], None)?;
        // Pitfall: TCP through a netdev bridge needs TSO support, read at start-up only.
        if userspace {
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
        }
        ovs.start_vswitchd()?;
        let datapath = if userspace {
            "datapath_type=netdev"
        } else {
            "datapath_type=system"
        };
        ovs.tool(
            "ovs-vsctl",
            &[
                "add-br",
                "br0",
                "--",
                "set",
                "bridge",
                "br0",
                datapath,
                "protocols=OpenFlow10,OpenFlow13",
            ],
            None,
        )?;
        ovs.wait_for_handlers()?;
        ovs.tool("ovs-ofctl", &["del-flows", "br0"], None)?;
        ovs.load_base_flows()?;
        Ok(ovs)
    }

    /// With the kernel datapath, waits until ovs-vswitchd runs at least one upcall handler
    /// thread (threads named `handlerN`): without one, no first packet of a flow is forwarded.
    /// The netdev datapath handles upcalls in its own threads and has no handlers.
    fn wait_for_handlers(&self) -> Result<()> {
        if self.userspace {
            return Ok(());
        }
        let pid = self
            .vswitchd
            .as_ref()
            .and_then(ChildGuard::id)
            .context("ovs-vswitchd not running")?;
        let deadline = std::time::Instant::now() + HANDLERS_TIMEOUT;
        loop {
            let handlers = std::fs::read_dir(format!("/proc/{pid}/task"))?
                .filter_map(|t| std::fs::read_to_string(t.ok()?.path().join("comm")).ok())
                .filter(|comm| comm.starts_with("handler"))
                .count();
            if handlers > 0 {
                return Ok(());
            }
            if std::time::Instant::now() > deadline {
                bail!(
                    "ovs-vswitchd started no upcall handler thread within {HANDLERS_TIMEOUT:?}\n{}",
                    self.diagnostics(&[])
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Starts ovs-vswitchd inside the switch namespace (the netdev datapath opens its ports'
    /// AF_PACKET sockets in its own namespace).
    fn start_vswitchd(&mut self) -> Result<()> {
        if !self.userspace
            && let Some(wait) = OVS_CPU_COUNT_VALID_AFTER.checked_sub(kernel_vm::uptime())
        {
            std::thread::sleep(wait);
        }
        let d = self.dir.path();
        let child = ChildGuard::spawn(
            self.sw
                .command("ovs-vswitchd")
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
                .stderr(std::process::Stdio::null()),
        )
        .context("ovs-vswitchd")?;
        self.vswitchd = Some(child);
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

    pub fn restart_vswitchd(&mut self) -> Result<()> {
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
                return self.wait_for_handlers();
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        bail!("br0 did not come back")
    }

    pub fn load_base_flows(&self) -> Result<()> {
        self.tool(
            "ovs-ofctl",
            &["-O", "OpenFlow13", "add-flows", "br0", "-"],
            Some(BASE_FLOWS),
        )?;
        Ok(())
    }

    pub fn flows(&self) -> Result<String> {
        self.tool(
            "ovs-ofctl",
            &["-O", "OpenFlow13", "dump-flows", "br0"],
            None,
        )
    }

    pub fn our_flows(&self) -> Result<Vec<String>> {
        let cookie = format!("cookie={COOKIE:#x}");
        Ok(self
            .flows()?
            .lines()
            .filter(|l| l.contains(&cookie))
            .map(str::to_string)
            .collect())
    }

    /// The switch's state as text, for a failure message: ports with their OpenFlow numbers,
    /// flows with counters, datapath flows, the MAC table, the interfaces of the switch and of
    /// `pods`, and the end of ovs-vswitchd's log.
    pub fn diagnostics(&self, pods: &[&Netns]) -> String {
        let mut out = String::new();
        let mut section = |title: &str, r: Result<String>| {
            out.push_str(&format!("--- {title}\n"));
            match r {
                Ok(text) => out.push_str(&text),
                Err(e) => out.push_str(&format!("(failed: {e:#})\n")),
            }
        };
        section("ovs-vsctl show", self.tool("ovs-vsctl", &["show"], None));
        section(
            "ports",
            self.tool(
                "ovs-ofctl",
                &["-O", "OpenFlow13", "dump-ports-desc", "br0"],
                None,
            ),
        );
        section("flows", self.flows());
        section(
            "datapath flows",
            self.tool("ovs-appctl", &["dpctl/dump-flows", "-m"], None),
        );
        section("fdb", self.tool("ovs-appctl", &["fdb/show", "br0"], None));
        section("switch links", self.sw.exec("ip", &["-s", "link"]));
        for ns in pods {
            section(
                &format!("{} eth0", ns.name()),
                ns.exec("ip", &["-s", "link", "show", "eth0"]),
            );
            section(&format!("{} neigh", ns.name()), ns.exec("ip", &["neigh"]));
        }
        let log = std::fs::read_to_string(self.dir.path().join("ovs-vswitchd.log"))
            .map(|text| {
                let lines: Vec<&str> = text.lines().collect();
                lines[lines.len().saturating_sub(60)..].join("\n") + "\n"
            })
            .map_err(anyhow::Error::from);
        section("ovs-vswitchd.log (end)", log);
        out
    }

    pub fn base_flow_count(&self) -> Result<usize> {
        Ok(self
            .flows()?
            .lines()
            .filter(|l| l.contains("cookie=0x0,"))
            .count())
    }
}

/// A "pod" namespace with eth0 attached to br0 as port `ofport`.
pub fn pod(ovs: &Ovs, short: &str, ofport: u32, mac: &str, ip: &str) -> Result<Netns> {
    let ns = Netns::new(short)?;
    let port = format!("v-{short}");
    veth_pair(&ovs.sw, &port, &ns, "eth0")?;
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
