use std::sync::Mutex;

use super::*;
use crate::path_health::ClusterPath;

fn path(cluster: &str, unreachable_ms: u64) -> ClusterPath {
    ClusterPath {
        cluster: cluster.into(),
        peers: 1,
        probed: 1,
        reachable: u64::from(unreachable_ms < 1000) as usize,
        unreachable_ms,
    }
}

#[test]
fn verdicts_follow_the_threshold_and_name_unknown_clusters() {
    let report = PathReport {
        node: "a1".into(),
        clusters: vec![path("b", 4_999), path("c", 5_001)],
    };
    let remotes = ["b", "c", "d"].map(String::from);
    let v = verdicts(&remotes, Some(&report), Duration::from_secs(5));
    assert_eq!(
        v.values().copied().collect::<Vec<_>>(),
        [
            PathState::Reachable,
            PathState::Unreachable,
            PathState::Unknown
        ]
    );
    let v = verdicts(&remotes, None, Duration::from_secs(5));
    assert!(v.values().all(|s| *s == PathState::Unknown), "{v:?}");
}

/// A `/paths` server whose report the test changes; dropped with the runtime.
async fn serve(report: Arc<Mutex<PathReport>>) -> (String, JoinHandle<()>) {
    let app = axum::Router::new().route(
        "/paths",
        axum::routing::get(move || {
            let r = report.lock().unwrap().clone();
            async move { axum::Json(r) }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/paths", listener.local_addr().unwrap());
    let task = tokio::spawn(async move {
        axum::serve(listener, app).await.unwrap();
    });
    (url, task)
}

#[tokio::test]
async fn the_catalog_follows_the_report_and_forgets_it_when_it_cannot_be_read() {
    let text = "cluster: a\nclusters:\n  - { name: a, source: { inCluster: true } }\n  - { name: b, source: { file: b.yaml } }\npathHealth: { unreachableAfter: 2s, pollInterval: 100ms }\ntunnel: { probeInterval: 100ms }\n";
    let config = Config::from_yaml(std::path::Path::new("/c.yaml"), text).unwrap();
    let catalog = Catalog::for_config(&config);
    let report = Arc::new(Mutex::new(PathReport {
        node: "a1".into(),
        clusters: vec![path("b", 0)],
    }));
    let (url, server) = serve(report.clone()).await;
    let mut reg = Registry::default();
    let mut w = PathWatcher::new(&config, catalog.clone(), PathMetrics::register(&mut reg))
        .unwrap()
        .with_url(url);
    let state = || catalog.snapshot().cluster("b").unwrap().path;
    w.poll_once().await;
    assert_eq!(state(), PathState::Reachable);
    report.lock().unwrap().clusters = vec![path("b", 2_500)];
    w.poll_once().await;
    assert_eq!(state(), PathState::Unreachable);
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, &reg).unwrap();
    assert!(
        text.contains("causeway_path_reachable{cluster=\"b\"} 0")
            && text.contains("causeway_path_unreachable_milliseconds{cluster=\"b\"} 2500"),
        "{text}"
    );
    // The report goes away: the last verdict holds for unreachableAfter, then is unknown.
    server.abort();
    let _ = server.await;
    w.poll_once().await;
    assert_eq!(
        state(),
        PathState::Unreachable,
        "kept while reads fail briefly"
    );
    tokio::time::sleep(Duration::from_millis(2_100)).await;
    w.poll_once().await;
    assert_eq!(state(), PathState::Unknown);
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, &reg).unwrap();
    assert!(
        text.contains("causeway_path_report_read_errors_total 2"),
        "{text}"
    );
}

#[tokio::test]
async fn a_bad_body_or_status_is_a_read_error_naming_the_url() {
    let app = axum::Router::new().route("/paths", axum::routing::get(|| async { "not json" }));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    let body = http::get(&format!("http://{addr}/paths"), Duration::from_secs(2))
        .await
        .unwrap();
    assert!(serde_json::from_slice::<PathReport>(&body).is_err());
    let err = http::get(&format!("http://{addr}/other"), Duration::from_secs(2))
        .await
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        format!("http://{addr}/other: HTTP status 404")
    );
    server.abort();
}
