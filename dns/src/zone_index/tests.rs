//! Lookups in an index built from cluster "a" (services 198.51.100.0/25, pods 192.0.2.0/25).

use super::*;
use crate::records::{apex_records, cluster_ptrs, cluster_records};
use crate::wire::{Parsed, parse};
use causeway_shared::source::parse_objects;

fn index() -> Index {
    let path = format!(
        "{}/tests/fixtures/cluster-a.yaml",
        env!("CARGO_MANIFEST_DIR")
    );
    let data = parse_objects(&std::fs::read_to_string(path).unwrap())
        .unwrap()
        .0;
    let mut rrs = apex_records("cluster.a", 1, 5);
    rrs.extend(cluster_records("cluster.a", &data));
    let zone = ZoneTable::build("cluster.a.", ZoneKind::Cluster, true, &rrs, 5);
    let ptrs = Arc::new(PtrTable::build(true, &cluster_ptrs("cluster.a", &data), 5));
    Index {
        zones: vec![Arc::new(zone)],
        reverse: vec![ReverseNet::new(
            "198.51.100.0/25".parse().unwrap(),
            ptrs,
            "cluster.a",
            1,
            5,
        )],
        ready: true,
    }
}

fn kind(idx: &Index, name: &str, qtype: u16) -> String {
    let mut pkt = vec![0, 1, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0];
    crate::names::push_wire(name, &mut pkt);
    pkt.extend_from_slice(&qtype.to_be_bytes());
    pkt.extend_from_slice(&[0, 1]);
    let Parsed::Query(q) = parse(&pkt) else {
        panic!()
    };
    match idx.lookup(&q.name, q.qtype) {
        Lookup::NotOurs => "forward".into(),
        Lookup::Ours(_, Answer::Records(sets)) => {
            format!("records {}", sets.iter().map(|s| s.count).sum::<u16>())
        }
        Lookup::Ours(_, Answer::NoData(_)) => "nodata".into(),
        Lookup::Ours(_, Answer::NxDomain(_)) => "nxdomain".into(),
        Lookup::Ours(_, Answer::ServFail) => "servfail".into(),
    }
}

#[test]
fn lookups() {
    let idx = index();
    let cases = [
        ("web.demo.svc.cluster.a.", rtype::A, "records 1"),
        ("web.demo.svc.cluster.a.", rtype::ANY, "records 2"),
        ("web.demo.svc.cluster.a.", rtype::TXT, "nodata"),
        ("search.demo.svc.cluster.a.", rtype::AAAA, "records 1"),
        ("demo.svc.cluster.a.", rtype::A, "nodata"),
        ("svc.cluster.a.", rtype::A, "nodata"),
        ("cluster.a.", rtype::SOA, "records 1"),
        ("x.cluster.a.", rtype::A, "nxdomain"),
        ("xcluster.a.", rtype::A, "forward"),
        ("cluster.local.", rtype::A, "forward"),
        ("10.100.51.198.in-addr.arpa.", rtype::PTR, "records 1"),
        ("10.100.51.198.in-addr.arpa.", rtype::A, "nodata"),
        ("11.100.51.198.in-addr.arpa.", rtype::PTR, "nxdomain"),
        ("10.200.51.198.in-addr.arpa.", rtype::PTR, "forward"),
        ("100.51.198.in-addr.arpa.", rtype::PTR, "forward"),
    ];
    for (name, t, want) in cases {
        assert_eq!(kind(&idx, name, t), want, "{name} {t}");
    }
}

#[test]
fn not_ready_zone_answers_servfail() {
    let zone = ZoneTable::build(
        "cluster.b.",
        ZoneKind::Cluster,
        false,
        &apex_records("cluster.b", 0, 5),
        5,
    );
    let idx = Index {
        zones: vec![Arc::new(zone)],
        reverse: vec![],
        ready: false,
    };
    assert_eq!(kind(&idx, "web.demo.svc.cluster.b.", rtype::A), "servfail");
}
