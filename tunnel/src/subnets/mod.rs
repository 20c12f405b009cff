//! Which pod subnets this node owns, read from where the cluster's CNI keeps them
//! (`tunnel.nodeSubnets`). Pure: the objects come in as JSON, as the API serves them; the
//! watchers in [`watch`] feed them.
//!
//! | source | object | field |
//! |---|---|---|
//! | `ovnAnnotation` | the Node (OVN-Kubernetes) | annotation `k8s.ovn.org/node-subnets`, `{"default": [..]}` (or a single string on older releases) |
//! | `hostSubnet` | `HostSubnet` (`network.openshift.io/v1`, OpenShift SDN) | `subnet`, for `host` = the node |
//! | `ciliumNode` | `CiliumNode` (`cilium.io/v2`, cluster-pool and multi-pool IPAM) | `spec.ipam.podCIDRs`, `spec.ipam.pools.allocated[].cidrs` |
//! | `calicoBlocks` | `BlockAffinity` (`crd.projectcalico.org/v1`, Calico IPAM) | `spec.cidr` of every confirmed, undeleted block with `spec.node` = the node |
//! | `nodeSpec` | the Node | `spec.podCIDRs` (kube-controller-manager's allocation) |
//!
//! `auto` takes the first of these, in that order, that has subnets for this node: the CNI's
//! own record wins over `spec.podCIDRs`, which CNIs with their own IPAM leave unset or ignore.

pub mod watch;

use std::collections::BTreeMap;
use std::fmt;

use ipnet::IpNet;
use serde_json::Value;

pub use causeway_shared::config::NodeSubnetSource;

/// The OVN-Kubernetes annotation with the node's subnets per network.
pub const OVN_ANNOTATION: &str = "k8s.ovn.org/node-subnets";

/// A CNI object that does not say what it should.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SubnetError {
    /// A field is missing or of the wrong type.
    #[error("{object}: {field}: {reason}")]
    Field {
        object: String,
        field: String,
        reason: String,
    },
}

fn field_err(object: &str, field: &str, reason: impl Into<String>) -> SubnetError {
    SubnetError::Field {
        object: object.into(),
        field: field.into(),
        reason: reason.into(),
    }
}

fn cidr(object: &str, field: &str, text: &str) -> Result<IpNet, SubnetError> {
    text.parse::<IpNet>()
        .map(|n| n.trunc())
        .map_err(|_| field_err(object, field, format!("{text:?} is not a CIDR")))
}

fn name_of(obj: &Value) -> &str {
    obj["metadata"]["name"].as_str().unwrap_or("?")
}

/// Subnets of the default network from the value of [`OVN_ANNOTATION`].
pub fn from_ovn_annotation(node: &str, value: &str) -> Result<Vec<IpNet>, SubnetError> {
    let object = format!("Node {node}");
    let field = format!("metadata.annotations[{OVN_ANNOTATION}]");
    let parsed: Value = serde_json::from_str(value)
        .map_err(|e| field_err(&object, &field, format!("not JSON: {e}")))?;
    let list = match &parsed["default"] {
        Value::String(s) => vec![s.as_str()],
        Value::Array(a) => a
            .iter()
            .map(|v| {
                v.as_str()
                    .ok_or_else(|| field_err(&object, &field, "default: not a list of strings"))
            })
            .collect::<Result<_, _>>()?,
        Value::Null => return Ok(Vec::new()),
        _ => return Err(field_err(&object, &field, "default: not a string or list")),
    };
    list.iter().map(|s| cidr(&object, &field, s)).collect()
}

/// The subnet of an OpenShift SDN `HostSubnet`, if it is this node's.
pub fn from_host_subnet(node: &str, obj: &Value) -> Result<Vec<IpNet>, SubnetError> {
    let object = format!("HostSubnet {}", name_of(obj));
    if obj["host"].as_str().unwrap_or(name_of(obj)) != node {
        return Ok(Vec::new());
    }
    match obj["subnet"].as_str() {
        Some(s) => Ok(vec![cidr(&object, "subnet", s)?]),
        None => Err(field_err(&object, "subnet", "missing")),
    }
}

/// The pod CIDRs of a `CiliumNode` (named after its node).
pub fn from_cilium_node(node: &str, obj: &Value) -> Result<Vec<IpNet>, SubnetError> {
    let object = format!("CiliumNode {}", name_of(obj));
    if name_of(obj) != node {
        return Ok(Vec::new());
    }
    let ipam = &obj["spec"]["ipam"];
    let mut out = Vec::new();
    for (i, c) in ipam["podCIDRs"]
        .as_array()
        .into_iter()
        .flatten()
        .enumerate()
    {
        let field = format!("spec.ipam.podCIDRs[{i}]");
        let text = c
            .as_str()
            .ok_or_else(|| field_err(&object, &field, "not a string"))?;
        out.push(cidr(&object, &field, text)?);
    }
    let pools = ipam["pools"]["allocated"].as_array().into_iter().flatten();
    for (i, pool) in pools.enumerate() {
        for (j, c) in pool["cidrs"].as_array().into_iter().flatten().enumerate() {
            let field = format!("spec.ipam.pools.allocated[{i}].cidrs[{j}]");
            let text = c
                .as_str()
                .ok_or_else(|| field_err(&object, &field, "not a string"))?;
            out.push(cidr(&object, &field, text)?);
        }
    }
    Ok(out)
}

/// The blocks of Calico `BlockAffinity` objects this node holds (confirmed, not deleted).
pub fn from_calico_blocks<'a>(
    node: &str,
    objs: impl IntoIterator<Item = &'a Value>,
) -> Result<Vec<IpNet>, SubnetError> {
    let mut out = Vec::new();
    for obj in objs {
        let spec = &obj["spec"];
        if spec["node"].as_str() != Some(node)
            || spec["state"].as_str() != Some("confirmed")
            || spec["deleted"].as_str() == Some("true")
        {
            continue;
        }
        let object = format!("BlockAffinity {}", name_of(obj));
        match spec["cidr"].as_str() {
            Some(s) => out.push(cidr(&object, "spec.cidr", s)?),
            None => return Err(field_err(&object, "spec.cidr", "missing")),
        }
    }
    out.sort();
    out.dedup();
    Ok(out)
}

/// What each CNI source says about this node; a source absent from the map was not read
/// (not asked for, or the API has no such kind). `nodeSpec` comes from the shared Node watch
/// instead.
pub type Observed = BTreeMap<NodeSubnetSource, Result<Vec<IpNet>, SubnetError>>;

/// The subnets chosen, and where they came from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Choice {
    pub subnets: Vec<IpNet>,
    pub from: NodeSubnetSource,
    /// Sources that could not be read (bad objects); they are skipped by `auto` and leave a
    /// configured source with no subnets.
    pub problems: Vec<SubnetError>,
}

/// `auto`'s order: each CNI's own record first, `spec.podCIDRs` last.
pub const AUTO_ORDER: [NodeSubnetSource; 5] = [
    NodeSubnetSource::OvnAnnotation,
    NodeSubnetSource::HostSubnet,
    NodeSubnetSource::CiliumNode,
    NodeSubnetSource::CalicoBlocks,
    NodeSubnetSource::NodeSpec,
];

/// Picks the node's subnets: from `source`, or with `auto` from the first source with any.
/// `node_spec` is the Node's `spec.podCIDRs`.
pub fn choose(source: NodeSubnetSource, observed: &Observed, node_spec: &[IpNet]) -> Choice {
    let candidates: &[NodeSubnetSource] = match source {
        NodeSubnetSource::Auto => &AUTO_ORDER,
        _ => std::slice::from_ref(&source),
    };
    let mut problems = Vec::new();
    for &s in candidates {
        let subnets = match s {
            NodeSubnetSource::NodeSpec => node_spec.to_vec(),
            _ => match observed.get(&s) {
                Some(Ok(v)) => v.clone(),
                Some(Err(e)) => {
                    problems.push(e.clone());
                    Vec::new()
                }
                None => Vec::new(),
            },
        };
        if !subnets.is_empty() {
            return Choice {
                subnets,
                from: s,
                problems,
            };
        }
    }
    Choice {
        subnets: Vec::new(),
        from: source,
        problems,
    }
}

impl fmt::Display for Choice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let nets: Vec<String> = self.subnets.iter().map(ToString::to_string).collect();
        write!(f, "{} from {}", nets.join(","), self.from)
    }
}

#[cfg(test)]
mod tests;
