use causeway_shared::catalog::Catalog;
use prometheus_client::registry::Registry;

use super::*;
use crate::backend::FakeBackend;
use crate::backend::ipvsadm::{View, render_ipvsadm};
use crate::testdata::{CLUSTER_B, catalog_with};

fn syncer(
    catalog: Arc<Catalog>,
    fake: FakeBackend,
) -> (Syncer, Arc<Mutex<Box<dyn Backend>>>, ProxyMetrics) {
    let backend: Arc<Mutex<Box<dyn Backend>>> = Arc::new(Mutex::new(Box::new(fake)));
    let metrics = ProxyMetrics::register(&mut Registry::default());
    let s = Syncer::new(
        catalog,
        backend.clone(),
        None,
        PlanSettings {
            stale_rules_expiry: Duration::ZERO,
        },
        Duration::from_secs(30),
        metrics.clone(),
        Arc::new(|_| Some("b".to_string())),
        Arc::new(ArcSwap::from_pointee(DesiredState::default())),
    );
    (s, backend, metrics)
}

fn dump(b: &Arc<Mutex<Box<dyn Backend>>>) -> String {
    render_ipvsadm(&b.lock().unwrap().read().unwrap(), View::default())
}

fn req(full: bool) -> SyncRequest {
    SyncRequest {
        full,
        generation: 0,
    }
}

#[tokio::test(start_paused = true)]
async fn full_then_partial_with_drain_and_failure_retry() {
    let cat = catalog_with(CLUSTER_B);
    let (mut s, backend, metrics) = syncer(cat.clone(), FakeBackend::default());
    s.sync(req(true)).await.unwrap();
    assert!(dump(&backend).contains("  -> 198.51.100.12:8080           Masq    1"));

    // The endpoint goes: drained at weight 0 by a partial sync.
    let gone = CLUSTER_B.replace(
        "  - addresses: [198.51.100.12]\n    conditions: {ready: true}\n",
        "",
    );
    let (data, _) = causeway_shared::source::parse_objects(&gone).unwrap();
    let status = cat.snapshot().cluster("b").unwrap().status.clone();
    cat.publish("b", Arc::new(data), status);
    s.sync(req(false)).await.unwrap();
    assert!(
        dump(&backend).contains("  -> 198.51.100.12:8080           Masq    0"),
        "{}",
        dump(&backend)
    );
    assert_eq!(metrics.draining.get(), 1);

    // After the grace period it goes.
    tokio::time::advance(Duration::from_secs(31)).await;
    s.sync(req(false)).await.unwrap();
    assert!(!dump(&backend).contains("198.51.100.12:8080"));
}

#[tokio::test(start_paused = true)]
async fn a_failed_apply_is_counted_and_reported() {
    let fake = FakeBackend {
        fail_next: 1,
        ..Default::default()
    };
    let (mut s, backend, metrics) = syncer(catalog_with(CLUSTER_B), fake);
    assert!(s.sync(req(true)).await.is_err());
    assert_eq!(metrics.sync_failures.get(), 1);
    assert!(!dump(&backend).contains("TCP"));
    s.sync(req(true)).await.unwrap();
    assert!(dump(&backend).contains("TCP  192.0.2.10:80 rr"));
}

#[tokio::test(start_paused = true)]
async fn restart_adopts_and_keeps_unsynced_clusters() {
    // A first process programs b.
    let (mut first, backend, _) = syncer(catalog_with(CLUSTER_B), FakeBackend::default());
    first.sync(req(true)).await.unwrap();
    let before = dump(&backend);
    let kernel = backend.lock().unwrap().read().unwrap();

    // A second one starts with the same kernel and b not listed yet.
    let fake = FakeBackend {
        state: kernel,
        ..Default::default()
    };
    let (mut second, backend, _) = syncer(Catalog::new(["a", "b"], "a"), fake);
    assert_eq!(second.adopt().await.unwrap(), 5);
    second.sync(req(true)).await.unwrap();
    assert_eq!(
        dump(&backend),
        before,
        "nothing removed while b is not synced"
    );
}

/// Clusters a (local) and b listed, c not yet.
fn catalog_without_c() -> Arc<Catalog> {
    let cat = Catalog::new(["a", "b", "c"], "a");
    let full = catalog_with(CLUSTER_B).snapshot();
    for name in ["a", "b"] {
        let view = full.cluster(name).unwrap();
        cat.publish(name, view.data.clone(), view.status.clone());
    }
    cat
}

#[tokio::test(start_paused = true)]
async fn first_programming_waits_for_every_cluster_then_goes_at_once() {
    let cat = catalog_without_c();
    let (s, backend, _) = syncer(cat.clone(), FakeBackend::default());
    let mut s = s.hold_first_sync(Duration::from_secs(5));
    s.sync(req(true)).await.unwrap();
    assert!(
        !dump(&backend).contains("TCP"),
        "held while c is not listed"
    );
    // c lists (empty): everything is programmed in one go.
    let status = cat.snapshot().cluster("b").unwrap().status.clone();
    cat.publish("c", Arc::new(Default::default()), status);
    s.sync(req(false)).await.unwrap();
    assert!(dump(&backend).contains("TCP  192.0.2.10:80 rr"));
}

#[tokio::test(start_paused = true)]
async fn a_cluster_that_never_lists_holds_the_others_only_until_the_deadline() {
    let (s, backend, _) = syncer(catalog_without_c(), FakeBackend::default());
    let mut s = s.hold_first_sync(Duration::from_secs(5));
    s.sync(req(true)).await.unwrap();
    assert!(!dump(&backend).contains("TCP"));
    // The deadline is also a timer: the loop wakes up for it.
    assert!(s.wake_at.lock().unwrap().is_some());
    tokio::time::advance(Duration::from_secs(6)).await;
    s.sync(req(false)).await.unwrap();
    assert!(dump(&backend).contains("TCP  192.0.2.10:80 rr"));
    // From then on, syncs are not held again.
    s.sync(req(false)).await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn a_change_to_one_service_replans_that_service_only() {
    let cat = catalog_with(CLUSTER_B);
    let (mut s, backend, _) = syncer(cat.clone(), FakeBackend::default());
    s.sync(req(true)).await.unwrap();
    s.sync(req(false)).await.unwrap();
    // The first sync had no state to hand back: it handed back a copy of its own, so the
    // second one copies nothing either.
    assert_eq!(s.planner.stats().copied, 0);

    // web-1's endpoint .12 becomes .16, published as the sources do: the other objects
    // keep their `Arc`s.
    let (changed, _) = causeway_shared::source::parse_objects(
        &CLUSTER_B.replace("198.51.100.12]", "198.51.100.16]"),
    )
    .unwrap();
    let web1 = changed
        .slices_of(&causeway_shared::model::ServiceKey::new("demo", "web"))
        .find(|s| s.name == "web-1")
        .unwrap()
        .clone();
    let view = cat.snapshot().cluster("b").unwrap().clone();
    let mut data = (*view.data).clone();
    data.upsert_slice(web1);
    cat.publish("b", Arc::new(data), view.status);
    s.sync(req(false)).await.unwrap();
    // web alone is built anew, and only its two virtual services are copied into the
    // state of the first sync, handed back to the planner.
    let stats = s.planner.stats();
    assert_eq!((stats.rebuilt, stats.copied), (1, 2));
    let kernel = dump(&backend);
    assert!(
        kernel.contains("  -> 198.51.100.16:8080           Masq    1")
            && kernel.contains("  -> 198.51.100.12:8080           Masq    0"),
        "{kernel}"
    );

    // Syncs with nothing changed keep draining it: the applied state's drain is where
    // it and the plan differ.
    for _ in 0..2 {
        s.sync(req(false)).await.unwrap();
        let kernel = dump(&backend);
        assert!(
            kernel.contains("  -> 198.51.100.12:8080           Masq    0"),
            "{kernel}"
        );
    }

    // The drained server goes after the grace period; the states handed back carry the
    // drain of the syncs they come from, and are patched where it was.
    tokio::time::advance(Duration::from_secs(31)).await;
    for _ in 0..3 {
        s.sync(req(false)).await.unwrap();
        let kernel = dump(&backend);
        assert!(
            kernel.contains("  -> 198.51.100.16:8080           Masq    1")
                && !kernel.contains("198.51.100.12:8080"),
            "{kernel}"
        );
        let fresh = crate::plan::plan(&cat.snapshot(), &s.settings, Instant::now());
        assert_eq!(*s.applied(), fresh.desired);
    }
}
