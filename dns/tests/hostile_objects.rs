//! Objects no sane cluster holds but a file or a broken controller can: a Service with 1,000
//! ports, a headless one with 1,000 endpoints, a name longer than a DNS label (logged: it gets
//! no name), duplicate and conflicting EndpointSlices, IPv6-only Services. The real binary
//! answers everything else as before, answers what it can of the rest (an SRV record per port,
//! 1,000 addresses over TCP, a truncated answer over UDP), and never panics.
//!
//! Cluster b's file here: services in 198.51.100.128/25 and 2001:db8:b:1::/64.

mod common;

use std::time::Duration;

use common::{Dns, answers, ask, clusters_ab, query_msg, tcp_raw, udp_raw};
use hickory_server::proto::op::Message;
use hickory_server::proto::rr::RecordType;
use serde_json::{Value, json};

fn service(name: &str, ips: &[&str], ports: Vec<Value>) -> Value {
    json!({"apiVersion": "v1", "kind": "Service",
           "metadata": {"name": name, "namespace": "demo"},
           "spec": {"clusterIP": ips[0], "clusterIPs": ips, "ports": ports}})
}

fn slice(name: &str, service: &str, family: &str, eps: Vec<Value>, ports: Vec<Value>) -> Value {
    json!({"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
           "metadata": {"name": name, "namespace": "demo",
                        "labels": {"kubernetes.io/service-name": service}},
           "addressType": family, "endpoints": eps, "ports": ports})
}

fn endpoint(ip: &str, ready: bool) -> Value {
    json!({"addresses": [ip], "conditions": {"ready": ready}})
}

#[test]
fn hostile_objects_leave_everything_else_answering() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    std::fs::write(
        dir.join("cluster-a.yaml"),
        "apiVersion: v1\nkind: List\nitems: []\n",
    )
    .unwrap();
    let ports: Vec<Value> = (0..1000)
        .map(|i| json!({"name": format!("p{i}"), "port": 10000 + i, "protocol": "TCP"}))
        .collect();
    let long = "x".repeat(255);
    let http = vec![json!({"name": "http", "port": 80, "protocol": "TCP"})];
    let items = vec![
        service("web", &["198.51.100.140"], http.clone()),
        slice(
            "web-1",
            "web",
            "IPv4",
            vec![endpoint("192.0.2.140", true)],
            http.clone(),
        ),
        // The same slice twice, and a second slice saying the opposite of the first.
        slice(
            "web-1",
            "web",
            "IPv4",
            vec![endpoint("192.0.2.140", true)],
            http.clone(),
        ),
        slice(
            "web-2",
            "web",
            "IPv4",
            vec![endpoint("192.0.2.140", false)],
            http.clone(),
        ),
        service("many", &["198.51.100.141"], ports.clone()),
        slice(
            "many-1",
            "many",
            "IPv4",
            vec![endpoint("192.0.2.141", true)],
            ports,
        ),
        service(&long, &["198.51.100.142"], http.clone()),
        json!({"apiVersion": "v1", "kind": "Service",
               "metadata": {"name": "crowd", "namespace": "demo"},
               "spec": {"clusterIP": "None", "ports": http.clone()}}),
        slice(
            "crowd-1",
            "crowd",
            "IPv4",
            (0..1000)
                .map(|i| endpoint(&format!("100.64.{}.{}", i / 250, i % 250 + 1), true))
                .collect(),
            http.clone(),
        ),
        service("six", &["2001:db8:b:1::6"], http.clone()),
        slice(
            "six-1",
            "six",
            "IPv6",
            vec![endpoint("2001:db8:b::6", true)],
            http,
        ),
    ];
    let list = json!({"apiVersion": "v1", "kind": "List", "items": items});
    std::fs::write(dir.join("cluster-b.yaml"), format!("{list:#}")).unwrap();
    let mut dns = Dns::start_in(dir, &clusters_ab("  upstreams: [\"127.0.0.1:9\"]\n"), true);

    for tcp in [false, true] {
        let a = |name: &str, t| answers(&ask(dns.addr, name, t, tcp));
        assert_eq!(
            a("web.demo.svc.cluster.b.", RecordType::A),
            ["web.demo.svc.cluster.b. A 198.51.100.140"]
        );
        assert_eq!(
            a("six.demo.svc.cluster.b.", RecordType::AAAA),
            ["six.demo.svc.cluster.b. AAAA 2001:db8:b:1::6"]
        );
        assert_eq!(
            a("many.demo.svc.cluster.b.", RecordType::A),
            ["many.demo.svc.cluster.b. A 198.51.100.141"]
        );
    }
    // Each of the 1,000 ports has its SRV record.
    for port in ["p0", "p7", "p999"] {
        let q = query_msg(
            &format!("_{port}._tcp.many.demo.svc.cluster.b."),
            RecordType::SRV,
            Some(1232),
        );
        let m = Message::from_vec(&tcp_raw(dns.addr, &q.to_vec().unwrap()).unwrap()).unwrap();
        assert_eq!(m.answers.len(), 1, "{port}: {m:?}");
    }
    // A headless Service of 1,000 endpoints: truncated over UDP, whole over TCP.
    let all = query_msg("crowd.demo.svc.cluster.b.", RecordType::A, Some(1232))
        .to_vec()
        .unwrap();
    let udp = Message::from_vec(&udp_raw(dns.addr, &all, Duration::from_secs(2)).unwrap()).unwrap();
    let tcp = Message::from_vec(&tcp_raw(dns.addr, &all).unwrap()).unwrap();
    println!(
        "A of 1,000 endpoints: {} over UDP (truncated: {}), {} over TCP",
        udp.answers.len(),
        udp.metadata.truncation,
        tcp.answers.len()
    );
    assert!(udp.metadata.truncation, "UDP answer truncated");
    assert_eq!(tcp.answers.len(), 1000, "TCP carries them all");
    // A name that is no DNS label has no name; asking for anything like it is NXDOMAIN.
    let long = ask(
        dns.addr,
        "xxxxxxxx.demo.svc.cluster.b.",
        RecordType::A,
        false,
    );
    assert!(long.answers.is_empty());
    assert!(dns.child_status().is_none(), "still running");
}
