//! Golden tests of the pure plan: peers, routes, MSS clamp, steering flows.
//!
//! Ranges: cluster a (local) pods 10.128.0.0/16, services 172.30.0.0/16; cluster b pods
//! 10.129.0.0/16, services 172.31.0.0/16; cluster c has no configured pod CIDRs (its nodes'
//! subnets are taken from its TunnelEndpoints, 10.140.x.0/24). Endpoints are RFC 5737
//! addresses (192.0.2.0/24, 198.51.100.0/24); static peers use 203.0.113.0/24.

use std::collections::BTreeMap;

use causeway_shared::config::StaticPeer;
use causeway_shared::model::TunnelEndpoint;
use causeway_tunnel::plan::{LocalNode, PlanInput, RemoteCluster, RemoteView, Settings, plan};
use causeway_tunnel::steering::SteeringPort;
use causeway_tunnel::wg::{PeerConfig, PrivateKey, PublicKey};

fn key(n: u8) -> PublicKey {
    PrivateKey::from_bytes([n; 32]).public_key()
}

fn te(node: &str, k: u8, endpoint: Option<&str>, cidrs: &[&str]) -> TunnelEndpoint {
    TunnelEndpoint {
        name: node.into(),
        namespace: "causeway".into(),
        node: node.into(),
        public_key: key(k).to_base64(),
        endpoint: endpoint.map(Into::into),
        pod_cidrs: cidrs.iter().map(|c| c.parse().unwrap()).collect(),
        probe_endpoint: None,
        resource_version: None,
    }
}

fn nets(list: &[&str]) -> Vec<ipnet::IpNet> {
    list.iter().map(|c| c.parse().unwrap()).collect()
}

fn base() -> PlanInput {
    PlanInput {
        local: LocalNode {
            cluster: "a".into(),
            node: "a1".into(),
            public_key: key(1),
            pod_cidrs: nets(&["10.128.0.0/24"]),
            addresses: vec!["192.0.2.10".parse().unwrap(), "10.128.0.1".parse().unwrap()],
        },
        remotes: vec![
            RemoteCluster {
                name: "b".into(),
                pod_cidrs: nets(&["10.129.0.0/16"]),
                service_cidrs: nets(&["172.31.0.0/16"]),
                view: RemoteView::Synced(vec![
                    te("b2", 22, Some("198.51.100.2:51820"), &["10.129.1.0/24"]),
                    te("b1", 21, Some("198.51.100.1:51820"), &["10.129.0.0/24"]),
                ]),
            },
            RemoteCluster {
                name: "c".into(),
                pod_cidrs: vec![],
                service_cidrs: vec![],
                view: RemoteView::Synced(vec![te(
                    "c1",
                    31,
                    Some("tunnel-c1.example:51820"),
                    &["10.140.0.0/24"],
                )]),
            },
        ],
        local_cidrs: nets(&["10.128.0.0/16", "172.30.0.0/16"]),
        static_peers: vec![],
        settings: Settings {
            interface: "causeway0".into(),
            keepalive: 25,
        },
        resolved: BTreeMap::from([(
            "tunnel-c1.example:51820".to_string(),
            "192.0.2.31:51820".parse().unwrap(),
        )]),
        steering: None,
        peer_up: BTreeMap::new(),
    }
}

fn k(n: u8) -> String {
    key(n).to_base64()
}

#[test]
fn full_mesh_with_service_carrier_and_routes() {
    let p = plan(&base());
    let expected = format!(
        "peers:
  b/b1 key={} endpoint=198.51.100.1:51820 allowed=10.129.0.0/24,172.31.0.0/16 keepalive=25
  b/b2 key={} endpoint=198.51.100.2:51820 allowed=10.129.1.0/24 keepalive=25
  c/c1 key={} endpoint=192.0.2.31:51820 allowed=10.140.0.0/24 keepalive=25
routes:
  10.129.0.0/16 dev causeway0 src 10.128.0.1
  10.140.0.0/24 dev causeway0 src 10.128.0.1
  172.31.0.0/16 dev causeway0 src 10.128.0.1
mss:
  oifname causeway0 clamp to rt mtu
flows:
",
        k(21),
        k(22),
        k(31)
    );
    assert_eq!(p.render(), expected);
}

#[test]
fn hostile_and_broken_objects_are_left_out() {
    let mut input = base();
    input.remotes[0].view = RemoteView::Synced(vec![
        te("b1", 21, Some("198.51.100.1:51820"), &["10.129.0.0/24"]),
        // claims our cluster's pods and a range outside its cluster
        te(
            "b3",
            23,
            Some("198.51.100.3:51820"),
            &["10.128.0.0/24", "10.99.0.0/24"],
        ),
        // reuses b1's key
        te("b4", 21, Some("198.51.100.4:51820"), &["10.129.4.0/24"]),
        // our own key
        te("b5", 1, None, &["10.129.5.0/24"]),
        // same subnet as b1
        te("b6", 26, None, &["10.129.0.0/25"]),
    ]);
    input.remotes[1].view = RemoteView::Synced(vec![te(
        "c1",
        31,
        Some("unknown.example:51820"),
        &["10.129.9.0/24"],
    )]);
    let p = plan(&input);
    let expected = format!(
        "peers:
  b/b1 key={} endpoint=198.51.100.1:51820 allowed=10.129.0.0/24,172.31.0.0/16 keepalive=25
  b/b3 key={} endpoint=198.51.100.3:51820 allowed=- keepalive=25
  b/b6 key={} endpoint=- allowed=- keepalive=25
  c/c1 key={} endpoint=- allowed=- keepalive=25
routes:
  10.129.0.0/16 dev causeway0 src 10.128.0.1
  172.31.0.0/16 dev causeway0 src 10.128.0.1
mss:
  oifname causeway0 clamp to rt mtu
flows:
problems:
  cluster \"b\" TunnelEndpoint causeway/b3: podCIDR 10.128.0.0/24 is outside the cluster's podCIDRs
  cluster \"b\" TunnelEndpoint causeway/b3: podCIDR 10.99.0.0/24 is outside the cluster's podCIDRs
  cluster \"b\" TunnelEndpoint causeway/b4: publicKey is already the key of b/b1
  cluster \"b\" TunnelEndpoint causeway/b5: publicKey is already the key of a/a1
  cluster \"b\" TunnelEndpoint causeway/b6: podCIDR 10.129.0.0/25 is already routed to b/b1
  cluster \"c\" TunnelEndpoint causeway/c1: podCIDR 10.129.9.0/24 overlaps cluster \"b\"
  cluster \"c\" TunnelEndpoint causeway/c1: endpoint \"unknown.example:51820\" is not resolved yet
",
        k(21),
        k(23),
        k(26),
        k(31)
    );
    assert_eq!(p.render(), expected);
}

#[test]
fn unsynced_cluster_keeps_its_peers_and_static_peers_join() {
    let mut input = base();
    let kept = PeerConfig {
        public_key: key(41),
        preshared_key: None,
        endpoint: Some("198.51.100.41:51820".parse().unwrap()),
        allowed_ips: nets(&["10.129.7.0/24"]),
        persistent_keepalive: Some(25),
    };
    input.remotes[0].view = RemoteView::Unsynced(vec![kept]);
    input.remotes.truncate(1);
    input.static_peers = vec![
        StaticPeer {
            public_key: k(51),
            endpoint: Some("203.0.113.5:51820".into()),
            allowed_ips: vec!["203.0.113.128/25".into()],
        },
        StaticPeer {
            public_key: "nope".into(),
            endpoint: None,
            allowed_ips: vec![],
        },
        StaticPeer {
            public_key: k(52),
            endpoint: None,
            allowed_ips: vec!["10.128.5.0/24".into()],
        },
    ];
    input.settings.keepalive = 0;
    let p = plan(&input);
    let expected = format!(
        "peers:
  b/(unsynced) key={} endpoint=198.51.100.41:51820 allowed=10.129.7.0/24 keepalive=25
  static/static-0 key={} endpoint=203.0.113.5:51820 allowed=203.0.113.128/25
  static/static-2 key={} endpoint=- allowed=-
routes:
  10.129.0.0/16 dev causeway0 src 10.128.0.1
  172.31.0.0/16 dev causeway0 src 10.128.0.1
  203.0.113.128/25 dev causeway0 src 10.128.0.1
mss:
  oifname causeway0 clamp to rt mtu
flows:
problems:
  tunnel.staticPeers[1].publicKey: key has 3 bytes, expected 32
  tunnel.staticPeers[2].allowedIPs[0]: 10.128.5.0/24 overlaps cluster \"a\"
",
        k(41),
        k(51),
        k(52)
    );
    assert_eq!(p.render(), expected);
}

#[test]
fn steering_flows_cover_every_remote_range() {
    let mut input = base();
    input.steering = Some(SteeringPort {
        bridge: "br0".into(),
        ofport: 7,
        mac: "0a:58:0a:80:00:07".into(),
    });
    let p = plan(&input);
    let flows: String = p.flows.iter().map(|f| format!("{f}\n")).collect();
    assert_eq!(
        flows,
        "table=0,priority=400,ip,in_port=7,nw_src=10.129.0.0/16 actions=goto_table:30
table=0,priority=400,ip,in_port=7,nw_src=10.140.0.0/24 actions=goto_table:30
table=0,priority=400,ip,in_port=7,nw_src=172.31.0.0/16 actions=goto_table:30
table=30,priority=400,ip,nw_dst=10.129.0.0/16 actions=set_field:0a:58:0a:80:00:07->eth_dst,output:7
table=30,priority=400,ip,nw_dst=10.140.0.0/24 actions=set_field:0a:58:0a:80:00:07->eth_dst,output:7
table=30,priority=400,ip,nw_dst=172.31.0.0/16 actions=set_field:0a:58:0a:80:00:07->eth_dst,output:7
"
    );
}

#[test]
fn same_input_same_plan_whatever_the_object_order() {
    let a = plan(&base());
    let mut input = base();
    if let RemoteView::Synced(list) = &mut input.remotes[0].view {
        list.reverse();
    }
    assert_eq!(plan(&input), a);
}

/// Cluster b's peers as `label allowed-ips` lines, for the carrier tests.
fn b_peers(input: &PlanInput) -> String {
    plan(input)
        .peers
        .iter()
        .filter(|p| p.label.cluster == "b")
        .map(|p| {
            let ips: Vec<String> = p
                .config
                .allowed_ips
                .iter()
                .map(ToString::to_string)
                .collect();
            format!("{} {}\n", p.label, ips.join(","))
        })
        .collect()
}

#[test]
fn service_cidrs_fail_over_to_an_up_peer_of_the_same_cluster() {
    let on_b1 = "b/b1 10.129.0.0/24,172.31.0.0/16\nb/b2 10.129.1.0/24\n";
    let on_b2 = "b/b1 10.129.0.0/24\nb/b2 10.129.1.0/24,172.31.0.0/16\n";
    let case = |health: &[(u8, bool)]| {
        let mut input = base();
        input.peer_up = health.iter().map(|&(n, up)| (key(n), up)).collect();
        b_peers(&input)
    };
    // Not assessed yet, or up: the first by node name with an endpoint.
    assert_eq!(case(&[]), on_b1);
    assert_eq!(case(&[(21, true), (22, true)]), on_b1);
    assert_eq!(case(&[(21, true), (22, false)]), on_b1);
    // b1 down, b2 up: b2 takes the services over; b1 keeps its own pod subnet.
    assert_eq!(case(&[(21, false), (22, true)]), on_b2);
    // Both down (a fresh start, no handshake yet) or b2 not assessed: nothing moves.
    assert_eq!(case(&[(21, false), (22, false)]), on_b1);
    assert_eq!(case(&[(21, false)]), on_b1);
    // The choice is the first up peer by node name, whatever the object order.
    let mut input = base();
    if let RemoteView::Synced(list) = &mut input.remotes[0].view {
        list.push(te("b3", 23, Some("198.51.100.3:51820"), &["10.129.3.0/24"]));
        list.reverse();
    }
    input.peer_up = BTreeMap::from([(key(21), false), (key(22), true), (key(23), true)]);
    let p = plan(&input);
    let carrier: Vec<String> = p
        .peers
        .iter()
        .filter(|p| {
            p.config
                .allowed_ips
                .contains(&"172.31.0.0/16".parse().unwrap())
        })
        .map(|p| p.label.to_string())
        .collect();
    assert_eq!(carrier, ["b/b2"]);
    // Routes do not depend on which peer carries the services.
    assert_eq!(p.routes, plan(&base()).routes);
}

#[test]
fn probes_go_only_through_the_tunnel_and_from_our_pod_subnet_address() {
    let mut input = base();
    let mut b1 = te("b1", 21, Some("198.51.100.1:51820"), &["10.129.0.0/24"]);
    b1.probe_endpoint = Some("10.129.0.1:51821".parse().unwrap());
    // An address outside its pod subnets would leave by the underlay: not probed.
    let mut b2 = te("b2", 22, Some("198.51.100.2:51820"), &["10.129.1.0/24"]);
    b2.probe_endpoint = Some("198.51.100.2:51821".parse().unwrap());
    input.remotes[0].view = RemoteView::Synced(vec![b1, b2]);
    input.remotes.truncate(1);
    let p = plan(&input);
    let expected = format!(
        "peers:
  b/b1 key={} endpoint=198.51.100.1:51820 allowed=10.129.0.0/24,172.31.0.0/16 probe=10.129.0.1:51821 keepalive=25
  b/b2 key={} endpoint=198.51.100.2:51820 allowed=10.129.1.0/24 keepalive=25
routes:
  10.129.0.0/16 dev causeway0 src 10.128.0.1
  172.31.0.0/16 dev causeway0 src 10.128.0.1
mss:
  oifname causeway0 clamp to rt mtu
flows:
problems:
  cluster \"b\" TunnelEndpoint causeway/b2: probeEndpoint 198.51.100.2:51821 is outside its pod subnets; not probed
",
        k(21),
        k(22)
    );
    assert_eq!(p.render(), expected);
    assert_eq!(p.probe_source, Some("10.128.0.1".parse().unwrap()));
    input
        .local
        .addresses
        .retain(|a| a.to_string() != "10.128.0.1");
    assert_eq!(
        plan(&input).probe_source,
        None,
        "no address in our pod subnet"
    );
}
