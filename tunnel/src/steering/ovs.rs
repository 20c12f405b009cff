//! The OVS switch behind a narrow trait: `ovs-ofctl`/`ovs-vsctl` as subprocesses ([`OvsCli`])
//! and a recording fake ([`FakeSwitch`]) for unit tests.
//!
//! A replacement of our flows is one OpenFlow 1.3 bundle (`ovs-ofctl --bundle add-flows`):
//! `delete cookie=C/-1` followed by an `add` per flow, committed atomically, so no packet ever
//! sees a half-programmed bridge and flows of other cookies are never touched.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::Mutex;
use std::time::Duration;

use tokio::io::AsyncWriteExt as _;
use tokio::process::Command;

use super::flows::Flow;

/// Errors of driving OVS.
#[derive(Debug, thiserror::Error)]
pub enum OvsError {
    /// The tool could not be started (not installed?).
    #[error("cannot run {tool}")]
    Spawn {
        /// `ovs-ofctl` or `ovs-vsctl`.
        tool: &'static str,
        #[source]
        source: std::io::Error,
    },
    /// The tool ran but failed.
    #[error("{tool} {args}: exit status {status}: {stderr}")]
    Failed {
        tool: &'static str,
        /// The arguments, for the log.
        args: String,
        status: String,
        stderr: String,
    },
    /// The tool did not finish in time (a stuck ovsdb-server or ovs-vswitchd).
    #[error("{tool} {args}: no answer within {after:?}")]
    Timeout {
        tool: &'static str,
        args: String,
        after: Duration,
    },
    /// `ofport` is not a number (the interface is not attached yet: -1 or empty).
    #[error("interface {interface}: no OpenFlow port yet ({value:?})")]
    NoPort { interface: String, value: String },
}

/// The switch operations the steering needs.
#[async_trait::async_trait]
pub trait Switch: Send + Sync {
    /// Replaces every flow carrying `cookie` on `bridge` by `flows`, atomically.
    async fn replace_flows(
        &self,
        bridge: &str,
        cookie: u64,
        flows: &[Flow],
    ) -> Result<(), OvsError>;
    /// The flows carrying `cookie`, as the switch prints them without counters, sorted.
    async fn dump_flows(&self, bridge: &str, cookie: u64) -> Result<Vec<String>, OvsError>;
    /// The OpenFlow port number of an interface.
    async fn ofport(&self, interface: &str) -> Result<u32, OvsError>;
    /// The interface whose `external_ids:ip` is `ip` (how OpenShift SDN tags pod ports).
    async fn interface_with_ip(&self, ip: IpAddr) -> Result<Option<String>, OvsError>;
}

/// [`Switch`] through `ovs-ofctl -O OpenFlow13` and `ovs-vsctl`.
#[derive(Clone, Debug)]
pub struct OvsCli {
    /// OVS run directory (sockets), passed as `OVS_RUNDIR` to the tools; `None`: their default.
    pub rundir: Option<PathBuf>,
    /// Bound on each command.
    pub timeout: Duration,
}

impl Default for OvsCli {
    fn default() -> Self {
        Self {
            rundir: None,
            timeout: Duration::from_secs(10),
        }
    }
}

impl OvsCli {
    async fn run(
        &self,
        tool: &'static str,
        args: &[&str],
        stdin: Option<&str>,
    ) -> Result<String, OvsError> {
        let mut cmd = Command::new(tool);
        cmd.args(args)
            .stdin(if stdin.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        if let Some(dir) = &self.rundir {
            // The tools find the database socket and `<bridge>.mgmt` through these.
            cmd.env("OVS_RUNDIR", dir)
                .env("OVS_DBDIR", dir)
                .env("OVS_LOGDIR", dir)
                .env("OVS_SYSCONFDIR", dir);
        }
        let mut child = cmd
            .spawn()
            .map_err(|source| OvsError::Spawn { tool, source })?;
        if let (Some(text), Some(mut pipe)) = (stdin, child.stdin.take()) {
            // A failed write shows up as the tool's own error below.
            let _ = pipe.write_all(text.as_bytes()).await;
            drop(pipe);
        }
        let joined = args.join(" ");
        let out = tokio::time::timeout(self.timeout, child.wait_with_output())
            .await
            .map_err(|_| OvsError::Timeout {
                tool,
                args: joined.clone(),
                after: self.timeout,
            })?
            .map_err(|source| OvsError::Spawn { tool, source })?;
        if !out.status.success() {
            return Err(OvsError::Failed {
                tool,
                args: joined,
                status: out.status.to_string(),
                stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
            });
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }
}

/// The bundle text replacing the flows of `cookie` by `flows`.
pub fn bundle_text(cookie: u64, flows: &[Flow]) -> String {
    let mut text = format!("delete cookie={cookie:#x}/-1\n");
    for f in flows {
        text.push_str(&format!("add cookie={cookie:#x},{f}\n"));
    }
    text
}

/// One `dump-flows` line without cookie, counters and ages, or `None` for a header line.
pub fn normalize_dump_line(line: &str) -> Option<String> {
    let line = line.trim();
    let (head, actions) = line.split_once(" actions=")?;
    let kept: Vec<&str> = head
        .split(',')
        .map(str::trim)
        .filter(|t| {
            !t.is_empty()
                && ![
                    "cookie=",
                    "duration=",
                    "n_packets=",
                    "n_bytes=",
                    "idle_age=",
                    "hard_age=",
                    "reset_counts",
                ]
                .iter()
                .any(|p| t.starts_with(p))
        })
        .collect();
    Some(format!("{} actions={actions}", kept.join(",")))
}

#[async_trait::async_trait]
impl Switch for OvsCli {
    async fn replace_flows(
        &self,
        bridge: &str,
        cookie: u64,
        flows: &[Flow],
    ) -> Result<(), OvsError> {
        let text = bundle_text(cookie, flows);
        self.run(
            "ovs-ofctl",
            &["-O", "OpenFlow13", "--bundle", "add-flows", bridge, "-"],
            Some(&text),
        )
        .await?;
        Ok(())
    }

    async fn dump_flows(&self, bridge: &str, cookie: u64) -> Result<Vec<String>, OvsError> {
        let filter = format!("cookie={cookie:#x}/-1");
        let out = self
            .run(
                "ovs-ofctl",
                &["-O", "OpenFlow13", "dump-flows", bridge, &filter],
                None,
            )
            .await?;
        let mut lines: Vec<String> = out.lines().filter_map(normalize_dump_line).collect();
        lines.sort();
        Ok(lines)
    }

    async fn ofport(&self, interface: &str) -> Result<u32, OvsError> {
        let out = self
            .run(
                "ovs-vsctl",
                &["get", "Interface", interface, "ofport"],
                None,
            )
            .await?;
        let value = out.trim().to_string();
        match value.parse::<i64>() {
            Ok(n) if n > 0 => u32::try_from(n).map_err(|_| OvsError::NoPort {
                interface: interface.into(),
                value,
            }),
            _ => Err(OvsError::NoPort {
                interface: interface.into(),
                value,
            }),
        }
    }

    async fn interface_with_ip(&self, ip: IpAddr) -> Result<Option<String>, OvsError> {
        let cond = format!("external_ids:ip=\"{ip}\"");
        let out = self
            .run(
                "ovs-vsctl",
                &["--bare", "--columns=name", "find", "Interface", &cond],
                None,
            )
            .await?;
        Ok(out.split_whitespace().next().map(str::to_string))
    }
}

/// A [`Switch`] in memory: flows by bridge, a log of the calls, and knobs for tests.
#[derive(Debug, Default)]
pub struct FakeSwitch {
    state: Mutex<FakeState>,
}

#[derive(Debug, Default)]
struct FakeState {
    /// bridge → (cookie, flow text), in installation order.
    flows: BTreeMap<String, Vec<(u64, String)>>,
    ports: BTreeMap<String, u32>,
    ips: BTreeMap<IpAddr, String>,
    calls: Vec<String>,
    fail_next: bool,
}

impl FakeSwitch {
    /// A fake with one port.
    pub fn with_port(interface: &str, ofport: u32) -> Self {
        let fake = Self::default();
        fake.state().ports.insert(interface.into(), ofport);
        fake
    }

    fn state(&self) -> std::sync::MutexGuard<'_, FakeState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Tags a port with `external_ids:ip`.
    pub fn set_port_ip(&self, interface: &str, ip: IpAddr) {
        self.state().ips.insert(ip, interface.into());
    }

    /// Adds a flow of another owner (to check that it survives our replacements).
    pub fn add_foreign_flow(&self, bridge: &str, cookie: u64, flow: &str) {
        self.state()
            .flows
            .entry(bridge.into())
            .or_default()
            .push((cookie, flow.into()));
    }

    /// Loses every flow, as an `ovs-vswitchd` restart does.
    pub fn restart(&self) {
        let mut st = self.state();
        st.flows.clear();
        st.calls.push("restart".into());
    }

    /// Makes the next replacement fail.
    pub fn fail_next(&self) {
        self.state().fail_next = true;
    }

    /// Calls so far, one line each.
    pub fn calls(&self) -> Vec<String> {
        self.state().calls.clone()
    }

    /// Canonical text of every bridge's flows: `bridge cookie=0x.. flow`, sorted.
    pub fn dump(&self) -> String {
        let st = self.state();
        let mut lines: Vec<String> = st
            .flows
            .iter()
            .flat_map(|(b, fs)| {
                fs.iter()
                    .map(move |(c, f)| format!("{b} cookie={c:#x} {f}"))
            })
            .collect();
        lines.sort();
        lines.into_iter().map(|l| l + "\n").collect()
    }
}

#[async_trait::async_trait]
impl Switch for FakeSwitch {
    async fn replace_flows(
        &self,
        bridge: &str,
        cookie: u64,
        flows: &[Flow],
    ) -> Result<(), OvsError> {
        let mut st = self.state();
        st.calls.push(format!(
            "replace {bridge} cookie={cookie:#x} flows={}",
            flows.len()
        ));
        if std::mem::take(&mut st.fail_next) {
            return Err(OvsError::Failed {
                tool: "ovs-ofctl",
                args: "add-flows".into(),
                status: "1".into(),
                stderr: "injected".into(),
            });
        }
        let entry = st.flows.entry(bridge.into()).or_default();
        entry.retain(|(c, _)| *c != cookie);
        entry.extend(flows.iter().map(|f| (cookie, f.to_string())));
        Ok(())
    }

    async fn dump_flows(&self, bridge: &str, cookie: u64) -> Result<Vec<String>, OvsError> {
        let mut st = self.state();
        st.calls.push(format!("dump {bridge} cookie={cookie:#x}"));
        let mut lines: Vec<String> = st
            .flows
            .get(bridge)
            .into_iter()
            .flatten()
            .filter(|(c, _)| *c == cookie)
            .map(|(_, f)| f.clone())
            .collect();
        lines.sort();
        Ok(lines)
    }

    async fn ofport(&self, interface: &str) -> Result<u32, OvsError> {
        self.state()
            .ports
            .get(interface)
            .copied()
            .ok_or_else(|| OvsError::NoPort {
                interface: interface.into(),
                value: String::new(),
            })
    }

    async fn interface_with_ip(&self, ip: IpAddr) -> Result<Option<String>, OvsError> {
        Ok(self.state().ips.get(&ip).cloned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bundle_deletes_our_cookie_then_adds() {
        let flows = [Flow {
            table: 30,
            priority: 400,
            matches: "ip,nw_dst=10.129.0.0/16".into(),
            actions: "output:3".into(),
        }];
        assert_eq!(
            bundle_text(0xca5e, &flows),
            "delete cookie=0xca5e/-1\nadd cookie=0xca5e,table=30,priority=400,ip,nw_dst=10.129.0.0/16 actions=output:3\n"
        );
    }

    #[test]
    fn dump_lines_lose_counters() {
        let line = " cookie=0xca5ea70000000001, duration=3.021s, table=30, n_packets=4, n_bytes=392, reset_counts, priority=400,ip,nw_dst=10.131.0.0/16 actions=set_field:02:00:00:00:00:03->eth_dst,output:3";
        assert_eq!(
            normalize_dump_line(line).unwrap(),
            "table=30,priority=400,ip,nw_dst=10.131.0.0/16 actions=set_field:02:00:00:00:00:03->eth_dst,output:3"
        );
        assert_eq!(
            normalize_dump_line("OFPST_FLOW reply (OF1.3) (xid=0x2):"),
            None
        );
    }
}
