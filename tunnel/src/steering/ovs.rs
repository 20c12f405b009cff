//! The OVS switch behind a narrow trait: `ovs-ofctl`/`ovs-vsctl` run through the shared
//! [`Tool`] runner ([`OvsCli`]) and a recording fake ([`FakeSwitch`]) for unit tests.
//!
//! A replacement of our flows is one OpenFlow 1.3 bundle (`ovs-ofctl --bundle add-flows`):
//! `delete cookie=C/-1` followed by an `add` per flow, committed atomically, so no packet ever
//! sees a half-programmed bridge and flows of other cookies are never touched.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::Duration;

use causeway_shared::tool::{Tool, ToolError};

use super::flows::Flow;

/// Errors of driving OVS.
#[derive(Debug, thiserror::Error)]
pub enum OvsError {
    /// `ovs-ofctl` or `ovs-vsctl` could not be started (not installed?), did not finish in
    /// time (a stuck ovsdb-server or ovs-vswitchd), or failed.
    #[error(transparent)]
    Tool(#[from] ToolError),
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
    /// `program` with our deadline and, with a run directory, the environment that makes it
    /// find the database socket and `<bridge>.mgmt` there.
    fn tool(&self, program: &str) -> Tool {
        let mut tool = Tool::new(program).with_timeout(self.timeout);
        if let Some(dir) = &self.rundir {
            let dir = dir.to_string_lossy();
            for var in ["OVS_RUNDIR", "OVS_DBDIR", "OVS_LOGDIR", "OVS_SYSCONFDIR"] {
                tool = tool.with_env(var, dir.clone());
            }
        }
        tool
    }

    async fn ofctl(&self, args: &[&str], stdin: Option<&str>) -> Result<String, OvsError> {
        Ok(self.tool("ovs-ofctl").run(args, stdin).await?)
    }

    async fn vsctl(&self, args: &[&str]) -> Result<String, OvsError> {
        Ok(self.tool("ovs-vsctl").run(args, None).await?)
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
        self.ofctl(
            &["-O", "OpenFlow13", "--bundle", "add-flows", bridge, "-"],
            Some(&text),
        )
        .await?;
        Ok(())
    }

    async fn dump_flows(&self, bridge: &str, cookie: u64) -> Result<Vec<String>, OvsError> {
        let filter = format!("cookie={cookie:#x}/-1");
        let out = self
            .ofctl(&["-O", "OpenFlow13", "dump-flows", bridge, &filter], None)
            .await?;
        let mut lines: Vec<String> = out.lines().filter_map(normalize_dump_line).collect();
        lines.sort();
        Ok(lines)
    }

    async fn ofport(&self, interface: &str) -> Result<u32, OvsError> {
        let out = self
            .vsctl(&["get", "Interface", interface, "ofport"])
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
            .vsctl(&["--bare", "--columns=name", "find", "Interface", &cond])
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
            return Err(ToolError::Failed {
                program: "ovs-ofctl".into(),
                args: "add-flows".into(),
                status: "exit status: 1".into(),
                stderr: "injected".into(),
            }
            .into());
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
