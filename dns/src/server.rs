//! `causeway-dns serve`: start-up and wiring. Configuration is checked and the first
//! index built before any socket is bound; then the sources, the index builder, the UDP
//! fast path, the hickory-server TCP listener and the telemetry server run until SIGTERM.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use causeway_shared::model::ObjectKind;
use causeway_shared::process::{CommonArgs, PathHealthArgs, Process};
use causeway_shared::signal::shutdown_signal;
use hickory_server::Server;
use tokio::time::Instant;

use crate::forward::{ForwardError, Forwarder, upstream_addrs};
use crate::handler::{DnsHandler, Shared};
use crate::index_builder::{self, IndexBuilder};
use crate::metrics::Metrics;
use crate::udp::{self, UdpError};

/// Flags of `causeway-dns serve` (the default command).
#[derive(Clone, Debug, clap::Args)]
pub struct ServeArgs {
    #[command(flatten)]
    pub common: CommonArgs,
    #[command(flatten)]
    pub path_health: PathHealthArgs,
    /// Addresses served over UDP and TCP (repeat or comma-separate); default: `dns.listen`.
    #[arg(long, env = "CAUSEWAY_DNS_LISTEN", value_delimiter = ',')]
    pub listen: Vec<SocketAddr>,
    /// Address of /metrics, /healthz, /readyz; default: `dns.metricsListen`.
    #[arg(long, env = "CAUSEWAY_DNS_METRICS_LISTEN")]
    pub metrics_listen: Option<SocketAddr>,
    /// This server's Service ClusterIP(s), which Kubernetes gives the pod as
    /// `CAUSEWAY_DNS_SERVICE_HOST`: an upstream at one of them on port 53 is ourselves
    /// through the Service (a forwarding loop), and is dropped like our own listen addresses.
    #[arg(long, env = "CAUSEWAY_DNS_SERVICE_HOST", value_delimiter = ',')]
    pub service_ip: Vec<std::net::IpAddr>,
    /// UDP sockets (and threads) per listen address; default: one per core.
    #[arg(long, env = "CAUSEWAY_DNS_UDP_THREADS")]
    pub udp_threads: Option<usize>,
}

/// Why the server stopped or could not start.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error(transparent)]
    Forward(#[from] ForwardError),
    #[error(transparent)]
    Udp(#[from] UdpError),
    /// A TCP listener could not be bound.
    #[error("cannot listen on tcp {addr}: {source}")]
    TcpBind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error(transparent)]
    Telemetry(#[from] causeway_shared::telemetry::TelemetryError),
    /// `--path-health-url` is not an `http://host:port/path` URL.
    #[error(transparent)]
    PathHealth(#[from] causeway_shared::path_health::PathHealthError),
    /// The hickory-server TCP server failed.
    #[error("dns server failed: {0}")]
    Server(String),
}

/// How long an idle TCP connection is kept.
const TCP_IDLE: Duration = Duration::from_secs(10);

pub async fn run(args: ServeArgs) -> Result<(), ServeError> {
    let config = args.common.init();
    let listen = if args.listen.is_empty() {
        config.dns.listen.clone()
    } else {
        args.listen.clone()
    };
    let metrics_listen = args.metrics_listen.unwrap_or(config.dns.metrics_listen);
    // Our own addresses: what we listen on, and the Service in front of us.
    let ourselves: Vec<SocketAddr> = listen
        .iter()
        .copied()
        .chain(args.service_ip.iter().map(|ip| SocketAddr::new(*ip, 53)))
        .collect();
    let forwarder = Forwarder::new(upstream_addrs(&config.dns.upstreams)?, &ourselves)?;

    let process = Process::new(config);
    let metrics = process.with_registry(Metrics::register);
    // The first index (every zone not ready yet) exists before the first query, so our
    // names never reach the upstream.
    let first = IndexBuilder::new(process.config.clone())
        .build(&process.catalog.snapshot(), Instant::now());
    let index = Arc::new(ArcSwap::from_pointee(first));
    let allow_from = process.config.dns_allow_from();
    let shared = Shared::new(index.clone(), forwarder, metrics.clone(), allow_from);

    // Bind everything before starting anything.
    let threads = args
        .udp_threads
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    let mut udp_sockets = Vec::new();
    let mut tcp_listeners = Vec::new();
    for addr in &listen {
        let sockets = udp::bind(*addr, threads)?;
        let bound = sockets[0].local_addr().map_err(|source| UdpError::Bind {
            addr: *addr,
            source,
        })?;
        let tcp = tokio::net::TcpListener::bind(bound)
            .await
            .map_err(|source| ServeError::TcpBind {
                addr: bound,
                source,
            })?;
        tracing::info!(udp = %bound, tcp = %bound, udp_threads = threads, "serving dns");
        udp_sockets.extend(sockets);
        tcp_listeners.push(tcp);
    }
    // Ready once the served index was built from a snapshot that met the readiness rule:
    // the catalog alone turns ready a rebuild before the answers do.
    let served = index.clone();
    let router = process.telemetry_router_with_ready(Arc::new(move || served.load().ready()));
    let telemetry = causeway_shared::telemetry::serve(metrics_listen, router).await?;
    tracing::info!(addr = %telemetry, "serving telemetry");

    process.start_sources(
        args.common
            .source_options(&[ObjectKind::Service, ObjectKind::EndpointSlice]),
    );
    process.start_path_health(&args.path_health)?;
    tokio::spawn(index_builder::run(
        process.catalog.clone(),
        process.config.clone(),
        index,
        metrics,
    ));
    let runtime = tokio::runtime::Handle::current();
    for (i, socket) in udp_sockets.into_iter().enumerate() {
        let (shared, runtime) = (shared.clone(), runtime.clone());
        std::thread::Builder::new()
            .name(format!("dns-udp-{i}"))
            .spawn(move || udp::serve(Arc::new(socket), shared, runtime))
            .map_err(|source| UdpError::Bind {
                addr: listen[0],
                source,
            })?;
    }
    let mut server = Server::new(DnsHandler(shared));
    for tcp in tcp_listeners {
        server.register_listener(tcp, TCP_IDLE, 64);
    }
    tokio::select! {
        done = server.block_until_done() => done.map_err(|e| ServeError::Server(e.to_string())),
        () = shutdown_signal() => {
            tracing::info!("shutting down");
            Ok(())
        }
    }
}
