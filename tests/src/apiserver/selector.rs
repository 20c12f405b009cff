//! `labelSelector` and `fieldSelector` query parameters, parsed and matched against JSON objects.
//!
//! Label selectors support the whole apimachinery grammar: `k=v`, `k==v`, `k!=v`, `k`, `!k`,
//! `k in (a,b)` and `k notin (a,b)`. Field selectors support `=`, `==` and `!=` on any dotted
//! path of string-like fields, which covers `metadata.name` and `metadata.namespace`.

use serde_json::Value;

/// A selector that could not be parsed.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SelectorError {
    /// A requirement has an empty key.
    #[error("empty key in selector requirement {0:?}")]
    EmptyKey(String),
    /// A set requirement (`in`/`notin`) lacks its parenthesised values.
    #[error("set requirement {0:?} needs values in parentheses")]
    BadSet(String),
    /// A requirement uses an operator this selector kind does not support.
    #[error("unsupported selector requirement {0:?}")]
    Unsupported(String),
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Op {
    Eq(String),
    NotEq(String),
    In(Vec<String>),
    NotIn(Vec<String>),
    Exists,
    DoesNotExist,
}

#[derive(Clone, Debug, PartialEq, Eq)]
struct Requirement {
    key: String,
    op: Op,
}

impl Requirement {
    fn matches(&self, value: Option<&str>) -> bool {
        match (&self.op, value) {
            (Op::Eq(want), Some(v)) => v == want,
            (Op::Eq(_), None) => false,
            (Op::NotEq(want), v) => v != Some(want.as_str()),
            (Op::In(set), Some(v)) => set.iter().any(|s| s == v),
            (Op::In(_), None) => false,
            (Op::NotIn(set), v) => v.is_none_or(|v| !set.iter().any(|s| s == v)),
            (Op::Exists, v) => v.is_some(),
            (Op::DoesNotExist, v) => v.is_none(),
        }
    }
}

/// A parsed label selector; the empty selector matches everything.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LabelSelector(Vec<Requirement>);

impl LabelSelector {
    /// Parses the value of a `labelSelector` query parameter.
    pub fn parse(text: &str) -> Result<Self, SelectorError> {
        split_top_level(text)
            .into_iter()
            .map(|part| parse_label_requirement(part.trim()))
            .collect::<Result<_, _>>()
            .map(Self)
    }

    /// Whether an object's `metadata.labels` satisfy every requirement.
    pub fn matches(&self, object: &Value) -> bool {
        let labels = object.pointer("/metadata/labels");
        self.0.iter().all(|r| {
            let value = labels.and_then(|l| l.get(&r.key)).and_then(Value::as_str);
            r.matches(value)
        })
    }
}

/// A parsed field selector; the empty selector matches everything.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FieldSelector(Vec<Requirement>);

impl FieldSelector {
    /// Parses the value of a `fieldSelector` query parameter.
    pub fn parse(text: &str) -> Result<Self, SelectorError> {
        split_top_level(text)
            .into_iter()
            .map(|part| {
                let part = part.trim();
                let (key, op) = if let Some((k, v)) = part.split_once("!=") {
                    (k, Op::NotEq(v.trim().to_owned()))
                } else if let Some((k, v)) = part.split_once("==") {
                    (k, Op::Eq(v.trim().to_owned()))
                } else if let Some((k, v)) = part.split_once('=') {
                    (k, Op::Eq(v.trim().to_owned()))
                } else {
                    return Err(SelectorError::Unsupported(part.to_owned()));
                };
                let key = key.trim();
                if key.is_empty() {
                    return Err(SelectorError::EmptyKey(part.to_owned()));
                }
                Ok(Requirement {
                    key: key.to_owned(),
                    op,
                })
            })
            .collect::<Result<_, _>>()
            .map(Self)
    }

    /// Whether the fields named by the selector hold the wanted values.
    pub fn matches(&self, object: &Value) -> bool {
        self.0.iter().all(|r| {
            let pointer = format!("/{}", r.key.replace('.', "/"));
            let value = match object.pointer(&pointer) {
                Some(Value::String(s)) => Some(s.clone()),
                Some(Value::Bool(b)) => Some(b.to_string()),
                Some(Value::Number(n)) => Some(n.to_string()),
                // An absent field compares as the empty string, as in the apiserver.
                _ => Some(String::new()),
            };
            r.matches(value.as_deref())
        })
    }
}

/// Splits on commas that are not inside parentheses; empty parts are dropped.
fn split_top_level(text: &str) -> Vec<&str> {
    let mut parts = Vec::new();
    let (mut depth, mut start) = (0usize, 0usize);
    for (i, c) in text.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => depth = depth.saturating_sub(1),
            ',' if depth == 0 => {
                parts.push(&text[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push(&text[start..]);
    parts.into_iter().filter(|p| !p.trim().is_empty()).collect()
}

fn parse_label_requirement(part: &str) -> Result<Requirement, SelectorError> {
    let requirement = |key: &str, op| {
        let key = key.trim();
        if key.is_empty() {
            Err(SelectorError::EmptyKey(part.to_owned()))
        } else {
            Ok(Requirement {
                key: key.to_owned(),
                op,
            })
        }
    };
    if let Some(key) = part.strip_prefix('!') {
        return requirement(key, Op::DoesNotExist);
    }
    if let Some((k, v)) = part.split_once("!=") {
        return requirement(k, Op::NotEq(v.trim().to_owned()));
    }
    if let Some((k, v)) = part.split_once("==") {
        return requirement(k, Op::Eq(v.trim().to_owned()));
    }
    if let Some((k, v)) = part.split_once('=') {
        return requirement(k, Op::Eq(v.trim().to_owned()));
    }
    for (word, notin) in [(" notin ", true), (" in ", false)] {
        if let Some((k, rest)) = part.split_once(word) {
            let values = rest
                .trim()
                .strip_prefix('(')
                .and_then(|r| r.strip_suffix(')'))
                .ok_or_else(|| SelectorError::BadSet(part.to_owned()))?;
            let values = values
                .split(',')
                .map(|v| v.trim().to_owned())
                .filter(|v| !v.is_empty())
                .collect();
            return requirement(
                k,
                if notin {
                    Op::NotIn(values)
                } else {
                    Op::In(values)
                },
            );
        }
    }
    if part.contains(['(', ')', ' ', '<', '>']) {
        return Err(SelectorError::Unsupported(part.to_owned()));
    }
    requirement(part, Op::Exists)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn obj(labels: Value) -> Value {
        json!({"metadata": {"name": "web", "namespace": "shop", "labels": labels}})
    }

    #[test]
    fn label_equality_and_existence() {
        let o = obj(json!({"app": "web", "tier": "front"}));
        let ok = |s: &str| LabelSelector::parse(s).unwrap().matches(&o);
        assert!(ok(""));
        assert!(ok("app=web"));
        assert!(ok("app==web,tier"));
        assert!(!ok("app=db"));
        assert!(ok("app!=db"));
        assert!(ok("!missing"));
        assert!(!ok("!app"));
        assert!(!ok("missing"));
        assert!(ok("tier in (back, front)"));
        assert!(!ok("tier notin (front)"));
        assert!(ok("missing notin (x),app in (web)"));
    }

    #[test]
    fn label_selector_errors() {
        assert_eq!(
            LabelSelector::parse("=x"),
            Err(SelectorError::EmptyKey("=x".into()))
        );
        assert!(matches!(
            LabelSelector::parse("a in x"),
            Err(SelectorError::BadSet(_))
        ));
        assert!(matches!(
            LabelSelector::parse("a > 1"),
            Err(SelectorError::Unsupported(_))
        ));
    }

    #[test]
    fn field_selector_on_name_and_namespace() {
        let o = obj(json!({}));
        let ok = |s: &str| FieldSelector::parse(s).unwrap().matches(&o);
        assert!(ok("metadata.name=web"));
        assert!(ok("metadata.name==web,metadata.namespace=shop"));
        assert!(!ok("metadata.name!=web"));
        assert!(ok("spec.nodeName="));
        assert!(FieldSelector::parse("metadata.name").is_err());
    }
}
