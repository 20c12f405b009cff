//! Test clusters and the Causeway configuration that names them: each [`TestCluster`] is a
//! test API server with its pod and service ranges and a kubeconfig written for it, started on
//! the host's loopback or on a namespace's ([`TestCluster::start_in`], for binaries running
//! there); a [`ConfigFile`] lists clusters (test clusters or file sources) and the component
//! sections, as the binaries read it.
//!
//! The servers stop when their cluster is dropped (see
//! [`TestApiServer`](crate::apiserver::TestApiServer)).

use std::path::{Path, PathBuf};

use anyhow::Result;
use serde_json::Value;

use crate::apiserver::TestApiServer;
use crate::netns::Netns;
use crate::objects;

/// One test cluster: its API server, ranges and kubeconfig (context named after the cluster).
#[derive(Debug)]
pub struct TestCluster {
    /// The cluster's name in the configuration, and its kubeconfig context.
    pub name: String,
    /// Its API.
    pub server: TestApiServer,
    /// `podCIDRs` of its configuration entry.
    pub pod_cidrs: Vec<String>,
    /// `serviceCIDRs` of its entry; none leaves the field out.
    pub service_cidrs: Vec<String>,
    /// `<dir>/<name>.kubeconfig`.
    pub kubeconfig: PathBuf,
}

impl TestCluster {
    /// A cluster whose API server listens on the host's loopback; its kubeconfig goes into
    /// `dir`.
    pub async fn start(
        dir: &Path,
        name: &str,
        pod_cidrs: &[&str],
        service_cidrs: &[&str],
    ) -> Result<Self> {
        Self::with_server(
            TestApiServer::start().await,
            dir,
            name,
            pod_cidrs,
            service_cidrs,
        )
    }

    /// A cluster whose API server listens on the loopback of `ns` (see
    /// [`TestApiServer::start_in`]); call it from a multi-threaded runtime.
    pub fn start_in(
        ns: &Netns,
        dir: &Path,
        name: &str,
        pod_cidrs: &[&str],
        service_cidrs: &[&str],
    ) -> Result<Self> {
        Self::with_server(
            TestApiServer::start_in(ns)?,
            dir,
            name,
            pod_cidrs,
            service_cidrs,
        )
    }

    fn with_server(
        server: TestApiServer,
        dir: &Path,
        name: &str,
        pod_cidrs: &[&str],
        service_cidrs: &[&str],
    ) -> Result<Self> {
        let kubeconfig = dir.join(format!("{name}.kubeconfig"));
        server.write_kubeconfig(&kubeconfig, name)?;
        let owned = |list: &[&str]| list.iter().map(|s| (*s).to_owned()).collect();
        Ok(Self {
            name: name.to_owned(),
            server,
            pod_cidrs: owned(pod_cidrs),
            service_cidrs: owned(service_cidrs),
            kubeconfig,
        })
    }

    /// Stores `object` (see [`TestApiServer::apply`]).
    pub fn apply(&self, object: &Value) -> Result<Value> {
        Ok(self.server.apply(object)?)
    }

    /// Adds a Node ([`objects::node`]).
    pub fn add_node(&self, name: &str, pod_cidr: &str, internal_ip: &str) -> Result<()> {
        self.apply(&objects::node(name, pod_cidr, internal_ip))?;
        Ok(())
    }

    /// Publishes a TunnelEndpoint for `node` as that node's tunnel would
    /// ([`objects::tunnel_endpoint`]).
    pub fn add_tunnel_endpoint(
        &self,
        node: &str,
        public_key: &str,
        endpoint: &str,
        pod_cidr: &str,
    ) -> Result<()> {
        self.apply(&objects::tunnel_endpoint(
            node, public_key, endpoint, pod_cidr,
        ))?;
        Ok(())
    }

    /// The TunnelEndpoint `name` as stored, if any.
    pub fn tunnel_endpoint(&self, name: &str) -> Option<Value> {
        self.server
            .get_value(
                "causeway.io/v1alpha1",
                "TunnelEndpoint",
                objects::CAUSEWAY_NAMESPACE,
                name,
            )
            .ok()
            .flatten()
    }
}

/// A Causeway configuration file, built a cluster and a section at a time in the order
/// written.
#[derive(Clone, Debug)]
pub struct ConfigFile {
    clusters: String,
    sections: String,
    local: String,
}

impl ConfigFile {
    /// A configuration whose local cluster is `local`.
    pub fn new(local: &str) -> Self {
        Self {
            clusters: String::new(),
            sections: String::new(),
            local: local.to_owned(),
        }
    }

    /// Adds `cluster`, read through its kubeconfig.
    pub fn cluster(self, cluster: &TestCluster) -> Self {
        let pods: Vec<&str> = cluster.pod_cidrs.iter().map(String::as_str).collect();
        let services: Vec<&str> = cluster.service_cidrs.iter().map(String::as_str).collect();
        let source = format!("{{ kubeconfig: {} }}", cluster.kubeconfig.display());
        self.cluster_with_source(&cluster.name, &pods, &services, &source)
    }

    /// Adds a cluster read from the YAML file `file` (a file source).
    pub fn file_cluster(
        self,
        name: &str,
        pod_cidrs: &[&str],
        service_cidrs: &[&str],
        file: &Path,
    ) -> Self {
        let source = format!("{{ file: {} }}", file.display());
        self.cluster_with_source(name, pod_cidrs, service_cidrs, &source)
    }

    /// Adds a cluster with `source` as its `source:` value (YAML flow style).
    pub fn cluster_with_source(
        mut self,
        name: &str,
        pod_cidrs: &[&str],
        service_cidrs: &[&str],
        source: &str,
    ) -> Self {
        let list = |l: &[&str]| {
            l.iter()
                .map(|c| format!("\"{c}\""))
                .collect::<Vec<_>>()
                .join(", ")
        };
        self.clusters.push_str(&format!("  - name: {name}\n"));
        if !pod_cidrs.is_empty() {
            self.clusters
                .push_str(&format!("    podCIDRs: [{}]\n", list(pod_cidrs)));
        }
        if !service_cidrs.is_empty() {
            self.clusters
                .push_str(&format!("    serviceCIDRs: [{}]\n", list(service_cidrs)));
        }
        self.clusters.push_str(&format!("    source: {source}\n"));
        self
    }

    /// Adds the top-level section `key` with `value` (YAML flow style, such as
    /// `{ remoteSyncTimeout: 120s }`).
    pub fn section(mut self, key: &str, value: &str) -> Self {
        self.sections.push_str(&format!("{key}: {value}\n"));
        self
    }

    /// The configuration's text.
    pub fn text(&self) -> String {
        format!(
            "cluster: {}\nclusters:\n{}{}",
            self.local, self.clusters, self.sections
        )
    }

    /// Writes the configuration to `path` and returns the path.
    pub fn write(&self, path: &Path) -> Result<PathBuf> {
        std::fs::write(path, self.text())?;
        Ok(path.to_path_buf())
    }
}
