//! Two nodes of two clusters on one underlay, as the node binaries see them: a1 (cluster a)
//! and b1 (cluster b), each in its own namespace with its pod bridge and one pod, its
//! cluster's API server inside it (holding its Node), and the other cluster as a file that
//! holds the other node's TunnelEndpoint (with its probe endpoint) and what a test adds.
//! Each node's default route points across the underlay, so that traffic for the remote pod
//! range would leave in clear if the tunnel's device and routes vanished.
//!
//! Ranges: underlay 192.0.2.0/24 (a1 .11, b1 .21) on bridge `ulbr` in the underlay
//! namespace (node a1's port `ul-a1`, b1's `ul-b1`); pods 10.128.0.11 (a1's pod subnet
//! 10.128.0.0/24, bridge 10.128.0.1) and 10.129.0.11 (b1: 10.129.0.0/24, bridge .1); cluster a
//! pods 10.128.0.0/16, services 172.30.0.0/16; cluster b pods 10.129.0.0/16, services
//! 172.31.0.0/16.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::Result;
use serde_json::Value;

use crate::cluster::{ConfigFile, TestCluster};
use crate::daemon::Daemon;
use crate::netns::{self, Netns};
use crate::objects;

/// The tunnel's probe port in the pair's configurations (the default).
pub const PROBE_PORT: u16 = 51821;

/// One node of the pair.
pub struct PairNode {
    /// `a1` or `b1`.
    pub name: String,
    /// `a` or `b`.
    pub cluster_name: String,
    /// The node's namespace.
    pub ns: Netns,
    /// Its pod (`<pre>.0.11`).
    pub pod: Netns,
    pub cluster: TestCluster,
    /// The other cluster's file.
    pub remote_file: PathBuf,
    /// This node's configuration file.
    pub config: PathBuf,
    /// The tunnel's state directory (its key file).
    pub state: PathBuf,
    /// Where logs go.
    pub logs: PathBuf,
}

/// Both nodes and their underlay; see the module documentation.
pub struct NodePair {
    pub underlay: Netns,
    pub a: PairNode,
    pub b: PairNode,
}

/// The state directory (key file) of node `name`'s tunnel under `dir`.
pub fn state_dir(dir: &Path, name: &str) -> PathBuf {
    dir.join(format!("state-{name}"))
}

/// What a test adds to each node's configuration and to the other cluster's file.
pub struct PairSetup<'a> {
    /// Extra sections of node `a1`/`b1`'s configuration (key, flow-style YAML); the tunnel
    /// section is written by the kit (endpoint, metrics on 127.0.0.1:19155).
    pub sections: &'a dyn Fn(&str) -> Vec<(String, String)>,
    /// Extra objects of the remote cluster's file as node `a1`/`b1` reads it.
    pub remote_objects: &'a dyn Fn(&str) -> Vec<Value>,
    /// Creates the key file in a tunnel's state directory and returns its public key.
    pub key_of: &'a dyn Fn(&Path) -> Result<String>,
}

impl NodePair {
    /// Makes the underlay (`<short>u`) and the nodes (`<short>a`, `<short>b`) under `dir`.
    /// Each node's key is created in its state directory first ([`PairSetup::key_of`]), so
    /// that each file can name the other's public key (as a restart finds it). Call it from a
    /// multi-threaded runtime.
    pub fn new(dir: &Path, short: &str, setup: &PairSetup<'_>) -> Result<Self> {
        let underlay = Netns::new(&format!("{short}u"))?;
        underlay.exec("ip", &["link", "add", "ulbr", "type", "bridge"])?;
        underlay.exec("ip", &["link", "set", "ulbr", "up"])?;
        let keys = [
            (setup.key_of)(&state_dir(dir, "a1"))?,
            (setup.key_of)(&state_dir(dir, "b1"))?,
        ];
        let a = node(
            &underlay,
            dir,
            (&format!("{short}a"), "a1", "a"),
            ("10.128", "192.0.2.11"),
            ("b1", "192.0.2.21", "10.129", &keys[1]),
            setup,
        )?;
        let b = node(
            &underlay,
            dir,
            (&format!("{short}b"), "b1", "b"),
            ("10.129", "192.0.2.21"),
            ("a1", "192.0.2.11", "10.128", &keys[0]),
            setup,
        )?;
        Ok(Self { underlay, a, b })
    }
}

fn node(
    ul: &Netns,
    dir: &Path,
    (short, name, local): (&str, &str, &str),
    (pre, ip): (&str, &str),
    (other_name, other_ip, other_pre, other_key): (&str, &str, &str, &str),
    setup: &PairSetup<'_>,
) -> Result<PairNode> {
    let (ns, pod) = netns::routed_node(
        ul,
        "ulbr",
        name,
        short,
        &format!("{pre}.0"),
        &format!("{ip}/24"),
    )?;
    // The route clear traffic would take without the tunnel's routes.
    ns.exec("ip", &["route", "add", "default", "via", other_ip])?;
    let cluster = TestCluster::start_in(
        &ns,
        dir,
        local,
        &[&format!("{pre}.0.0/16")],
        &[if local == "a" {
            "172.30.0.0/16"
        } else {
            "172.31.0.0/16"
        }],
    )?;
    cluster.add_node(name, &format!("{pre}.0.0/24"), ip)?;
    let remote_file = dir.join(format!("{name}-remote.yaml"));
    let mut te = objects::tunnel_endpoint(
        other_name,
        other_key,
        &format!("{other_ip}:51820"),
        &format!("{other_pre}.0.0/24"),
    );
    te["spec"]["probeEndpoint"] = Value::from(format!("{other_pre}.0.1:{PROBE_PORT}"));
    let mut remote_objects = vec![te];
    remote_objects.extend((setup.remote_objects)(name));
    objects::write_list(&remote_file, &remote_objects)?;
    let remote_cluster = if local == "a" { "b" } else { "a" };
    let mut cfg = ConfigFile::new(local)
        .cluster(&cluster)
        .file_cluster(
            remote_cluster,
            &[&format!("{other_pre}.0.0/16")],
            &[if local == "a" {
                "172.31.0.0/16"
            } else {
                "172.30.0.0/16"
            }],
            &remote_file,
        )
        .section(
            "tunnel",
            &format!(
                "{{ endpoint: {{ address: \"{ip}:51820\" }}, metricsListen: \"127.0.0.1:19155\" }}"
            ),
        );
    for (key, value) in (setup.sections)(name) {
        cfg = cfg.section(&key, &value);
    }
    let config = cfg.write(&dir.join(format!("{name}.yaml")))?;
    Ok(PairNode {
        name: name.to_owned(),
        cluster_name: local.to_owned(),
        ns,
        pod,
        cluster,
        remote_file,
        config,
        state: state_dir(dir, name),
        logs: dir.to_path_buf(),
    })
}

impl PairNode {
    /// Starts the node's tunnel (`binary`, userspace data path); its `n`th run logs to
    /// `<dir>/<name>-<n>.log`.
    pub fn start_tunnel(&self, binary: &Path, n: u32) -> Result<Daemon> {
        Daemon::spawn(
            self.ns
                .command(binary)
                .arg("--config")
                .arg(&self.config)
                .args(["--node-name", &self.name, "--namespace", "causeway"])
                .arg("--state-dir")
                .arg(&self.state)
                .arg("--userspace"),
            &self.logs.join(format!("{}-{n}.log", self.name)),
        )
    }

    /// Starts `command` (made with `self.ns.command(..)`) logging to `<dir>/<log>`.
    pub fn spawn(&self, command: &mut Command, log: &str) -> Result<Daemon> {
        Daemon::spawn(command, &self.logs.join(log))
    }
}
