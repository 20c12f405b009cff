//! Every problem of a file that does not deserialize, not only the first.
//!
//! The typed parse stops at its first error. When it fails, the file is read again as a
//! plain YAML tree and each field is tried on its own against the section's defaults, so
//! an unknown key, a bad duration and a bad enum value in three sections are all named,
//! each with its field path (`proxy.fullResyncInterval: ...`). What does deserialize is
//! kept, so the cross-field checks (CIDR overlaps, the local cluster) still run on it.

use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Map, Value};

use super::{FileCluster, FileConfig, Problem};

/// The file as far as it reads, and the problems of what did not.
pub struct Lenient {
    pub file: FileConfig,
    pub problems: Vec<Problem>,
    /// Some entry of `clusters` was left out: checks over all clusters would mislead.
    pub clusters_incomplete: bool,
}

/// Reads `tree` (the whole file as plain YAML) field by field.
pub fn read(tree: Value) -> Lenient {
    let mut problems = Vec::new();
    let mut file = FileConfig::default();
    let mut clusters_incomplete = false;
    let Value::Object(top) = tree else {
        problems.push(Problem::InvalidValue {
            field: "(file)".into(),
            reason: format!("expected a mapping, found {}", kind(&tree)),
        });
        return Lenient {
            file,
            problems,
            clusters_incomplete: true,
        };
    };
    let mut required = vec!["cluster", "clusters"];
    for (key, value) in top {
        required.retain(|r| *r != key);
        match key.as_str() {
            "cluster" => match scalar_as::<String>(&value) {
                Ok(name) => file.cluster = name,
                Err(reason) => problems.push(invalid("cluster", reason)),
            },
            "clusters" => {
                let Value::Array(entries) = value else {
                    problems.push(invalid(
                        "clusters",
                        format!("expected a list, found {}", kind(&value)),
                    ));
                    clusters_incomplete = true;
                    continue;
                };
                for (i, entry) in entries.into_iter().enumerate() {
                    let (cluster, bad) = section::<FileCluster>(&format!("clusters[{i}]"), entry);
                    if bad.is_empty() {
                        file.clusters.push(cluster);
                    } else {
                        problems.extend(bad);
                        clusters_incomplete = true;
                    }
                }
            }
            "dns" => file.dns = collect(&mut problems, section("dns", value)),
            "proxy" => file.proxy = collect(&mut problems, section("proxy", value)),
            "tunnel" => file.tunnel = collect(&mut problems, section("tunnel", value)),
            "readiness" => file.readiness = collect(&mut problems, section("readiness", value)),
            "pathHealth" => file.path_health = collect(&mut problems, section("pathHealth", value)),
            other => problems.push(Problem::InvalidValue {
                field: other.to_string(),
                reason: "unknown field, expected one of cluster, clusters, dns, proxy, tunnel, \
                         readiness, pathHealth"
                    .into(),
            }),
        }
    }
    for field in required {
        problems.push(invalid(field, "missing".into()));
        clusters_incomplete = true;
    }
    Lenient {
        file,
        problems,
        clusters_incomplete,
    }
}

fn collect<T>(problems: &mut Vec<Problem>, (value, bad): (T, Vec<Problem>)) -> T {
    problems.extend(bad);
    value
}

fn invalid(field: &str, reason: String) -> Problem {
    Problem::InvalidValue {
        field: field.into(),
        reason,
    }
}

/// A section (a mapping of a struct with defaults) read field by field: each key of the
/// file is tried alone on top of the defaults and the keys that fit are kept.
fn section<T: Default + Serialize + DeserializeOwned>(
    path: &str,
    value: Value,
) -> (T, Vec<Problem>) {
    if let Ok(whole) = serde_json::from_value::<T>(value.clone()) {
        return (whole, Vec::new());
    }
    let Value::Object(given) = value else {
        return (
            T::default(),
            vec![invalid(
                path,
                format!("expected a mapping, found {}", kind(&value)),
            )],
        );
    };
    let Ok(Value::Object(mut kept)) = serde_json::to_value(T::default()) else {
        return (T::default(), Vec::new());
    };
    let mut problems = Vec::new();
    for (key, value) in given {
        let field = format!("{path}.{key}");
        let attempt = |value: Value| {
            let mut trial: Map<String, Value> = kept.clone();
            trial.insert(key.clone(), value);
            serde_json::from_value::<T>(Value::Object(trial))
        };
        match attempt(value.clone()) {
            Ok(_) => {
                kept.insert(key, value);
            }
            // YAML scalars such as `1` or `true` also stand for strings.
            Err(e) => match as_string(&value).map(|s| (attempt(s.clone()), s)) {
                Some((Ok(_), s)) => {
                    kept.insert(key, s);
                }
                _ => problems.push(invalid(&field, without_position(&e))),
            },
        }
    }
    let out = serde_json::from_value(Value::Object(kept)).unwrap_or_default();
    (out, problems)
}

fn scalar_as<T: DeserializeOwned>(value: &Value) -> Result<T, String> {
    serde_json::from_value(value.clone())
        .or_else(|e| match as_string(value) {
            Some(s) => serde_json::from_value(s).map_err(|_| e),
            None => Err(e),
        })
        .map_err(|e| without_position(&e))
}

fn as_string(value: &Value) -> Option<Value> {
    match value {
        Value::Number(n) => Some(Value::String(n.to_string())),
        Value::Bool(b) => Some(Value::String(b.to_string())),
        _ => None,
    }
}

fn kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "nothing",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "a mapping",
    }
}

/// A tree has no lines: serde_json's "at line 0 column 0" says nothing.
fn without_position(e: &serde_json::Error) -> String {
    let text = e.to_string();
    match text.rfind(" at line ") {
        Some(at) => text[..at].to_string(),
        None => text,
    }
}
