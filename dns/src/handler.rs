//! The hickory-server request handler: TCP queries, and UDP queries the fast path passes
//! on (forwarded names, unusual queries). Names in our zones are answered from the same
//! pre-encoded index as the fast path, so both paths always agree.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Instant;

use arc_swap::ArcSwap;
use hickory_server::net::runtime::Time;
use hickory_server::net::xfer::Protocol;
use hickory_server::proto::op::{
    Edns, Header, HeaderCounts, Message, Metadata, OpCode, ResponseCode,
};
use hickory_server::proto::rr::{DNSClass, Record};
use hickory_server::server::{Request, RequestHandler, ResponseHandler, ResponseInfo};
use hickory_server::zone_handler::MessageResponseBuilder;
use ipnet::IpNet;

use crate::forward::Forwarder;
use crate::metrics::{Metrics, Proto, Zone};
use crate::wire::{self, Parsed, TCP_MAX};
use crate::zone_index::{Index, Lookup, ZoneKind};

/// What every query path shares.
pub struct Shared {
    pub index: Arc<ArcSwap<Index>>,
    pub forwarder: Forwarder,
    pub metrics: Metrics,
    /// Sources whose queries for names outside our zones are forwarded.
    allow_from: Vec<IpNet>,
    our_edns: Edns,
    /// Our OPT record in a BADVERS answer: version 0, extended RCODE 1.
    badvers_edns: Edns,
}

impl Shared {
    pub fn new(
        index: Arc<ArcSwap<Index>>,
        forwarder: Forwarder,
        metrics: Metrics,
        allow_from: Vec<IpNet>,
    ) -> Arc<Self> {
        let mut our_edns = Edns::new();
        our_edns.set_max_payload(wire::OUR_UDP_PAYLOAD);
        let mut badvers_edns = our_edns.clone();
        badvers_edns.set_rcode_high(ResponseCode::BADVERS.high());
        Arc::new(Self {
            index,
            forwarder,
            metrics,
            allow_from,
            our_edns,
            badvers_edns,
        })
    }

    /// True when queries from `src` may be forwarded (IPv4-mapped IPv6 sources, as a
    /// dual-stack socket reports IPv4 clients, count as IPv4).
    pub fn may_forward(&self, src: IpAddr) -> bool {
        let src = src.to_canonical();
        self.allow_from.iter().any(|net| net.contains(&src))
    }
}

/// The [`RequestHandler`] of the hickory-server [`hickory_server::Server`].
#[derive(Clone)]
pub struct DnsHandler(pub Arc<Shared>);

fn err_info(request: &Request, code: ResponseCode) -> ResponseInfo {
    let mut metadata = Metadata::response_from_request(&request.metadata);
    metadata.response_code = code;
    ResponseInfo::from(Header {
        metadata,
        counts: HeaderCounts::default(),
    })
}

/// A standard query for `name`/`qtype` in wire form, so that the fast-path encoder can
/// answer a query hickory decoded (one codec for authoritative answers). The name keeps
/// the question's case: answer owners point at it, so TCP echoes the case as UDP does.
fn synthetic_query(id: u16, flags: u16, name: &str, qtype: u16) -> Vec<u8> {
    let mut pkt = Vec::with_capacity(64);
    pkt.extend_from_slice(&id.to_be_bytes());
    pkt.extend_from_slice(&(flags & 0x0110).to_be_bytes());
    pkt.extend_from_slice(&[0, 1, 0, 0, 0, 0, 0, 0]);
    crate::names::push_wire(name, &mut pkt);
    pkt.extend_from_slice(&qtype.to_be_bytes());
    pkt.extend_from_slice(&1u16.to_be_bytes());
    pkt
}

#[async_trait::async_trait]
impl RequestHandler for DnsHandler {
    async fn handle_request<R: ResponseHandler, T: Time>(
        &self,
        request: &Request,
        mut response_handle: R,
    ) -> ResponseInfo {
        let started = Instant::now();
        let shared = &self.0;
        let proto = if request.protocol() == Protocol::Udp {
            Proto::Udp
        } else {
            Proto::Tcp
        };
        // RFC 6891 6.1.3: an OPT version we do not implement gets BADVERS, with our OPT
        // (version 0, extended RCODE 1) in the answer.
        let badvers = request.edns.as_ref().is_some_and(|e| e.version() > 0);
        let mut builder = MessageResponseBuilder::from_message_request(request);
        if request.edns.is_some() {
            builder.edns(if badvers {
                &shared.badvers_edns
            } else {
                &shared.our_edns
            });
        }
        let mut meta = Metadata::response_from_request(&request.metadata);
        meta.recursion_available = true;
        let reply_code = |code: ResponseCode| {
            let mut m = meta;
            m.response_code = code;
            m
        };
        let (zone, sent) = 'answer: {
            if badvers {
                break 'answer (
                    Zone::Invalid,
                    response_handle
                        .send_response(builder.build_no_records(reply_code(ResponseCode::BADVERS)))
                        .await,
                );
            }
            if request.metadata.op_code != OpCode::Query {
                break 'answer (
                    Zone::Invalid,
                    response_handle
                        .send_response(builder.build_no_records(reply_code(ResponseCode::NotImp)))
                        .await,
                );
            }
            let Ok(info) = request.request_info() else {
                break 'answer (
                    Zone::Invalid,
                    response_handle
                        .send_response(builder.build_no_records(reply_code(ResponseCode::FormErr)))
                        .await,
                );
            };
            if info.query.query_class() != DNSClass::IN {
                break 'answer (
                    Zone::Invalid,
                    response_handle
                        .send_response(builder.build_no_records(reply_code(ResponseCode::Refused)))
                        .await,
                );
            }
            // The original name, not hickory's lower-cased one: answers echo its case.
            let qname = info.query.original().name().to_string();
            let qtype = u16::from(info.query.query_type());
            let synth = synthetic_query(request.metadata.id, 0, &qname, qtype);
            let Parsed::Query(q) = wire::parse(&synth) else {
                break 'answer (
                    Zone::Invalid,
                    response_handle
                        .send_response(builder.build_no_records(reply_code(ResponseCode::FormErr)))
                        .await,
                );
            };
            let index = shared.index.load();
            match index.lookup(&q.name, q.qtype) {
                Lookup::Ours(kind, answer) => {
                    let mut buf = Vec::with_capacity(512);
                    wire::write_response(&q, &answer, TCP_MAX, &mut buf);
                    let msg = match Message::from_vec(&buf) {
                        Ok(m) => m,
                        Err(e) => {
                            tracing::error!(error = %e, "cannot decode our own answer");
                            break 'answer (
                                Zone::Invalid,
                                response_handle
                                    .send_response(
                                        builder
                                            .build_no_records(reply_code(ResponseCode::ServFail)),
                                    )
                                    .await,
                            );
                        }
                    };
                    let mut m = reply_code(msg.metadata.response_code);
                    m.authoritative = msg.metadata.authoritative;
                    let zone = match kind {
                        ZoneKind::Cluster => Zone::Cluster,
                        ZoneKind::All => Zone::All,
                    };
                    let none: [&Record; 0] = [];
                    (
                        zone,
                        response_handle
                            .send_response(builder.build(
                                m,
                                &msg.answers,
                                &msg.authorities,
                                none,
                                &msg.additionals,
                            ))
                            .await,
                    )
                }
                Lookup::NotOurs if !shared.may_forward(request.src().ip()) => {
                    tracing::debug!(src = %request.src(), name = %qname, "refused: source not in dns.allowFrom");
                    break 'answer (
                        Zone::Forwarded,
                        response_handle
                            .send_response(
                                builder.build_no_records(reply_code(ResponseCode::Refused)),
                            )
                            .await,
                    );
                }
                Lookup::NotOurs => {
                    drop(index);
                    let metrics = shared.metrics.clone();
                    let fwd = shared
                        .forwarder
                        .forward(
                            info.query.name().into(),
                            info.query.query_type(),
                            |reason| metrics.upstream_error(reason),
                        )
                        .await;
                    let none: [&Record; 0] = [];
                    (
                        Zone::Forwarded,
                        response_handle
                            .send_response(builder.build(
                                reply_code(fwd.rcode),
                                &fwd.answers,
                                &fwd.authorities,
                                none,
                                none,
                            ))
                            .await,
                    )
                }
            }
        };
        match sent {
            Ok(info) => {
                shared.metrics.query(
                    zone,
                    u16::from(info.response_code) as u8,
                    proto,
                    started.elapsed(),
                );
                info
            }
            Err(e) => {
                tracing::debug!(error = %e, "cannot send response");
                err_info(request, ResponseCode::ServFail)
            }
        }
    }
}
