//! `causeway-tunnel --config FILE`: the WireGuard mesh between clusters, on one node.
//! `causeway-tunnel --config FILE rotate`: replace this node's key in its state directory (the
//! running tunnel follows).
//! `causeway-tunnel --config FILE remove-device`: delete the tunnel interface and its routes
//! (uninstall; a stopped tunnel otherwise leaves them so that traffic fails closed).

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context as _, Result};
use causeway_shared::config::{Config, SourceSpec, SteeringMode};
use causeway_shared::model::ObjectKind;
use causeway_shared::process::{CommonArgs, Process};
use causeway_shared::source::client_for;
use causeway_shared::telemetry;
use causeway_tunnel::agent::{Agent, AgentConfig, Identity, Parts, Timing};
use causeway_tunnel::host::NetlinkHost;
use causeway_tunnel::keystore::KeyStore;
use causeway_tunnel::mss::NftCli;
use causeway_tunnel::publish::Publisher;
use causeway_tunnel::routes::NetlinkRoutes;
use causeway_tunnel::steering::{OvsCli, Switch};
use causeway_tunnel::wg::{self, OpenOptions, WgBackend};
use clap::{Parser, Subcommand};

/// The Causeway tunnel: WireGuard peers with every node of every remote cluster.
#[derive(Parser, Debug)]
#[command(version)]
struct Args {
    #[command(flatten)]
    common: CommonArgs,
    /// Name of the node this tunnel runs on (downward API `spec.nodeName`).
    #[arg(long, env = "CAUSEWAY_NODE_NAME")]
    node_name: String,
    /// Namespace of the tunnel's pod, Service and TunnelEndpoint.
    #[arg(long, env = "CAUSEWAY_POD_NAMESPACE", default_value = "causeway")]
    namespace: String,
    /// Name of the tunnel's own pod (labelled for the per-node Service).
    #[arg(long, env = "CAUSEWAY_POD_NAME")]
    pod_name: Option<String>,
    /// The pod's interface on the SDN bridge (its IP and MAC steer traffic with `steering: ovs`).
    #[arg(long, env = "CAUSEWAY_POD_INTERFACE", default_value = "eth0")]
    pod_interface: String,
    /// Never use kernel WireGuard, even when the module is present.
    #[arg(long, env = "CAUSEWAY_TUNNEL_USERSPACE")]
    userspace: bool,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Generates a new key for this node and stores it in the state directory; the running
    /// tunnel reconfigures its device and republishes its TunnelEndpoint, and the peers follow.
    Rotate,
    /// Deletes the tunnel interface, and with it its routes (uninstall). Stopping the tunnel
    /// leaves both in place, so that traffic for remote ranges is dropped, never sent in clear.
    RemoveDevice,
}

async fn local_client(config: &Config) -> Result<kube::Client> {
    let local = config.local();
    client_for(&local.source, std::time::Duration::from_secs(30))
        .await
        .with_context(|| format!("cluster {:?}: API client of the local cluster", local.name))
}

/// Where the key and the saved state go without `--state-dir` (a hostPath in the DaemonSet).
const DEFAULT_STATE_DIR: &str = "/var/lib/causeway";

#[tokio::main]
async fn main() -> Result<()> {
    let mut args = Args::parse();
    // The tunnel always has a state directory: the node's private key lives there
    // (`wireguard.key`, never in the API), beside the remotes' last good state.
    let state_dir = args
        .common
        .state_dir
        .get_or_insert_with(|| PathBuf::from(DEFAULT_STATE_DIR))
        .clone();
    let config = args.common.init();
    if let SourceSpec::File { path } = &config.local().source {
        // The tunnel publishes its TunnelEndpoint and per-node Service through its own
        // cluster's API: a configuration error, reported like the others.
        eprintln!(
            "error: {}: cluster {:?} (the local cluster): source: {} is a file source; \
             causeway-tunnel needs the local cluster's API (inCluster or kubeconfig)",
            args.common.config.display(),
            config.local().name,
            path.display()
        );
        std::process::exit(2);
    }
    if let Some(Command::RemoveDevice) = args.command {
        let interface = &config.tunnel.interface;
        let removed = wg::remove_device(interface).await?;
        tracing::info!(%interface, removed, "tunnel interface removal");
        return Ok(());
    }
    let keystore = KeyStore::open(&state_dir)?;
    if let Some(Command::Rotate) = args.command {
        let public = keystore.rotate()?;
        println!("{public}");
        return Ok(());
    }
    let (stored, created) = keystore.load_or_create()?;
    tracing::info!(public_key = %stored.key.public_key(), created, path = %keystore.path().display(), "node key ready");

    let client = local_client(&config).await?;
    let mut opts = OpenOptions::new(config.tunnel.interface.clone());
    opts.mtu = config.tunnel.mtu;
    opts.force_userspace = args.userspace;
    let backend: Arc<dyn WgBackend> = Arc::from(wg::open(&opts).await?);
    let routes = NetlinkRoutes::connect()?;
    let (conn, handle, _) = rtnetlink::new_connection()?;
    tokio::spawn(conn);
    let switch: Option<Arc<dyn Switch>> = match config.tunnel.steering {
        SteeringMode::Ovs => Some(Arc::new(OvsCli::default())),
        SteeringMode::None => None,
    };
    let publisher = Publisher::new(
        client,
        &args.namespace,
        &args.node_name,
        args.pod_name.clone(),
        config.tunnel.endpoint.clone(),
        config.tunnel.listen_port,
    );

    let process = Process::new(config);
    process.start_sources(
        args.common
            .source_options(&[ObjectKind::Node, ObjectKind::TunnelEndpoint]),
    );
    let agent = process.with_registry(|reg| {
        Agent::start(
            AgentConfig {
                config: process.config.clone(),
                identity: Identity {
                    node: args.node_name.clone(),
                    namespace: args.namespace.clone(),
                    pod_name: args.pod_name.clone(),
                    pod_interface: args.pod_interface.clone(),
                },
                catalog: process.catalog.clone(),
                parts: Parts {
                    backend,
                    routes: Arc::new(routes),
                    nft: Arc::new(NftCli::default()),
                    switch,
                    host: Arc::new(NetlinkHost(handle)),
                },
                key: stored.key,
                keystore: Some(keystore),
                publisher: Some(publisher),
                timing: Timing::default(),
            },
            reg,
        )
    });
    let tunnel = &process.config.tunnel;
    let listening = telemetry::serve_with_debug(
        "tunnel",
        (
            tunnel.metrics_listen,
            process.telemetry_router().merge(agent.paths_router()),
        ),
        (tunnel.debug_listen, agent.router()),
    )
    .await?;
    tracing::info!(
        metrics = %listening.metrics,
        debug = %listening.debug,
        "serving /metrics /healthz /readyz /paths, and /status /wg"
    );

    causeway_shared::signal::shutdown_signal().await;
    tracing::info!("shutting down");
    agent.shutdown().await;
    Ok(())
}
