//! A test Kubernetes API server: the real HTTP protocol on a real TCP listener, for the real
//! `kube` client, with fault injection.
//!
//! ```no_run
//! # async fn demo() -> anyhow::Result<()> {
//! use causeway_tests::apiserver::{Mode, TestApiServer, Verb};
//! let server = TestApiServer::start().await;
//! server.write_kubeconfig(std::path::Path::new("/tmp/kubeconfig"), "a")?;
//! server.apply(&serde_json::json!({
//!     "apiVersion": "v1", "kind": "Service",
//!     "metadata": {"name": "web", "namespace": "shop"},
//!     "spec": {"ports": [{"port": 80}]},
//! }))?;
//! server.compact(); // open watches get 410 and relist
//! server.set_mode(Mode::Refuse); // the cluster "goes away"
//! assert!(server.request_count(Verb::List, "services") <= 1);
//! # Ok(()) }
//! ```
//!
//! Files: [`store`] (objects, versions, history), [`http`] (URLs and verbs), [`watch`]
//! (watch streams), [`faults`] (modes and the request log), [`listener`] (accept loop),
//! [`kubeconfig`], [`load`] (YAML files of objects), [`resources`] (what is served).

mod faults;
mod http;
mod kubeconfig;
mod listener;
mod load;
mod patch;
mod resources;
mod selector;
mod status;
mod store;
mod watch;

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

pub use faults::{FaultError, Mode, RequestRecord, Verb};
pub use kubeconfig::{KubeconfigError, TOKEN as KUBECONFIG_TOKEN};
pub use load::{LoadError, objects_from_yaml, read_objects};
pub use patch::PatchError;
pub use resources::{
    BLOCK_AFFINITIES, CILIUM_NODES, CNI_RESOURCES, DEFAULT_RESOURCES, HOST_SUBNETS, Resource,
};
pub use selector::{FieldSelector, LabelSelector, SelectorError};
pub use store::{DEFAULT_HISTORY, EventType, StoreError};

/// Errors of starting a server.
#[derive(Debug, thiserror::Error)]
pub enum ApiServerError {
    /// The listen address could not be bound.
    #[error("cannot listen on {addr}")]
    Bind {
        /// The address asked for.
        addr: SocketAddr,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
}

/// Tunables of a server.
#[derive(Clone, Debug)]
pub struct Options {
    /// How many change events are kept for watches to resume from; a watch from an older
    /// version gets 410.
    pub history: usize,
    /// How often a watch with `allowWatchBookmarks=true` gets a BOOKMARK.
    pub bookmark_interval: Duration,
    /// Watch duration when the request has no `timeoutSeconds`.
    pub default_watch_timeout: Duration,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            history: DEFAULT_HISTORY,
            bookmark_interval: Duration::from_secs(1),
            default_watch_timeout: Duration::from_secs(1800),
        }
    }
}

/// State shared by the handle, the HTTP handlers and the watch tasks.
pub(crate) struct Shared {
    store: store::Store,
    faults: Arc<faults::Faults>,
    options: Options,
    addr: SocketAddr,
}

/// Stops the server when the last handle is dropped.
struct Guard {
    accept: JoinHandle<()>,
    faults: Arc<faults::Faults>,
}

impl Drop for Guard {
    fn drop(&mut self) {
        self.accept.abort();
        self.faults.kill_connections();
    }
}

/// A running test API server. Clones are handles to the same server; it stops (listener
/// closed, connections dropped) when the last one is dropped.
#[derive(Clone)]
pub struct TestApiServer {
    shared: Arc<Shared>,
    _guard: Arc<Guard>,
}

impl std::fmt::Debug for TestApiServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestApiServer")
            .field("url", &self.url())
            .finish_non_exhaustive()
    }
}

impl TestApiServer {
    /// Starts a server on a free port of 127.0.0.1 with default options.
    ///
    /// # Panics
    /// If no loopback port can be bound, which only a broken test machine causes.
    pub async fn start() -> Self {
        let addr = SocketAddr::from(([127, 0, 0, 1], 0));
        Self::start_with(addr, Options::default())
            .await
            .expect("bind a free port on 127.0.0.1")
    }

    /// Starts a server on `addr` (port 0 picks a free one) with default options.
    pub async fn start_on(addr: SocketAddr) -> Result<Self, ApiServerError> {
        Self::start_with(addr, Options::default()).await
    }

    /// Starts a server on the loopback of the network namespace `ns` (bound from inside it),
    /// for binaries that run there. Call it from a multi-threaded runtime.
    pub fn start_in(ns: &crate::netns::Netns) -> anyhow::Result<Self> {
        let rt = tokio::runtime::Handle::current();
        let server = tokio::task::block_in_place(|| {
            ns.enter(move || rt.block_on(Self::start_on("127.0.0.1:0".parse().expect("addr"))))
        })??;
        Ok(server)
    }

    /// Starts a server on `addr` with the given options. Must run inside a tokio runtime,
    /// which serves the connections.
    pub async fn start_with(addr: SocketAddr, options: Options) -> Result<Self, ApiServerError> {
        let bind_error = |source| ApiServerError::Bind { addr, source };
        let listener = TcpListener::bind(addr).await.map_err(bind_error)?;
        let addr = listener.local_addr().map_err(bind_error)?;
        let faults = Arc::new(faults::Faults::new());
        let shared = Arc::new(Shared {
            store: store::Store::new(options.history),
            faults: faults.clone(),
            options,
            addr,
        });
        let router = http::router(shared.clone());
        let accept = tokio::spawn(listener::serve(listener, router, faults.clone()));
        Ok(Self {
            shared,
            _guard: Arc::new(Guard { accept, faults }),
        })
    }

    /// The address the server listens on.
    pub fn addr(&self) -> SocketAddr {
        self.shared.addr
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://{}", self.shared.addr)
    }

    /// A kubeconfig with one context named `context` pointing at this server.
    pub fn kubeconfig(&self, context: &str) -> String {
        kubeconfig::render(&[(context, &self.url())]).expect("one context is given")
    }

    /// Writes [`Self::kubeconfig`] to `path`.
    pub fn write_kubeconfig(&self, path: &Path, context: &str) -> Result<(), KubeconfigError> {
        kubeconfig::write(path, &[(context, &self.url())])
    }

    /// Writes one kubeconfig with a context per server, named as given; the first is current.
    pub fn write_kubeconfig_for(
        path: &Path,
        servers: &[(&str, &TestApiServer)],
    ) -> Result<(), KubeconfigError> {
        let urls: Vec<(&str, String)> = servers.iter().map(|(c, s)| (*c, s.url())).collect();
        let contexts: Vec<(&str, &str)> = urls.iter().map(|(c, u)| (*c, u.as_str())).collect();
        kubeconfig::write(path, &contexts)
    }

    /// Serves one more resource (a CRD, say); objects of it can then be stored and listed.
    pub fn register_resource(&self, resource: Resource) {
        self.shared.store.register(resource);
    }

    /// Creates or replaces an object (a `serde_json::Value` or any `k8s-openapi` object) and
    /// returns it as stored. A namespaced object without a namespace goes to `default`. A
    /// replace that changes nothing keeps the version and emits no event, as the apiserver.
    pub fn apply<T: Serialize>(&self, object: &T) -> Result<Value, StoreError> {
        let object = serde_json::to_value(object).map_err(StoreError::Serialize)?;
        let resource = self.shared.store.resource_of(&object)?;
        self.shared
            .store
            .write(resource, object, store::WriteMode::Upsert)
    }

    /// Creates an object; `AlreadyExists` if it exists.
    pub fn create<T: Serialize>(&self, object: &T) -> Result<Value, StoreError> {
        let object = serde_json::to_value(object).map_err(StoreError::Serialize)?;
        let resource = self.shared.store.resource_of(&object)?;
        self.shared
            .store
            .write(resource, object, store::WriteMode::Create)
    }

    /// One object by type, namespace (ignored for cluster-scoped kinds) and name.
    pub fn get<K>(&self, namespace: &str, name: &str) -> Result<Option<K>, StoreError>
    where
        K: k8s_openapi::Resource + DeserializeOwned,
    {
        self.get_value(K::API_VERSION, K::KIND, namespace, name)?
            .map(from_value)
            .transpose()
    }

    /// One object as JSON.
    pub fn get_value(
        &self,
        api_version: &str,
        kind: &str,
        namespace: &str,
        name: &str,
    ) -> Result<Option<Value>, StoreError> {
        let resource = self.shared.store.resource_for_type(api_version, kind)?;
        Ok(self.shared.store.get(resource, namespace, name))
    }

    /// Objects of a type in one namespace, or in all when `namespace` is `None`, sorted by
    /// namespace and name.
    pub fn list<K>(&self, namespace: Option<&str>) -> Result<Vec<K>, StoreError>
    where
        K: k8s_openapi::Resource + DeserializeOwned,
    {
        self.list_values(K::API_VERSION, K::KIND, namespace)?
            .into_iter()
            .map(from_value)
            .collect()
    }

    /// Objects as JSON.
    pub fn list_values(
        &self,
        api_version: &str,
        kind: &str,
        namespace: Option<&str>,
    ) -> Result<Vec<Value>, StoreError> {
        let resource = self.shared.store.resource_for_type(api_version, kind)?;
        let (items, _) = self.shared.store.list(resource, namespace);
        Ok(items.iter().map(|v| Value::clone(v)).collect())
    }

    /// Deletes an object by type; returns its last state.
    pub fn delete<K: k8s_openapi::Resource>(
        &self,
        namespace: &str,
        name: &str,
    ) -> Result<Value, StoreError> {
        self.delete_value(K::API_VERSION, K::KIND, namespace, name)
    }

    /// Deletes an object named by `apiVersion` and `kind`.
    pub fn delete_value(
        &self,
        api_version: &str,
        kind: &str,
        namespace: &str,
        name: &str,
    ) -> Result<Value, StoreError> {
        let resource = self.shared.store.resource_for_type(api_version, kind)?;
        self.shared.store.delete(resource, namespace, name)
    }

    /// Stores every object of a YAML text (`kind: List`, `---` documents, or both); returns
    /// how many.
    pub fn load_yaml(&self, text: &str) -> Result<usize, LoadError> {
        self.load_objects(load::objects_from_yaml(text, "<text>")?, "<text>")
    }

    /// Stores every object of a YAML file, as [`Self::load_yaml`].
    pub fn load_file(&self, path: &Path) -> Result<usize, LoadError> {
        let origin = path.display().to_string();
        self.load_objects(read_objects(path)?, &origin)
    }

    /// Stores objects read by [`read_objects`]; `origin` names their file in errors.
    pub fn load_objects(&self, objects: Vec<Value>, origin: &str) -> Result<usize, LoadError> {
        let count = objects.len();
        for (index, object) in objects.into_iter().enumerate() {
            let name = load::describe(&object);
            self.apply(&object).map_err(|source| LoadError::Store {
                origin: origin.to_owned(),
                index,
                name,
                source: Box::new(source),
            })?;
        }
        Ok(count)
    }

    /// The current resourceVersion (the version of the last change).
    pub fn resource_version(&self) -> u64 {
        self.shared.store.current_rv()
    }

    /// Compacts the history like etcd: every version up to now is expired, open watches end
    /// with an ERROR event carrying a 410 `Status`, and a watch resumed from an old version
    /// gets the same; `kube`'s watcher answers by relisting. Returns the new version.
    pub fn compact(&self) -> u64 {
        self.shared.store.compact(true)
    }

    /// Expires every version up to now but leaves open watches running: only a watch that
    /// reconnects (see [`Self::drop_connections`]) gets 410.
    pub fn compact_quietly(&self) -> u64 {
        self.shared.store.compact(false)
    }

    /// Closes every open TCP connection at once, watch streams mid-response included. New
    /// connections are served as usual.
    /// Every fault in turn, each for `phase` (blocking): every watch dropped, requests stalled,
    /// 500s (open watches dropped too), the history expired (410 and a relist), then gone
    /// (connections refused) for `gone`; `while_gone` changes the state meanwhile, and the
    /// server serves normally again when this returns.
    pub fn fault_tour(
        &self,
        phase: std::time::Duration,
        gone: std::time::Duration,
        while_gone: impl FnOnce(&Self),
    ) {
        self.drop_connections();
        std::thread::sleep(phase);
        self.set_mode(Mode::Stall);
        std::thread::sleep(phase);
        self.set_mode(Mode::Error(500));
        self.drop_connections();
        std::thread::sleep(phase);
        self.set_mode(Mode::Normal);
        self.compact();
        std::thread::sleep(phase);
        self.set_mode(Mode::Refuse);
        std::thread::sleep(gone);
        while_gone(self);
        self.set_mode(Mode::Normal);
    }

    pub fn drop_connections(&self) {
        self.shared.faults.kill_connections();
    }

    /// Switches the fault mode; see [`Mode`].
    pub fn set_mode(&self, mode: Mode) {
        self.shared.faults.set_mode(mode);
    }

    /// The current fault mode.
    pub fn mode(&self) -> Mode {
        self.shared.faults.mode()
    }

    /// Every request so far (since the last [`Self::clear_requests`]), in arrival order.
    pub fn requests(&self) -> Vec<RequestRecord> {
        self.shared.faults.requests()
    }

    /// How many requests had this verb on this resource (plural, such as `services`).
    pub fn request_count(&self, verb: Verb, resource: &str) -> usize {
        self.requests()
            .iter()
            .filter(|r| r.verb == verb && r.resource == resource)
            .count()
    }

    /// Empties the request log.
    pub fn clear_requests(&self) {
        self.shared.faults.clear_requests();
    }
}

fn from_value<K: DeserializeOwned>(value: Value) -> Result<K, StoreError> {
    serde_json::from_value(value).map_err(StoreError::Deserialize)
}
