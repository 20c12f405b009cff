//! `TryFrom` conversions from Kubernetes objects (k8s-openapi) to the domain model.
//!
//! Every error names the object (`Service demo/web`) and the field at fault.

use std::collections::BTreeMap;
use std::net::IpAddr;

use ipnet::IpNet;
use k8s_openapi::api::core::v1 as core;
use k8s_openapi::api::discovery::v1 as discovery;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::*;
use crate::crd;

/// Annotations with this prefix are kept on [`Service`]; all others are dropped.
pub const ANNOTATION_PREFIX: &str = "causeway.io/";

/// Label that ties an EndpointSlice to its Service.
pub const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";

/// Why a Kubernetes object could not be converted.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ConvertError {
    /// The object has no `metadata.name`.
    #[error("{kind} without metadata.name")]
    MissingName { kind: &'static str },
    /// A field is required by the model but absent.
    #[error("{object}: missing {field}")]
    MissingField { object: String, field: String },
    /// A field holds a value the model cannot take.
    #[error("{object}: {field}: invalid value {value:?}: {reason}")]
    InvalidField {
        object: String,
        field: String,
        value: String,
        reason: String,
    },
}

fn object_id(
    kind: &'static str,
    meta: &ObjectMeta,
) -> Result<(String, String, String), ConvertError> {
    let name = meta
        .name
        .clone()
        .ok_or(ConvertError::MissingName { kind })?;
    let namespace = meta.namespace.clone().unwrap_or_default();
    let object = if namespace.is_empty() {
        format!("{kind} {name}")
    } else {
        format!("{kind} {namespace}/{name}")
    };
    Ok((object, namespace, name))
}

fn invalid(
    object: &str,
    field: impl Into<String>,
    value: impl Into<String>,
    reason: impl Into<String>,
) -> ConvertError {
    ConvertError::InvalidField {
        object: object.to_string(),
        field: field.into(),
        value: value.into(),
        reason: reason.into(),
    }
}

fn parse_protocol(
    object: &str,
    field: String,
    value: Option<&str>,
) -> Result<Protocol, ConvertError> {
    match value.unwrap_or("TCP") {
        "TCP" => Ok(Protocol::Tcp),
        "UDP" => Ok(Protocol::Udp),
        "SCTP" => Ok(Protocol::Sctp),
        other => Err(invalid(object, field, other, "expected TCP, UDP or SCTP")),
    }
}

fn parse_port(object: &str, field: String, value: i32) -> Result<u16, ConvertError> {
    u16::try_from(value)
        .ok()
        .filter(|p| *p != 0)
        .ok_or_else(|| invalid(object, field, value.to_string(), "port must be 1..65535"))
}

fn parse_ip(object: &str, field: String, value: &str) -> Result<IpAddr, ConvertError> {
    value
        .parse()
        .map_err(|e: std::net::AddrParseError| invalid(object, field, value, e.to_string()))
}

fn parse_cidr(object: &str, field: String, value: &str) -> Result<IpNet, ConvertError> {
    value
        .parse::<IpNet>()
        .map(|n| n.trunc())
        .map_err(|e| invalid(object, field, value, e.to_string()))
}

fn causeway_annotations(meta: &ObjectMeta) -> BTreeMap<String, String> {
    meta.annotations
        .iter()
        .flatten()
        .filter(|(k, _)| k.starts_with(ANNOTATION_PREFIX))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

impl TryFrom<&core::Service> for Service {
    type Error = ConvertError;

    fn try_from(svc: &core::Service) -> Result<Self, ConvertError> {
        let (object, namespace, name) = object_id("Service", &svc.metadata)?;
        let spec = svc.spec.clone().unwrap_or_default();
        let service_type = match spec.type_.as_deref().unwrap_or("ClusterIP") {
            "ClusterIP" => ServiceType::ClusterIP,
            "NodePort" => ServiceType::NodePort,
            "LoadBalancer" => ServiceType::LoadBalancer,
            "ExternalName" => ServiceType::ExternalName,
            other => return Err(invalid(&object, "spec.type", other, "unknown service type")),
        };
        let headless = spec.cluster_ip.as_deref() == Some("None");
        let mut cluster_ips = Vec::new();
        if service_type != ServiceType::ExternalName && !headless {
            let raw: Vec<String> = match (&spec.cluster_ips, &spec.cluster_ip) {
                (Some(ips), _) if !ips.is_empty() => ips.clone(),
                (_, Some(ip)) => vec![ip.clone()],
                _ => Vec::new(),
            };
            for (i, ip) in raw.iter().enumerate() {
                if ip.is_empty() || ip == "None" {
                    continue;
                }
                cluster_ips.push(parse_ip(&object, format!("spec.clusterIPs[{i}]"), ip)?);
            }
        }
        let external_name = match service_type {
            ServiceType::ExternalName => Some(
                spec.external_name
                    .clone()
                    .filter(|n| !n.is_empty())
                    .ok_or_else(|| ConvertError::MissingField {
                        object: object.clone(),
                        field: "spec.externalName".into(),
                    })?,
            ),
            _ => None,
        };
        let mut ports = Vec::new();
        for (i, p) in spec.ports.iter().flatten().enumerate() {
            let field = |f: &str| format!("spec.ports[{i}].{f}");
            let target_port = match &p.target_port {
                None => None,
                Some(IntOrString::Int(n)) => Some(TargetPort::Number(parse_port(
                    &object,
                    field("targetPort"),
                    *n,
                )?)),
                Some(IntOrString::String(s)) => match s.parse::<i32>() {
                    Ok(n) => Some(TargetPort::Number(parse_port(
                        &object,
                        field("targetPort"),
                        n,
                    )?)),
                    Err(_) => Some(TargetPort::Name(s.clone())),
                },
            };
            ports.push(ServicePort {
                name: p.name.clone().unwrap_or_default(),
                protocol: parse_protocol(&object, field("protocol"), p.protocol.as_deref())?,
                port: parse_port(&object, field("port"), p.port)?,
                target_port,
                node_port: match p.node_port {
                    Some(n) => Some(parse_port(&object, field("nodePort"), n)?),
                    None => None,
                },
                app_protocol: p.app_protocol.clone(),
            });
        }
        let session_affinity = match spec.session_affinity.as_deref().unwrap_or("None") {
            "None" => SessionAffinity::None,
            "ClientIP" => {
                let timeout = spec
                    .session_affinity_config
                    .as_ref()
                    .and_then(|c| c.client_ip.as_ref())
                    .and_then(|c| c.timeout_seconds)
                    .unwrap_or(10_800);
                let timeout_seconds =
                    u32::try_from(timeout)
                        .ok()
                        .filter(|t| *t > 0)
                        .ok_or_else(|| {
                            invalid(
                                &object,
                                "spec.sessionAffinityConfig.clientIP.timeoutSeconds",
                                timeout.to_string(),
                                "must be positive",
                            )
                        })?;
                SessionAffinity::ClientIp { timeout_seconds }
            }
            other => {
                return Err(invalid(
                    &object,
                    "spec.sessionAffinity",
                    other,
                    "expected None or ClientIP",
                ));
            }
        };
        Ok(Service {
            key: ServiceKey { namespace, name },
            service_type,
            cluster_ips,
            headless,
            external_name,
            ports,
            publish_not_ready_addresses: spec.publish_not_ready_addresses.unwrap_or(false),
            session_affinity,
            annotations: causeway_annotations(&svc.metadata),
            resource_version: svc.metadata.resource_version.clone(),
        })
    }
}

impl TryFrom<&discovery::EndpointSlice> for EndpointSlice {
    type Error = ConvertError;

    fn try_from(slice: &discovery::EndpointSlice) -> Result<Self, ConvertError> {
        let (object, namespace, name) = object_id("EndpointSlice", &slice.metadata)?;
        let service_name = slice
            .metadata
            .labels
            .as_ref()
            .and_then(|l| l.get(SERVICE_NAME_LABEL))
            .cloned()
            .ok_or_else(|| ConvertError::MissingField {
                object: object.clone(),
                field: format!("metadata.labels[{SERVICE_NAME_LABEL}]"),
            })?;
        let address_type = match slice.address_type.as_str() {
            "IPv4" => AddressType::IPv4,
            "IPv6" => AddressType::IPv6,
            "FQDN" => AddressType::Fqdn,
            other => {
                return Err(invalid(
                    &object,
                    "addressType",
                    other,
                    "expected IPv4, IPv6 or FQDN",
                ));
            }
        };
        let mut endpoints = Vec::with_capacity(slice.endpoints.len());
        for (i, ep) in slice.endpoints.iter().enumerate() {
            let addresses = if address_type == AddressType::Fqdn {
                Vec::new()
            } else {
                let mut addrs = Vec::with_capacity(ep.addresses.len());
                for (j, a) in ep.addresses.iter().enumerate() {
                    let ip = parse_ip(&object, format!("endpoints[{i}].addresses[{j}]"), a)?;
                    let family_ok = matches!(
                        (address_type, ip),
                        (AddressType::IPv4, IpAddr::V4(_)) | (AddressType::IPv6, IpAddr::V6(_))
                    );
                    if !family_ok {
                        return Err(invalid(
                            &object,
                            format!("endpoints[{i}].addresses[{j}]"),
                            a.as_str(),
                            format!("address does not match addressType {}", slice.address_type),
                        ));
                    }
                    addrs.push(ip);
                }
                addrs
            };
            let cond = ep.conditions.clone().unwrap_or_default();
            let ready = cond.ready.unwrap_or(true);
            endpoints.push(Endpoint {
                addresses,
                ready,
                serving: cond.serving.unwrap_or(ready),
                terminating: cond.terminating.unwrap_or(false),
                hostname: ep.hostname.clone(),
                node_name: ep.node_name.clone(),
                zone: ep.zone.clone(),
                pod_name: ep
                    .target_ref
                    .as_ref()
                    .filter(|r| r.kind.as_deref() == Some("Pod"))
                    .and_then(|r| r.name.clone()),
            });
        }
        let mut ports = Vec::new();
        for (i, p) in slice.ports.iter().flatten().enumerate() {
            // A port without a number means "all ports" and cannot be load-balanced: skip it.
            let Some(port) = p.port else { continue };
            ports.push(EndpointPort {
                name: p.name.clone().unwrap_or_default(),
                protocol: parse_protocol(
                    &object,
                    format!("ports[{i}].protocol"),
                    p.protocol.as_deref(),
                )?,
                port: parse_port(&object, format!("ports[{i}].port"), port)?,
                app_protocol: p.app_protocol.clone(),
            });
        }
        Ok(EndpointSlice {
            namespace,
            name,
            service_name,
            address_type,
            endpoints,
            ports,
            generation: slice.metadata.generation.unwrap_or(0),
            resource_version: slice.metadata.resource_version.clone(),
        })
    }
}

impl TryFrom<&core::Node> for Node {
    type Error = ConvertError;

    fn try_from(node: &core::Node) -> Result<Self, ConvertError> {
        let (object, _, name) = object_id("Node", &node.metadata)?;
        let spec = node.spec.clone().unwrap_or_default();
        let raw: Vec<String> = match (spec.pod_cidrs, spec.pod_cidr) {
            (Some(cidrs), _) if !cidrs.is_empty() => cidrs,
            (_, Some(cidr)) => vec![cidr],
            _ => Vec::new(),
        };
        let pod_cidrs = raw
            .iter()
            .enumerate()
            .map(|(i, c)| parse_cidr(&object, format!("spec.podCIDRs[{i}]"), c))
            .collect::<Result<_, _>>()?;
        let addresses = node
            .status
            .as_ref()
            .and_then(|s| s.addresses.as_ref())
            .into_iter()
            .flatten()
            .map(|a| NodeAddress {
                kind: a.type_.clone(),
                address: a.address.clone(),
            })
            .collect();
        Ok(Node {
            name,
            pod_cidrs,
            addresses,
            resource_version: node.metadata.resource_version.clone(),
        })
    }
}

impl TryFrom<&crd::TunnelEndpoint> for TunnelEndpoint {
    type Error = ConvertError;

    fn try_from(te: &crd::TunnelEndpoint) -> Result<Self, ConvertError> {
        let (object, namespace, name) = object_id("TunnelEndpoint", &te.metadata)?;
        let spec = &te.spec;
        if spec.node.is_empty() {
            return Err(ConvertError::MissingField {
                object,
                field: "spec.node".into(),
            });
        }
        if !crd::is_wireguard_key(&spec.public_key) {
            return Err(invalid(
                &object,
                "spec.publicKey",
                spec.public_key.as_str(),
                "expected a base64 WireGuard key of 32 bytes",
            ));
        }
        let endpoint = spec.endpoint.clone().filter(|e| !e.is_empty());
        let pod_cidrs = spec
            .pod_cidrs
            .iter()
            .enumerate()
            .map(|(i, c)| parse_cidr(&object, format!("spec.podCIDRs[{i}]"), c))
            .collect::<Result<_, _>>()?;
        let probe_endpoint = match spec.probe_endpoint.as_deref().filter(|e| !e.is_empty()) {
            None => None,
            Some(raw) => Some(
                raw.parse()
                    .map_err(|_| invalid(&object, "spec.probeEndpoint", raw, "expected IP:PORT"))?,
            ),
        };
        Ok(TunnelEndpoint {
            name,
            namespace,
            node: spec.node.clone(),
            public_key: spec.public_key.clone(),
            endpoint,
            pod_cidrs,
            probe_endpoint,
            resource_version: te.metadata.resource_version.clone(),
        })
    }
}
