//! Golden tests of the merged zone from the fixtures of clusters "a" and "b", which
//! exercise the conflict rules (see the module documentation).

use super::*;
use crate::records::render;
use causeway_shared::source::parse_objects;

fn fixture(name: &str) -> ClusterData {
    let path = format!("{}/tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"));
    parse_objects(&std::fs::read_to_string(path).unwrap())
        .unwrap()
        .0
}

#[test]
fn union_of_a_and_b() {
    let (a, b) = (fixture("cluster-a.yaml"), fixture("cluster-b.yaml"));
    let members = [
        Member {
            cluster: "a",
            data: &a,
        },
        Member {
            cluster: "b",
            data: &b,
        },
    ];
    assert_eq!(
        render(&merged_records("cluster.all", &members)),
        "\
db.demo.svc.cluster.all. A 192.0.2.10
db.demo.svc.cluster.all. A 192.0.2.12
db-0.a.db.demo.svc.cluster.all. A 192.0.2.10
192-0-2-12.a.db.demo.svc.cluster.all. A 192.0.2.12
_pg._tcp.db.demo.svc.cluster.all. SRV 0 100 5432 db-0.a.db.demo.svc.cluster.all.
_pg._tcp.db.demo.svc.cluster.all. SRV 0 100 5432 192-0-2-12.a.db.demo.svc.cluster.all.
empty.demo.svc.cluster.all. ; exists, no records
mixed.demo.svc.cluster.all. A 198.51.100.20
mixed.demo.svc.cluster.all. A 192.0.2.140
mixed.demo.svc.cluster.all. A 192.0.2.141
192-0-2-140.b.mixed.demo.svc.cluster.all. A 192.0.2.140
m-1.b.mixed.demo.svc.cluster.all. A 192.0.2.141
_grpc._tcp.mixed.demo.svc.cluster.all. SRV 0 100 9000 192-0-2-140.b.mixed.demo.svc.cluster.all.
_grpc._tcp.mixed.demo.svc.cluster.all. SRV 0 100 9000 m-1.b.mixed.demo.svc.cluster.all.
_http._tcp.mixed.demo.svc.cluster.all. SRV 0 100 80 mixed.demo.svc.cluster.a.
_http._tcp.mixed.demo.svc.cluster.all. SRV 0 100 8080 192-0-2-140.b.mixed.demo.svc.cluster.all.
_http._tcp.mixed.demo.svc.cluster.all. SRV 0 100 8080 m-1.b.mixed.demo.svc.cluster.all.
search.demo.svc.cluster.all. A 198.51.100.150
_http._tcp.search.demo.svc.cluster.all. SRV 0 100 80 search.demo.svc.cluster.b.
web.demo.svc.cluster.all. A 198.51.100.10
web.demo.svc.cluster.all. AAAA 2001:db8:a:1::a
web.demo.svc.cluster.all. A 198.51.100.140
_http._tcp.web.demo.svc.cluster.all. SRV 0 100 80 web.demo.svc.cluster.a.
_http._tcp.web.demo.svc.cluster.all. SRV 0 100 8080 web.demo.svc.cluster.b.
_metrics._tcp.web.demo.svc.cluster.all. SRV 0 100 9090 web.demo.svc.cluster.a.
dns.kube-system.svc.cluster.all. A 198.51.100.53
_dns._udp.dns.kube-system.svc.cluster.all. SRV 0 100 53 dns.kube-system.svc.cluster.a.
_dns-tcp._tcp.dns.kube-system.svc.cluster.all. SRV 0 100 53 dns.kube-system.svc.cluster.a.
"
    );
}

#[test]
fn member_order_is_answer_order_and_external_name_alone_does_not_exist() {
    let (a, b) = (fixture("cluster-a.yaml"), fixture("cluster-b.yaml"));
    let members = [
        Member {
            cluster: "b",
            data: &b,
        },
        Member {
            cluster: "a",
            data: &a,
        },
    ];
    let text = render(&merged_records("cluster.all", &members));
    let web: Vec<&str> = text.lines().filter(|l| l.starts_with("web.")).collect();
    assert_eq!(
        web,
        [
            "web.demo.svc.cluster.all. A 198.51.100.140",
            "web.demo.svc.cluster.all. A 198.51.100.10",
            "web.demo.svc.cluster.all. AAAA 2001:db8:a:1::a",
        ]
    );
    let only_a = [Member {
        cluster: "a",
        data: &a,
    }];
    let text = render(&merged_records("cluster.all", &only_a));
    assert!(!text.contains("search."), "{text}");
}
