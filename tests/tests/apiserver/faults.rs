//! Fault injection: compaction, dropped connections, refused, stalled and failing servers.
//! Each test checks that `kube::runtime::watcher` notices and then recovers.

use std::time::Duration;

use causeway_tests::apiserver::{Mode, Verb};
use causeway_tests::wait;
use k8s_openapi::api::core::v1::Service;
use kube::Api;
use kube::api::ListParams;
use kube::runtime::watcher;

use crate::common::{Recorder, WAIT, api_code, client, client_with, service, start};

#[tokio::test]
async fn compact_forces_a_relist() -> anyhow::Result<()> {
    let server = start().await;
    server.apply(&service("shop", "web", "web", "192.0.2.10"))?;
    let recorder = Recorder::start(
        Api::<Service>::all(client(&server).await?),
        watcher::Config::default(),
    );
    recorder.wait_for("InitDone", 1).await?;
    assert_eq!(server.request_count(Verb::List, "services"), 1);

    server.compact();
    recorder.wait_for("InitDone", 2).await?;
    assert_eq!(server.request_count(Verb::List, "services"), 2);
    let events = recorder.events();
    let relist = &events[events.len() - 3..];
    assert_eq!(
        relist,
        ["Init", "InitApply shop/web", "InitDone"],
        "{events:?}"
    );

    server.apply(&service("shop", "db", "db", "192.0.2.11"))?;
    recorder.wait_for("Apply shop/db", 1).await?;
    Ok(())
}

#[tokio::test]
async fn dropped_connections_resume_without_losing_events() -> anyhow::Result<()> {
    let server = start().await;
    server.apply(&service("shop", "web", "web", "192.0.2.10"))?;
    let recorder = Recorder::start(
        Api::<Service>::all(client(&server).await?),
        watcher::Config::default(),
    );
    recorder.wait_for("InitDone", 1).await?;
    let watches = server.request_count(Verb::Watch, "services");

    server.drop_connections();
    // Changes while the watcher reconnects must reach it through the resumed watch.
    server.apply(&service("shop", "a", "a", "192.0.2.11"))?;
    server.apply(&service("shop", "b", "b", "192.0.2.12"))?;
    server.delete::<Service>("shop", "web")?;
    recorder.wait_for("Delete shop/web", 1).await?;
    recorder.wait_for("Apply shop/a", 1).await?;
    recorder.wait_for("Apply shop/b", 1).await?;

    assert!(server.request_count(Verb::Watch, "services") > watches);
    assert_eq!(
        recorder.count("Init"),
        1,
        "no relist: {:?}",
        recorder.events()
    );
    assert_eq!(server.request_count(Verb::List, "services"), 1);
    Ok(())
}

#[tokio::test]
async fn reconnect_from_an_expired_version_relists() -> anyhow::Result<()> {
    let server = start().await;
    let recorder = Recorder::start(
        Api::<Service>::all(client(&server).await?),
        watcher::Config::default(),
    );
    recorder.wait_for("InitDone", 1).await?;
    server.apply(&service("shop", "web", "web", "192.0.2.10"))?;
    recorder.wait_for("Apply shop/web", 1).await?;

    server.compact_quietly();
    server.drop_connections();
    recorder.wait_for("InitDone", 2).await?;
    assert_eq!(server.request_count(Verb::List, "services"), 2);
    assert_eq!(recorder.count("InitApply shop/web"), 1);
    Ok(())
}

#[tokio::test]
async fn quiet_compaction_keeps_open_watches_but_their_reconnect_relists() -> anyhow::Result<()> {
    let server = start().await;
    server.apply(&service("shop", "web", "web", "192.0.2.10"))?;
    let recorder = Recorder::start(
        Api::<Service>::all(client(&server).await?),
        watcher::Config::default(),
    );
    recorder.wait_for("InitDone", 1).await?;

    server.compact_quietly();
    server.delete::<Service>("shop", "web")?;
    server.apply(&service("shop", "late", "late", "192.0.2.11"))?;
    // The open watch still delivers changes made after the compaction...
    recorder.wait_for("Apply shop/late", 1).await?;
    assert_eq!(recorder.count("Delete shop/web"), 1);
    assert_eq!(server.request_count(Verb::List, "services"), 1);
    // ...but its version is now expired: once cut, it resumes with 410 and relists.
    server.compact_quietly();
    server.drop_connections();
    recorder.wait_for("InitDone", 2).await?;
    wait::until(WAIT, "a second LIST", || {
        server.request_count(Verb::List, "services") == 2
    })
    .await?;
    Ok(())
}

#[tokio::test]
async fn refused_connections_then_recovery() -> anyhow::Result<()> {
    let server = start().await;
    server.apply(&service("shop", "web", "web", "192.0.2.10"))?;
    let client = client(&server).await?;
    let recorder = Recorder::start(
        Api::<Service>::all(client.clone()),
        watcher::Config::default(),
    );
    recorder.wait_for("InitDone", 1).await?;

    server.set_mode(Mode::Refuse);
    recorder.wait_for("Error", 1).await?;
    let list = Api::<Service>::all(client.clone())
        .list(&ListParams::default())
        .await;
    assert!(list.is_err(), "a refusing server must not answer");
    server.apply(&service("shop", "db", "db", "192.0.2.11"))?;

    server.set_mode(Mode::Normal);
    recorder.wait_for("Apply shop/db", 1).await?;
    assert!(
        Api::<Service>::all(client)
            .list(&ListParams::default())
            .await
            .is_ok()
    );
    Ok(())
}

#[tokio::test]
async fn stalled_server_then_recovery() -> anyhow::Result<()> {
    let server = start().await;
    server.apply(&service("shop", "web", "web", "192.0.2.10"))?;
    // Without a read timeout a client would wait for a stalled server forever; bookmarks come
    // every 200 ms, so one second of silence means a stall.
    let client = client_with(&server, |c| {
        c.read_timeout = Some(Duration::from_secs(1));
        c.reset_reader_on_write = true;
    })
    .await?;
    let recorder = Recorder::start(
        Api::<Service>::all(client.clone()),
        watcher::Config::default(),
    );
    recorder.wait_for("InitDone", 1).await?;

    server.set_mode(Mode::Stall);
    recorder.wait_for("Error", 1).await?;
    let started = tokio::time::Instant::now();
    let list = Api::<Service>::all(client.clone())
        .list(&ListParams::default())
        .await;
    assert!(list.is_err(), "a stalled server must not answer");
    assert!(started.elapsed() >= Duration::from_millis(900));
    server.apply(&service("shop", "db", "db", "192.0.2.11"))?;

    server.set_mode(Mode::Normal);
    recorder.wait_for("Apply shop/db", 1).await?;
    Ok(())
}

#[tokio::test]
async fn error_mode_answers_status_then_recovery() -> anyhow::Result<()> {
    let server = start().await;
    server.apply(&service("shop", "web", "web", "192.0.2.10"))?;
    let client = client(&server).await?;
    let recorder = Recorder::start(
        Api::<Service>::all(client.clone()),
        watcher::Config::default(),
    );
    recorder.wait_for("InitDone", 1).await?;

    server.set_mode(Mode::Error(500));
    let err = Api::<Service>::all(client.clone())
        .list(&ListParams::default())
        .await
        .unwrap_err();
    assert_eq!(api_code(&err), Some((500, "InternalError".into())));
    // Open watches survive an erroring server until their connection goes.
    server.drop_connections();
    recorder.wait_for("Error", 1).await?;
    server.apply(&service("shop", "db", "db", "192.0.2.11"))?;

    server.set_mode(Mode::Normal);
    recorder.wait_for("Apply shop/db", 1).await?;
    Ok(())
}

#[tokio::test]
async fn two_servers_fail_independently() -> anyhow::Result<()> {
    let (a, b) = (start().await, start().await);
    let watch = |client| Recorder::start(Api::<Service>::all(client), watcher::Config::default());
    let (ra, rb) = (watch(client(&a).await?), watch(client(&b).await?));
    ra.wait_for("InitDone", 1).await?;
    rb.wait_for("InitDone", 1).await?;

    a.set_mode(Mode::Refuse);
    ra.wait_for("Error", 1).await?;
    b.apply(&service("shop", "web", "web", "192.0.2.10"))?;
    rb.wait_for("Apply shop/web", 1).await?;
    assert_eq!(rb.count("Error"), 0);
    wait::until(WAIT, "a keeps refusing", || a.mode() == Mode::Refuse).await?;
    Ok(())
}
