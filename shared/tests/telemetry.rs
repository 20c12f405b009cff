//! The telemetry server over real HTTP: `/readyz` is 503 until every cluster has synced,
//! `/metrics` carries the source metrics, `/healthz` answers.

use std::sync::Arc;
use std::time::Duration;

use causeway_shared::catalog::ClusterStatus;
use causeway_shared::config::Config;
use causeway_shared::process::Process;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

async fn get(addr: std::net::SocketAddr, path: &str) -> (u16, String) {
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let mut buf = String::new();
    tokio::time::timeout(Duration::from_secs(5), s.read_to_string(&mut buf))
        .await
        .unwrap()
        .unwrap();
    let code = buf[9..12].parse().unwrap();
    (code, buf)
}

#[tokio::test]
async fn readiness_follows_cluster_sync_and_metrics_are_served() {
    let text = "cluster: a\nclusters:\n  - name: a\n    source: { inCluster: true }\n  - name: b\n    source: { file: b.yaml }\n";
    let config = Config::from_yaml(std::path::Path::new("/tmp/t.yaml"), text).unwrap();
    let process = Process::new(config);
    let addr = causeway_shared::telemetry::serve(
        "127.0.0.1:0".parse().unwrap(),
        process.telemetry_router(),
    )
    .await
    .unwrap();

    let (code, body) = get(addr, "/healthz").await;
    assert_eq!(code, 200, "{body}");

    let (code, body) = get(addr, "/readyz").await;
    assert_eq!(code, 503, "{body}");
    assert!(body.contains("\"ready\": false"), "{body}");

    let synced = ClusterStatus {
        synced: true,
        connected: true,
        ..Default::default()
    };
    process.catalog.publish("a", Arc::default(), synced.clone());
    let (code, _) = get(addr, "/readyz").await;
    assert_eq!(code, 503, "one cluster is not enough");
    process
        .source_metrics
        .observe("b", &synced, Some(&Default::default()));
    process.catalog.publish("b", Arc::default(), synced);
    let (code, body) = get(addr, "/readyz").await;
    assert_eq!(code, 200, "{body}");
    assert!(body.contains("\"cluster\": \"b\""), "{body}");

    let (code, body) = get(addr, "/metrics").await;
    assert_eq!(code, 200);
    assert!(
        body.contains("causeway_cluster_synced{cluster=\"b\"} 1"),
        "{body}"
    );
    assert!(
        body.contains("causeway_cluster_objects{cluster=\"b\",kind=\"services\"} 0"),
        "{body}"
    );
}

#[test]
fn empty_cluster_list_is_rejected_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.yaml");
    std::fs::write(&path, "cluster: z\nclusters: []\n").unwrap();
    let err = Config::load(&path).unwrap_err().to_string();
    assert!(err.starts_with(&path.display().to_string()), "{err}");
    assert!(err.contains("at least one cluster"), "{err}");
}
