//! End-to-end tests of `causeway-dns serve`: the real binary on loopback, file-source
//! clusters "a" and "b" (tests/fixtures: services 198.51.100.0/24, pods 192.0.2.0/24,
//! IPv6 2001:db8::/32), queried with hickory-proto messages over UDP and TCP and with `dig`.

mod common;

use std::time::{Duration, Instant};

use common::*;
use hickory_server::proto::op::ResponseCode;
use hickory_server::proto::rr::{RData, RecordType};

fn ab() -> Dns {
    Dns::start(
        &clusters_ab("  upstreams: [\"127.0.0.1:9\"]\n  clustersetAlias: true\n"),
        true,
    )
}

fn soa_owner(m: &hickory_server::proto::op::Message) -> String {
    let soa: Vec<_> = m
        .authorities
        .iter()
        .filter(|r| r.record_type() == RecordType::SOA)
        .collect();
    assert_eq!(soa.len(), 1, "one SOA in authority: {m:?}");
    soa[0].name.to_string()
}

#[test]
fn cluster_zone_every_record_kind_udp_and_tcp() {
    let dns = ab();
    for tcp in [false, true] {
        let q = |name: &str, t| ask(dns.addr, name, t, tcp);
        let m = q("web.demo.svc.cluster.a.", RecordType::A);
        assert_eq!(m.metadata.response_code, ResponseCode::NoError);
        assert!(m.metadata.authoritative);
        assert_eq!(answers(&m), ["web.demo.svc.cluster.a. A 198.51.100.10"]);
        assert_eq!(
            answers(&q("WEB.Demo.svc.cluster.a.", RecordType::AAAA))
                .iter()
                .map(|l| l.to_ascii_lowercase())
                .collect::<Vec<_>>(),
            ["web.demo.svc.cluster.a. aaaa 2001:db8:a:1::a"],
            "case-insensitive"
        );
        // The owner echoes the question's case over UDP and TCP alike.
        assert_eq!(
            answers(&q("WEB.Demo.svc.cluster.a.", RecordType::A)),
            ["WEB.Demo.svc.cluster.a. A 198.51.100.10"],
            "tcp={tcp}"
        );
        let m = q("_http._tcp.web.demo.svc.cluster.a.", RecordType::SRV);
        assert_eq!(
            answers(&m),
            ["_http._tcp.web.demo.svc.cluster.a. SRV 0 100 80 web.demo.svc.cluster.a."]
        );
        let extra: Vec<String> = m
            .additionals
            .iter()
            .map(|r| format!("{} {}", r.name, r.data))
            .collect();
        assert_eq!(
            extra,
            [
                "web.demo.svc.cluster.a. 198.51.100.10",
                "web.demo.svc.cluster.a. 2001:db8:a:1::a"
            ]
        );
        // Headless: ready endpoints only (db-1 is not ready), per-pod names by hostname
        // or by dashed address, SRV per endpoint.
        assert_eq!(
            answers(&q("db.demo.svc.cluster.a.", RecordType::A)),
            [
                "db.demo.svc.cluster.a. A 192.0.2.10",
                "db.demo.svc.cluster.a. A 192.0.2.12"
            ]
        );
        assert_eq!(
            answers(&q("db-0.db.demo.svc.cluster.a.", RecordType::A)),
            ["db-0.db.demo.svc.cluster.a. A 192.0.2.10"]
        );
        assert_eq!(
            answers(&q("192-0-2-12.db.demo.svc.cluster.a.", RecordType::A)),
            ["192-0-2-12.db.demo.svc.cluster.a. A 192.0.2.12"]
        );
        assert_eq!(
            answers(&q("_pg._tcp.db.demo.svc.cluster.a.", RecordType::SRV)),
            [
                "_pg._tcp.db.demo.svc.cluster.a. SRV 0 100 5432 192-0-2-12.db.demo.svc.cluster.a.",
                "_pg._tcp.db.demo.svc.cluster.a. SRV 0 100 5432 db-0.db.demo.svc.cluster.a.",
            ]
        );
        assert_eq!(
            answers(&q(
                "_dns._udp.dns.kube-system.svc.cluster.a.",
                RecordType::SRV
            )),
            [
                "_dns._udp.dns.kube-system.svc.cluster.a. SRV 0 100 53 dns.kube-system.svc.cluster.a."
            ]
        );
        // ExternalName: a CNAME whatever the type asked.
        assert_eq!(
            answers(&q("search.demo.svc.cluster.a.", RecordType::A)),
            ["search.demo.svc.cluster.a. CNAME search.example.com."]
        );
        // PTR of a ClusterIP, an endpoint and an IPv6 ClusterIP.
        assert_eq!(
            answers(&q("10.100.51.198.in-addr.arpa.", RecordType::PTR)),
            ["10.100.51.198.in-addr.arpa. PTR web.demo.svc.cluster.a."]
        );
        assert_eq!(
            answers(&q("10.2.0.192.in-addr.arpa.", RecordType::PTR)),
            ["10.2.0.192.in-addr.arpa. PTR db-0.db.demo.svc.cluster.a."]
        );
        let v6 = "a.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.1.0.0.0.a.0.0.0.8.b.d.0.1.0.0.2.ip6.arpa.";
        assert_eq!(
            answers(&q(v6, RecordType::PTR)),
            [format!("{v6} PTR web.demo.svc.cluster.a.")]
        );
        // Apex: SOA, NS, dns-version TXT.
        let m = q("cluster.a.", RecordType::SOA);
        assert!(matches!(m.answers[0].data, RData::SOA(_)), "{m:?}");
        assert_eq!(
            answers(&q("cluster.a.", RecordType::NS)),
            ["cluster.a. NS ns.dns.cluster.a."]
        );
        assert_eq!(
            answers(&q("dns-version.cluster.a.", RecordType::TXT)),
            ["dns-version.cluster.a. TXT 1.1.0"]
        );
    }
    // The same through dig, UDP and TCP.
    for proto in ["+notcp", "+tcp"] {
        let out = dig(
            dns.addr,
            &[proto, "+short", "_http._tcp.web.demo.svc.cluster.b", "SRV"],
        );
        assert_eq!(out.trim(), "0 100 8080 web.demo.svc.cluster.b.", "{proto}");
        let out = dig(dns.addr, &[proto, "+short", "-x", "192.0.2.141"]);
        assert_eq!(out.trim(), "m-1.mixed.demo.svc.cluster.b.", "{proto}");
        let out = dig(dns.addr, &[proto, "+short", "db.demo.svc.cluster.a", "A"]);
        assert_eq!(out.trim(), "192.0.2.10\n192.0.2.12", "{proto}");
    }
}

#[test]
fn negative_answers_carry_the_soa() {
    let dns = ab();
    for tcp in [false, true] {
        // NXDOMAIN under a zone, never forwarded.
        let m = ask(dns.addr, "nope.demo.svc.cluster.a.", RecordType::A, tcp);
        assert_eq!(m.metadata.response_code, ResponseCode::NXDomain);
        assert!(m.metadata.authoritative);
        assert_eq!(soa_owner(&m), "cluster.a.");
        // NODATA: existing name, other type; an empty non-terminal; a service with no endpoints.
        for (name, t) in [
            ("db.demo.svc.cluster.a.", RecordType::AAAA),
            ("demo.svc.cluster.a.", RecordType::A),
            ("_tcp.web.demo.svc.cluster.a.", RecordType::A),
            ("empty.demo.svc.cluster.a.", RecordType::A),
            ("web.demo.svc.cluster.all.", RecordType::TXT),
        ] {
            let m = ask(dns.addr, name, t, tcp);
            assert_eq!(m.metadata.response_code, ResponseCode::NoError, "{name}");
            assert!(m.answers.is_empty(), "{name}");
            assert!(soa_owner(&m).starts_with("cluster."), "{name}");
        }
        // A PTR for an address of a cluster CIDR that nothing uses.
        let m = ask(
            dns.addr,
            "99.100.51.198.in-addr.arpa.",
            RecordType::PTR,
            tcp,
        );
        assert_eq!(m.metadata.response_code, ResponseCode::NXDomain);
        assert_eq!(soa_owner(&m), "100.51.198.in-addr.arpa.");
    }
    let out = dig(dns.addr, &["nope.demo.svc.cluster.b", "A"]);
    assert!(out.contains("status: NXDOMAIN"), "{out}");
    assert!(out.contains("AUTHORITY SECTION:\ncluster.b."), "{out}");
}

#[test]
fn merged_zone_and_its_conflict_rules() {
    let dns = ab();
    for tcp in [false, true] {
        let q = |name: &str, t| answers(&ask(dns.addr, name, t, tcp));
        // Same service in both clusters: both ClusterIPs, local cluster "a" first.
        let m = ask(dns.addr, "web.demo.svc.cluster.all.", RecordType::A, tcp);
        let order: Vec<String> = m.answers.iter().map(|r| r.data.to_string()).collect();
        assert_eq!(order, ["198.51.100.10", "198.51.100.140"]);
        // Ports that differ: each cluster's own port, each targeting its own cluster name;
        // a port only "a" has lists only "a".
        assert_eq!(
            q("_http._tcp.web.demo.svc.cluster.all.", RecordType::SRV),
            [
                "_http._tcp.web.demo.svc.cluster.all. SRV 0 100 80 web.demo.svc.cluster.a.",
                "_http._tcp.web.demo.svc.cluster.all. SRV 0 100 8080 web.demo.svc.cluster.b.",
            ]
        );
        assert_eq!(
            q("_metrics._tcp.web.demo.svc.cluster.all.", RecordType::SRV),
            ["_metrics._tcp.web.demo.svc.cluster.all. SRV 0 100 9090 web.demo.svc.cluster.a."]
        );
        // ClusterIP in "a", headless in "b": a's ClusterIP plus b's ready endpoints,
        // per-pod names under b's label, SRV targets of both kinds.
        assert_eq!(
            q("mixed.demo.svc.cluster.all.", RecordType::A),
            [
                "mixed.demo.svc.cluster.all. A 192.0.2.140",
                "mixed.demo.svc.cluster.all. A 192.0.2.141",
                "mixed.demo.svc.cluster.all. A 198.51.100.20",
            ]
        );
        assert_eq!(
            q("m-1.b.mixed.demo.svc.cluster.all.", RecordType::A),
            ["m-1.b.mixed.demo.svc.cluster.all. A 192.0.2.141"]
        );
        assert_eq!(
            q("_http._tcp.mixed.demo.svc.cluster.all.", RecordType::SRV),
            [
                "_http._tcp.mixed.demo.svc.cluster.all. SRV 0 100 80 mixed.demo.svc.cluster.a.",
                "_http._tcp.mixed.demo.svc.cluster.all. SRV 0 100 8080 192-0-2-140.b.mixed.demo.svc.cluster.all.",
                "_http._tcp.mixed.demo.svc.cluster.all. SRV 0 100 8080 m-1.b.mixed.demo.svc.cluster.all.",
            ]
        );
        assert_eq!(
            q("_grpc._tcp.mixed.demo.svc.cluster.all.", RecordType::SRV).len(),
            2,
            "grpc exists only in b"
        );
        // ExternalName in "a" contributes nothing; b's ClusterIP stays.
        assert_eq!(
            q("search.demo.svc.cluster.all.", RecordType::A),
            ["search.demo.svc.cluster.all. A 198.51.100.150"]
        );
        // Headless with ready endpoints only in "a".
        assert_eq!(
            q("db-0.a.db.demo.svc.cluster.all.", RecordType::A),
            ["db-0.a.db.demo.svc.cluster.all. A 192.0.2.10"]
        );
        // The clusterset.local alias answers the same.
        assert_eq!(
            q("web.demo.svc.clusterset.local.", RecordType::A),
            [
                "web.demo.svc.clusterset.local. A 198.51.100.10",
                "web.demo.svc.clusterset.local. A 198.51.100.140",
            ]
        );
        let m = ask(dns.addr, "nope.demo.svc.cluster.all.", RecordType::A, tcp);
        assert_eq!(m.metadata.response_code, ResponseCode::NXDomain);
        assert_eq!(soa_owner(&m), "cluster.all.");
    }
    let out = dig(dns.addr, &["+short", "mixed.demo.svc.cluster.all"]);
    assert_eq!(out.lines().count(), 3, "{out}");
}

#[test]
fn local_first_off_and_dropped_cluster() {
    // Cluster "b" is local and localFirst is off: file order (a, b) is kept.
    let config = clusters_ab(
        "  upstreams: [\"127.0.0.1:9\"]\n  localFirst: false\n  dropUnreachableAfter: 300ms\n",
    )
    .replacen("cluster: a", "cluster: b", 1);
    let dns = Dns::start(&config, true);
    let m = ask(dns.addr, "web.demo.svc.cluster.all.", RecordType::A, false);
    let order: Vec<String> = m.answers.iter().map(|r| r.data.to_string()).collect();
    assert_eq!(order, ["198.51.100.10", "198.51.100.140"]);
    // Breaking b's file makes it unreachable; after dropUnreachableAfter it leaves
    // cluster.all, while cluster.b keeps its last good data.
    std::fs::write(dns.dir.join("cluster-b.yaml"), "kind: [broken").unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let m = ask(dns.addr, "web.demo.svc.cluster.all.", RecordType::A, false);
        if answers(&m) == ["web.demo.svc.cluster.all. A 198.51.100.10"] {
            break;
        }
        assert!(Instant::now() < deadline, "b never dropped: {m:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(
        answers(&ask(
            dns.addr,
            "web.demo.svc.cluster.b.",
            RecordType::A,
            false
        )),
        ["web.demo.svc.cluster.b. A 198.51.100.140"]
    );
}

#[test]
fn forwarding_to_an_upstream_passes_rcodes_through() {
    // The upstream is another causeway-dns serving cluster "up".
    let up_dir = tempfile::tempdir().unwrap();
    std::fs::copy(
        std::path::Path::new(FIXTURES).join("cluster-b.yaml"),
        up_dir.path().join("cluster-up.yaml"),
    )
    .unwrap();
    let up = Dns::start_in(
        up_dir.path(),
        "cluster: up\nclusters:\n- name: up\n  source: {file: cluster-up.yaml}\ndns:\n  upstreams: []\n",
        true,
    );
    let dns = Dns::start(
        &clusters_ab(&format!("  upstreams: [\"{}\"]\n", up.addr)),
        true,
    );
    for tcp in [false, true] {
        let m = ask(dns.addr, "web.demo.svc.cluster.up.", RecordType::A, tcp);
        assert_eq!(m.metadata.response_code, ResponseCode::NoError);
        assert_eq!(answers(&m), ["web.demo.svc.cluster.up. A 198.51.100.140"]);
        assert!(!m.metadata.authoritative, "forwarded answers are not ours");
        let m = ask(dns.addr, "nope.demo.svc.cluster.up.", RecordType::A, tcp);
        assert_eq!(
            m.metadata.response_code,
            ResponseCode::NXDomain,
            "rcode passed through"
        );
        // A PTR outside every configured CIDR is forwarded too; the upstream has no
        // upstream of its own and answers REFUSED, which is passed through.
        let m = ask(dns.addr, "1.113.0.203.in-addr.arpa.", RecordType::PTR, tcp);
        assert_eq!(m.metadata.response_code, ResponseCode::Refused);
        assert!(!m.metadata.authoritative);
    }
    let metrics = http_get(dns.metrics, "/metrics").1;
    assert!(
        metrics.contains("causeway_dns_queries_total{zone=\"Forwarded\""),
        "{metrics}"
    );
    assert!(
        metrics.contains("causeway_dns_queries_total{zone=\"Cluster\""),
        "{metrics}"
    );
}

#[test]
fn never_forwards_to_itself() {
    // The only upstream is our own address: it is ignored and other names are REFUSED.
    let tmp = tempfile::tempdir().unwrap();
    for f in ["cluster-a.yaml", "cluster-b.yaml"] {
        std::fs::copy(std::path::Path::new(FIXTURES).join(f), tmp.path().join(f)).unwrap();
    }
    let port = free_port();
    let config = clusters_ab(&format!("  upstreams: [\"127.0.0.1:{port}\"]\n"));
    let dns = Dns::launch(tmp.path(), &config, true, port);
    for tcp in [false, true] {
        let m = ask(dns.addr, "example.invalid.", RecordType::A, tcp);
        assert_eq!(m.metadata.response_code, ResponseCode::Refused);
    }
}

#[test]
fn truncation_over_udp_and_full_answer_over_tcp() {
    let tmp = tempfile::tempdir().unwrap();
    for f in ["cluster-a.yaml", "cluster-b.yaml"] {
        std::fs::copy(std::path::Path::new(FIXTURES).join(f), tmp.path().join(f)).unwrap();
    }
    // A headless service with 100 ready endpoints: 1.6 kB of A records.
    let mut big = String::from(
        "---\napiVersion: v1\nkind: Service\nmetadata: {name: big, namespace: demo}\nspec:\n  clusterIP: None\n---\n\
         apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata:\n  name: big-1\n  namespace: demo\n  labels: {kubernetes.io/service-name: big}\naddressType: IPv4\nendpoints:\n",
    );
    for i in 0..100 {
        big.push_str(&format!("- addresses: [192.0.2.{}]\n", 20 + i));
    }
    let mut a = std::fs::read_to_string(tmp.path().join("cluster-a.yaml")).unwrap();
    a.push_str(&big);
    std::fs::write(tmp.path().join("cluster-a.yaml"), a).unwrap();
    let dns = Dns::start_in(
        tmp.path(),
        &clusters_ab("  upstreams: [\"127.0.0.1:9\"]\n"),
        true,
    );
    let name = "big.demo.svc.cluster.a.";
    for edns in [None, Some(512), Some(1232)] {
        let m = ask_edns(dns.addr, name, RecordType::A, false, edns);
        assert!(m.metadata.truncation, "{edns:?}");
        assert!(m.answers.is_empty());
    }
    let m = ask_edns(dns.addr, name, RecordType::A, false, Some(4096));
    assert!(!m.metadata.truncation);
    assert_eq!(m.answers.len(), 100);
    let m = ask_edns(dns.addr, name, RecordType::A, true, None);
    assert!(!m.metadata.truncation);
    assert_eq!(m.answers.len(), 100);
    // dig retries over TCP on TC by default.
    let out = dig(
        dns.addr,
        &["+short", "+bufsize=512", "big.demo.svc.cluster.a"],
    );
    assert_eq!(out.lines().count(), 100, "{out}");
    let out = dig(dns.addr, &["+ignore", "+noedns", "big.demo.svc.cluster.a"]);
    assert!(out.contains(" tc"), "{out}");
}

#[test]
fn live_update_through_the_file_source() {
    let dns = ab();
    let name = "fresh.demo.svc.cluster.b.";
    let m = ask(dns.addr, name, RecordType::A, false);
    assert_eq!(m.metadata.response_code, ResponseCode::NXDomain);
    let path = dns.dir.join("cluster-b.yaml");
    let mut text = std::fs::read_to_string(&path).unwrap();
    text.push_str("---\napiVersion: v1\nkind: Service\nmetadata: {name: fresh, namespace: demo}\nspec:\n  clusterIP: 198.51.100.199\n");
    std::fs::write(&path, text).unwrap();
    let changed = Instant::now();
    loop {
        let m = ask(dns.addr, name, RecordType::A, false);
        if m.metadata.response_code == ResponseCode::NoError {
            assert_eq!(answers(&m), ["fresh.demo.svc.cluster.b. A 198.51.100.199"]);
            break;
        }
        assert!(
            changed.elapsed() < Duration::from_secs(5),
            "update never served"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    // The merged zone follows too.
    assert_eq!(
        answers(&ask(
            dns.addr,
            "fresh.demo.svc.cluster.all.",
            RecordType::A,
            true
        )),
        ["fresh.demo.svc.cluster.all. A 198.51.100.199"]
    );
}

#[test]
fn garbage_gets_formerr_or_nothing_and_the_server_keeps_answering() {
    let dns = ab();
    let good = query_msg("web.demo.svc.cluster.a.", RecordType::A, None)
        .to_vec()
        .unwrap();
    let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    let mut cases: Vec<Vec<u8>> = vec![
        vec![],
        vec![0],
        good[..5].to_vec(),
        good[..12].to_vec(),
        good[..good.len() - 1].to_vec(),
    ];
    // Bad label lengths, a compression loop in the question, a response bit.
    let mut bad = good.clone();
    bad[12] = 0x3f;
    cases.push(bad);
    let mut lp = good[..12].to_vec();
    lp.extend_from_slice(&[0xc0, 0x0c, 0, 1, 0, 1]);
    cases.push(lp);
    for _ in 0..200 {
        let len = (next() % 80) as usize;
        cases.push((0..len).map(|_| next() as u8).collect());
    }
    for pkt in &cases {
        if let Some(reply) = udp_raw(dns.addr, pkt, Duration::from_millis(100)) {
            assert!(reply.len() >= 12, "a reply is at least a header");
            assert_eq!(reply[..2], pkt[..2], "the ID is echoed");
            assert!(reply[2] & 0x80 != 0, "QR set");
        }
    }
    // Garbage over TCP, then a good query on a new connection.
    let _ = tcp_raw(dns.addr, &[1, 2, 3]);
    for tcp in [false, true] {
        let m = ask(dns.addr, "web.demo.svc.cluster.a.", RecordType::A, tcp);
        assert_eq!(answers(&m), ["web.demo.svc.cluster.a. A 198.51.100.10"]);
    }
    // A header that decodes with a question cut short gets FORMERR.
    let mut cut = good[..12].to_vec();
    cut.extend_from_slice(&[3, b'w', b'e']);
    let reply = udp_raw(dns.addr, &cut, Duration::from_secs(2)).expect("formerr");
    assert_eq!(reply[3] & 0xf, 1, "FORMERR");
}

#[test]
fn not_ready_until_every_cluster_synced() {
    let tmp = tempfile::tempdir().unwrap();
    std::fs::copy(
        std::path::Path::new(FIXTURES).join("cluster-a.yaml"),
        tmp.path().join("cluster-a.yaml"),
    )
    .unwrap();
    let dns = Dns::start_in(
        tmp.path(),
        &clusters_ab("  upstreams: [\"127.0.0.1:9\"]\n"),
        false,
    );
    assert_eq!(dns.wait_readyz(200, Duration::from_millis(500)), 503);
    // Zone of the unsynced cluster and the merged zone: SERVFAIL, not NXDOMAIN.
    let m = ask(dns.addr, "web.demo.svc.cluster.b.", RecordType::A, false);
    assert_eq!(m.metadata.response_code, ResponseCode::ServFail);
    let m = ask(dns.addr, "web.demo.svc.cluster.all.", RecordType::A, false);
    assert_eq!(m.metadata.response_code, ResponseCode::ServFail);
    std::fs::copy(
        std::path::Path::new(FIXTURES).join("cluster-b.yaml"),
        tmp.path().join("cluster-b.yaml"),
    )
    .unwrap();
    assert_eq!(dns.wait_readyz(200, Duration::from_secs(10)), 200);
    // Ready means the index that answers was built from both clusters: no SERVFAIL after.
    let body = http_get(dns.metrics, "/readyz").1;
    assert!(body.contains("\"componentReady\": true"), "{body}");
    assert_eq!(
        answers(&ask(
            dns.addr,
            "web.demo.svc.cluster.b.",
            RecordType::A,
            false
        )),
        ["web.demo.svc.cluster.b. A 198.51.100.140"]
    );
    let m = ask(dns.addr, "web.demo.svc.cluster.all.", RecordType::A, false);
    assert_eq!(m.metadata.response_code, ResponseCode::NoError);
}

#[test]
fn a_burst_from_many_clients_gets_every_answer_to_its_own_client() {
    // Queries arrive faster than they are answered, so the server reads and answers
    // them in batches; each reply must still reach the client and ID that asked.
    use std::collections::BTreeMap;
    use std::net::{Ipv4Addr, UdpSocket};
    let dns = ab();
    let names = [
        ("web.demo.svc.cluster.a.", RecordType::A, "A 198.51.100.10"),
        ("web.demo.svc.cluster.b.", RecordType::A, "A 198.51.100.140"),
        (
            "web.demo.svc.cluster.a.",
            RecordType::AAAA,
            "AAAA 2001:db8:a:1::a",
        ),
    ];
    let clients: Vec<UdpSocket> = (0..8)
        .map(|_| {
            let s = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
            s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
            s
        })
        .collect();
    let per_client = 60u16;
    for (c, s) in clients.iter().enumerate() {
        for i in 0..per_client {
            let (name, rtype, _) = names[usize::from(i) % names.len()];
            let mut m = query_msg(name, rtype, Some(1232));
            m.metadata.id = (c as u16) << 8 | i;
            s.send_to(&m.to_vec().unwrap(), dns.addr).unwrap();
        }
        // A datagram too short to be DNS in the middle of the burst: dropped.
        s.send_to(&[0xab, 0xcd, 0x01], dns.addr).unwrap();
    }
    for (c, s) in clients.iter().enumerate() {
        let mut seen = BTreeMap::new();
        let mut buf = vec![0u8; 4096];
        while seen.len() < usize::from(per_client) {
            let (n, _) = s.recv_from(&mut buf).unwrap_or_else(|e| {
                panic!("client {c}: {} of {per_client} answers: {e}", seen.len())
            });
            let m = hickory_server::proto::op::Message::from_vec(&buf[..n]).unwrap();
            assert_eq!(
                usize::from(m.metadata.id >> 8),
                c,
                "reply for another client"
            );
            let i = m.metadata.id & 0xff;
            let (name, _, data) = names[usize::from(i) % names.len()];
            assert_eq!(answers(&m), [format!("{name} {data}")], "id {i}");
            assert!(seen.insert(i, ()).is_none(), "id {i} answered twice");
        }
    }
    // The server still answers one-by-one afterwards.
    assert_eq!(
        answers(&ask(
            dns.addr,
            "web.demo.svc.cluster.a.",
            RecordType::A,
            false
        )),
        ["web.demo.svc.cluster.a. A 198.51.100.10"]
    );
}
