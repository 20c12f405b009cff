//! PATCH bodies: JSON merge patch, strategic merge patch (treated as a merge patch), JSON patch,
//! and server-side apply (treated as a merge patch that may create the object).

use serde_json::Value;

/// A PATCH the server cannot apply.
#[derive(Debug, thiserror::Error)]
pub enum PatchError {
    /// The Content-Type is not a patch type.
    #[error("unsupported patch content type {0:?}")]
    UnsupportedType(String),
    /// The body does not parse as the content type says.
    #[error("malformed {kind} patch body: {message}")]
    Malformed {
        /// The patch kind.
        kind: &'static str,
        /// The parser's message.
        message: String,
    },
    /// A JSON patch operation failed (a `test` that did not hold, a missing path).
    #[error("json patch failed")]
    JsonPatch(#[source] json_patch::PatchError),
}

/// The patch kinds, named by their Content-Type.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PatchKind {
    /// `application/merge-patch+json` (RFC 7386).
    Merge,
    /// `application/strategic-merge-patch+json`; lists are replaced rather than merged by key.
    Strategic,
    /// `application/json-patch+json` (RFC 6902).
    Json,
    /// `application/apply-patch+yaml`: server-side apply, approximated by a merge patch that
    /// creates the object when it is missing; fields are never removed by omission.
    Apply,
}

impl PatchKind {
    /// The kind named by a Content-Type header value.
    pub fn from_content_type(content_type: &str) -> Result<Self, PatchError> {
        let essence = content_type.split(';').next().unwrap_or_default().trim();
        match essence {
            "application/merge-patch+json" => Ok(Self::Merge),
            "application/strategic-merge-patch+json" => Ok(Self::Strategic),
            "application/json-patch+json" => Ok(Self::Json),
            "application/apply-patch+yaml" | "application/apply-patch+json" => Ok(Self::Apply),
            other => Err(PatchError::UnsupportedType(other.to_owned())),
        }
    }

    fn name(self) -> &'static str {
        match self {
            Self::Merge => "merge",
            Self::Strategic => "strategic merge",
            Self::Json => "json",
            Self::Apply => "apply",
        }
    }
}

/// Parses a patch body: JSON, or for server-side apply also YAML.
pub fn parse_body(kind: PatchKind, body: &[u8]) -> Result<Value, PatchError> {
    let malformed = |message: String| PatchError::Malformed {
        kind: kind.name(),
        message,
    };
    match serde_json::from_slice(body) {
        Ok(value) => Ok(value),
        Err(_) if kind == PatchKind::Apply => {
            let text = std::str::from_utf8(body).map_err(|e| malformed(e.to_string()))?;
            serde_saphyr::from_str(text).map_err(|e| malformed(e.to_string()))
        }
        Err(e) => Err(malformed(e.to_string())),
    }
}

/// Applies a parsed patch to a target (`Value::Null` for an object that does not exist yet).
pub fn apply(kind: PatchKind, target: &mut Value, patch: &Value) -> Result<(), PatchError> {
    match kind {
        PatchKind::Merge | PatchKind::Strategic | PatchKind::Apply => {
            json_patch::merge(target, patch);
            Ok(())
        }
        PatchKind::Json => {
            let ops: json_patch::Patch =
                serde_json::from_value(patch.clone()).map_err(|e| PatchError::Malformed {
                    kind: kind.name(),
                    message: e.to_string(),
                })?;
            json_patch::patch(target, &ops).map_err(PatchError::JsonPatch)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn content_types() {
        assert_eq!(
            PatchKind::from_content_type("application/merge-patch+json; charset=utf-8").unwrap(),
            PatchKind::Merge
        );
        assert_eq!(
            PatchKind::from_content_type("application/apply-patch+yaml").unwrap(),
            PatchKind::Apply
        );
        assert!(PatchKind::from_content_type("application/json").is_err());
    }

    #[test]
    fn merge_and_json_patch() {
        let mut obj = json!({"metadata": {"labels": {"a": "1", "b": "2"}}, "spec": {"x": 1}});
        apply(
            PatchKind::Merge,
            &mut obj,
            &json!({"metadata": {"labels": {"b": null, "c": "3"}}}),
        )
        .unwrap();
        assert_eq!(obj["metadata"]["labels"], json!({"a": "1", "c": "3"}));
        let ops = json!([{"op": "replace", "path": "/spec/x", "value": 2}]);
        apply(PatchKind::Json, &mut obj, &ops).unwrap();
        assert_eq!(obj["spec"]["x"], 2);
        let failing = json!([{"op": "test", "path": "/spec/x", "value": 3}]);
        assert!(apply(PatchKind::Json, &mut obj, &failing).is_err());
    }

    #[test]
    fn apply_body_may_be_yaml() {
        let v = parse_body(PatchKind::Apply, b"kind: Secret\nmetadata:\n  name: s\n").unwrap();
        assert_eq!(v["metadata"]["name"], "s");
        assert!(parse_body(PatchKind::Merge, b"kind: Secret").is_err());
    }
}
