//! The Kubernetes source against two test API servers ("clusters" a and b), through the
//! real kube client: initial sync, updates, deletes, a 410 relist, and one cluster going
//! away while the other keeps updating.

use std::sync::Arc;
use std::time::Duration;

use causeway_shared::catalog::{Catalog, Snapshot};
use causeway_shared::config::Config;
use causeway_shared::model::{ObjectKind, ServiceKey};
use causeway_shared::source::{SourceMetrics, SourceOptions, spawn_sources};
use causeway_tests::apiserver::{Mode, TestApiServer, Verb};
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use serde_json::json;

const WAIT: Duration = Duration::from_secs(20);

fn service(ns: &str, name: &str, ip: &str) -> Service {
    serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": name, "namespace": ns},
        "spec": {"clusterIP": ip, "ports": [{"name": "http", "port": 80, "protocol": "TCP"}]}
    }))
    .unwrap()
}

fn slice(ns: &str, name: &str, svc: &str, ips: &[&str]) -> EndpointSlice {
    let endpoints: Vec<_> = ips
        .iter()
        .map(|ip| json!({"addresses": [ip], "conditions": {"ready": true}}))
        .collect();
    serde_json::from_value(json!({
        "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
        "metadata": {"name": name, "namespace": ns, "labels": {"kubernetes.io/service-name": svc}},
        "addressType": "IPv4",
        "endpoints": endpoints,
        "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}]
    }))
    .unwrap()
}

struct Clusters {
    a: TestApiServer,
    b: TestApiServer,
    catalog: Arc<Catalog>,
    _dir: tempfile::TempDir,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Drop for Clusters {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

async fn start() -> Clusters {
    let a = TestApiServer::start().await;
    let b = TestApiServer::start().await;
    a.apply(&service("demo", "web", "172.30.0.10")).unwrap();
    a.apply(&slice("demo", "web-1", "web", &["10.128.0.5"]))
        .unwrap();
    b.apply(&service("demo", "web", "172.31.0.10")).unwrap();
    b.apply(&slice(
        "demo",
        "web-1",
        "web",
        &["10.132.0.5", "10.132.0.6"],
    ))
    .unwrap();
    b.apply(&slice("demo", "web-2", "web", &["10.132.1.5"]))
        .unwrap();

    let dir = tempfile::tempdir().unwrap();
    a.write_kubeconfig(&dir.path().join("a.kubeconfig"), "ctx-a")
        .unwrap();
    b.write_kubeconfig(&dir.path().join("b.kubeconfig"), "ctx-b")
        .unwrap();
    let text = r#"
cluster: a
clusters:
  - name: a
    podCIDRs: ["10.128.0.0/14"]
    serviceCIDRs: ["172.30.0.0/16"]
    source: { kubeconfig: a.kubeconfig, context: ctx-a }
  - name: b
    podCIDRs: ["10.132.0.0/14"]
    serviceCIDRs: ["172.31.0.0/16"]
    source: { kubeconfig: b.kubeconfig }
"#;
    let cfg_path = dir.path().join("config.yaml");
    let config = Config::from_yaml(&cfg_path, text).unwrap();
    let catalog = Catalog::for_config(&config);
    let mut options = SourceOptions::new(&[
        ObjectKind::Service,
        ObjectKind::EndpointSlice,
        ObjectKind::Node,
    ]);
    options.api_timeout = Duration::from_secs(3);
    options.max_backoff = Duration::from_secs(1);
    let tasks = spawn_sources(&config, &catalog, &options, &SourceMetrics::default());
    Clusters {
        a,
        b,
        catalog,
        _dir: dir,
        tasks,
    }
}

async fn wait(catalog: &Catalog, what: &str, cond: impl Fn(&Snapshot) -> bool) {
    wait_logged(catalog, None, what, cond).await
}

/// Waits, and on failure also prints the last requests `server` received.
async fn wait_logged(
    catalog: &Catalog,
    server: Option<&TestApiServer>,
    what: &str,
    cond: impl Fn(&Snapshot) -> bool,
) {
    if let Err(e) = causeway_tests::wait::until(WAIT, what, || cond(&catalog.snapshot())).await {
        let log = server.map(|s| {
            let r = s.requests();
            let tail = r.len().saturating_sub(12);
            format!("{:#?}", &r[tail..])
        });
        panic!(
            "{e}\nlast snapshot: {:#?}\nrequests: {}",
            catalog.snapshot().readiness(),
            log.unwrap_or_default()
        );
    }
}

fn endpoint_count(s: &Snapshot, cluster: &str) -> usize {
    s.cluster(cluster)
        .unwrap()
        .data
        .slices_of(&ServiceKey::new("demo", "web"))
        .map(|sl| sl.endpoints.len())
        .sum()
}

fn cluster_ip(s: &Snapshot, cluster: &str, name: &str) -> Option<String> {
    s.cluster(cluster)?
        .data
        .services
        .get(&ServiceKey::new("demo", name))
        .map(|svc| svc.cluster_ips[0].to_string())
}

#[tokio::test]
async fn initial_sync_updates_and_deletes() {
    let c = start().await;
    wait(&c.catalog, "both clusters synced", |s| s.all_synced()).await;
    let s = c.catalog.snapshot();
    assert_eq!(cluster_ip(&s, "a", "web").as_deref(), Some("172.30.0.10"));
    assert_eq!(cluster_ip(&s, "b", "web").as_deref(), Some("172.31.0.10"));
    assert_eq!(endpoint_count(&s, "b"), 3, "two slices merged");
    assert!(s.cluster("b").unwrap().status.connected);

    // Update: a new service and a changed slice.
    c.b.apply(&service("demo", "api", "172.31.0.20")).unwrap();
    c.b.apply(&slice(
        "demo",
        "web-2",
        "web",
        &["10.132.1.5", "10.132.1.6", "10.132.1.7"],
    ))
    .unwrap();
    wait(&c.catalog, "b's update", |s| {
        cluster_ip(s, "b", "api").is_some() && endpoint_count(s, "b") == 5
    })
    .await;

    // Delete.
    c.b.delete::<EndpointSlice>("demo", "web-1").unwrap();
    c.b.delete::<Service>("demo", "api").unwrap();
    wait(&c.catalog, "b's deletes", |s| {
        cluster_ip(s, "b", "api").is_none() && endpoint_count(s, "b") == 3
    })
    .await;
    assert_eq!(endpoint_count(&c.catalog.snapshot(), "a"), 1, "a untouched");
}

#[tokio::test]
async fn gone_410_makes_a_relist_that_drops_missed_deletes() {
    let c = start().await;
    wait(&c.catalog, "both clusters synced", |s| s.all_synced()).await;
    let lists_before = c.b.request_count(Verb::List, "services");
    // Cut the watches first, so the delete below is really missed; then expire the history:
    // the watcher resumes from an expired version, gets 410, and must relist to see it.
    c.b.set_mode(Mode::Refuse);
    c.b.drop_connections();
    wait(&c.catalog, "b's watches cut", |s| {
        !s.cluster("b").unwrap().status.connected
    })
    .await;
    c.b.delete::<Service>("demo", "web").unwrap();
    c.b.apply(&service("demo", "late", "172.31.0.30")).unwrap();
    c.b.compact_quietly();
    c.b.set_mode(Mode::Normal);
    wait(&c.catalog, "b relisted", |s| {
        cluster_ip(s, "b", "web").is_none() && cluster_ip(s, "b", "late").is_some()
    })
    .await;
    assert!(
        c.b.request_count(Verb::List, "services") > lists_before,
        "a new LIST happened: {:#?}",
        c.b.requests()
    );

    // A loud compaction (410 on open watches) relists too and keeps the data.
    let lists = c.b.request_count(Verb::List, "endpointslices");
    c.b.compact();
    c.b.apply(&slice("demo", "web-3", "web", &["10.132.2.1"]))
        .unwrap();
    wait(&c.catalog, "slice after 410", |s| {
        endpoint_count(s, "b") == 4
    })
    .await;
    causeway_tests::wait::until(WAIT, "endpointslices relisted", || {
        c.b.request_count(Verb::List, "endpointslices") > lists
    })
    .await
    .unwrap();
    assert!(c.catalog.snapshot().cluster("b").unwrap().status.synced);
}

#[tokio::test]
async fn a_cluster_going_away_does_not_stall_the_other() {
    let c = start().await;
    wait(&c.catalog, "both clusters synced", |s| s.all_synced()).await;

    for mode in [Mode::Refuse, Mode::Stall] {
        c.b.set_mode(mode);
        c.b.drop_connections();
        wait(&c.catalog, "b reported unreachable", |s| {
            !s.cluster("b").unwrap().status.connected
        })
        .await;
        let s = c.catalog.snapshot();
        let b = s.cluster("b").unwrap();
        assert!(b.status.synced, "{mode:?}: last-known-good data is kept");
        assert!(b.status.disconnected_since.is_some());
        assert!(b.status.last_error.is_some());
        assert_eq!(endpoint_count(&s, "b"), 3, "{mode:?}: b's data is kept");

        // a keeps updating while b is down.
        let ip = if mode == Mode::Refuse {
            "172.30.0.40"
        } else {
            "172.30.0.41"
        };
        c.a.apply(&service("demo", "during-outage", ip)).unwrap();
        wait(&c.catalog, "a's update during b's outage", |s| {
            cluster_ip(s, "a", "during-outage").as_deref() == Some(ip)
        })
        .await;

        // b changes while unreachable; it shows once b is back.
        c.b.apply(&slice("demo", "web-2", "web", &["10.132.9.9"]))
            .unwrap();
        c.b.set_mode(Mode::Normal);
        wait_logged(&c.catalog, Some(&c.b), "b back with its new state", |s| {
            let b = s.cluster("b").unwrap();
            b.status.connected && endpoint_count(s, "b") == 3 && b.status.last_error.is_none() && {
                b.data.slices_of(&ServiceKey::new("demo", "web")).any(|sl| {
                    sl.endpoints
                        .iter()
                        .any(|e| e.addresses[0].to_string() == "10.132.9.9")
                })
            }
        })
        .await;
        // Restore for the next round.
        c.b.apply(&slice("demo", "web-2", "web", &["10.132.1.5"]))
            .unwrap();
        wait(&c.catalog, "b restored", |s| {
            s.cluster("b")
                .unwrap()
                .data
                .slices_of(&ServiceKey::new("demo", "web"))
                .any(|sl| {
                    sl.name == "web-2" && sl.endpoints[0].addresses[0].to_string() == "10.132.1.5"
                })
        })
        .await;
    }
}

#[tokio::test]
async fn unreadable_kubeconfig_is_reported_and_the_other_cluster_syncs() {
    let a = TestApiServer::start().await;
    a.apply(&service("demo", "web", "172.30.0.10")).unwrap();
    let dir = tempfile::tempdir().unwrap();
    a.write_kubeconfig(&dir.path().join("a.kubeconfig"), "ctx-a")
        .unwrap();
    let text = "cluster: a\nclusters:\n  - name: a\n    source: { kubeconfig: a.kubeconfig }\n  - name: b\n    source: { kubeconfig: missing.kubeconfig }\n";
    let config = Config::from_yaml(&dir.path().join("c.yaml"), text).unwrap();
    let catalog = Catalog::for_config(&config);
    let tasks = spawn_sources(
        &config,
        &catalog,
        &SourceOptions::new(&[ObjectKind::Service]),
        &SourceMetrics::default(),
    );
    wait(&catalog, "a synced and b's error reported", |s| {
        s.cluster("a").unwrap().status.synced && s.cluster("b").unwrap().status.last_error.is_some()
    })
    .await;
    let s = catalog.snapshot();
    let err = s.cluster("b").unwrap().status.last_error.clone().unwrap();
    assert!(err.contains("missing.kubeconfig"), "{err}");
    assert!(!s.all_synced());
    for t in tasks {
        t.abort();
    }
}
