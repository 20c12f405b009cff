//! The fast-path codec against hickory's decoder: what we write, hickory reads back.

use super::*;
use hickory_server::proto::op::{Edns, Message, MessageType, OpCode, Query as HQuery};
use hickory_server::proto::rr::{Name, RecordType};

fn query(name: &str, t: RecordType, edns: Option<u16>) -> Vec<u8> {
    let mut m = Message::new(7, MessageType::Query, OpCode::Query);
    m.metadata.recursion_desired = true;
    m.add_query(HQuery::query(Name::from_ascii(name).unwrap(), t));
    if let Some(size) = edns {
        let mut e = Edns::new();
        e.set_max_payload(size);
        m.edns = Some(e);
    }
    m.to_vec().unwrap()
}

fn srv_set() -> RrSet {
    let rrs: Vec<Rr> = (0..3)
        .map(|i| {
            Rr::new(
                "_http._tcp.web.demo.svc.cluster.a.",
                Data::Srv {
                    priority: 0,
                    weight: 100,
                    port: 80,
                    target: format!("web-{i}.demo.svc.cluster.a."),
                },
            )
        })
        .collect();
    let add: Vec<Rr> = (0..3)
        .map(|i| {
            Rr::addr(
                format!("web-{i}.demo.svc.cluster.a."),
                format!("192.0.2.{i}").parse().unwrap(),
            )
        })
        .collect();
    encode_set(
        rtype::SRV,
        &rrs.iter().collect::<Vec<_>>(),
        &add.iter().collect::<Vec<_>>(),
        5,
    )
}

#[test]
fn answer_decodes_with_hickory() {
    let pkt = query(
        "_HTTP._tcp.web.demo.svc.cluster.a.",
        RecordType::SRV,
        Some(1232),
    );
    let Parsed::Query(q) = parse(&pkt) else {
        panic!("fast path")
    };
    assert_eq!(
        q.name.as_bytes(),
        crate::names::to_wire("_http._tcp.web.demo.svc.cluster.a.")
    );
    assert_eq!(q.edns, Some(crate::wire::Edns { payload: 1232 }));
    let set = srv_set();
    let mut out = Vec::new();
    let (rc, tc) = write_response(
        &q,
        &Answer::Records(std::slice::from_ref(&set)),
        1232,
        &mut out,
    );
    assert_eq!((rc, tc), (rcode::NOERROR, false));
    let m = Message::from_vec(&out).unwrap();
    assert_eq!(m.metadata.id, 7);
    assert!(m.metadata.authoritative && m.metadata.recursion_desired);
    assert_eq!(m.answers.len(), 3);
    assert_eq!(
        m.answers[0].name.to_string(),
        "_HTTP._tcp.web.demo.svc.cluster.a."
    );
    assert_eq!(
        m.answers[2].data.to_string(),
        "0 100 80 web-2.demo.svc.cluster.a."
    );
    assert_eq!(m.additionals.len(), 3);
    assert_eq!(m.edns.unwrap().max_payload(), OUR_UDP_PAYLOAD);
}

#[test]
fn truncation_drops_additional_first_then_sets_tc() {
    let pkt = query("_http._tcp.web.demo.svc.cluster.a.", RecordType::SRV, None);
    let Parsed::Query(q) = parse(&pkt) else {
        panic!("fast path")
    };
    let set = srv_set();
    let mut out = Vec::new();
    let full = {
        write_response(
            &q,
            &Answer::Records(std::slice::from_ref(&set)),
            TCP_MAX,
            &mut out,
        );
        out.len()
    };
    let (_, tc) = write_response(
        &q,
        &Answer::Records(std::slice::from_ref(&set)),
        full - 1,
        &mut out,
    );
    let m = Message::from_vec(&out).unwrap();
    assert!(!tc && !m.metadata.truncation);
    assert_eq!((m.answers.len(), m.additionals.len()), (3, 0));
    let (_, tc) = write_response(
        &q,
        &Answer::Records(std::slice::from_ref(&set)),
        60,
        &mut out,
    );
    let m = Message::from_vec(&out).unwrap();
    assert!(tc && m.metadata.truncation);
    assert!(m.answers.is_empty());
}

#[test]
fn unusual_packets_leave_the_fast_path() {
    let good = query("a.b.", RecordType::A, None);
    assert!(matches!(parse(&good), Parsed::Query(_)));
    assert!(matches!(parse(&good[..11]), Parsed::Drop));
    let mut response = good.clone();
    response[2] |= 0x80;
    assert!(matches!(parse(&response), Parsed::Drop));
    let mut notify = good.clone();
    notify[2] |= 4 << 3;
    assert!(matches!(parse(&notify), Parsed::Slow));
    assert!(matches!(parse(&good[..good.len() - 2]), Parsed::Slow));
    let mut pointer = good[..12].to_vec();
    pointer.extend_from_slice(&[0xc0, 12, 0, 1, 0, 1]);
    assert!(matches!(parse(&pointer), Parsed::Slow));
    let mut chaos = good.clone();
    let n = chaos.len();
    chaos[n - 1] = 3;
    assert!(matches!(parse(&chaos), Parsed::Slow));
}
