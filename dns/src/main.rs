//! `causeway-dns [serve] --config FILE [--listen ADDR:PORT ...]`, and `causeway-dns webhook`.

use std::ffi::OsString;

use clap::{Parser, Subcommand};

use causeway_dns::server::{self, ServeArgs};
use causeway_dns::webhook;

/// mimalloc returns freed pages to the system: parsing a large cluster file peaks at
/// several times the live heap, and glibc's malloc kept that peak resident for good.
/// Transparent huge pages are turned off for the process (see `main`).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// DNS for the pod networks of several Kubernetes clusters.
#[derive(Debug, Parser)]
#[command(version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Serve the cluster zones (the default command: `causeway-dns --config FILE` works too).
    Serve(ServeArgs),
    /// Run the mutating admission webhook that points selected pods at causeway-dns.
    Webhook(Box<webhook::Args>),
}

/// The arguments with `serve` inserted when no subcommand is named.
fn with_default_command(mut args: Vec<OsString>) -> Vec<OsString> {
    let first = args.get(1).and_then(|a| a.to_str());
    let named = matches!(
        first,
        Some("serve" | "webhook" | "help" | "-h" | "--help" | "-V" | "--version")
    );
    if !named {
        args.insert(1.min(args.len()), "serve".into());
    }
    args
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    // mimalloc asks for transparent huge pages on its arenas; a 2 MiB page stays resident
    // while any object in it lives, which kept ~35 MB more resident after the cluster
    // files' parse (65 vs 99 MB for 3 x 3,000 services). Failure only costs memory.
    let _ = nix::sys::prctl::set_thp_disable(true);
    let cli = Cli::parse_from(with_default_command(std::env::args_os().collect()));
    match cli.command {
        Command::Serve(args) => server::run(args).await?,
        Command::Webhook(args) => {
            causeway_shared::telemetry::init_tracing(causeway_shared::telemetry::LogFormat::Text);
            causeway_shared::supervise::install_panic_hook();
            webhook::run(*args).await?
        }
    }
    Ok(())
}
