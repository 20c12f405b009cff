//! The Kubernetes objects the tests put into their clusters, as JSON: one builder per kind,
//! shaped as the apiserver (or the node's tunnel) would store them. The test API server
//! takes them as they are ([`TestApiServer::apply`](crate::apiserver::TestApiServer::apply));
//! a file source takes them through [`write_list`].

use std::path::Path;

use serde_json::{Value, json};

/// The namespace Causeway runs in, where the tunnels publish their TunnelEndpoints.
pub const CAUSEWAY_NAMESPACE: &str = "causeway";

/// A Node with one pod subnet (`spec.podCIDR` and `spec.podCIDRs`, as the node IPAM
/// controller sets both) and an InternalIP.
pub fn node(name: &str, pod_cidr: &str, internal_ip: &str) -> Value {
    json!({
        "apiVersion": "v1", "kind": "Node",
        "metadata": {"name": name},
        "spec": {"podCIDR": pod_cidr, "podCIDRs": [pod_cidr]},
        "status": {"addresses": [{"type": "InternalIP", "address": internal_ip}]},
    })
}

/// The TunnelEndpoint the tunnel of `node` publishes in [`CAUSEWAY_NAMESPACE`]: its public
/// key (base64), its `endpoint` (`ip:port`) and one pod subnet.
pub fn tunnel_endpoint(node: &str, public_key: &str, endpoint: &str, pod_cidr: &str) -> Value {
    json!({
        "apiVersion": "causeway.io/v1alpha1", "kind": "TunnelEndpoint",
        "metadata": {"name": node, "namespace": CAUSEWAY_NAMESPACE},
        "spec": {"node": node, "publicKey": public_key, "endpoint": endpoint,
                 "podCIDRs": [pod_cidr]},
    })
}

/// A ClusterIP Service with one TCP port `http` (`port` to the pods' `target_port`).
pub fn service(
    namespace: &str,
    name: &str,
    cluster_ip: &str,
    port: u16,
    target_port: u16,
) -> Value {
    json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"type": "ClusterIP", "clusterIP": cluster_ip, "clusterIPs": [cluster_ip],
                 "ports": [{"name": "http", "port": port, "targetPort": target_port,
                            "protocol": "TCP"}]},
    })
}

/// An IPv4 EndpointSlice of Service `service` with port `http` (TCP `port`) and one ready,
/// serving endpoint per address.
pub fn endpoint_slice(
    namespace: &str,
    name: &str,
    service: &str,
    port: u16,
    addresses: &[&str],
) -> Value {
    let endpoints: Vec<Value> = addresses
        .iter()
        .map(|a| json!({"addresses": [a], "conditions": {"ready": true, "serving": true}}))
        .collect();
    json!({
        "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
        "metadata": {"name": name, "namespace": namespace,
                     "labels": {"kubernetes.io/service-name": service}},
        "addressType": "IPv4",
        "ports": [{"name": "http", "port": port, "protocol": "TCP"}],
        "endpoints": endpoints,
    })
}

/// Writes `objects` to `path` as one `kind: List` (JSON is YAML, so a file source reads it),
/// through a temporary file and a rename: a file source polling `path` never reads half of it.
pub fn write_list(path: &Path, objects: &[Value]) -> std::io::Result<()> {
    let list = json!({"apiVersion": "v1", "kind": "List", "items": objects});
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, format!("{list:#}\n"))?;
    std::fs::rename(&tmp, path)
}
