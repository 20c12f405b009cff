//! Publishing this node's tunnel in the local cluster: its `TunnelEndpoint` object, the
//! per-node Service `causeway-tunnel-<node>` that gives it a UDP VIP, and the label on its own
//! pod that the Service selects.
//!
//! Endpoint modes (`tunnel.endpoint`):
//! - `loadBalancer`: Service of type LoadBalancer; the endpoint is its first ingress
//!   (IP or hostname) and the listen port, published once the cloud has assigned it;
//! - `nodePort`: Service of type NodePort; the endpoint is the node's ExternalIP (else its
//!   InternalIP) and the allocated node port;
//! - `address`: the configured `host:port`, no Service.
//!
//! Both Services use `externalTrafficPolicy: Local`, so the VIP reaches only this node's pod
//! and the peer's source address is preserved. Writes are server-side apply with field
//! manager [`FIELD_MANAGER`].

use std::collections::BTreeMap;
use std::net::IpAddr;

use causeway_shared::config::EndpointMode;
use causeway_shared::crd::{TunnelEndpoint as TunnelEndpointCrd, TunnelEndpointSpec};
use causeway_shared::model::NodeAddress;
use ipnet::IpNet;
use k8s_openapi::api::core::v1::{Node, Pod, Service};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::Client;
use kube::api::{Api, Patch, PatchParams};

use crate::names;
use crate::wg::PublicKey;

/// Field manager of our server-side applies.
pub const FIELD_MANAGER: &str = "causeway-tunnel";

/// Errors of publishing.
#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    /// An API request failed.
    #[error("{what}")]
    Api {
        /// The object, `kind namespace/name`.
        what: String,
        #[source]
        source: kube::Error,
    },
}

/// What this node publishes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Publication {
    pub public_key: PublicKey,
    pub endpoint: Option<String>,
    pub pod_cidrs: Vec<IpNet>,
    /// Where our probe responder is reached through the tunnel.
    pub probe_endpoint: Option<std::net::SocketAddr>,
}

/// Publishes one node's tunnel.
#[derive(Clone)]
pub struct Publisher {
    client: Client,
    namespace: String,
    node: String,
    pod_name: Option<String>,
    mode: EndpointMode,
    port: u16,
}

fn host_port(host: &str, port: u16) -> String {
    match host.parse::<IpAddr>() {
        Ok(IpAddr::V6(v6)) => format!("[{v6}]:{port}"),
        _ => format!("{host}:{port}"),
    }
}

impl Publisher {
    /// `pod_name` is the tunnel's own pod (labelled for the Service's selector); `None` skips
    /// the label (tests, or a tunnel outside a pod with `address` mode).
    /// The local cluster's client.
    pub fn client(&self) -> Client {
        self.client.clone()
    }

    pub fn new(
        client: Client,
        namespace: &str,
        node: &str,
        pod_name: Option<String>,
        mode: EndpointMode,
        port: u16,
    ) -> Self {
        Self {
            client,
            namespace: namespace.into(),
            node: node.into(),
            pod_name,
            mode,
            port,
        }
    }

    fn params() -> PatchParams {
        PatchParams::apply(FIELD_MANAGER).force()
    }

    fn err(what: String) -> impl FnOnce(kube::Error) -> PublishError {
        move |source| PublishError::Api { what, source }
    }

    /// Labels our own pod with the node name, so that only it backs the Service.
    pub async fn label_own_pod(&self) -> Result<(), PublishError> {
        let Some(pod) = &self.pod_name else {
            return Ok(());
        };
        let api: Api<Pod> = Api::namespaced(self.client.clone(), &self.namespace);
        let patch = serde_json::json!({"metadata": {"labels": {names::NODE_LABEL: names::label_value(&self.node)}}});
        api.patch(pod, &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .map_err(Self::err(format!("pod {}/{pod}", self.namespace)))?;
        Ok(())
    }

    /// Creates or updates the per-node Service (nothing in `address` mode).
    pub async fn ensure_service(&self) -> Result<(), PublishError> {
        let type_ = match self.mode {
            EndpointMode::LoadBalancer => "LoadBalancer",
            EndpointMode::NodePort => "NodePort",
            EndpointMode::Address(_) => return Ok(()),
        };
        let name = names::service_name(&self.node);
        let svc = serde_json::json!({
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {
                "name": name,
                "namespace": self.namespace,
                "labels": {
                    names::MANAGED_BY.0: names::MANAGED_BY.1,
                    names::NODE_LABEL: names::label_value(&self.node),
                },
            },
            "spec": {
                "type": type_,
                "externalTrafficPolicy": "Local",
                "selector": {names::NODE_LABEL: names::label_value(&self.node)},
                "ports": [{"name": "wireguard", "protocol": "UDP", "port": self.port, "targetPort": self.port}],
            },
        });
        let api: Api<Service> = Api::namespaced(self.client.clone(), &self.namespace);
        api.patch(&name, &Self::params(), &Patch::Apply(&svc))
            .await
            .map_err(Self::err(format!("service {}/{name}", self.namespace)))?;
        Ok(())
    }

    /// The endpoint to publish now, or `None` while the load balancer has no ingress yet.
    /// `node_addresses` are the addresses of our Node (for `nodePort`).
    pub async fn endpoint(
        &self,
        node_addresses: &[NodeAddress],
    ) -> Result<Option<String>, PublishError> {
        if let EndpointMode::Address(a) = &self.mode {
            return Ok(Some(a.clone()));
        }
        let name = names::service_name(&self.node);
        let api: Api<Service> = Api::namespaced(self.client.clone(), &self.namespace);
        let Some(svc) = api
            .get_opt(&name)
            .await
            .map_err(Self::err(format!("service {}/{name}", self.namespace)))?
        else {
            return Ok(None);
        };
        Ok(match self.mode {
            EndpointMode::LoadBalancer => svc
                .status
                .and_then(|s| s.load_balancer)
                .and_then(|lb| lb.ingress)
                .and_then(|ing| ing.into_iter().find_map(|i| i.ip.or(i.hostname)))
                .map(|host| host_port(&host, self.port)),
            _ => {
                let node_port = svc
                    .spec
                    .and_then(|s| s.ports)
                    .and_then(|ps| ps.into_iter().find_map(|p| p.node_port))
                    .and_then(|p| u16::try_from(p).ok());
                let pick = |kind: &str| {
                    node_addresses
                        .iter()
                        .find(|a| a.kind == kind)
                        .map(|a| a.address.clone())
                };
                match (pick("ExternalIP").or_else(|| pick("InternalIP")), node_port) {
                    (Some(host), Some(port)) => Some(host_port(&host, port)),
                    _ => None,
                }
            }
        })
    }

    /// An owner reference to our Node, if it can be read.
    async fn node_owner(&self) -> Option<OwnerReference> {
        let api: Api<Node> = Api::all(self.client.clone());
        match api.get_opt(&self.node).await {
            Ok(Some(n)) => Some(OwnerReference {
                api_version: "v1".into(),
                kind: "Node".into(),
                name: self.node.clone(),
                uid: n.metadata.uid?,
                ..Default::default()
            }),
            Ok(None) => None,
            Err(e) => {
                tracing::debug!(error = %e, node = self.node, "cannot read our Node for the owner reference");
                None
            }
        }
    }

    /// Writes our TunnelEndpoint.
    pub async fn publish(&self, p: &Publication) -> Result<(), PublishError> {
        let name = names::endpoint_name(&self.node);
        let mut te = TunnelEndpointCrd::new(
            &name,
            TunnelEndpointSpec {
                node: self.node.clone(),
                public_key: p.public_key.to_base64(),
                endpoint: p.endpoint.clone(),
                pod_cidrs: p.pod_cidrs.iter().map(ToString::to_string).collect(),
                probe_endpoint: p.probe_endpoint.map(|e| e.to_string()),
            },
        );
        te.metadata.namespace = Some(self.namespace.clone());
        // Owned by our Node: when the node is deleted, the garbage collector deletes its
        // TunnelEndpoint and every remote tunnel drops the peer.
        te.metadata.owner_references = self.node_owner().await.map(|o| vec![o]);
        te.metadata.labels = Some(BTreeMap::from([
            (
                names::MANAGED_BY.0.to_string(),
                names::MANAGED_BY.1.to_string(),
            ),
            (
                names::NODE_LABEL.to_string(),
                names::label_value(&self.node),
            ),
        ]));
        let api: Api<TunnelEndpointCrd> = Api::namespaced(self.client.clone(), &self.namespace);
        api.patch(&name, &Self::params(), &Patch::Apply(&te))
            .await
            .map_err(Self::err(format!(
                "tunnelendpoint {}/{name}",
                self.namespace
            )))?;
        tracing::info!(
            tunnelendpoint = name,
            public_key = %p.public_key,
            endpoint = p.endpoint.as_deref().unwrap_or("-"),
            "published"
        );
        Ok(())
    }
}
