//! The `TunnelEndpoint` custom resource (`tunnelendpoints.causeway.io`).
//!
//! Each node's tunnel publishes one in its own cluster: its WireGuard public key, the
//! address other clusters reach it at, and the pod subnets behind it. The CRD YAML in
//! `manifests/` is generated from this type (`TunnelEndpoint::crd()`).

use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Spec of a TunnelEndpoint.
#[derive(CustomResource, Deserialize, Serialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[kube(
    group = "causeway.io",
    version = "v1alpha1",
    kind = "TunnelEndpoint",
    namespaced,
    printcolumn = r#"{"name":"Node","type":"string","jsonPath":".spec.node"}"#,
    printcolumn = r#"{"name":"Endpoint","type":"string","jsonPath":".spec.endpoint"}"#,
    printcolumn = r#"{"name":"Key","type":"string","jsonPath":".spec.publicKey"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct TunnelEndpointSpec {
    /// Node this tunnel runs on.
    pub node: String,
    /// WireGuard public key, base64 (44 characters), as `wg pubkey` prints it.
    pub public_key: String,
    /// `host:port` (or `[v6]:port`) where other clusters reach this node's tunnel.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<String>,
    /// Pod subnets of the node, routed through this tunnel.
    #[serde(default, rename = "podCIDRs")]
    pub pod_cidrs: Vec<String>,
}

/// True for a standard base64 encoding of 32 bytes (a WireGuard key).
pub fn is_wireguard_key(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() == 44
        && b[43] == b'='
        && b[..42]
            .iter()
            .all(|c| c.is_ascii_alphanumeric() || *c == b'+' || *c == b'/')
        // The last character before '=' carries 4 bits of data and 2 zero bits.
        && b"AEIMQUYcgkosw048".contains(&b[42])
}
