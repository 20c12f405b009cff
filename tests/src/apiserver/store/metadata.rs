//! The server-owned fields of a stored object, as the apiserver sets them: `apiVersion` and
//! `kind` of its resource, the namespace (`default` when missing, none for cluster-scoped
//! kinds), a name from `generateName`, and `uid`, `creationTimestamp` and `generation`
//! (bumped when anything but metadata and status changes). `resourceVersion` is the store's.

use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::{Map, Value};

use super::super::resources::Resource;
use super::{StoreError, WriteMode};

/// Source of uids and `generateName` suffixes: unique per server (a seed from the clock and
/// the pid) and per object (a counter).
pub(super) struct Ids {
    seed: u32,
    counter: u64,
}

impl Ids {
    pub fn new() -> Self {
        let seed = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.subsec_nanos() ^ (d.as_secs() as u32))
            .unwrap_or(0)
            ^ std::process::id().rotate_left(16);
        Self { seed, counter: 0 }
    }

    fn uid(&mut self) -> String {
        self.counter += 1;
        let counter = self.counter;
        format!(
            "{:08x}-{:04x}-4{:03x}-8{:03x}-{:012x}",
            self.seed,
            (counter >> 48) & 0xffff,
            (counter >> 36) & 0xfff,
            (counter >> 24) & 0xfff,
            counter & 0xffff_ffff_ffff
        )
    }

    /// A `generateName` suffix: five lower-case alphanumerics, like the apiserver's.
    fn suffix(&mut self) -> String {
        const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
        self.counter += 1;
        let mut n = (u64::from(self.seed) << 20) ^ self.counter.wrapping_mul(0x9e37_79b9_7f4a_7c15);
        (0..5)
            .map(|_| {
                let c = ALPHABET[(n % ALPHABET.len() as u64) as usize] as char;
                n /= ALPHABET.len() as u64;
                c
            })
            .collect()
    }
}

/// Gives `object` the `apiVersion` and `kind` of `resource` (refusing others) and its
/// namespace; returns the namespace (empty for a cluster-scoped kind) and the
/// `resourceVersion` the client sent (empty when none).
pub(super) fn place(
    resource: Resource,
    object: &mut Value,
) -> Result<(String, String), StoreError> {
    let Some(fields) = object.as_object_mut() else {
        return Err(StoreError::Invalid("not a JSON object".into()));
    };
    for (field, want) in [
        ("apiVersion", resource.api_version()),
        ("kind", resource.kind.into()),
    ] {
        match fields.get(field) {
            Some(Value::String(have)) if *have != want => {
                return Err(StoreError::Invalid(format!(
                    "{field} is {have:?}, expected {want:?} for {}",
                    resource.plural
                )));
            }
            _ => {
                fields.insert(field.into(), Value::String(want));
            }
        }
    }
    let metadata = fields
        .entry("metadata")
        .or_insert_with(|| Value::Object(Map::new()))
        .as_object_mut()
        .ok_or_else(|| StoreError::Invalid("metadata is not an object".into()))?;
    let namespace = if resource.namespaced {
        let ns = metadata
            .get("namespace")
            .and_then(Value::as_str)
            .filter(|ns| !ns.is_empty())
            .unwrap_or("default")
            .to_owned();
        metadata.insert("namespace".into(), Value::String(ns.clone()));
        ns
    } else {
        metadata.remove("namespace");
        String::new()
    };
    let given_rv = metadata
        .get("resourceVersion")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned();
    Ok((namespace, given_rv))
}

/// The object's name, made from `generateName` when it has none (not on a replace, which
/// needs a name). `object` has been through [`place`].
pub(super) fn name(
    resource: Resource,
    object: &mut Value,
    mode: &WriteMode,
    ids: &mut Ids,
) -> Result<String, StoreError> {
    let metadata = metadata_mut(object);
    match metadata.get("name").and_then(Value::as_str) {
        Some(name) if !name.is_empty() => Ok(name.to_owned()),
        _ => match metadata.get("generateName").and_then(Value::as_str) {
            Some(prefix) if !matches!(mode, WriteMode::Replace) => {
                let name = format!("{prefix}{}", ids.suffix());
                metadata.insert("name".into(), Value::String(name.clone()));
                Ok(name)
            }
            _ => Err(StoreError::MissingName {
                plural: resource.plural,
            }),
        },
    }
}

/// Sets `uid`, `creationTimestamp` and `generation`, and the stored `resourceVersion` when
/// `existing` is the object it replaces: kept from the stored object, else taken from the new
/// one (so that loaded `kubectl get -o yaml` output keeps its uids), else generated.
pub(super) fn stamp(object: &mut Value, existing: Option<&Value>, ids: &mut Ids) {
    let inherited = |field: &str| {
        existing
            .and_then(|old| old.pointer(&format!("/metadata/{field}")))
            .cloned()
    };
    let given = |field: &str| object.pointer(&format!("/metadata/{field}")).cloned();
    let uid = inherited("uid")
        .or_else(|| given("uid"))
        .unwrap_or_else(|| Value::String(ids.uid()));
    let created = inherited("creationTimestamp")
        .or_else(|| given("creationTimestamp"))
        .unwrap_or_else(|| Value::String(now_rfc3339()));
    let generation = match existing {
        Some(old) => {
            let old_generation = old.pointer("/metadata/generation").and_then(Value::as_u64);
            let bump = u64::from(spec_of(old) != spec_of(object));
            old_generation.unwrap_or(1) + bump
        }
        None => 1,
    };
    let metadata = metadata_mut(object);
    metadata.insert("uid".into(), uid);
    metadata.insert("creationTimestamp".into(), created);
    metadata.insert("generation".into(), generation.into());
    if let Some(old) = existing {
        metadata.insert(
            "resourceVersion".into(),
            Value::String(rv_of(old).to_owned()),
        );
    }
}

fn metadata_mut(object: &mut Value) -> &mut Map<String, Value> {
    object
        .get_mut("metadata")
        .and_then(Value::as_object_mut)
        .expect("place() made metadata an object")
}

/// The stored `metadata.resourceVersion` of an object (empty when none).
pub(super) fn rv_of(object: &Value) -> &str {
    object
        .pointer("/metadata/resourceVersion")
        .and_then(Value::as_str)
        .unwrap_or_default()
}

/// Everything but metadata and status: a change here bumps `metadata.generation`.
fn spec_of(object: &Value) -> Value {
    let mut spec = object.clone();
    if let Some(fields) = spec.as_object_mut() {
        fields.remove("metadata");
        fields.remove("status");
    }
    spec
}

/// Now, as the apiserver writes timestamps (RFC 3339, seconds, UTC).
fn now_rfc3339() -> String {
    k8s_openapi::jiff::Timestamp::now()
        .strftime("%Y-%m-%dT%H:%M:%SZ")
        .to_string()
}
