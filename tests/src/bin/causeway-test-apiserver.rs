//! causeway-test-apiserver: serves Kubernetes objects from YAML files over the real API
//! protocol, for demos and end-to-end tests of the binaries.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context as _;
use causeway_tests::apiserver::{LoadError, Options, TestApiServer, read_objects};
use clap::Parser;

/// A test Kubernetes API server (plain HTTP, no authentication) preloaded from YAML files in
/// the format of `kubectl get services,endpointslices,nodes -A -o yaml`.
#[derive(Debug, Parser)]
#[command(version)]
struct Args {
    /// Address to listen on; port 0 picks a free port (the URL is printed on stdout).
    #[arg(
        long,
        env = "CAUSEWAY_TEST_APISERVER_LISTEN",
        default_value = "127.0.0.1:0"
    )]
    listen: SocketAddr,
    /// Write a kubeconfig pointing at the server to this file.
    #[arg(long, env = "CAUSEWAY_TEST_APISERVER_KUBECONFIG_OUT")]
    kubeconfig_out: Option<PathBuf>,
    /// Name of the cluster, user and context in the kubeconfig.
    #[arg(long, env = "CAUSEWAY_TEST_APISERVER_CONTEXT", default_value = "test")]
    context: String,
    /// YAML file of objects to serve (a `kind: List`, `---` documents, or both); repeatable.
    #[arg(
        long = "load",
        env = "CAUSEWAY_TEST_APISERVER_LOAD",
        value_delimiter = ','
    )]
    load: Vec<PathBuf>,
    /// Seconds between BOOKMARK events on watches that allow them.
    #[arg(
        long,
        env = "CAUSEWAY_TEST_APISERVER_BOOKMARK_INTERVAL",
        default_value_t = 10
    )]
    bookmark_interval: u64,
    /// Change events kept for watches to resume from; older versions get 410 Gone.
    #[arg(long, env = "CAUSEWAY_TEST_APISERVER_HISTORY", default_value_t = 1000)]
    history: usize,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let args = Args::parse();

    // Read everything before binding, so a bad file fails fast with its name.
    let files = args
        .load
        .iter()
        .map(|path| Ok((path.display().to_string(), read_objects(path)?)))
        .collect::<Result<Vec<_>, LoadError>>()?;
    let options = Options {
        history: args.history,
        bookmark_interval: Duration::from_secs(args.bookmark_interval.max(1)),
        ..Options::default()
    };
    let server = TestApiServer::start_with(args.listen, options).await?;
    let mut loaded = 0;
    for (origin, objects) in files {
        loaded += server.load_objects(objects, &origin)?;
    }
    if let Some(path) = &args.kubeconfig_out {
        server.write_kubeconfig(path, &args.context)?;
        tracing::info!(path = %path.display(), context = %args.context, "wrote kubeconfig");
    }
    tracing::info!(url = %server.url(), objects = loaded, "test apiserver serving");
    println!("{}", server.url());

    tokio::signal::ctrl_c()
        .await
        .context("waiting for ctrl-c")?;
    Ok(())
}
