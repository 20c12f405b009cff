//! Bounded mutation fuzzing of what causeway-dns reads from the network (see
//! `causeway_tests::fuzz`): DNS queries through the fast path (parse, index lookup, response
//! encoding) and hickory's decoder behind the slow path, in process; the same mutated
//! queries over UDP and TCP against the real binary, which must keep answering (a panic
//! ends it with status 70); and AdmissionReview bodies through the webhook's decision.
//!
//! A longer run: `CAUSEWAY_FUZZ_CASES=2000000 cargo test -p causeway-dns --test fuzz_dns`.

mod common;

use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use causeway_dns::index_builder::IndexBuilder;
use causeway_dns::webhook::patch::{self, Match, PatchSettings};
use causeway_dns::webhook::review::{self, Incoming, Subject};
use causeway_dns::wire::{self, Parsed};
use causeway_dns::zone_index::Lookup;
use causeway_shared::catalog::{Catalog, ClusterStatus};
use causeway_shared::config::Config;
use causeway_shared::source::parse_objects;
use causeway_tests::fuzz::{self, Mutator};
use common::{Dns, FIXTURES, answers, ask, clusters_ab, query_msg};
use hickory_server::net::xfer::Protocol;
use hickory_server::proto::op::Message;
use hickory_server::proto::rr::RecordType;
use hickory_server::server::Request;

/// Valid queries of every kind the server answers, with and without EDNS.
fn query_corpus() -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    for (name, t) in [
        ("web.demo.svc.cluster.a.", RecordType::A),
        ("web.demo.svc.cluster.all.", RecordType::AAAA),
        ("m-1.mixed.demo.svc.cluster.b.", RecordType::A),
        ("_http._tcp.mixed.demo.svc.cluster.b.", RecordType::SRV),
        ("cluster.all.", RecordType::SOA),
        ("cluster.b.", RecordType::NS),
        ("10.100.51.198.in-addr.arpa.", RecordType::PTR),
        ("nothing.demo.svc.cluster.a.", RecordType::TXT),
        ("web.demo.svc.clusterset.local.", RecordType::ANY),
        ("example.org.", RecordType::A),
    ] {
        for edns in [None, Some(1232)] {
            out.push(query_msg(name, t, edns).to_vec().unwrap());
        }
    }
    out
}

fn binary_mutator() -> Mutator {
    Mutator {
        tokens: vec![
            vec![0xc0, 0x0c],
            vec![0xc0, 0xff],
            vec![0x3f],
            vec![0, 41, 0x10, 0, 0, 0xff, 0, 0, 0, 0],
            vec![0, 0, 0x29, 0x04, 0xd0, 0, 0, 0x80, 0, 0, 0],
            b"\x07cluster\x03all\x00".to_vec(),
            vec![0xff; 8],
        ],
    }
}

#[test]
fn queries_through_the_fast_and_slow_paths_never_panic() {
    let text = clusters_ab("  upstreams: [\"127.0.0.1:9\"]\n  clustersetAlias: true\n");
    let dir = Path::new(FIXTURES);
    let config = Arc::new(Config::from_yaml(&dir.join("config.yaml"), &text).unwrap());
    let catalog = Catalog::for_config(&config);
    for c in ["a", "b"] {
        let yaml = std::fs::read_to_string(dir.join(format!("cluster-{c}.yaml"))).unwrap();
        let (data, _) = parse_objects(&yaml).unwrap();
        let status = ClusterStatus {
            synced: true,
            connected: true,
            ..Default::default()
        };
        catalog.publish(c, Arc::new(data), status);
    }
    let index = IndexBuilder::new(config).build(&catalog.snapshot(), tokio::time::Instant::now());
    assert!(index.ready());
    let src: SocketAddr = (Ipv4Addr::LOCALHOST, 5353).into();
    let (mut fast, mut slow) = (0, 0);
    let mut out = Vec::with_capacity(4096);
    let ran = fuzz::run(
        "dns-query",
        &query_corpus(),
        &binary_mutator(),
        fuzz::cases(20_000),
        |pkt| {
            match wire::parse(pkt) {
                Parsed::Drop => {}
                Parsed::Query(q) => {
                    if let Lookup::Ours(_, answer) = index.lookup(&q.name, q.qtype) {
                        fast += 1;
                        out.clear();
                        wire::write_response(&q, &answer, wire::udp_limit(&q), &mut out);
                        assert!(out.len() >= 12 && out[..2] == pkt[..2], "header and ID");
                        assert!(out.len() <= wire::udp_limit(&q), "fits the client's limit");
                        // What we write, a resolver can read.
                        Message::from_vec(&out).expect("our answer decodes");
                    }
                }
                Parsed::Slow => {
                    slow += 1;
                    let _ = Request::from_bytes(pkt.to_vec(), src, Protocol::Udp);
                }
            }
        },
    );
    println!("dns-query: {ran} inputs, {fast} answered on the fast path, {slow} to the slow path");
    assert!(fast > ran / 100 && slow > ran / 20, "both paths reached");
}

#[test]
fn the_server_keeps_answering_through_mutated_queries_over_udp_and_tcp() {
    let mut dns = Dns::start(
        &clusters_ab("  upstreams: [\"127.0.0.1:9\"]\n  clustersetAlias: true\n"),
        true,
    );
    let sock = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
    sock.set_read_timeout(Some(Duration::from_millis(1)))
        .unwrap();
    let mut buf = [0u8; 4096];
    let mut tcp_sent = 0;
    let ran = fuzz::run(
        "dns-wire",
        &query_corpus(),
        &binary_mutator(),
        fuzz::cases(3_000),
        |pkt| {
            let _ = sock.send_to(pkt, dns.addr);
            // Drain what came back, without waiting for it.
            while sock.recv_from(&mut buf).is_ok() {}
            if pkt.len() % 16 == 0 {
                // Over TCP too, with a length prefix that is sometimes wrong.
                use std::io::Write;
                if let Ok(mut s) =
                    std::net::TcpStream::connect_timeout(&dns.addr, Duration::from_secs(1))
                {
                    let len = if pkt.len() % 32 == 0 {
                        pkt.len() + 7
                    } else {
                        pkt.len()
                    };
                    let mut framed = (len as u16).to_be_bytes().to_vec();
                    framed.extend_from_slice(pkt);
                    let _ = s.write_all(&framed);
                    tcp_sent += 1;
                }
            }
        },
    );
    println!("dns-wire: {ran} datagrams, {tcp_sent} also over TCP");
    let mut child = dns.child_status();
    assert!(child.is_none(), "causeway-dns exited: {child:?}");
    for tcp in [false, true] {
        let m = ask(dns.addr, "web.demo.svc.cluster.a.", RecordType::A, tcp);
        assert_eq!(answers(&m), ["web.demo.svc.cluster.a. A 198.51.100.10"]);
    }
    child = dns.child_status();
    assert!(child.is_none(), "{child:?}");
}

#[test]
fn admission_reviews_never_panic_the_webhook() {
    let dir = Path::new(FIXTURES).join("webhook");
    let corpus: Vec<Vec<u8>> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| std::fs::read(e.unwrap().path()).unwrap())
        .collect();
    assert!(corpus.len() >= 6);
    let settings = PatchSettings {
        nameserver: "192.0.2.53".parse().unwrap(),
        cluster_domain: "cluster.local".into(),
        selector: Match {
            key: "causeway.io/dns".into(),
            value: "enabled".into(),
        },
        opt_out: Match {
            key: "causeway.io/dns".into(),
            value: "disabled".into(),
        },
        ndots: 5,
    };
    let labels = [("causeway.io/dns".to_string(), "enabled".to_string())].into();
    let (mut decided, mut unreadable, mut refused) = (0, 0, 0);
    let ran = fuzz::run(
        "admission",
        &corpus,
        &Mutator::text(),
        fuzz::cases(3_000),
        |body| match review::parse(body) {
            Ok(Incoming::Request(request)) => {
                decided += 1;
                let decision = match review::subject(&request) {
                    Ok(Subject::Pod { pod, namespace }) => {
                        patch::plan(&pod, &namespace, Some(&labels), &settings)
                    }
                    Ok(Subject::Skip(reason)) => patch::Decision::Skip(reason),
                    Err(_) => return,
                };
                if let Ok(answer) = review::respond(&request, &decision) {
                    serde_json::to_vec(&answer).expect("the answer serializes");
                }
            }
            Ok(Incoming::Unreadable { uid, .. }) => {
                unreadable += 1;
                serde_json::to_vec(&review::allow_uid(&uid)).unwrap();
            }
            Err(e) => {
                refused += 1;
                assert!(!e.to_string().is_empty());
            }
        },
    );
    println!(
        "admission: {ran} bodies, {decided} decided, {unreadable} unreadable, {refused} refused"
    );
    assert!(
        decided > 10 && refused > 10,
        "the mutations reach both outcomes"
    );
}
