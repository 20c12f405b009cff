//! Helpers: servers with short bookmark intervals, clients built from written kubeconfigs,
//! objects, and a recorder of `kube::runtime::watcher` events.

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context as _;
use causeway_tests::apiserver::{Options, TestApiServer};
use causeway_tests::wait;
use futures::StreamExt as _;
use k8s_openapi::api::core::v1::{
    Node, NodeAddress, NodeStatus, Service, ServicePort, ServiceSpec,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::runtime::{WatchStreamExt as _, watcher};
use kube::{Api, Client, Config, ResourceExt as _};
use serde::de::DeserializeOwned;

/// Upper bound of every wait in these tests.
pub const WAIT: Duration = Duration::from_secs(15);

/// A server whose watches get a BOOKMARK every 200 ms.
pub async fn start() -> TestApiServer {
    let options = Options {
        bookmark_interval: Duration::from_millis(200),
        ..Options::default()
    };
    TestApiServer::start_with(SocketAddr::from(([127, 0, 0, 1], 0)), options)
        .await
        .expect("bind 127.0.0.1:0")
}

/// A client built the way the binaries build theirs: from a kubeconfig file and a context.
pub async fn client(server: &TestApiServer) -> anyhow::Result<Client> {
    client_with(server, |_| {}).await
}

/// As [`client`], with a chance to change the configuration (timeouts) first.
pub async fn client_with(
    server: &TestApiServer,
    adjust: impl FnOnce(&mut Config),
) -> anyhow::Result<Client> {
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("kubeconfig");
    server.write_kubeconfig(&path, "test-a")?;
    client_from_kubeconfig(&path, "test-a", adjust).await
}

pub async fn client_from_kubeconfig(
    path: &std::path::Path,
    context: &str,
    adjust: impl FnOnce(&mut Config),
) -> anyhow::Result<Client> {
    let kubeconfig = Kubeconfig::read_from(path).context("read kubeconfig")?;
    let options = KubeConfigOptions {
        context: Some(context.to_owned()),
        ..Default::default()
    };
    let mut config = Config::from_custom_kubeconfig(kubeconfig, &options)
        .await
        .context("config from kubeconfig")?;
    adjust(&mut config);
    Ok(Client::try_from(config)?)
}

pub fn service(namespace: &str, name: &str, app: &str, cluster_ip: &str) -> Service {
    Service {
        metadata: ObjectMeta {
            name: Some(name.into()),
            namespace: Some(namespace.into()),
            labels: Some(BTreeMap::from([("app".to_owned(), app.to_owned())])),
            ..Default::default()
        },
        spec: Some(ServiceSpec {
            cluster_ip: Some(cluster_ip.into()),
            ports: Some(vec![ServicePort {
                port: 80,
                ..Default::default()
            }]),
            ..Default::default()
        }),
        ..Default::default()
    }
}

pub fn node(name: &str, address: &str) -> Node {
    Node {
        metadata: ObjectMeta {
            name: Some(name.into()),
            ..Default::default()
        },
        status: Some(NodeStatus {
            addresses: Some(vec![NodeAddress {
                type_: "InternalIP".into(),
                address: address.into(),
            }]),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// The status code of a `kube` API error, if it is one.
pub fn api_code(error: &kube::Error) -> Option<(u16, String)> {
    match error {
        kube::Error::Api(status) => Some((status.code, status.reason.clone())),
        _ => None,
    }
}

/// Runs a `kube::runtime::watcher` (with the default backoff) and records its events as text:
/// `Init`, `InitApply ns/name`, `InitDone`, `Apply ns/name`, `Delete ns/name`, `Error`.
pub struct Recorder {
    events: Arc<Mutex<Vec<String>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Recorder {
    pub fn start<K>(api: Api<K>, config: watcher::Config) -> Self
    where
        K: kube::Resource + Clone + DeserializeOwned + Debug + Send + 'static,
    {
        let events = Arc::new(Mutex::new(Vec::new()));
        let sink = events.clone();
        let task = tokio::spawn(async move {
            let mut stream = watcher(api, config).default_backoff().boxed();
            while let Some(event) = stream.next().await {
                let key = |o: &K| format!("{}/{}", o.namespace().unwrap_or_default(), o.name_any());
                let line = match event {
                    Ok(watcher::Event::Init) => "Init".to_owned(),
                    Ok(watcher::Event::InitApply(o)) => format!("InitApply {}", key(&o)),
                    Ok(watcher::Event::InitDone) => "InitDone".to_owned(),
                    Ok(watcher::Event::Apply(o)) => format!("Apply {}", key(&o)),
                    Ok(watcher::Event::Delete(o)) => format!("Delete {}", key(&o)),
                    Err(_) => "Error".to_owned(),
                };
                sink.lock().unwrap().push(line);
            }
        });
        Self { events, task }
    }

    pub fn events(&self) -> Vec<String> {
        self.events.lock().unwrap().clone()
    }

    pub fn count(&self, line: &str) -> usize {
        self.events().iter().filter(|l| *l == line).count()
    }

    /// Waits until `line` has been recorded at least `times` times.
    pub async fn wait_for(&self, line: &str, times: usize) -> anyhow::Result<()> {
        let what = format!("{times} x {line:?}");
        wait::until(WAIT, &what, || self.count(line) >= times)
            .await
            .with_context(|| format!("events so far: {:?}", self.events()))
    }
}

impl Drop for Recorder {
    fn drop(&mut self) {
        self.task.abort();
    }
}
