//! The store alone: versions, conflicts, scopes, history and compaction, generated names.

use super::*;
use serde_json::json;

const SERVICES: Resource = Resource::core("Service", "services", true);
const NODES: Resource = Resource::core("Node", "nodes", false);

fn svc(name: &str, port: u16) -> Value {
    json!({"apiVersion": "v1", "kind": "Service",
           "metadata": {"name": name, "namespace": "shop"},
           "spec": {"ports": [{"port": port}]}})
}

#[test]
fn write_fills_metadata_and_versions_increase() {
    let store = Store::new(10);
    let a = store
        .write(SERVICES, svc("a", 80), WriteMode::Create)
        .unwrap();
    let b = store
        .write(SERVICES, svc("b", 80), WriteMode::Create)
        .unwrap();
    assert_eq!(a["metadata"]["resourceVersion"], "2");
    assert_eq!(b["metadata"]["resourceVersion"], "3");
    assert_eq!(a["metadata"]["generation"], 1);
    assert!(a["metadata"]["uid"].as_str().unwrap().len() == 36);
    assert!(
        a["metadata"]["creationTimestamp"]
            .as_str()
            .unwrap()
            .ends_with('Z')
    );
    assert_ne!(a["metadata"]["uid"], b["metadata"]["uid"]);
    assert_eq!(store.current_rv(), 3);
}

#[test]
fn create_replace_conflicts_and_noop() {
    let store = Store::new(10);
    store
        .write(SERVICES, svc("a", 80), WriteMode::Create)
        .unwrap();
    assert!(matches!(
        store.write(SERVICES, svc("a", 80), WriteMode::Create),
        Err(StoreError::AlreadyExists { .. })
    ));
    assert!(matches!(
        store.write(SERVICES, svc("z", 80), WriteMode::Replace),
        Err(StoreError::NotFound { .. })
    ));
    let mut stale = svc("a", 81);
    stale["metadata"]["resourceVersion"] = "1".into();
    assert!(matches!(
        store.write(SERVICES, stale, WriteMode::Replace),
        Err(StoreError::Conflict { .. })
    ));
    // Same content: no new version.
    let same = store
        .write(SERVICES, svc("a", 80), WriteMode::Upsert)
        .unwrap();
    assert_eq!(same["metadata"]["resourceVersion"], "2");
    let changed = store
        .write(SERVICES, svc("a", 81), WriteMode::Upsert)
        .unwrap();
    assert_eq!(changed["metadata"]["resourceVersion"], "3");
    assert_eq!(changed["metadata"]["generation"], 2);
}

#[test]
fn cluster_scoped_objects_lose_their_namespace() {
    let store = Store::new(10);
    let node = json!({"apiVersion": "v1", "kind": "Node",
                      "metadata": {"name": "n1", "namespace": "x"}});
    let stored = store.write(NODES, node, WriteMode::Upsert).unwrap();
    assert!(stored["metadata"].get("namespace").is_none());
    assert!(store.get(NODES, "anything", "n1").is_some());
    assert_eq!(store.list(NODES, None).0.len(), 1);
}

#[test]
fn history_window_and_compaction_expire_versions() {
    let store = Store::new(2);
    for port in 1..=4 {
        store
            .write(SERVICES, svc("a", port), WriteMode::Upsert)
            .unwrap();
    }
    // Versions 2..=5 were written; the history keeps 4 and 5.
    assert!(matches!(
        store.watch(SERVICES, WatchFrom::Version(2)),
        Err(StoreError::Expired {
            requested: 2,
            oldest: 3
        })
    ));
    let sub = store.watch(SERVICES, WatchFrom::Version(3)).unwrap();
    assert_eq!(
        sub.backlog.iter().map(|e| e.rv).collect::<Vec<_>>(),
        vec![4, 5]
    );
    let rv = store.compact(false);
    assert_eq!(rv, 6);
    assert!(store.watch(SERVICES, WatchFrom::Version(5)).is_err());
    assert!(store.watch(SERVICES, WatchFrom::Version(6)).is_ok());
}

#[test]
fn generate_name_and_delete() {
    let store = Store::new(10);
    let obj = json!({"metadata": {"generateName": "web-", "namespace": "shop"}});
    let stored = store.write(SERVICES, obj, WriteMode::Create).unwrap();
    let name = stored["metadata"]["name"].as_str().unwrap().to_owned();
    assert!(name.starts_with("web-") && name.len() == 9, "{name}");
    let deleted = store.delete(SERVICES, "shop", &name).unwrap();
    assert_eq!(deleted["metadata"]["resourceVersion"], "3");
    assert!(store.get(SERVICES, "shop", &name).is_none());
    assert!(matches!(
        store.delete(SERVICES, "shop", &name),
        Err(StoreError::NotFound { .. })
    ));
}
