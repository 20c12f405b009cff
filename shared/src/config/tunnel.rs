//! The `tunnel:` section, read by causeway-tunnel.

use std::net::SocketAddr;

use serde::{Deserialize, Serialize};

use super::ConfigDuration;

/// How the node's tunnel address is found and published.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum EndpointMode {
    /// A per-node LoadBalancer Service `causeway-tunnel-<node>`.
    LoadBalancer,
    /// A per-node NodePort Service, reached at the node's address.
    NodePort,
    /// A fixed `host:port`.
    Address(String),
}

/// How remote traffic reaches the tunnel on the node.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SteeringMode {
    /// OpenFlow rules on the OpenShift SDN bridge.
    Ovs,
    /// Left to the operator.
    None,
}

/// Where the node's pod subnets are read from (each CNI keeps them elsewhere).
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
#[serde(rename_all = "camelCase")]
pub enum NodeSubnetSource {
    /// The first of the sources below that has subnets for the node.
    #[default]
    Auto,
    /// `Node.spec.podCIDRs` (kube-controller-manager's allocation: Flannel, kindnet, Cilium
    /// with Kubernetes IPAM).
    NodeSpec,
    /// OpenShift SDN's `HostSubnet`.
    HostSubnet,
    /// OVN-Kubernetes' Node annotation `k8s.ovn.org/node-subnets`.
    OvnAnnotation,
    /// Cilium's `CiliumNode` (cluster-pool and multi-pool IPAM).
    CiliumNode,
    /// Calico's `BlockAffinity` objects (Calico IPAM; several blocks per node).
    CalicoBlocks,
}

impl std::fmt::Display for NodeSubnetSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Auto => "auto",
            Self::NodeSpec => "nodeSpec",
            Self::HostSubnet => "hostSubnet",
            Self::OvnAnnotation => "ovnAnnotation",
            Self::CiliumNode => "ciliumNode",
            Self::CalicoBlocks => "calicoBlocks",
        })
    }
}

/// A peer outside Kubernetes (a VM, an edge site).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct StaticPeer {
    pub public_key: String,
    #[serde(default)]
    pub endpoint: Option<String>,
    #[serde(rename = "allowedIPs")]
    pub allowed_ips: Vec<String>,
}

/// Settings of the tunnel.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct TunnelConfig {
    pub listen_port: u16,
    pub interface: String,
    pub mtu: u32,
    pub persistent_keepalive: ConfigDuration,
    pub endpoint: EndpointMode,
    pub steering: SteeringMode,
    pub static_peers: Vec<StaticPeer>,
    /// `/metrics`, `/healthz`, `/readyz`: where Prometheus and the kubelet's probes reach.
    pub metrics_listen: SocketAddr,
    /// `/status`, `/wg`: the debug views, on loopback unless set otherwise; the same
    /// address as `metricsListen` serves them on that one listener.
    pub debug_listen: SocketAddr,
    /// A peer without a handshake for this long is reported down.
    pub peer_down_after: ConfigDuration,
    /// OVS bridge programmed with `steering: ovs`.
    pub ovs_bridge: String,
    /// OVS port (interface name) of the tunnel pod on `ovsBridge`; when unset it is found
    /// by the pod's IP in the interface's `external_ids:ip`, as OpenShift SDN records it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ovs_port: Option<String>,
    /// Generate a new key pair this often (0: only with `causeway-tunnel rotate`).
    pub rotate_interval: ConfigDuration,
    /// Where this node's pod subnets are read from; published in its TunnelEndpoint.
    pub node_subnets: NodeSubnetSource,
    /// UDP port of the path probe (0: off). The tunnel answers probes there and, every
    /// `probeInterval`, sends one through the tunnel to each remote node that publishes a
    /// probe endpoint; the answers make the per-cluster reachability of `/paths`.
    pub probe_port: u16,
    pub probe_interval: ConfigDuration,
}

impl Default for TunnelConfig {
    fn default() -> Self {
        Self {
            listen_port: 51820,
            interface: "causeway0".into(),
            mtu: 1380,
            persistent_keepalive: ConfigDuration::secs(25),
            endpoint: EndpointMode::LoadBalancer,
            steering: SteeringMode::None,
            static_peers: Vec::new(),
            metrics_listen: SocketAddr::from(([0, 0, 0, 0], 9155)),
            debug_listen: SocketAddr::from(([127, 0, 0, 1], 9165)),
            peer_down_after: ConfigDuration::secs(180),
            ovs_bridge: "br0".into(),
            ovs_port: None,
            rotate_interval: ConfigDuration::secs(0),
            node_subnets: NodeSubnetSource::Auto,
            probe_port: 51821,
            probe_interval: ConfigDuration::secs(1),
        }
    }
}
