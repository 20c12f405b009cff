//! Test kit of the control-plane tests (discovery_*, mesh_*): test API servers as clusters,
//! configuration files for them, and tunnel agents started in-process with injected parts,
//! each with its own state directory (its key file) under the test's directory.
#![allow(dead_code)]

use std::ops::Deref;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Result;
use causeway_shared::catalog::Catalog;
use causeway_shared::config::{Config, SourceSpec};
use causeway_shared::model::ObjectKind;
use causeway_shared::source::{SourceMetrics, SourceOptions, client_for, spawn_sources};
use causeway_shared::sync_runner::SyncTiming;
use causeway_tests::cluster::ConfigFile;
use causeway_tunnel::agent::{Agent, AgentConfig, Identity, Parts, Timing};
use causeway_tunnel::keystore::KeyStore;
use causeway_tunnel::publish::Publisher;
use prometheus_client::registry::Registry;
use tokio::task::JoinHandle;

/// Namespace of the tunnels in every test cluster.
pub const NS: &str = causeway_tests::objects::CAUSEWAY_NAMESPACE;

/// One test cluster of the kit (its API server, ranges and kubeconfig), with the state
/// directories of its nodes' tunnels under the test's directory.
pub struct TestCluster {
    cluster: causeway_tests::cluster::TestCluster,
    dir: PathBuf,
}

impl Deref for TestCluster {
    type Target = causeway_tests::cluster::TestCluster;

    fn deref(&self) -> &Self::Target {
        &self.cluster
    }
}

/// The two clusters most tests use: `a` (pods 10.128.0.0/16, services 172.30.0.0/16) and `b`
/// (pods 10.129.0.0/16, services 172.31.0.0/16), with no nodes yet.
pub async fn clusters_a_b(dir: &Path) -> Result<(TestCluster, TestCluster)> {
    Ok((
        TestCluster::start(dir, "a", "10.128.0.0/16", "172.30.0.0/16").await?,
        TestCluster::start(dir, "b", "10.129.0.0/16", "172.31.0.0/16").await?,
    ))
}

impl TestCluster {
    pub async fn start(dir: &Path, name: &str, pod_cidr: &str, service_cidr: &str) -> Result<Self> {
        Ok(Self {
            cluster: causeway_tests::cluster::TestCluster::start(
                dir,
                name,
                &[pod_cidr],
                &[service_cidr],
            )
            .await?,
            dir: dir.into(),
        })
    }

    /// The state directory (key file) of the tunnel of `node` of this cluster.
    pub fn state_dir(&self, node: &str) -> PathBuf {
        self.dir.join(format!("state-{}-{node}", self.name))
    }

    /// A kube client of this cluster.
    pub async fn client(&self) -> Result<kube::Client> {
        Ok(client_for(
            &SourceSpec::Kubeconfig {
                path: self.kubeconfig.clone(),
                context: None,
            },
            Duration::from_secs(10),
        )
        .await?)
    }
}

/// Writes the configuration of a tunnel running in `local`, with `tunnel_yaml` as its
/// `tunnel:` section (flow style), and loads it.
pub fn write_config(
    dir: &Path,
    local: &str,
    clusters: &[&TestCluster],
    tunnel_yaml: &str,
) -> Result<Config> {
    let file = clusters
        .iter()
        .fold(ConfigFile::new(local), |file, c| file.cluster(c))
        .section("tunnel", tunnel_yaml)
        .write(&dir.join(format!("config-{local}-{}.yaml", std::process::id())))?;
    Ok(Config::load(&file)?)
}

/// Fast loops for tests.
pub fn fast_timing() -> Timing {
    Timing {
        sync: SyncTiming {
            min_interval: Duration::from_millis(50),
            full_resync_interval: Duration::from_secs(30),
            retry_initial: Duration::from_millis(100),
            retry_max: Duration::from_secs(1),
        },
        publish_every: Duration::from_millis(200),
        key_poll: Duration::from_millis(200),
        health_every: Duration::from_millis(300),
        steering_recheck: Duration::from_millis(300),
    }
}

/// A running agent with its sources.
pub struct RunningAgent {
    pub agent: Agent,
    pub catalog: Arc<Catalog>,
    pub registry: Arc<Mutex<Registry>>,
    sources: AbortOnDrop,
}

/// Source tasks, aborted when dropped.
pub struct AbortOnDrop(Vec<JoinHandle<()>>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        for s in &self.0 {
            s.abort();
        }
    }
}

/// Starts the tunnel control plane of `node` in its local cluster, with the key from its
/// state directory ([`TestCluster::state_dir`], created on first start), publishing there.
pub async fn start_agent(
    config: Config,
    local: &TestCluster,
    node: &str,
    pod_name: Option<&str>,
    parts: Parts,
) -> Result<RunningAgent> {
    let config = Arc::new(config);
    let client = local.client().await?;
    let keystore = KeyStore::open(local.state_dir(node))?;
    let (stored, _) = keystore.load_or_create()?;
    let publisher = Publisher::new(
        client,
        NS,
        node,
        pod_name.map(Into::into),
        config.tunnel.endpoint.clone(),
        config.tunnel.listen_port,
    );
    let mut registry = Registry::default();
    let metrics = SourceMetrics::register(&mut registry);
    let catalog = Catalog::for_config(&config);
    let sources = spawn_sources(
        &config,
        &catalog,
        &SourceOptions::new(&[ObjectKind::Node, ObjectKind::TunnelEndpoint]),
        &metrics,
    );
    let agent = Agent::start(
        AgentConfig {
            config,
            identity: Identity {
                node: node.into(),
                namespace: NS.into(),
                pod_name: pod_name.map(Into::into),
                pod_interface: "eth0".into(),
            },
            catalog: catalog.clone(),
            parts,
            key: stored.key,
            keystore: Some(keystore),
            publisher: Some(publisher),
            timing: fast_timing(),
        },
        &mut registry,
    );
    Ok(RunningAgent {
        agent,
        catalog,
        registry: Arc::new(Mutex::new(registry)),
        sources: AbortOnDrop(sources),
    })
}

impl RunningAgent {
    /// Clean shutdown: stops the loops and the sources, removes the steering flows.
    pub async fn shutdown(self) {
        let RunningAgent { agent, sources, .. } = self;
        drop(sources);
        agent.shutdown().await;
    }
}

/// Parts with fakes for everything but the given WireGuard device.
pub fn fake_parts(wg: &Arc<causeway_tunnel::fakewg::FakeWg>) -> Parts {
    Parts {
        backend: wg.clone(),
        routes: Arc::new(causeway_tunnel::routes::FakeRoutes::default()),
        nft: Arc::new(causeway_tunnel::fakenft::FakeNft::default()),
        switch: None,
        host: Arc::new(causeway_tunnel::host::StaticHost::default()),
    }
}
