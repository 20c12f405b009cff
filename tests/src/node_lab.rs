//! One node of a two-cluster mesh, as the node binaries (`causeway-tunnel`,
//! `causeway-proxy`) see it: node `a1` of cluster a in a network namespace, with its pod
//! bridge, cluster a's API server on the namespace's loopback (bound from inside it) holding
//! the Node, and cluster b as a file source. The namespace, the server and the directory go
//! on drop, after the binaries started with [`NodeLab::spawn`] (drop those first).
//!
//! Ranges: node a1 pod subnet 10.128.0.0/24 (bridge `br0` 10.128.0.1), InternalIP 192.0.2.11;
//! cluster a pods 10.128.0.0/16, services 172.30.0.0/16; cluster b pods 10.129.0.0/16,
//! services 172.31.0.0/16.

use std::path::PathBuf;
use std::process::Command;

use anyhow::Result;
use serde_json::Value;

use crate::cluster::{ConfigFile, TestCluster};
use crate::daemon::Daemon;
use crate::netns::{self, Netns};
use crate::objects;

/// The node's name.
pub const NODE: &str = "a1";

/// Node a1 with its clusters; see the module documentation.
pub struct NodeLab {
    /// Cluster a, whose API listens inside [`Self::ns`].
    pub a: TestCluster,
    /// The node's namespace.
    pub ns: Netns,
    /// Cluster b's file ([`Self::write_b`]).
    pub b_file: PathBuf,
    /// Kubeconfigs, configurations, state directories and logs.
    pub dir: tempfile::TempDir,
}

impl NodeLab {
    /// Makes namespace `cw-<pid>-<short>` with the bridge, cluster a with Node a1, and an
    /// empty cluster b. Call it from a multi-threaded runtime.
    pub fn new(short: &str) -> Result<Self> {
        let dir = tempfile::tempdir()?;
        let ns = Netns::new(short)?;
        netns::bridge(&ns, "br0", Some("10.128.0.1/24"))?;
        let a =
            TestCluster::start_in(&ns, dir.path(), "a", &["10.128.0.0/16"], &["172.30.0.0/16"])?;
        a.add_node(NODE, "10.128.0.0/24", "192.0.2.11")?;
        let lab = Self {
            a,
            ns,
            b_file: dir.path().join("b.yaml"),
            dir,
        };
        lab.write_b(&[])?;
        Ok(lab)
    }

    /// Replaces the objects of cluster b.
    pub fn write_b(&self, objects: &[Value]) -> Result<()> {
        objects::write_list(&self.b_file, objects)?;
        Ok(())
    }

    /// The configuration of clusters a (through its kubeconfig) and b (its file), local a;
    /// add the component sections.
    pub fn config(&self) -> ConfigFile {
        ConfigFile::new("a").cluster(&self.a).file_cluster(
            "b",
            &["10.129.0.0/16"],
            &["172.31.0.0/16"],
            &self.b_file,
        )
    }

    /// Starts `command` (made with `self.ns.command(..)`: it runs inside the namespace),
    /// logging to `<dir>/<log>`.
    pub fn spawn(&self, command: &mut Command, log: &str) -> Result<Daemon> {
        Daemon::spawn(command, &self.dir.path().join(log))
    }
}
