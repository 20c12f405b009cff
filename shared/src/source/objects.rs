//! Kubernetes objects in YAML text, as `kubectl get services,endpointslices,nodes -A -o yaml`
//! prints them: a `kind: List`, several `---` documents, or both mixed in one file.

use std::collections::HashMap;
use std::sync::Arc;

use k8s_openapi::api::core::v1 as core;
use k8s_openapi::api::discovery::v1 as discovery;
use serde_json::Value;

mod pieces;

use self::pieces::Part;

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
    ObjectCache::default().parse(text)
}

/// One object read from a piece of text, shared by every parse that sees the same text.
#[derive(Clone, Debug)]
enum Parsed {
    Service(Arc<Service>),
    Slice(Arc<EndpointSlice>),
    Node(Arc<Node>),
    TunnelEndpoint(Arc<TunnelEndpoint>),
    Ignored,
}

/// Parses texts that change a little at a time (a file source re-reading its file).
///
/// The text is cut into pieces (one per `---` document, one per item of a block-style
/// `kind: List`) without parsing it; a piece whose text was seen in the previous parse
/// reuses the objects read then, so a one-object change costs one object's parse, and
/// unchanged objects keep their `Arc`s (consumers compare them by pointer). Texts the
/// cutter is not sure about (JSON, directives, flow-style lists, odd indentation) are
/// parsed whole, as is any text with a YAML syntax error, so errors read the same.
#[derive(Default)]
pub struct ObjectCache {
    pieces: HashMap<Box<str>, Arc<[Parsed]>, foldhash::fast::RandomState>,
}

impl ObjectCache {
    /// Parses the text, reusing the previous call's objects for unchanged pieces. On
    /// error the cache keeps what it had.
    pub fn parse(&mut self, text: &str) -> Result<(ClusterData, ParseSummary), ObjectsError> {
        let Some(pieces) = pieces::split(text) else {
            let parsed = parse_whole(text)?;
            self.pieces.clear();
            return Ok(parsed);
        };
        let mut next: HashMap<Box<str>, Arc<[Parsed]>, _> =
            HashMap::with_capacity_and_hasher(pieces.len(), Default::default());
        let mut parsed = Vec::with_capacity(pieces.len());
        for piece in &pieces {
            let key: &str = &piece.raw;
            if let Some(hit) = next.get(key) {
                parsed.push(hit.clone()); // the same text twice in one file
                continue;
            }
            let (key, objects) = match self.pieces.remove_entry(key) {
                Some(hit) => hit,
                None => match parse_piece(piece) {
                    Ok(objects) => (key.into(), objects),
                    Err(e) => {
                        // Put back what was taken: the cache outlives a bad version.
                        self.pieces.extend(next);
                        return match e {
                            ObjectsError::Yaml(_) => parse_whole(text),
                            e => Err(e),
                        };
                    }
                },
            };
            parsed.push(objects.clone());
            next.insert(key, objects);
        }
        self.pieces = next;
        Ok(collect(parsed.iter().flat_map(|p| p.iter().cloned())))
    }
}

fn parse_piece(piece: &pieces::Piece<'_>) -> Result<Arc<[Parsed]>, ObjectsError> {
    let text = piece.text();
    let docs: Vec<Value> = serde_saphyr::from_multiple_with_options(&text, options_for(&text))
        .map_err(|e| ObjectsError::Yaml(e.to_string()))?;
    let mut out = Vec::new();
    match piece.part {
        Part::Item(i) => {
            let item = docs.into_iter().next().unwrap_or(Value::Null);
            out.push(read_object(piece.doc, format!(" item {i}"), item)?);
        }
        Part::Document => {
            for doc in docs {
                read_document(piece.doc, doc, &mut out)?;
            }
        }
        Part::ListRest => {}
    }
    Ok(out.into())
}

/// Parses the text in one go (JSON, and texts the piece cutter leaves alone).
fn parse_whole(text: &str) -> Result<(ClusterData, ParseSummary), ObjectsError> {
    // JSON (`kubectl get -o json`) is YAML too, and parses several times faster.
    let docs: Vec<Value> = match text.trim_start().as_bytes().first() {
        Some(b'{') => {
            vec![serde_json::from_str(text).map_err(|e| ObjectsError::Yaml(e.to_string()))?]
        }
        _ => serde_saphyr::from_multiple_with_options(text, options_for(text))
            .map_err(|e| ObjectsError::Yaml(e.to_string()))?,
    };
    let mut out = Vec::new();
    for (d, doc) in docs.into_iter().enumerate() {
        read_document(d + 1, doc, &mut out)?;
    }
    Ok(collect(out))
}

/// Cluster data from objects in text order (a later object with the same name wins).
fn collect(objects: impl IntoIterator<Item = Parsed>) -> (ClusterData, ParseSummary) {
    let mut data = ClusterData::default();
    let mut summary = ParseSummary::default();
    for object in objects {
        match object {
            Parsed::Service(o) => data.upsert_service(o),
            Parsed::Slice(o) => data.upsert_slice(o),
            Parsed::Node(o) => data.upsert_node(o),
            Parsed::TunnelEndpoint(o) => data.upsert_tunnel_endpoint(o),
            Parsed::Ignored => summary.ignored += 1,
        }
    }
    (data, summary)
}

/// Reads one YAML document: an object, or a `List` of objects.
fn read_document(doc_no: usize, doc: Value, out: &mut Vec<Parsed>) -> Result<(), ObjectsError> {
    if doc.is_null() {
        return Ok(());
    }
    let kind = doc.get("kind").and_then(Value::as_str).unwrap_or_default();
    if kind == "List" || (kind.ends_with("List") && doc.get("items").is_some()) {
        let items = match doc {
            Value::Object(mut map) => match map.remove("items") {
                Some(Value::Array(items)) => items,
                _ => Vec::new(),
            },
            _ => Vec::new(),
        };
        for (i, item) in items.into_iter().enumerate() {
            out.push(read_object(doc_no, format!(" item {i}"), item)?);
        }
    } else {
        out.push(read_object(doc_no, String::new(), doc)?);
    }
    Ok(())
}

fn read_object(doc: usize, item: String, obj: Value) -> Result<Parsed, ObjectsError> {
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
    Ok(match kind.as_str() {
        "Service" => {
            let o: core::Service = serde_json::from_value(obj).map_err(schema)?;
            Parsed::Service(Arc::new(Service::try_from(&o).map_err(convert)?))
        }
        "EndpointSlice" => {
            let o: discovery::EndpointSlice = serde_json::from_value(obj).map_err(schema)?;
            Parsed::Slice(Arc::new(EndpointSlice::try_from(&o).map_err(convert)?))
        }
        "Node" => {
            let o: core::Node = serde_json::from_value(obj).map_err(schema)?;
            Parsed::Node(Arc::new(Node::try_from(&o).map_err(convert)?))
        }
        "TunnelEndpoint" => {
            let o: crd::TunnelEndpoint = serde_json::from_value(obj).map_err(schema)?;
            Parsed::TunnelEndpoint(Arc::new(TunnelEndpoint::try_from(&o).map_err(convert)?))
        }
        _ => Parsed::Ignored,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::ServiceKey;

    const FIXTURES: [&str; 4] = [
        include_str!("../../tests/fixtures/cluster-b.yaml"),
        include_str!("../../../tests/demo/cluster-a.yaml"),
        include_str!("../../../tests/demo/cluster-b.yaml"),
        include_str!("../../../dns/tests/fixtures/cluster-b.yaml"),
    ];

    fn svc(i: usize) -> String {
        format!(
            "- apiVersion: v1\n  kind: Service\n  metadata:\n    name: s{i}\n    namespace: demo\n  spec:\n    clusterIP: 172.31.0.{i}\n"
        )
    }

    fn list(items: impl IntoIterator<Item = usize>) -> String {
        let body: String = items.into_iter().map(svc).collect();
        format!("apiVersion: v1\nkind: List\nitems:\n{body}metadata: {{}}\n")
    }

    #[test]
    fn pieces_give_what_a_whole_parse_gives() {
        for text in FIXTURES {
            assert!(pieces::split(text).is_some(), "fixture not cut:\n{text}");
            let whole = parse_whole(text).unwrap();
            assert_eq!(ObjectCache::default().parse(text).unwrap(), whole);
        }
    }

    #[test]
    fn unchanged_objects_keep_their_arcs() {
        let mut cache = ObjectCache::default();
        let (first, _) = cache.parse(&list(1..=3)).unwrap();
        let (second, _) = cache.parse(&list([1, 2, 4])).unwrap();
        let key = |i: usize| ServiceKey::new("demo", format!("s{i}"));
        assert!(Arc::ptr_eq(
            &first.services[&key(1)],
            &second.services[&key(1)]
        ));
        assert!(Arc::ptr_eq(
            &first.services[&key(2)],
            &second.services[&key(2)]
        ));
        assert!(!second.services.contains_key(&key(3)));
        assert_eq!(second, parse_whole(&list([1, 2, 4])).unwrap().0);
        // Only the pieces of the latest text are kept: three items and the list's rest.
        assert_eq!(cache.pieces.len(), 4);
    }

    #[test]
    fn a_bad_piece_is_named_and_the_cache_survives() {
        let mut cache = ObjectCache::default();
        let (good, _) = cache.parse(&list(1..=3)).unwrap();
        let bad = list(1..=3).replace("172.31.0.2\n", "172.31.0.300\n");
        let msg = cache.parse(&bad).unwrap_err().to_string();
        assert!(
            msg.starts_with("document 1 item 1: Service demo/s2"),
            "{msg}"
        );
        // A syntax error reads as a whole parse reports it.
        let broken = format!("{}- {{unclosed: [\n", list(1..=3));
        let err = cache.parse(&broken).unwrap_err();
        assert_eq!(
            err.to_string(),
            parse_whole(&broken).unwrap_err().to_string()
        );
        let (again, _) = cache.parse(&list(1..=3)).unwrap();
        assert!(Arc::ptr_eq(
            &good.services[&ServiceKey::new("demo", "s1")],
            &again.services[&ServiceKey::new("demo", "s1")]
        ));
    }

    #[test]
    fn later_documents_override_earlier_ones_as_in_a_whole_parse() {
        let text = format!(
            "{}---\napiVersion: v1\nkind: Service\nmetadata: {{name: s1, namespace: demo}}\nspec: {{clusterIP: 172.31.9.9}}\n---\n{}",
            list(1..=2),
            "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x, namespace: demo}\n"
        );
        let (data, summary) = ObjectCache::default().parse(&text).unwrap();
        assert_eq!((data.clone(), summary), parse_whole(&text).unwrap());
        assert_eq!(data.services.len(), 2);
        assert_eq!(summary_ignored(&text), 1);
    }

    fn summary_ignored(text: &str) -> usize {
        ObjectCache::default().parse(text).unwrap().1.ignored
    }
}
