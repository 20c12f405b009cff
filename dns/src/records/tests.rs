//! Golden tests of the records of one cluster zone, from the fixture of cluster "a"
//! (services 198.51.100.0/25 and 2001:db8:a:1::/64, pods 192.0.2.0/25).

use super::*;
use causeway_shared::source::parse_objects;

pub(crate) fn fixture(name: &str) -> ClusterData {
    let path = format!("{}/tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"));
    parse_objects(&std::fs::read_to_string(path).unwrap())
        .unwrap()
        .0
}

#[test]
fn cluster_a_zone() {
    let rrs = cluster_records("cluster.a", &fixture("cluster-a.yaml"));
    assert_eq!(
        render(&rrs),
        "\
db.demo.svc.cluster.a. A 192.0.2.10
db.demo.svc.cluster.a. A 192.0.2.12
db-0.db.demo.svc.cluster.a. A 192.0.2.10
192-0-2-12.db.demo.svc.cluster.a. A 192.0.2.12
_pg._tcp.db.demo.svc.cluster.a. SRV 0 100 5432 db-0.db.demo.svc.cluster.a.
_pg._tcp.db.demo.svc.cluster.a. SRV 0 100 5432 192-0-2-12.db.demo.svc.cluster.a.
empty.demo.svc.cluster.a. ; exists, no records
mixed.demo.svc.cluster.a. A 198.51.100.20
_http._tcp.mixed.demo.svc.cluster.a. SRV 0 100 80 mixed.demo.svc.cluster.a.
search.demo.svc.cluster.a. CNAME search.example.com.
web.demo.svc.cluster.a. A 198.51.100.10
web.demo.svc.cluster.a. AAAA 2001:db8:a:1::a
_http._tcp.web.demo.svc.cluster.a. SRV 0 100 80 web.demo.svc.cluster.a.
_metrics._tcp.web.demo.svc.cluster.a. SRV 0 100 9090 web.demo.svc.cluster.a.
dns.kube-system.svc.cluster.a. A 198.51.100.53
_dns._udp.dns.kube-system.svc.cluster.a. SRV 0 100 53 dns.kube-system.svc.cluster.a.
_dns-tcp._tcp.dns.kube-system.svc.cluster.a. SRV 0 100 53 dns.kube-system.svc.cluster.a.
"
    );
}

#[test]
fn apex_and_ptrs() {
    assert_eq!(
        render(&apex_records("cluster.a", 7, 5)),
        "\
cluster.a. SOA ns.dns.cluster.a. hostmaster.cluster.a. 7 7200 1800 86400 5
cluster.a. NS ns.dns.cluster.a.
dns-version.cluster.a. TXT \"1.1.0\"
"
    );
    let ptrs = cluster_ptrs("cluster.a", &fixture("cluster-a.yaml"));
    assert_eq!(
        render(&ptr_records(&ptrs)),
        "\
10.2.0.192.in-addr.arpa. PTR db-0.db.demo.svc.cluster.a.
12.2.0.192.in-addr.arpa. PTR 192-0-2-12.db.demo.svc.cluster.a.
20.100.51.198.in-addr.arpa. PTR mixed.demo.svc.cluster.a.
10.100.51.198.in-addr.arpa. PTR web.demo.svc.cluster.a.
a.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.1.0.0.0.a.0.0.0.8.b.d.0.1.0.0.2.ip6.arpa. PTR web.demo.svc.cluster.a.
53.100.51.198.in-addr.arpa. PTR dns.kube-system.svc.cluster.a.
"
    );
}

#[test]
fn publish_not_ready_addresses_and_bad_hostnames() {
    let mut data = fixture("cluster-a.yaml");
    let key = causeway_shared::model::ServiceKey::new("demo", "db");
    let mut svc = (*data.services[&key]).clone();
    svc.publish_not_ready_addresses = true;
    data.upsert_service(svc.clone());
    let eps = published_endpoints(&svc, &data);
    let labels: Vec<&str> = eps.iter().map(|e| e.label.as_str()).collect();
    assert_eq!(labels, ["db-0", "db-1", "192-0-2-12"]);
}
