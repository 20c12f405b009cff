//! The memoized planner against fresh plans. Test ranges as in [`crate::testdata`].

use std::sync::Arc;
use std::time::Duration;

use causeway_shared::catalog::ClusterStatus;
use causeway_shared::model::{ClusterData, Protocol};
use tokio::time::Instant;

use super::*;
use crate::plan::plan;
use crate::testdata::{CLUSTER_B, plan_settings as settings};

/// A second remote cluster `c` (same test ranges as [`CLUSTER_B`]).
const CLUSTER_C: &str = r#"
apiVersion: v1
kind: List
items:
- apiVersion: v1
  kind: Service
  metadata: {name: api, namespace: shop}
  spec:
    clusterIP: 192.0.2.30
    ports:
    - {name: http, port: 80, protocol: TCP, targetPort: 8080}
- apiVersion: discovery.k8s.io/v1
  kind: EndpointSlice
  metadata: {name: api-1, namespace: shop, generation: 3, labels: {kubernetes.io/service-name: api}}
  addressType: IPv4
  endpoints:
  - addresses: [198.51.100.31]
  ports:
  - {name: http, port: 8080, protocol: TCP}
"#;

/// A Service `name` in `namespace` claiming `vip`:80/TCP, with one endpoint.
fn service_yaml(namespace: &str, name: &str, vip: &str, endpoint: &str) -> String {
    format!(
        r#"
apiVersion: v1
kind: List
items:
- apiVersion: v1
  kind: Service
  metadata: {{name: {name}, namespace: {namespace}}}
  spec:
    clusterIP: {vip}
    ports:
    - {{name: http, port: 80, protocol: TCP, targetPort: 8080}}
- apiVersion: discovery.k8s.io/v1
  kind: EndpointSlice
  metadata: {{name: {name}-1, namespace: {namespace}, labels: {{kubernetes.io/service-name: {name}}}}}
  addressType: IPv4
  endpoints:
  - addresses: [{endpoint}]
  ports:
  - {{name: http, port: 8080, protocol: TCP}}
"#
    )
}

fn parsed(yaml: &str) -> ClusterData {
    causeway_shared::source::parse_objects(yaml)
        .expect("test YAML parses")
        .0
}

/// Copies every object of `from` into `to` (fresh `Arc`s, as a source that read them anew).
fn upsert_all(to: &mut ClusterData, from: ClusterData) {
    for svc in from.services.values() {
        to.upsert_service(svc.clone());
    }
    for (_, slices) in from.slices_by_service() {
        for slice in slices.values() {
            to.upsert_slice(slice.clone());
        }
    }
}

/// `a` local, `b` and `c` remote and synced.
fn three_clusters() -> Arc<causeway_shared::catalog::Catalog> {
    let cat = causeway_shared::catalog::Catalog::new(["a", "b", "c"], "a");
    let synced = ClusterStatus {
        synced: true,
        connected: true,
        ..Default::default()
    };
    for (name, text) in [("b", CLUSTER_B), ("c", CLUSTER_C)] {
        cat.publish(name, Arc::new(parsed(text)), synced.clone());
    }
    cat
}

/// Publishes a change to one cluster's data as the sources do: the maps are copied,
/// the objects the change does not touch keep their `Arc`s.
fn edit(cat: &causeway_shared::catalog::Catalog, cluster: &str, f: impl FnOnce(&mut ClusterData)) {
    let view = cat.snapshot().cluster(cluster).unwrap().clone();
    let mut data = (*view.data).clone();
    f(&mut data);
    cat.publish(cluster, Arc::new(data), view.status);
}

fn key(addr: &str) -> VsKey {
    VsKey {
        proto: Protocol::Tcp,
        addr: addr.parse().unwrap(),
    }
}

/// A planner used as the sync loop uses it: each desired state is changed by the caller
/// (a drained real server kept at weight 0 in the UDP virtual service, when there is
/// one) and handed back once the next plan's has replaced it.
#[derive(Default)]
struct SyncLoop {
    planner: Planner,
    /// The last plan's number, its state as changed, and the key changed.
    applied: Option<(u64, DesiredState, Vec<VsKey>)>,
}

/// Plans the catalog with the memoized planner and checks the answer against a fresh
/// plan; returns it with the number of services built anew.
fn replan(
    sync: &mut SyncLoop,
    cat: &causeway_shared::catalog::Catalog,
    now: Instant,
    step: &str,
) -> (Plan, usize) {
    let snapshot = cat.snapshot();
    let memoized = sync.planner.plan(&snapshot, &settings(), now);
    let fresh = plan(&snapshot, &settings(), now);
    assert_eq!(
        memoized, fresh,
        "{step}: the memoized plan differs from a fresh one"
    );
    let mut state = memoized.desired.clone();
    let touched = match state
        .services
        .iter_mut()
        .find(|(k, _)| k.proto == Protocol::Udp)
    {
        Some((key, vs)) => {
            vs.reals.insert("198.51.100.99:8080".parse().unwrap(), 0);
            vec![*key]
        }
        None => vec![],
    };
    let done = sync.applied.replace((sync.planner.plans(), state, touched));
    if let Some((plan, state, touched)) = done {
        sync.planner.recycle(state, plan, touched);
    }
    (memoized, sync.planner.stats().rebuilt)
}

#[tokio::test(start_paused = true)]
async fn memoized_plans_equal_fresh_ones_and_rebuild_only_what_changed() {
    let cat = three_clusters();
    let mut planner = SyncLoop::default();
    let now = Instant::now();
    let web = key("192.0.2.10:80");
    let api = key("192.0.2.30:80");

    // b's 5 Services (headless and ExternalName ones too) and c's 1.
    let (first, rebuilt) = replan(&mut planner, &cat, now, "first plan");
    assert_eq!(rebuilt, 6);
    let copied = planner.planner.stats().copied;
    assert_eq!(copied, 6, "nothing to patch: every one copied");
    assert_eq!(first.desired.counts()["b"], (5, 8));
    assert_eq!(first.desired.counts()["c"], (1, 1));

    let (p, rebuilt) = replan(&mut planner, &cat, now, "nothing changed");
    assert_eq!((&p, rebuilt), (&first, 0));
    cat.update_status("b", |s| s.last_error = Some("watch restarted".into()));
    let (p, rebuilt) = replan(&mut planner, &cat, now, "status change only");
    assert_eq!((&p.desired, rebuilt), (&first.desired, 0));

    // One endpoint of b's web changes: web alone is built anew, c is not even walked.
    let changed = parsed(&CLUSTER_B.replace("198.51.100.12]", "198.51.100.15]"));
    edit(&cat, "b", |d| {
        let web1 = changed
            .slices_of(&ServiceKey::new("demo", "web"))
            .find(|s| s.name == "web-1")
            .unwrap();
        d.upsert_slice(web1.clone());
    });
    let (p, rebuilt) = replan(&mut planner, &cat, now, "endpoint change");
    assert_eq!(rebuilt, 1);
    // The state of the plan before last, patched: web's two virtual services (web was
    // built anew), and the one the caller changed in it.
    assert_eq!(planner.planner.stats().copied, 3);
    assert!(
        p.desired.services[&web]
            .reals
            .contains_key(&"198.51.100.15:8080".parse().unwrap())
    );
    assert_eq!(p.desired.services[&api], first.desired.services[&api]);

    edit(&cat, "b", |d| {
        upsert_all(
            d,
            parsed(&service_yaml(
                "demo",
                "cache",
                "192.0.2.40",
                "198.51.100.41",
            )),
        )
    });
    let (p, rebuilt) = replan(&mut planner, &cat, now, "service added");
    assert_eq!(rebuilt, 1);
    assert!(p.desired.services.contains_key(&key("192.0.2.40:80")));

    let cache = ServiceKey::new("demo", "cache");
    let cache_svc = cat.snapshot().cluster("b").unwrap().data.services[&cache].clone();
    edit(&cat, "b", |d| assert!(d.remove_service(&cache)));
    let (p, rebuilt) = replan(&mut planner, &cat, now, "service removed");
    assert_eq!(rebuilt, 0);
    assert!(!p.desired.services.contains_key(&key("192.0.2.40:80")));
    // The very same object back: its memo went with it, so it is built anew.
    edit(&cat, "b", |d| d.upsert_service(cache_svc));
    let (_, rebuilt) = replan(&mut planner, &cat, now, "service back");
    assert_eq!(rebuilt, 1);

    edit(&cat, "b", |d| assert!(d.remove_slice("demo", "web-v6")));
    let (p, rebuilt) = replan(&mut planner, &cat, now, "slice removed");
    assert_eq!(rebuilt, 1);
    assert!(
        p.desired.services[&key("[2001:db8:5::10]:80")]
            .reals
            .is_empty()
    );

    // A conflict appears in c: b is first in name order and keeps the key.
    edit(&cat, "c", |d| {
        upsert_all(
            d,
            parsed(&service_yaml("shop", "web", "192.0.2.10", "198.51.100.32")),
        )
    });
    let (p, rebuilt) = replan(&mut planner, &cat, now, "conflict in c");
    assert_eq!(rebuilt, 1);
    let conflict = |key, kept: &str, dropped: &str| Conflict {
        key,
        kept: kept.into(),
        dropped: dropped.into(),
    };
    assert_eq!(p.conflicts, [conflict(web, "b", "c")]);
    assert_eq!(p.desired.services[&web].origin.cluster, "b");
    // b now claims c's key too (b changed, c reused): b keeps both.
    edit(&cat, "b", |d| {
        upsert_all(
            d,
            parsed(&service_yaml("demo", "api", "192.0.2.30", "198.51.100.33")),
        )
    });
    let (p, rebuilt) = replan(&mut planner, &cat, now, "conflict in b");
    assert_eq!(rebuilt, 1);
    assert_eq!(
        p.conflicts,
        [conflict(api, "b", "c"), conflict(web, "b", "c")]
    );
    assert_eq!(p.desired.services[&api].origin.cluster, "b");
    // Both go: c's api is back.
    edit(&cat, "b", |d| {
        assert!(d.remove_service(&ServiceKey::new("demo", "api")))
    });
    edit(&cat, "c", |d| {
        assert!(d.remove_service(&ServiceKey::new("shop", "web")))
    });
    let (p, rebuilt) = replan(&mut planner, &cat, now, "conflicts gone");
    assert_eq!(rebuilt, 0);
    assert!(p.conflicts.is_empty());
    assert_eq!(p.desired.services[&api], first.desired.services[&api]);

    // c unsynced (a relist): left out, and its memo dropped.
    let c_status = cat.snapshot().cluster("c").unwrap().status.clone();
    cat.update_status("c", |s| s.synced = false);
    let (p, rebuilt) = replan(&mut planner, &cat, now, "c unsynced");
    assert_eq!(rebuilt, 0);
    assert_eq!(p.unsynced.iter().collect::<Vec<_>>(), ["c"]);
    assert!(!p.desired.services.contains_key(&api));
    cat.update_status("c", |s| *s = c_status);
    let (p, rebuilt) = replan(&mut planner, &cat, now, "c synced again");
    assert_eq!(rebuilt, 1, "c's memo was dropped while it was unsynced");
    assert!(p.desired.services.contains_key(&api));

    // b unreachable past the expiry: left out; back: built anew.
    cat.update_status("b", |s| {
        s.connected = false;
        s.disconnected_since = Some(now);
    });
    let later = now + Duration::from_secs(61);
    let (p, rebuilt) = replan(&mut planner, &cat, later, "b expired");
    assert_eq!(rebuilt, 0);
    assert_eq!(p.expired.iter().collect::<Vec<_>>(), ["b"]);
    assert_eq!(p.desired.counts().keys().collect::<Vec<_>>(), [&"c"]);
    cat.update_status("b", |s| {
        s.connected = true;
        s.disconnected_since = None;
    });
    let (p, rebuilt) = replan(&mut planner, &cat, later, "b back");
    assert_eq!(rebuilt, 6, "b's 5 Services and demo/cache");
    assert_eq!(p.desired.counts()["b"], (6, 8));

    // The tunnel reports b's data path down: b's virtual services stay, without real
    // servers; c is not touched. Back up: the real servers return.
    use causeway_shared::catalog::PathState;
    cat.set_path("b", PathState::Unreachable);
    let (p, rebuilt) = replan(&mut planner, &cat, later, "b's path down");
    assert_eq!(rebuilt, 6, "every Service of b planned again");
    assert_eq!(p.desired.counts()["b"], (6, 0));
    assert_eq!(p.desired.counts()["c"], (1, 1));
    let (p, rebuilt) = replan(&mut planner, &cat, later, "b's path still down");
    assert_eq!((p.desired.counts()["b"], rebuilt), ((6, 0), 0));
    cat.set_path("b", PathState::Reachable);
    let (p, rebuilt) = replan(&mut planner, &cat, later, "b's path back");
    assert_eq!(rebuilt, 6);
    assert_eq!(p.desired.counts()["b"], (6, 8));
    cat.set_path("b", PathState::Unknown);
    let (p, rebuilt) = replan(&mut planner, &cat, later, "b's path unknown");
    assert_eq!(
        (p.desired.counts()["b"], rebuilt),
        ((6, 8), 0),
        "unknown is not down"
    );
}

/// The order `plan` has always reported conflicts in: clusters in name order, then
/// services by key, the first claimant keeping the key (within one cluster too).
#[tokio::test]
async fn conflicts_are_reported_in_plan_order() {
    let cat = three_clusters();
    edit(&cat, "c", |d| {
        upsert_all(
            d,
            parsed(&service_yaml("shop", "web", "192.0.2.10", "198.51.100.32")),
        );
        upsert_all(
            d,
            parsed(&service_yaml("shop", "api2", "192.0.2.30", "198.51.100.33")),
        );
    });
    edit(&cat, "b", |d| {
        upsert_all(
            d,
            parsed(&service_yaml("demo", "zz", "192.0.2.30", "198.51.100.34")),
        );
        upsert_all(
            d,
            parsed(&service_yaml("demo", "aa", "192.0.2.10", "198.51.100.35")),
        );
    });
    let p = plan(&cat.snapshot(), &settings(), Instant::now());
    let found: Vec<_> = p
        .conflicts
        .iter()
        .map(|c| format!("{} kept={} dropped={}", c.key, c.kept, c.dropped))
        .collect();
    assert_eq!(
        found,
        [
            // b: demo/aa comes before demo/web and takes 192.0.2.10:80.
            "TCP 192.0.2.10:80 kept=b dropped=b",
            // c, by key: shop/api, shop/api2, shop/web.
            "TCP 192.0.2.30:80 kept=b dropped=c",
            "TCP 192.0.2.30:80 kept=b dropped=c",
            "TCP 192.0.2.10:80 kept=b dropped=c",
        ]
    );
    let taken = |k: &str| p.desired.services[&key(k)].origin.service.to_string();
    assert_eq!(taken("192.0.2.10:80"), "demo/aa");
    assert_eq!(taken("192.0.2.30:80"), "demo/zz");
}

#[tokio::test]
async fn a_recycled_state_too_old_to_patch_is_dropped() {
    let cat = three_clusters();
    let mut planner = Planner::default();
    let now = Instant::now();
    let first = planner.plan(&cat.snapshot(), &settings(), now);
    let mut stale = first.desired.clone();
    stale.services.clear();
    // The state of the last plan, changed at no key: patched with what the next changes.
    planner.recycle(first.desired, planner.plans(), vec![]);
    edit(&cat, "c", |d| {
        upsert_all(
            d,
            parsed(&service_yaml("shop", "cart", "192.0.2.50", "198.51.100.51")),
        )
    });
    let p = planner.plan(&cat.snapshot(), &settings(), now);
    assert_eq!(p, plan(&cat.snapshot(), &settings(), now));
    assert_eq!(planner.stats().copied, 1);
    for _ in 0..KEPT_CHANGES {
        planner.plan(&cat.snapshot(), &settings(), now);
    }
    // From the first plan, with all its services gone: too old, every one is copied.
    planner.recycle(stale, 1, vec![]);
    let p = planner.plan(&cat.snapshot(), &settings(), now);
    assert_eq!(p, plan(&cat.snapshot(), &settings(), now));
    assert_eq!(planner.stats().copied, p.desired.services.len());
}
