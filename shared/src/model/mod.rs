//! Domain model of what Causeway knows about a cluster, independent of Kubernetes types.
//!
//! Everything here is plain data. Conversion from `k8s-openapi` objects lives in
//! [`convert`], so no other module has to know the Kubernetes schema.

mod cluster_data;
pub mod convert;

use std::collections::BTreeMap;
use std::fmt;
use std::net::IpAddr;

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

pub use cluster_data::{ClusterData, ObjectKind};

/// Namespace and name of a Service: the identity of a service inside one cluster.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct ServiceKey {
    pub namespace: String,
    pub name: String,
}

impl ServiceKey {
    pub fn new(namespace: impl Into<String>, name: impl Into<String>) -> Self {
        Self {
            namespace: namespace.into(),
            name: name.into(),
        }
    }
}

impl fmt::Display for ServiceKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.namespace, self.name)
    }
}

/// Transport protocol of a service or endpoint port.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Protocol {
    #[serde(rename = "TCP")]
    Tcp,
    #[serde(rename = "UDP")]
    Udp,
    #[serde(rename = "SCTP")]
    Sctp,
}

impl Protocol {
    /// Lower-case name, as used in DNS SRV labels (`_tcp`) and nftables (`tcp`).
    pub fn as_lower(self) -> &'static str {
        match self {
            Protocol::Tcp => "tcp",
            Protocol::Udp => "udp",
            Protocol::Sctp => "sctp",
        }
    }

    /// IP protocol number (`IPPROTO_TCP` 6, `IPPROTO_UDP` 17, `IPPROTO_SCTP` 132).
    pub fn number(self) -> u8 {
        match self {
            Protocol::Tcp => 6,
            Protocol::Udp => 17,
            Protocol::Sctp => 132,
        }
    }
}

impl fmt::Display for Protocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Protocol::Tcp => "TCP",
            Protocol::Udp => "UDP",
            Protocol::Sctp => "SCTP",
        })
    }
}

/// `spec.type` of a Service.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ServiceType {
    ClusterIP,
    NodePort,
    LoadBalancer,
    ExternalName,
}

/// `spec.sessionAffinity` of a Service.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum SessionAffinity {
    None,
    /// Stick a client IP to one backend for this many seconds.
    ClientIp {
        timeout_seconds: u32,
    },
}

/// `targetPort` of a service port.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum TargetPort {
    Number(u16),
    Name(String),
}

/// One port of a Service.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServicePort {
    /// Empty when the port is unnamed (allowed only for single-port services).
    pub name: String,
    pub protocol: Protocol,
    pub port: u16,
    pub target_port: Option<TargetPort>,
    pub node_port: Option<u16>,
    pub app_protocol: Option<String>,
}

/// A Service of one cluster.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Service {
    pub key: ServiceKey,
    pub service_type: ServiceType,
    /// ClusterIPs (one per IP family); empty for headless and ExternalName services.
    pub cluster_ips: Vec<IpAddr>,
    /// `clusterIP: None`.
    pub headless: bool,
    /// Target of an ExternalName service.
    pub external_name: Option<String>,
    pub ports: Vec<ServicePort>,
    pub publish_not_ready_addresses: bool,
    pub session_affinity: SessionAffinity,
    /// Annotations under `causeway.io/` only (the rest is of no use to us).
    pub annotations: BTreeMap<String, String>,
    pub resource_version: Option<String>,
}

/// Address family of an EndpointSlice.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum AddressType {
    IPv4,
    IPv6,
    /// FQDN slices carry no IP addresses; kept so they are visible, never routed.
    Fqdn,
}

/// One port of an EndpointSlice.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct EndpointPort {
    /// Empty when unnamed; matches the service port of the same name.
    pub name: String,
    pub protocol: Protocol,
    pub port: u16,
    pub app_protocol: Option<String>,
}

/// One endpoint (usually one pod) of an EndpointSlice.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Endpoint {
    pub addresses: Vec<IpAddr>,
    /// `conditions.ready`; an unset condition counts as ready, as the API documents.
    pub ready: bool,
    /// `conditions.serving`; unset means the same as `ready`.
    pub serving: bool,
    /// `conditions.terminating`; unset means false.
    pub terminating: bool,
    pub hostname: Option<String>,
    pub node_name: Option<String>,
    pub zone: Option<String>,
    /// `targetRef.name` when it refers to a Pod.
    pub pod_name: Option<String>,
}

/// One EndpointSlice. A service's endpoints are the union of its slices.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct EndpointSlice {
    pub namespace: String,
    pub name: String,
    /// Value of the `kubernetes.io/service-name` label.
    pub service_name: String,
    pub address_type: AddressType,
    pub endpoints: Vec<Endpoint>,
    pub ports: Vec<EndpointPort>,
    /// `metadata.generation`, 0 when unset.
    pub generation: i64,
    pub resource_version: Option<String>,
}

impl EndpointSlice {
    pub fn service_key(&self) -> ServiceKey {
        ServiceKey::new(&self.namespace, &self.service_name)
    }
}

/// A node address (`status.addresses[]`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeAddress {
    /// `InternalIP`, `ExternalIP`, `Hostname`, ...
    pub kind: String,
    pub address: String,
}

/// A Node of one cluster.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Node {
    pub name: String,
    /// `spec.podCIDRs` (or `spec.podCIDR` on old clusters).
    pub pod_cidrs: Vec<IpNet>,
    pub addresses: Vec<NodeAddress>,
    pub resource_version: Option<String>,
}

impl Node {
    /// A node known only by name: no pod CIDRs, no addresses.
    pub fn named(name: impl Into<String>) -> Self {
        Node {
            name: name.into(),
            pod_cidrs: Vec::new(),
            addresses: Vec::new(),
            resource_version: None,
        }
    }
}

/// A node's tunnel as it publishes itself (`TunnelEndpoint` object, see [`crate::crd`]).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TunnelEndpoint {
    /// Object name (one per node).
    pub name: String,
    pub namespace: String,
    pub node: String,
    /// WireGuard public key, base64 as `wg` prints it (44 characters).
    pub public_key: String,
    /// `host:port` where the node's tunnel is reached from other clusters; None until known.
    pub endpoint: Option<String>,
    /// Pod subnets routed to this node.
    pub pod_cidrs: Vec<IpNet>,
    /// Where the node's tunnel answers path probes (an address inside its pod subnets).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub probe_endpoint: Option<std::net::SocketAddr>,
    pub resource_version: Option<String>,
}
