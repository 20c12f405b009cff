//! Reading Kubernetes objects from YAML in the format `kubectl get ... -o yaml` prints: a
//! `kind: List` with `items`, several `---` documents, or both mixed in one file.

use std::path::{Path, PathBuf};

use serde_json::Value;

use super::store::StoreError;

/// A YAML file of objects could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The file could not be read.
    #[error("cannot read {path}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The text is not YAML.
    #[error("{origin}: invalid YAML")]
    Parse {
        /// The file, or `<text>`.
        origin: String,
        /// The parser's error (boxed: it is large).
        #[source]
        source: Box<serde_saphyr::Error>,
    },
    /// An object could not be stored (unknown kind, no name, ...).
    #[error("{origin}: object {index} ({name})")]
    Store {
        /// The file, or `<text>`.
        origin: String,
        /// Position of the object among all objects of the text, from 0.
        index: usize,
        /// `kind namespace/name` of the object as far as it has one.
        name: String,
        /// The store's refusal.
        #[source]
        source: Box<StoreError>,
    },
}

/// Every object of a YAML text, `kind: List` documents flattened, in order.
pub fn objects_from_yaml(text: &str, origin: &str) -> Result<Vec<Value>, LoadError> {
    let documents: Vec<Option<Value>> =
        serde_saphyr::from_multiple(text).map_err(|source| LoadError::Parse {
            origin: origin.to_owned(),
            source: Box::new(source),
        })?;
    let mut objects = Vec::new();
    for document in documents.into_iter().flatten() {
        flatten(document, &mut objects);
    }
    Ok(objects)
}

fn flatten(document: Value, out: &mut Vec<Value>) {
    let is_list = document
        .get("kind")
        .and_then(Value::as_str)
        .is_some_and(|kind| kind == "List" || kind.ends_with("List"))
        && document.get("items").is_some_and(Value::is_array);
    match document {
        Value::Null => {}
        Value::Object(mut fields) if is_list => {
            if let Some(Value::Array(items)) = fields.remove("items") {
                for item in items {
                    flatten(item, out);
                }
            }
        }
        other => out.push(other),
    }
}

/// A short description of an object for error messages.
pub(crate) fn describe(object: &Value) -> String {
    let field = |pointer: &str| {
        object
            .pointer(pointer)
            .and_then(Value::as_str)
            .unwrap_or("?")
    };
    let namespace = object
        .pointer("/metadata/namespace")
        .and_then(Value::as_str);
    match namespace {
        Some(ns) => format!("{} {ns}/{}", field("/kind"), field("/metadata/name")),
        None => format!("{} {}", field("/kind"), field("/metadata/name")),
    }
}

/// Every object of a YAML file, as [`objects_from_yaml`].
pub fn read_objects(path: &Path) -> Result<Vec<Value>, LoadError> {
    let text = std::fs::read_to_string(path).map_err(|source| LoadError::Read {
        path: path.to_owned(),
        source,
    })?;
    objects_from_yaml(&text, &path.display().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_and_documents_mixed() {
        let text = "\
apiVersion: v1
kind: List
items:
- apiVersion: v1
  kind: Service
  metadata: {name: a, namespace: x}
- apiVersion: v1
  kind: Node
  metadata: {name: n1}
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: a-1, namespace: x}
---
";
        let objects = objects_from_yaml(text, "<text>").unwrap();
        let names: Vec<String> = objects.iter().map(describe).collect();
        assert_eq!(names, ["Service x/a", "Node n1", "EndpointSlice x/a-1"]);
    }

    #[test]
    fn bad_yaml_is_an_error() {
        assert!(matches!(
            objects_from_yaml("a: [", "f.yaml"),
            Err(LoadError::Parse { .. })
        ));
    }
}
