//! Kubernetes objects in YAML text, as `kubectl get services,endpointslices,nodes -A -o yaml`
//! prints them: a `kind: List`, several `---` documents, or both mixed in one file.

use k8s_openapi::api::core::v1 as core;
use k8s_openapi::api::discovery::v1 as discovery;
use serde_json::Value;

use crate::crd;
use crate::model::convert::ConvertError;
use crate::model::{ClusterData, EndpointSlice, Node, Service, TunnelEndpoint};

/// Why a file of objects could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ObjectsError {
    /// The text is not YAML.
    #[error("not valid YAML: {0}")]
    Yaml(String),
    /// A document or list item is not an object with `kind`.
    #[error("document {doc}{item}: expected a Kubernetes object with apiVersion and kind")]
    NotAnObject { doc: usize, item: String },
    /// The object does not match its kind's schema.
    #[error("document {doc}{item}: {kind} {name}: {message}")]
    Schema {
        doc: usize,
        item: String,
        kind: String,
        name: String,
        message: String,
    },
    /// The object is well-formed but unusable.
    #[error("document {doc}{item}: {source}")]
    Convert {
        doc: usize,
        item: String,
        #[source]
        source: Box<ConvertError>,
    },
}

/// What a file held besides the objects we take.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct ParseSummary {
    /// Objects of kinds we do not use (ConfigMaps, Pods ...), skipped.
    pub ignored: usize,
}

/// serde-saphyr's default budget (250,000 nodes, 1,024 documents, 1,000,000 events) is
/// below a real cluster's size: ~3,300 Services with their EndpointSlices already exceed
/// it. A node, event or document takes at least a byte of input, so limits scaled to the
/// text's length never refuse a legitimate file; aliases (the YAML-bomb vector) keep
/// their default caps.
fn options_for(text: &str) -> serde_saphyr::Options {
    let mut budget = serde_saphyr::Budget::default();
    budget.max_nodes = budget.max_nodes.max(text.len());
    budget.max_events = budget.max_events.max(text.len().saturating_mul(2));
    budget.max_documents = budget.max_documents.max(text.len());
    let mut options = serde_saphyr::Options::default();
    options.budget = Some(budget);
    options
}

/// Parses every object of the text into cluster data. Any error rejects the whole text,
/// so a half-written file never becomes a half-applied state.
pub fn parse_objects(text: &str) -> Result<(ClusterData, ParseSummary), ObjectsError> {
    // JSON (`kubectl get -o json`) is YAML too, and parses several times faster.
    let docs: Vec<Value> = match text.trim_start().as_bytes().first() {
        Some(b'{') => {
            vec![serde_json::from_str(text).map_err(|e| ObjectsError::Yaml(e.to_string()))?]
        }
        _ => serde_saphyr::from_multiple_with_options(text, options_for(text))
            .map_err(|e| ObjectsError::Yaml(e.to_string()))?,
    };
    let mut data = ClusterData::default();
    let mut summary = ParseSummary::default();
    for (d, doc) in docs.into_iter().enumerate() {
        let doc_no = d + 1;
        if doc.is_null() {
            continue;
        }
        let kind = doc.get("kind").and_then(Value::as_str).unwrap_or_default();
        if kind == "List" || (kind.ends_with("List") && doc.get("items").is_some()) {
            let items = doc
                .get("items")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default();
            for (i, item) in items.into_iter().enumerate() {
                add_object(&mut data, &mut summary, doc_no, format!(" item {i}"), item)?;
            }
        } else {
            add_object(&mut data, &mut summary, doc_no, String::new(), doc)?;
        }
    }
    Ok((data, summary))
}

fn add_object(
    data: &mut ClusterData,
    summary: &mut ParseSummary,
    doc: usize,
    item: String,
    obj: Value,
) -> Result<(), ObjectsError> {
    let Some(kind) = obj.get("kind").and_then(Value::as_str).map(str::to_string) else {
        return Err(ObjectsError::NotAnObject { doc, item });
    };
    let name = obj
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or("<unnamed>")
        .to_string();
    let schema = |e: serde_json::Error| ObjectsError::Schema {
        doc,
        item: item.clone(),
        kind: kind.clone(),
        name: name.clone(),
        message: e.to_string(),
    };
    let convert = |source: ConvertError| ObjectsError::Convert {
        doc,
        item: item.clone(),
        source: Box::new(source),
    };
    match kind.as_str() {
        "Service" => {
            let o: core::Service = serde_json::from_value(obj).map_err(schema)?;
            data.upsert_service(Service::try_from(&o).map_err(convert)?);
        }
        "EndpointSlice" => {
            let o: discovery::EndpointSlice = serde_json::from_value(obj).map_err(schema)?;
            data.upsert_slice(EndpointSlice::try_from(&o).map_err(convert)?);
        }
        "Node" => {
            let o: core::Node = serde_json::from_value(obj).map_err(schema)?;
            data.upsert_node(Node::try_from(&o).map_err(convert)?);
        }
        "TunnelEndpoint" => {
            let o: crd::TunnelEndpoint = serde_json::from_value(obj).map_err(schema)?;
            data.upsert_tunnel_endpoint(TunnelEndpoint::try_from(&o).map_err(convert)?);
        }
        _ => summary.ignored += 1,
    }
    Ok(())
}
