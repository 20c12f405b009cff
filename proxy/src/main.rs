//! `causeway-proxy --config FILE`: the multi-cluster service proxy.

use std::net::IpAddr;
use std::sync::{Arc, Mutex};

use anyhow::Context as _;
use arc_swap::ArcSwap;
use causeway_proxy::aliases::Aliases;
use causeway_proxy::backend::Backend;
use causeway_proxy::backend::ipvs::{IpvsBackend, IpvsBackendError};
use causeway_proxy::backend::nft::{NftBackend, Writer};
use causeway_proxy::debug::{self, DebugState};
use causeway_proxy::metrics::ProxyMetrics;
use causeway_proxy::plan::{DesiredState, PlanSettings};
use causeway_proxy::sync::{Owner, Syncer};
use causeway_shared::config::{Config, NftWriter, ProxyBackend};
use causeway_shared::model::ObjectKind;
use causeway_shared::process::{CommonArgs, PathHealthArgs, Process};
use causeway_shared::sync_runner::SyncTiming;
use causeway_shared::telemetry;
use clap::Parser;

/// Serves the Services of every remote cluster at their ClusterIPs, through IPVS or
/// nftables, from this network namespace.
#[derive(Debug, Parser)]
#[command(name = "causeway-proxy", version)]
struct Args {
    #[command(flatten)]
    common: CommonArgs,
    #[command(flatten)]
    path_health: PathHealthArgs,
}

fn owner_of(config: &Config) -> Owner {
    let remotes: Vec<_> = config
        .remotes()
        .map(|c| (c.name.clone(), c.service_cidrs.clone()))
        .collect();
    Arc::new(move |ip: IpAddr| {
        remotes
            .iter()
            .find(|(_, cidrs)| cidrs.iter().any(|n| n.contains(&ip)))
            .map(|(n, _)| n.clone())
    })
}

/// How long the first programming waits for every remote cluster's first list.
const FIRST_SYNC_HOLD: std::time::Duration = std::time::Duration::from_secs(5);

fn choose_backend(config: &Config, owner: &Owner) -> anyhow::Result<Box<dyn Backend>> {
    let ipvs = || {
        let owner = owner.clone();
        IpvsBackend::new(Box::new(move |ip| owner(ip).is_some()))
    };
    // Local pods keep their address: the remote cluster routes it back through the tunnel.
    let nft = || {
        Box::new(
            NftBackend::new(config.proxy.nft_table.clone())
                .shards(config.proxy.nft_shards)
                .writer(match config.proxy.nft_writer {
                    NftWriter::Netlink => Writer::Netlink,
                    NftWriter::Nft => Writer::Nft,
                })
                .keep_sources(config.local().pod_cidrs.clone()),
        ) as Box<dyn Backend>
    };
    Ok(match config.proxy.backend {
        ProxyBackend::Nftables => nft(),
        ProxyBackend::Ipvs => Box::new(ipvs().context("proxy.backend: ipvs")?),
        ProxyBackend::Auto => match ipvs() {
            Ok(b) => Box::new(b),
            Err(IpvsBackendError::Client(causeway_ipvs::Error::NotAvailable)) => {
                tracing::info!("no IPVS in this kernel; using nftables");
                nft()
            }
            Err(e) => {
                tracing::warn!(error = %e, "IPVS unusable; using nftables");
                nft()
            }
        },
    })
}

async fn run(args: Args) -> anyhow::Result<()> {
    let config = args.common.init();
    let process = Process::new(config);
    let cfg = process.config.clone();
    let owner = owner_of(&cfg);
    let backend = choose_backend(&cfg, &owner)?;
    tracing::info!(backend = backend.name(), interface = %cfg.proxy.interface, "starting");
    let aliases = Aliases::new(cfg.proxy.interface.clone()).context("proxy.interface")?;
    aliases.list().await.with_context(|| {
        format!(
            "{}: proxy.interface {:?}",
            cfg.path.display(),
            cfg.proxy.interface
        )
    })?;
    let metrics = process.with_registry(ProxyMetrics::register);
    let applied = Arc::new(ArcSwap::from_pointee(DesiredState::default()));
    let backend = Arc::new(Mutex::new(backend));
    let mut syncer = Syncer::new(
        process.catalog.clone(),
        backend.clone(),
        Some(aliases),
        PlanSettings {
            stale_rules_expiry: cfg.proxy.stale_rules_expiry.into(),
        },
        cfg.proxy.graceful_termination_period.into(),
        metrics,
        owner,
        applied.clone(),
    )
    .hold_first_sync(FIRST_SYNC_HOLD);
    syncer
        .adopt()
        .await
        .context("reading the kernel state to adopt")?;
    let listening = telemetry::serve_with_debug(
        "proxy",
        (cfg.proxy.metrics_listen, process.telemetry_router()),
        (
            cfg.proxy.debug_listen,
            debug::router(DebugState { backend, applied }),
        ),
    )
    .await?;
    tracing::info!(metrics = %listening.metrics, ipvs = %listening.debug, "telemetry and /ipvs listening");
    process.start_sources(
        args.common
            .source_options(&[ObjectKind::Service, ObjectKind::EndpointSlice]),
    );
    process.start_path_health(&args.path_health)?;
    let timing = SyncTiming {
        min_interval: cfg.proxy.min_sync_interval.into(),
        full_resync_interval: cfg.proxy.full_resync_interval.into(),
        ..SyncTiming::default()
    };
    tokio::select! {
        _ = syncer.run(timing) => {}
        () = causeway_shared::signal::shutdown_signal() => {
            // Rules and aliases stay: the next start adopts them, and live connections survive.
            tracing::info!("shutting down; kernel state left in place");
        }
    }
    Ok(())
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let rt = tokio::runtime::Runtime::new().context("tokio runtime")?;
    rt.block_on(run(args))
}
