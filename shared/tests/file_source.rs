//! The file source follows its file: a new version is a new state, a broken version
//! keeps the previous state and is reported.

use std::time::Duration;

use causeway_shared::catalog::Catalog;
use causeway_shared::model::ServiceKey;
use causeway_shared::source::{FileSource, SourceMetrics};

const V1: &str = "apiVersion: v1\nkind: Service\nmetadata: {name: web, namespace: demo}\nspec: {clusterIP: 172.31.0.1, ports: [{port: 80}]}\n";
const V2: &str = "apiVersion: v1\nkind: Service\nmetadata: {name: web, namespace: demo}\nspec: {clusterIP: 172.31.0.2, ports: [{port: 80}]}\n---\napiVersion: v1\nkind: Service\nmetadata: {name: api, namespace: demo}\nspec: {clusterIP: 172.31.0.3, ports: [{port: 80}]}\n";
const BROKEN: &str = "apiVersion: v1\nkind: Service\nmetadata: {name: web, namespace: demo\n";

async fn wait_for(
    catalog: &Catalog,
    what: &str,
    cond: impl Fn(&causeway_shared::catalog::Snapshot) -> bool,
) {
    let mut rx = catalog.subscribe();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !cond(&catalog.snapshot()) {
        tokio::time::timeout_at(deadline, rx.changed())
            .await
            .unwrap_or_else(|_| panic!("timed out waiting for {what}"))
            .unwrap();
    }
}

fn write_atomically(path: &std::path::Path, text: &str) {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

#[tokio::test]
async fn reloads_on_change_and_keeps_state_on_broken_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("b.yaml");
    std::fs::write(&path, V1).unwrap();
    let catalog = Catalog::new(["a", "b"], "a");
    let src = FileSource {
        cluster: "b".into(),
        path: path.clone(),
        poll: Duration::from_millis(20),
    };
    let task = tokio::spawn(src.run(catalog.clone(), SourceMetrics::default()));

    wait_for(&catalog, "first load", |s| {
        s.cluster("b").unwrap().status.synced
    })
    .await;
    let s = catalog.snapshot();
    let web = ServiceKey::new("demo", "web");
    assert_eq!(
        s.cluster("b").unwrap().data.services[&web].cluster_ips[0].to_string(),
        "172.31.0.1"
    );
    assert!(!s.all_synced(), "cluster a has no source here");

    write_atomically(&path, V2);
    wait_for(&catalog, "second version", |s| {
        s.cluster("b").unwrap().data.services.len() == 2
    })
    .await;
    assert_eq!(
        catalog.snapshot().cluster("b").unwrap().data.services[&web].cluster_ips[0].to_string(),
        "172.31.0.2"
    );
    let gen_before = catalog
        .snapshot()
        .cluster("b")
        .unwrap()
        .status
        .data_generation;

    std::fs::write(&path, BROKEN).unwrap();
    wait_for(&catalog, "error report", |s| {
        s.cluster("b").unwrap().status.last_error.is_some()
    })
    .await;
    let s = catalog.snapshot();
    let b = s.cluster("b").unwrap();
    assert_eq!(b.data.services.len(), 2, "previous state is kept");
    assert_eq!(b.status.data_generation, gen_before);
    assert!(
        b.status.synced,
        "still synced: the last good data is served"
    );
    assert!(!b.status.connected);
    let err = b.status.last_error.clone().unwrap();
    assert!(err.contains("b.yaml"), "{err}");

    // The file disappears: still the same state.
    std::fs::remove_file(&path).unwrap();
    wait_for(&catalog, "read error", |s| {
        s.cluster("b")
            .unwrap()
            .status
            .last_error
            .as_deref()
            .is_some_and(|e| e.contains("cannot read"))
    })
    .await;
    assert_eq!(
        catalog.snapshot().cluster("b").unwrap().data.services.len(),
        2
    );

    write_atomically(&path, V1);
    wait_for(&catalog, "recovery", |s| {
        let b = s.cluster("b").unwrap();
        b.status.connected && b.data.services.len() == 1
    })
    .await;
    assert!(
        catalog
            .snapshot()
            .cluster("b")
            .unwrap()
            .status
            .last_error
            .is_none()
    );
    task.abort();
}

#[tokio::test]
async fn unchanged_content_is_not_republished() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("b.yaml");
    std::fs::write(&path, V1).unwrap();
    let catalog = Catalog::new(["b"], "b");
    let src = FileSource {
        cluster: "b".into(),
        path: path.clone(),
        poll: Duration::from_millis(10),
    };
    let task = tokio::spawn(src.run(catalog.clone(), SourceMetrics::default()));
    wait_for(&catalog, "first load", |s| s.all_synced()).await;
    let generation = catalog.snapshot().generation;
    // Same bytes, new inode and mtime.
    write_atomically(&path, V1);
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(catalog.snapshot().generation, generation);
    task.abort();
}
