//! The watchers behind [`super::Observed`]: one per CNI source that `tunnel.nodeSubnets`
//! can use, on the local cluster. A kind the API does not serve (that CNI is not installed)
//! is left unread and looked for again every [`RECHECK`]; a watch that fails keeps the last
//! good value while the watcher retries.

use std::collections::BTreeMap;
use std::time::Duration;

use futures::StreamExt;
use kube::Client;
use kube::api::{Api, ApiResource, DynamicObject, GroupVersionKind};
use kube::runtime::WatchStreamExt as _;
use kube::runtime::watcher::{self, Event};
use serde_json::Value;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::{
    NodeSubnetSource, OVN_ANNOTATION, Observed, SubnetError, from_calico_blocks, from_cilium_node,
    from_host_subnet, from_ovn_annotation,
};

/// How often an absent kind is looked for again.
pub const RECHECK: Duration = Duration::from_secs(60);

/// One source's object kind.
#[derive(Clone, Copy, Debug)]
struct Kind {
    source: NodeSubnetSource,
    group: &'static str,
    version: &'static str,
    kind: &'static str,
    plural: &'static str,
    /// Only the object named after the node (a field selector); else every object.
    by_name: bool,
}

const KINDS: [Kind; 4] = [
    Kind {
        source: NodeSubnetSource::OvnAnnotation,
        group: "",
        version: "v1",
        kind: "Node",
        plural: "nodes",
        by_name: true,
    },
    Kind {
        source: NodeSubnetSource::HostSubnet,
        group: "network.openshift.io",
        version: "v1",
        kind: "HostSubnet",
        plural: "hostsubnets",
        by_name: true,
    },
    Kind {
        source: NodeSubnetSource::CiliumNode,
        group: "cilium.io",
        version: "v2",
        kind: "CiliumNode",
        plural: "ciliumnodes",
        by_name: true,
    },
    Kind {
        // BlockAffinity has no field for the node that the API can select on.
        source: NodeSubnetSource::CalicoBlocks,
        group: "crd.projectcalico.org",
        version: "v1",
        kind: "BlockAffinity",
        plural: "blockaffinities",
        by_name: false,
    },
];

/// The kinds `source` reads (none for `nodeSpec`, which comes from the shared Node watch).
fn kinds_for(source: NodeSubnetSource) -> Vec<Kind> {
    KINDS
        .iter()
        .filter(|k| source == NodeSubnetSource::Auto || k.source == source)
        .copied()
        .collect()
}

fn evaluate(
    kind: Kind,
    node: &str,
    objects: &BTreeMap<String, Value>,
) -> Result<Vec<ipnet::IpNet>, SubnetError> {
    match kind.source {
        NodeSubnetSource::OvnAnnotation => match objects
            .get(node)
            .and_then(|n| n["metadata"]["annotations"][OVN_ANNOTATION].as_str())
        {
            Some(v) => from_ovn_annotation(node, v),
            None => Ok(Vec::new()),
        },
        NodeSubnetSource::HostSubnet => {
            let mut out = Vec::new();
            for o in objects.values() {
                out.extend(from_host_subnet(node, o)?);
            }
            Ok(out)
        }
        NodeSubnetSource::CiliumNode => match objects.get(node) {
            Some(o) => from_cilium_node(node, o),
            None => Ok(Vec::new()),
        },
        NodeSubnetSource::CalicoBlocks => from_calico_blocks(node, objects.values()),
        NodeSubnetSource::NodeSpec | NodeSubnetSource::Auto => Ok(Vec::new()),
    }
}

/// Whether the API serves `kind` (its group/version lists the resource).
async fn served(client: &Client, kind: Kind) -> bool {
    if kind.group.is_empty() {
        return true;
    }
    match client
        .list_api_group_resources(&format!("{}/{}", kind.group, kind.version))
        .await
    {
        Ok(list) => list.resources.iter().any(|r| r.name == kind.plural),
        Err(_) => false,
    }
}

async fn follow(client: Client, node: String, kind: Kind, tx: watch::Sender<Observed>) {
    loop {
        if served(&client, kind).await {
            break;
        }
        tokio::time::sleep(RECHECK).await;
    }
    let gvk = GroupVersionKind::gvk(kind.group, kind.version, kind.kind);
    let ar = ApiResource::from_gvk_with_plural(&gvk, kind.plural);
    let api: Api<DynamicObject> = Api::all_with(client, &ar);
    let mut cfg = watcher::Config::default();
    if kind.by_name {
        cfg = cfg.fields(&format!("metadata.name={node}"));
    }
    let mut objects: BTreeMap<String, Value> = BTreeMap::new();
    let mut pending: Option<BTreeMap<String, Value>> = None;
    let mut stream = watcher::watcher(api, cfg).default_backoff().boxed();
    while let Some(ev) = stream.next().await {
        let changed = match ev {
            Ok(Event::Init) => {
                pending = Some(BTreeMap::new());
                false
            }
            Ok(Event::InitApply(o)) => {
                if let (Some(p), Ok(v)) = (pending.as_mut(), serde_json::to_value(&o)) {
                    p.insert(o.metadata.name.clone().unwrap_or_default(), v);
                }
                false
            }
            Ok(Event::InitDone) => {
                objects = pending.take().unwrap_or_default();
                true
            }
            Ok(Event::Apply(o)) => {
                if let Ok(v) = serde_json::to_value(&o) {
                    objects.insert(o.metadata.name.clone().unwrap_or_default(), v);
                }
                true
            }
            Ok(Event::Delete(o)) => {
                objects.remove(o.metadata.name.as_deref().unwrap_or_default());
                true
            }
            Err(e) => {
                tracing::warn!(kind = kind.kind, error = %e, "node subnet watch failed; retrying");
                false
            }
        };
        if changed {
            let value = evaluate(kind, &node, &objects);
            tx.send_if_modified(|o| {
                if o.get(&kind.source) == Some(&value) {
                    return false;
                }
                o.insert(kind.source, value);
                true
            });
        }
    }
}

/// Starts the watchers `source` needs for `node`; the receiver sees every change.
pub fn spawn(
    client: Client,
    node: &str,
    source: NodeSubnetSource,
) -> (watch::Receiver<Observed>, Vec<JoinHandle<()>>) {
    let (tx, rx) = watch::channel(Observed::default());
    let tasks = kinds_for(source)
        .into_iter()
        .map(|k| tokio::spawn(follow(client.clone(), node.to_owned(), k, tx.clone())))
        .collect();
    (rx, tasks)
}
