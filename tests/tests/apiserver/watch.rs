//! Watches: `kube::runtime::watcher` in both initial-list modes, and the raw protocol.

use std::time::Duration;

use futures::{StreamExt as _, TryStreamExt as _};
use k8s_openapi::api::core::v1::Service;
use kube::Api;
use kube::api::{WatchEvent, WatchParams};
use kube::runtime::watcher;
use serde_json::json;

use crate::common::{Recorder, WAIT, client, service, start};

#[tokio::test]
async fn watcher_sees_added_modified_deleted() -> anyhow::Result<()> {
    let server = start().await;
    server.apply(&service("shop", "web", "web", "192.0.2.10"))?;
    let recorder = Recorder::start(
        Api::<Service>::all(client(&server).await?),
        watcher::Config::default(),
    );
    recorder.wait_for("InitDone", 1).await?;
    assert_eq!(
        recorder.events(),
        ["Init", "InitApply shop/web", "InitDone"]
    );

    server.apply(&service("shop", "db", "db", "192.0.2.11"))?;
    recorder.wait_for("Apply shop/db", 1).await?;
    server.apply(&service("shop", "web", "web", "192.0.2.20"))?;
    recorder.wait_for("Apply shop/web", 1).await?;
    server.delete::<Service>("shop", "db")?;
    recorder.wait_for("Delete shop/db", 1).await?;
    // A write that changes nothing is no event.
    server.apply(&service("shop", "web", "web", "192.0.2.20"))?;
    server.apply(&service("shop", "last", "x", "192.0.2.30"))?;
    recorder.wait_for("Apply shop/last", 1).await?;
    assert_eq!(
        recorder.events()[3..],
        [
            "Apply shop/db",
            "Apply shop/web",
            "Delete shop/db",
            "Apply shop/last"
        ]
    );
    Ok(())
}

#[tokio::test]
async fn streaming_list_watcher() -> anyhow::Result<()> {
    let server = start().await;
    server.apply(&service("shop", "web", "web", "192.0.2.10"))?;
    server.apply(&service("other", "web", "web", "192.0.2.11"))?;
    let api = Api::<Service>::namespaced(client(&server).await?, "shop");
    let recorder = Recorder::start(api, watcher::Config::default().streaming_lists());
    recorder.wait_for("InitDone", 1).await?;
    assert_eq!(
        recorder.events(),
        ["Init", "InitApply shop/web", "InitDone"]
    );
    server.apply(&service("shop", "db", "db", "192.0.2.12"))?;
    server.apply(&service("other", "db", "db", "192.0.2.13"))?;
    recorder.wait_for("Apply shop/db", 1).await?;
    assert!(!recorder.events().iter().any(|e| e.contains("other/")));
    Ok(())
}

#[tokio::test]
async fn label_selected_watch_sees_objects_leave_and_return() -> anyhow::Result<()> {
    let server = start().await;
    server.apply(&service("shop", "web", "web", "192.0.2.10"))?;
    let api = Api::<Service>::all(client(&server).await?);
    let recorder = Recorder::start(api, watcher::Config::default().labels("app=web"));
    recorder.wait_for("InitDone", 1).await?;
    server.apply(&service("shop", "web", "db", "192.0.2.10"))?;
    recorder.wait_for("Delete shop/web", 1).await?;
    server.apply(&service("shop", "web", "web", "192.0.2.10"))?;
    recorder.wait_for("Apply shop/web", 1).await?;
    Ok(())
}

#[tokio::test]
async fn raw_watch_sends_bookmarks_and_honours_timeout() -> anyhow::Result<()> {
    let server = start().await;
    server.apply(&service("shop", "web", "web", "192.0.2.10"))?;
    let api = Api::<Service>::all(client(&server).await?);
    let started = tokio::time::Instant::now();
    let events: Vec<WatchEvent<Service>> = tokio::time::timeout(
        WAIT,
        api.watch(&WatchParams::default().timeout(1), "0")
            .await?
            .try_collect(),
    )
    .await??;
    // The server ends the stream after timeoutSeconds=1.
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "took {:?}",
        started.elapsed()
    );
    assert!(
        matches!(&events[0], WatchEvent::Added(s) if s.metadata.name.as_deref() == Some("web"))
    );
    assert!(events.iter().any(|e| matches!(e, WatchEvent::Bookmark(_))));
    Ok(())
}

#[tokio::test]
async fn watch_from_an_expired_version_gets_410_in_the_stream() -> anyhow::Result<()> {
    let server = start().await;
    server.apply(&service("shop", "web", "web", "192.0.2.10"))?;
    let old = server.resource_version();
    server.apply(&service("shop", "web", "web", "192.0.2.11"))?;
    let api = Api::<Service>::all(client(&server).await?);

    // Within the history: the change after `old` is replayed.
    let mut stream = api
        .watch(&WatchParams::default().timeout(5), &old.to_string())
        .await?
        .boxed();
    let first = tokio::time::timeout(WAIT, stream.next())
        .await?
        .expect("an event")?;
    assert!(matches!(first, WatchEvent::Modified(_)), "{first:?}");
    drop(stream);

    server.compact_quietly();
    let mut stream = api
        .watch(&WatchParams::default().timeout(5), &old.to_string())
        .await?
        .boxed();
    match tokio::time::timeout(WAIT, stream.next())
        .await?
        .expect("an event")?
    {
        WatchEvent::Error(status) => {
            assert_eq!(status.code, 410);
            assert_eq!(status.reason, "Expired");
        }
        other => panic!("expected a 410 ERROR event, got {other:?}"),
    }
    Ok(())
}

#[tokio::test]
async fn status_errors_are_status_objects() -> anyhow::Result<()> {
    let server = start().await;
    let url = format!("{}/api/v1/namespaces/shop/services/nope", server.url());
    // Speak plain HTTP/1.1 over TCP to see the body exactly as sent.
    let body = raw_get(server.addr(), "/api/v1/namespaces/shop/services/nope").await?;
    let status: serde_json::Value = serde_json::from_str(body.split("\r\n\r\n").nth(1).unwrap())?;
    assert_eq!(status["kind"], "Status", "{url}: {body}");
    assert_eq!(status["code"], 404);
    assert_eq!(status["reason"], "NotFound");
    assert_eq!(
        status["details"],
        json!({"name": "nope", "kind": "services"})
    );
    Ok(())
}

async fn raw_get(addr: std::net::SocketAddr, path: &str) -> anyhow::Result<String> {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let mut tcp = tokio::net::TcpStream::connect(addr).await?;
    let request = format!("GET {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n");
    tcp.write_all(request.as_bytes()).await?;
    let mut response = String::new();
    tokio::time::timeout(WAIT, tcp.read_to_string(&mut response)).await??;
    Ok(response)
}
