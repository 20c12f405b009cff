//! Test ranges (RFC 5737 / 3849): service IPs 192.0.2.0/24 and 2001:db8:5::/64, pod IPs
//! 198.51.100.0/24 and 2001:db8:10::/64 (as in [`crate::testdata`]).

use std::time::Duration;

use causeway_shared::catalog::ClusterStatus;

use super::*;
use crate::backend::{FAKE_HEADER, KernelState};
use crate::debug::{View, render_ipvsadm};
use crate::testdata::{CLUSTER_B, catalog_with, snapshot};

fn settings() -> PlanSettings {
    PlanSettings {
        stale_rules_expiry: Duration::from_secs(60),
    }
}

fn dump(desired: &DesiredState, view: View) -> String {
    render_ipvsadm(&KernelState::from_desired(desired, FAKE_HEADER), view)
}

/// The whole plan, in `ipvsadm -Ln` layout with the origin column.
#[tokio::test]
async fn golden_plan() {
    let p = plan(&snapshot(), &settings(), Instant::now());
    assert!(p.unsynced.is_empty() && p.expired.is_empty() && p.conflicts.is_empty());
    let explain = View {
        explain: true,
        ..View::default()
    };
    assert_eq!(
        dump(&p.desired, explain),
        "\
IP Virtual Server version 1.2.1 (size=4096)
Prot LocalAddress:Port Scheduler Flags
  -> RemoteAddress:Port           Forward Weight ActiveConn InActConn
TCP  192.0.2.10:80 rr  # cluster=b service=demo/web:http generation=7
  -> 198.51.100.11:8080           Masq    1      0          0         
  -> 198.51.100.12:8080           Masq    1      0          0         
  -> 198.51.100.13:8080           Masq    0      0          0         
TCP  192.0.2.20:443 rr  # cluster=b service=demo/empty generation=0
TCP  192.0.2.53:53 sh persistent 600  # cluster=b service=kube-system/dns:dns-tcp generation=1
  -> 198.51.100.53:53             Masq    1      0          0         
  -> 198.51.100.54:53             Masq    1      0          0         
UDP  192.0.2.53:53 sh persistent 600  # cluster=b service=kube-system/dns:dns generation=1
  -> 198.51.100.53:53             Masq    1      0          0         
  -> 198.51.100.54:53             Masq    1      0          0         
TCP  [2001:db8:5::10]:80 rr  # cluster=b service=demo/web:http generation=2
  -> [2001:db8:10::11]:8080       Masq    1      0          0         
"
    );
    assert_eq!(
        p.desired
            .vips()
            .into_iter()
            .map(|i| i.to_string())
            .collect::<Vec<_>>(),
        ["192.0.2.10", "192.0.2.20", "192.0.2.53", "2001:db8:5::10"]
    );
    assert_eq!(p.desired.counts()["b"], (5, 8));
}

#[tokio::test]
async fn graceful_termination_weights() {
    let p = plan(&snapshot(), &settings(), Instant::now());
    let web = &p.desired.services[&VsKey {
        proto: Protocol::Tcp,
        addr: "192.0.2.10:80".parse().unwrap(),
    }];
    // ready → 1, terminating but serving → 0, neither → absent.
    let weights: Vec<_> = web.reals.iter().map(|(a, w)| (a.to_string(), *w)).collect();
    assert_eq!(
        weights,
        [
            ("198.51.100.11:8080".into(), 1),
            ("198.51.100.12:8080".into(), 1),
            ("198.51.100.13:8080".to_string(), 0)
        ]
    );
}

#[tokio::test]
async fn publish_not_ready_addresses_takes_every_endpoint() {
    let yaml = CLUSTER_B.replacen(
        "targetPort: 8080}",
        "targetPort: 8080}\n    publishNotReadyAddresses: true",
        1,
    );
    let p = plan(&catalog_with(&yaml).snapshot(), &settings(), Instant::now());
    let web = &p.desired.services[&VsKey {
        proto: Protocol::Tcp,
        addr: "192.0.2.10:80".parse().unwrap(),
    }];
    assert_eq!(
        web.reals.values().copied().collect::<Vec<_>>(),
        [1, 1, 1, 1]
    );
}

#[tokio::test]
async fn affinity_and_scheduler() {
    let p = plan(&snapshot(), &settings(), Instant::now());
    let dns = &p.desired.services[&VsKey {
        proto: Protocol::Udp,
        addr: "192.0.2.53:53".parse().unwrap(),
    }];
    assert_eq!((dns.scheduler.as_str(), dns.affinity), ("sh", Some(600)));
    let empty = &p.desired.services[&VsKey {
        proto: Protocol::Tcp,
        addr: "192.0.2.20:443".parse().unwrap(),
    }];
    assert_eq!(
        (empty.scheduler.as_str(), empty.affinity),
        ("rr", None),
        "unknown scheduler falls back to rr"
    );
}

#[tokio::test(start_paused = true)]
async fn unsynced_clusters_are_carried_over_and_stale_ones_expire() {
    let cat = catalog_with(CLUSTER_B);
    let before = plan(&cat.snapshot(), &settings(), Instant::now()).desired;

    // Not synced yet (a restart): nothing planned for b, and b is reported.
    let fresh = causeway_shared::catalog::Catalog::new(["a", "b"], "a");
    let p = plan(&fresh.snapshot(), &settings(), Instant::now());
    assert!(p.desired.services.is_empty());
    assert_eq!(p.unsynced.iter().collect::<Vec<_>>(), ["b"]);
    let mut carried = p.desired.clone();
    let added = carried.carry_over(&before, &p.unsynced);
    assert_eq!(carried, before);
    assert!(added.iter().eq(before.services.keys()));

    // Disconnected: last-known rules stay until the expiry, then go.
    cat.update_status("b", |s| {
        *s = ClusterStatus {
            connected: false,
            disconnected_since: Some(Instant::now()),
            ..s.clone()
        }
    });
    let p = plan(
        &cat.snapshot(),
        &settings(),
        Instant::now() + Duration::from_secs(59),
    );
    assert_eq!(p.desired, before);
    let p = plan(
        &cat.snapshot(),
        &settings(),
        Instant::now() + Duration::from_secs(61),
    );
    assert!(p.desired.services.is_empty());
    assert_eq!(p.expired.iter().collect::<Vec<_>>(), ["b"]);
}

#[tokio::test(start_paused = true)]
async fn drained_real_servers_stay_at_weight_zero_until_grace_or_no_connections() {
    use crate::drain::Drains;
    let start = Instant::now();
    let applied = plan(&snapshot(), &settings(), start).desired;
    let gone = CLUSTER_B.replace(
        "  - addresses: [198.51.100.12]\n    conditions: {ready: true}\n",
        "",
    );
    let key = VsKey {
        proto: Protocol::Tcp,
        addr: "192.0.2.10:80".parse().unwrap(),
    };
    let real: SocketAddr = "198.51.100.12:8080".parse().unwrap();
    let mut drains = Drains::new(Duration::from_secs(30));

    let mut d = plan(&catalog_with(&gone).snapshot(), &settings(), start).desired;
    assert!(!d.services[&key].reals.contains_key(&real));
    drains.retain(&mut d, &applied, None, start, |_, _| None);
    assert_eq!(
        d.services[&key].reals.get(&real),
        Some(&0),
        "kept at weight 0"
    );
    assert_eq!(
        drains.next_deadline(),
        Some(start + Duration::from_secs(30))
    );

    // Still within the grace period, connections unknown: kept.
    let applied = d;
    let mut d = plan(&catalog_with(&gone).snapshot(), &settings(), start).desired;
    drains.retain(
        &mut d,
        &applied,
        None,
        start + Duration::from_secs(29),
        |_, _| None,
    );
    assert_eq!(d.services[&key].reals.get(&real), Some(&0));
    // The backend says its connections ended: removed before the deadline.
    let mut d2 = plan(&catalog_with(&gone).snapshot(), &settings(), start).desired;
    Drains::new(Duration::from_secs(30)).retain(&mut d2, &applied, None, start, |_, _| Some(0));
    assert!(!d2.services[&key].reals.contains_key(&real));
    // Past the deadline: removed.
    let applied = d;
    let mut d = plan(&catalog_with(&gone).snapshot(), &settings(), start).desired;
    drains.retain(
        &mut d,
        &applied,
        None,
        start + Duration::from_secs(31),
        |_, _| Some(5),
    );
    assert!(!d.services[&key].reals.contains_key(&real));
    assert!(drains.is_empty());
}

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
