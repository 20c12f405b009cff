use super::*;
use crate::backend::FAKE_HEADER;
use crate::testdata::{CLUSTER_B, desired};

fn ops_text(ops: &[IpvsOp]) -> String {
    ops.iter().map(|o| format!("{o}\n")).collect()
}

#[tokio::test]
async fn golden_ops_from_empty_kernel() {
    let d = desired(CLUSTER_B);
    let empty = KernelState {
        header: FAKE_HEADER,
        services: Default::default(),
    };
    assert_eq!(
        ops_text(&diff(&empty, &d, |_| true)),
        "\
-A -t 192.0.2.10:80 -s rr
-a -t 192.0.2.10:80 -r 198.51.100.11:8080 -m -w 1
-a -t 192.0.2.10:80 -r 198.51.100.12:8080 -m -w 1
-a -t 192.0.2.10:80 -r 198.51.100.13:8080 -m -w 0
-A -t 192.0.2.20:443 -s rr
-A -t 192.0.2.53:53 -s sh -p 600
-a -t 192.0.2.53:53 -r 198.51.100.53:53 -m -w 1
-a -t 192.0.2.53:53 -r 198.51.100.54:53 -m -w 1
-A -u 192.0.2.53:53 -s sh -p 600
-a -u 192.0.2.53:53 -r 198.51.100.53:53 -m -w 1
-a -u 192.0.2.53:53 -r 198.51.100.54:53 -m -w 1
-A -t [2001:db8:5::10]:80 -s rr
-a -t [2001:db8:5::10]:80 -r [2001:db8:10::11]:8080 -m -w 1
"
    );
}

#[tokio::test]
async fn golden_ops_for_a_change_and_adoption_keeps_foreign_services() {
    let before = desired(CLUSTER_B);
    let mut kernel = KernelState::from_desired(&before, FAKE_HEADER);
    // A service someone else made, outside every remote service CIDR.
    let foreign = VsKey {
        proto: Protocol::Tcp,
        addr: "203.0.113.1:80".parse().unwrap(),
    };
    kernel
        .services
        .insert(foreign, kernel.services.values().next().unwrap().clone());
    let after_yaml = CLUSTER_B
        .replace(
            "  - addresses: [198.51.100.12]\n    conditions: {ready: true}\n",
            "",
        )
        .replace(
            "conditions: {ready: false, serving: true, terminating: true}",
            "conditions: {ready: true}",
        )
        .replace("causeway.io/scheduler: sh", "causeway.io/scheduler: lc")
        .replace("  metadata: {name: empty,", "  metadata: {name: empty2,")
        .replace("clusterIP: 192.0.2.20", "clusterIP: 192.0.2.21");
    let after = desired(&after_yaml);
    let owned = |k: &VsKey| k.addr.ip() != foreign.addr.ip();
    assert_eq!(
        ops_text(&diff(&kernel, &after, owned)),
        "\
-d -t 192.0.2.10:80 -r 198.51.100.12:8080
-e -t 192.0.2.10:80 -r 198.51.100.13:8080 -m -w 1
-A -t 192.0.2.21:443 -s rr
-E -t 192.0.2.53:53 -s lc -p 600
-E -u 192.0.2.53:53 -s lc -p 600
-D -t 192.0.2.20:443
"
    );
    // Applied on top, the kernel matches the plan: the diff is empty.
    let kernel = KernelState::from_desired(&after, FAKE_HEADER);
    assert!(diff(&kernel, &after, owned).is_empty());
}

#[test]
fn kernel_listing_converts_with_counters() {
    let svc = VirtualService::new(
        client::Protocol::Udp,
        "192.0.2.53".parse().unwrap(),
        53,
        "rr",
    )
    .with_persistence(600);
    let mut rs = RealServer::new("198.51.100.53".parse().unwrap(), 53, 1, Forward::Masq);
    rs.stats.active_conns = 2;
    rs.stats.inactive_conns = 5;
    rs.stats.traffic.conns = 7;
    let entry = client::ServiceEntry {
        service: svc,
        stats: client::Stats {
            conns: 7,
            ..Default::default()
        },
        dests: vec![rs],
    };
    let info = client::Info {
        version: 0x010201,
        conn_table_size: 4096,
    };
    let state = kernel_state(Some(info), &[entry]);
    assert_eq!(
        crate::backend::ipvsadm::render_ipvsadm(&state, Default::default()),
        "\
IP Virtual Server version 1.2.1 (size=4096)
Prot LocalAddress:Port Scheduler Flags
  -> RemoteAddress:Port           Forward Weight ActiveConn InActConn
UDP  192.0.2.53:53 rr persistent 600
  -> 198.51.100.53:53             Masq    1      2          5         
"
    );
    assert_eq!(
        crate::backend::ipvsadm::render_ipvsadm(
            &state,
            crate::backend::ipvsadm::View {
                stats: true,
                explain: false
            }
        ),
        "\
IP Virtual Server version 1.2.1 (size=4096)
Prot LocalAddress:Port               Conns   InPkts  OutPkts  InBytes OutBytes
  -> RemoteAddress:Port
UDP  192.0.2.53:53                       7        0        0        0        0
  -> 198.51.100.53:53                    7        0        0        0        0
"
    );
}
