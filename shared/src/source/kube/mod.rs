//! The Kubernetes source: one client per cluster, one watcher per kind.
//!
//! A kind counts only after its first full list (`InitDone`); a relist (after `410 Gone`
//! or a reconnect) is buffered and swapped in whole, so consumers never see a partial
//! view. While the API is unreachable the last-known-good data stays published and the
//! outage shows in the cluster status and metrics.
//!
//! With a state directory ([`super::persist`]), a remote's last fully listed data is also
//! saved to disk and published, marked stale, at the next start, before the API is
//! reached; the first full list of every kind replaces it.

use std::fmt::Debug;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use futures::stream::{BoxStream, SelectAll};
use futures::{Stream, StreamExt};
use k8s_openapi::api::core::v1 as core;
use k8s_openapi::api::discovery::v1 as discovery;
use kube::api::Api;
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::runtime::WatchStreamExt;
use kube::runtime::watcher::{self, Event};
use kube::{Client, Resource};
use serde::de::DeserializeOwned;
use tokio::time::Instant;

mod state;

use state::{Change, Object, SourceState, run_changes};

use super::metrics::SourceMetrics;
use super::persist::{self, StateDir};
use crate::catalog::Catalog;
use crate::config::SourceSpec;
use crate::crd;
use crate::model::convert::ConvertError;
use crate::model::{EndpointSlice, Node, ObjectKind, Service, TunnelEndpoint};

/// Why a client for a cluster could not be built.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The pod's service account could not be read.
    #[error("in-cluster configuration: {0}")]
    InCluster(#[source] kube::config::InClusterError),
    /// The kubeconfig file could not be read or does not parse.
    #[error("kubeconfig {path}: {source}")]
    Kubeconfig {
        path: String,
        #[source]
        source: kube::config::KubeconfigError,
    },
    /// The client could not be built from the configuration.
    #[error("client: {0}")]
    Client(#[source] kube::Error),
    /// A `file:` source has no API to connect to.
    #[error("source: {path} is a file source, which has no API (use inCluster or kubeconfig)")]
    NoApi { path: String },
}

/// Builds the client of one cluster from its source spec.
pub async fn client_for(spec: &SourceSpec, read_timeout: Duration) -> Result<Client, ClientError> {
    let mut cfg = match spec {
        SourceSpec::InCluster => kube::Config::incluster().map_err(ClientError::InCluster)?,
        SourceSpec::Kubeconfig { path, context } => {
            let kc_err = |source| ClientError::Kubeconfig {
                path: path.display().to_string(),
                source,
            };
            let kc = Kubeconfig::read_from(path).map_err(kc_err)?;
            let opts = KubeConfigOptions {
                context: context.clone(),
                ..Default::default()
            };
            kube::Config::from_custom_kubeconfig(kc, &opts)
                .await
                .map_err(kc_err)?
        }
        SourceSpec::File { path } => {
            return Err(ClientError::NoApi {
                path: path.display().to_string(),
            });
        }
    };
    cfg.read_timeout = Some(read_timeout);
    cfg.connect_timeout = Some(read_timeout.min(Duration::from_secs(10)));
    Client::try_from(cfg).map_err(ClientError::Client)
}

/// A watched Kubernetes type and how it maps to the model.
trait Watched:
    Resource<DynamicType = ()> + Clone + DeserializeOwned + Debug + Send + Sync + 'static
{
    const OBJECT_KIND: ObjectKind;
    fn convert(&self) -> Result<Object, ConvertError>;
}

impl Watched for core::Service {
    const OBJECT_KIND: ObjectKind = ObjectKind::Service;
    fn convert(&self) -> Result<Object, ConvertError> {
        Service::try_from(self).map(Object::Service)
    }
}

impl Watched for discovery::EndpointSlice {
    const OBJECT_KIND: ObjectKind = ObjectKind::EndpointSlice;
    fn convert(&self) -> Result<Object, ConvertError> {
        EndpointSlice::try_from(self).map(Object::Slice)
    }
}

impl Watched for core::Node {
    const OBJECT_KIND: ObjectKind = ObjectKind::Node;
    fn convert(&self) -> Result<Object, ConvertError> {
        Node::try_from(self).map(Object::Node)
    }
}

impl Watched for crd::TunnelEndpoint {
    const OBJECT_KIND: ObjectKind = ObjectKind::TunnelEndpoint;
    fn convert(&self) -> Result<Object, ConvertError> {
        TunnelEndpoint::try_from(self).map(Object::Tunnel)
    }
}

/// Exponential backoff between watch retries, reset by kube after each success. Capped
/// lower than client-go's 30 s: a remote cluster that comes back should be followed again
/// within seconds.
struct WatchBackoff {
    next: Duration,
    initial: Duration,
    max: Duration,
}

impl WatchBackoff {
    fn new(max: Duration) -> Self {
        let initial = Duration::from_millis(200).min(max);
        Self {
            next: initial,
            initial,
            max,
        }
    }
}

impl Iterator for WatchBackoff {
    type Item = Duration;
    fn next(&mut self) -> Option<Duration> {
        let d = self.next;
        self.next = (self.next * 2).min(self.max);
        Some(d)
    }
}

impl kube::runtime::utils::Backoff for WatchBackoff {
    fn reset(&mut self) {
        self.next = self.initial;
    }
}

fn watch<K: Watched>(
    client: Client,
    timeout: Duration,
    max_backoff: Duration,
) -> BoxStream<'static, Change> {
    let api: Api<K> = Api::all(client);
    // The server ends each watch after this long, so a silently dead connection is
    // replaced well before the client's read timeout.
    let server_timeout = u32::try_from(timeout.as_secs().saturating_sub(1).max(1)).unwrap_or(290);
    let mut cfg = watcher::Config::default().timeout(server_timeout);
    if K::OBJECT_KIND == ObjectKind::EndpointSlice {
        cfg = cfg.labels(crate::model::convert::SERVICE_NAME_LABEL);
    }
    let stream = watcher::watcher(api, cfg)
        .backoff(WatchBackoff::new(max_backoff))
        .map(|ev| match ev {
            Ok(Event::Init) => Change::Init(K::OBJECT_KIND),
            Ok(Event::InitDone) => Change::InitDone(K::OBJECT_KIND),
            Ok(Event::InitApply(o)) => convert(&o, true),
            Ok(Event::Apply(o)) => convert(&o, false),
            Ok(Event::Delete(o)) => Change::Delete {
                kind: K::OBJECT_KIND,
                namespace: o.meta().namespace.clone().unwrap_or_default(),
                name: o.meta().name.clone().unwrap_or_default(),
            },
            Err(e) => Change::Error(K::OBJECT_KIND, e.to_string()),
        });
    stream.boxed()
}

fn convert<K: Watched>(o: &K, initial: bool) -> Change {
    match o.convert() {
        Ok(obj) => Change::Upsert { initial, obj },
        Err(e) => Change::Invalid(K::OBJECT_KIND, e),
    }
}

/// Watches one cluster's API.
#[derive(Clone, Debug)]
pub struct KubeSource {
    pub cluster: String,
    pub spec: SourceSpec,
    pub kinds: Vec<ObjectKind>,
    pub api_timeout: Duration,
    pub max_backoff: Duration,
    /// Where the cluster's last good state is saved and loaded from; None for the local
    /// cluster and without a state directory.
    pub state: Option<StateDir>,
}

impl KubeSource {
    /// Runs forever: publishes the saved state if there is one, builds the client
    /// (retrying with backoff while that fails), then follows the watchers.
    pub async fn run(self, catalog: Arc<Catalog>, metrics: SourceMetrics) {
        let state = self.seed(&catalog, &metrics).await;
        let cluster = self.cluster.clone();
        let mut delay = Duration::from_millis(500);
        let client = loop {
            match client_for(&self.spec, self.api_timeout).await {
                Ok(c) => break c,
                Err(e) => {
                    let message = e.to_string();
                    tracing::error!(cluster, error = %message, "cannot build the cluster's API client; retrying");
                    metrics.error(&cluster, "client");
                    catalog.update_status(&cluster, |s| {
                        s.connected = false;
                        s.disconnected_since.get_or_insert_with(Instant::now);
                        s.last_error = Some(message);
                    });
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(self.max_backoff);
                }
            }
        };
        self.follow_from(state, client, catalog, metrics).await;
    }

    /// The starting state: the saved one (published at once, marked stale) or empty.
    async fn seed(&self, catalog: &Catalog, metrics: &SourceMetrics) -> SourceState {
        let mut state = SourceState::new(&self.cluster, &self.kinds);
        let Some(dir) = &self.state else {
            return state;
        };
        if let Some(data) = persist::load_logged(dir, &self.cluster, metrics).await {
            state.data = data;
            state.stale = true;
            state.status = state.next_status();
            metrics.observe(&self.cluster, &state.status, Some(&state.data));
            catalog.publish(
                &self.cluster,
                Arc::new(state.data.clone()),
                state.status.clone(),
            );
        }
        state.writer = Some(persist::spawn_writer(
            dir.clone(),
            self.cluster.clone(),
            metrics.clone(),
        ));
        state
    }

    /// Follows the watchers of an existing client, after publishing the saved state if
    /// there is one.
    pub async fn follow(self, client: Client, catalog: Arc<Catalog>, metrics: SourceMetrics) {
        let state = self.seed(&catalog, &metrics).await;
        self.follow_from(state, client, catalog, metrics).await;
    }

    async fn follow_from(
        self,
        mut state: SourceState,
        client: Client,
        catalog: Arc<Catalog>,
        metrics: SourceMetrics,
    ) {
        let mut streams: SelectAll<BoxStream<'static, Change>> = SelectAll::new();
        for kind in &self.kinds {
            let (t, b) = (self.api_timeout, self.max_backoff);
            streams.push(match kind {
                ObjectKind::Service => watch::<core::Service>(client.clone(), t, b),
                ObjectKind::EndpointSlice => {
                    watch::<discovery::EndpointSlice>(client.clone(), t, b)
                }
                ObjectKind::Node => watch::<core::Node>(client.clone(), t, b),
                ObjectKind::TunnelEndpoint => watch::<crd::TunnelEndpoint>(client.clone(), t, b),
            });
        }
        let failing = Arc::new(AtomicBool::new(false));
        streams.push(probe(client, failing.clone(), self.api_timeout));
        run_changes(
            &mut state,
            streams.ready_chunks(1024),
            &catalog,
            &metrics,
            &failing,
        )
        .await;
    }
}

/// While `failing` is set, asks the API for its version once a second and reports success.
fn probe(
    client: Client,
    failing: Arc<AtomicBool>,
    timeout: Duration,
) -> BoxStream<'static, Change> {
    let ticks = tokio_stream_interval(Duration::from_secs(1));
    ticks
        .filter_map(move |_| {
            let client = client.clone();
            let failing = failing.clone();
            async move {
                if !failing.load(Ordering::Relaxed) {
                    return None;
                }
                match tokio::time::timeout(timeout, client.apiserver_version()).await {
                    Ok(Ok(_)) => Some(Change::Reachable),
                    _ => None,
                }
            }
        })
        .boxed()
}

fn tokio_stream_interval(period: Duration) -> impl Stream<Item = ()> {
    futures::stream::unfold(tokio::time::interval(period), |mut i| async move {
        i.tick().await;
        Some(((), i))
    })
}
