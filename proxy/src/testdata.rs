//! Shared test data: a remote cluster `b` and the local cluster `a`, in YAML as
//! `kubectl get -o yaml` prints it.
//!
//! Test ranges (RFC 5737 / 3849): service IPs 192.0.2.0/24 and 2001:db8:5::/64, pod IPs
//! 198.51.100.0/24 and 2001:db8:10::/64.

use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use crate::plan::{DesiredState, PlanSettings, plan};
use causeway_shared::catalog::{Catalog, ClusterStatus, Snapshot};
use causeway_shared::source::parse_objects;

pub const CLUSTER_B: &str = r#"
apiVersion: v1
kind: List
items:
- apiVersion: v1
  kind: Service
  metadata: {name: web, namespace: demo}
  spec:
    clusterIPs: [192.0.2.10, "2001:db8:5::10"]
    ports:
    - {name: http, port: 80, protocol: TCP, targetPort: 8080}
- apiVersion: v1
  kind: Service
  metadata: {name: dns, namespace: kube-system, annotations: {causeway.io/scheduler: sh}}
  spec:
    clusterIP: 192.0.2.53
    ports:
    - {name: dns, port: 53, protocol: UDP, targetPort: 53}
    - {name: dns-tcp, port: 53, protocol: TCP, targetPort: 53}
    sessionAffinity: ClientIP
    sessionAffinityConfig: {clientIP: {timeoutSeconds: 600}}
- apiVersion: v1
  kind: Service
  metadata: {name: empty, namespace: demo, annotations: {causeway.io/scheduler: nonsense}}
  spec:
    clusterIP: 192.0.2.20
    ports:
    - {port: 443, protocol: TCP, targetPort: 8443}
- apiVersion: v1
  kind: Service
  metadata: {name: db, namespace: demo}
  spec:
    clusterIP: None
    ports:
    - {name: pg, port: 5432, protocol: TCP}
- apiVersion: v1
  kind: Service
  metadata: {name: search, namespace: demo}
  spec: {type: ExternalName, externalName: search.example.com}
- apiVersion: discovery.k8s.io/v1
  kind: EndpointSlice
  metadata: {name: web-1, namespace: demo, generation: 7, labels: {kubernetes.io/service-name: web}}
  addressType: IPv4
  endpoints:
  - addresses: [198.51.100.11]
    conditions: {ready: true}
  - addresses: [198.51.100.12]
    conditions: {ready: true}
  - addresses: [198.51.100.13]
    conditions: {ready: false, serving: true, terminating: true}
  - addresses: [198.51.100.14]
    conditions: {ready: false, serving: false}
  ports:
  - {name: http, port: 8080, protocol: TCP}
- apiVersion: discovery.k8s.io/v1
  kind: EndpointSlice
  metadata: {name: web-v6, namespace: demo, generation: 2, labels: {kubernetes.io/service-name: web}}
  addressType: IPv6
  endpoints:
  - addresses: ["2001:db8:10::11"]
  ports:
  - {name: http, port: 8080, protocol: TCP}
- apiVersion: discovery.k8s.io/v1
  kind: EndpointSlice
  metadata: {name: dns-1, namespace: kube-system, generation: 1, labels: {kubernetes.io/service-name: dns}}
  addressType: IPv4
  endpoints:
  - addresses: [198.51.100.53]
  - addresses: [198.51.100.54]
  ports:
  - {name: dns, port: 53, protocol: UDP}
  - {name: dns-tcp, port: 53, protocol: TCP}
"#;

pub const CLUSTER_A: &str = r#"
apiVersion: v1
kind: Service
metadata: {name: local, namespace: demo}
spec:
  clusterIP: 192.0.2.99
  ports:
  - {port: 80, protocol: TCP}
"#;

/// A catalog with `a` local and `b` remote, both synced from the texts above.
pub fn catalog_with(b: &str) -> Arc<Catalog> {
    let cat = Catalog::new(["a", "b"], "a");
    let synced = ClusterStatus {
        synced: true,
        connected: true,
        ..Default::default()
    };
    for (name, text) in [("a", CLUSTER_A), ("b", b)] {
        let (data, _) = parse_objects(text).expect("test YAML parses");
        cat.publish(name, Arc::new(data), synced.clone());
    }
    cat
}

pub fn snapshot() -> Arc<Snapshot> {
    catalog_with(CLUSTER_B).snapshot()
}

/// The planner settings the tests plan with: stale rules expire after a minute.
pub fn plan_settings() -> PlanSettings {
    PlanSettings {
        stale_rules_expiry: Duration::from_secs(60),
    }
}

/// The planned state for `b` given as `yaml`, with stale rules expiring at once.
pub fn desired(b: &str) -> DesiredState {
    plan(
        &catalog_with(b).snapshot(),
        &PlanSettings {
            stale_rules_expiry: Duration::ZERO,
        },
        Instant::now(),
    )
    .desired
}
