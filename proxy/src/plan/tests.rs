//! Test ranges (RFC 5737 / 3849): service IPs 192.0.2.0/24 and 2001:db8:5::/64, pod IPs
//! 198.51.100.0/24 and 2001:db8:10::/64 (as in [`crate::testdata`]).

use std::time::Duration;

use causeway_shared::catalog::ClusterStatus;

use super::*;
use crate::backend::ipvsadm::{View, render_ipvsadm};
use crate::backend::{FAKE_HEADER, KernelState};
use crate::testdata::{CLUSTER_B, catalog_with, plan_settings as settings, snapshot};

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
