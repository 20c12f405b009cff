//! The UDP fast path: one SO_REUSEPORT socket per core, each read by its own thread,
//! answering from the index straight into a reused buffer. Queries it cannot answer
//! (forwarded names, unusual queries) go to the hickory-server handler on the runtime.

use std::io::{IoSlice, IoSliceMut};
use std::net::{SocketAddr, UdpSocket};
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::time::{Duration, Instant};

use hickory_server::net::NetError;
use hickory_server::net::runtime::TokioTime;
use hickory_server::net::xfer::Protocol;
use hickory_server::proto::rr::Record;
use hickory_server::proto::serialize::binary::BinEncoder;
use hickory_server::server::{Request, RequestHandler, ResponseHandler, ResponseInfo};
use hickory_server::zone_handler::MessageResponse;
use nix::sys::socket::{
    ControlMessage, MsgFlags, MultiHeaders, SockaddrStorage, recvmmsg, sendmmsg,
};
use socket2::{Domain, Socket, Type};

use crate::handler::{DnsHandler, Shared};
use crate::metrics::{LocalCounts, Proto, Zone};
use crate::wire::{self, Parsed, rcode};
use crate::zone_index::{Lookup, ZoneKind};

/// Why the UDP listener could not start.
#[derive(Debug, thiserror::Error)]
pub enum UdpError {
    /// A socket could not be created, configured or bound.
    #[error("cannot listen on udp {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
}

/// Binds `count` sockets sharing `addr` (SO_REUSEPORT; the kernel spreads clients over
/// them). With port 0 the first socket picks the port and the others join it.
pub fn bind(addr: SocketAddr, count: usize) -> Result<Vec<UdpSocket>, UdpError> {
    let mut sockets = Vec::with_capacity(count);
    let mut at = addr;
    for _ in 0..count.max(1) {
        let here = at;
        let err = move |source| UdpError::Bind { addr: here, source };
        let s = Socket::new(Domain::for_address(at), Type::DGRAM, None).map_err(err)?;
        s.set_reuse_port(true).map_err(err)?;
        if at.is_ipv6() {
            s.set_only_v6(true).map_err(err)?;
        }
        // Bursts from many clients: a larger receive queue drops fewer queries.
        let _ = s.set_recv_buffer_size(4 << 20);
        s.bind(&at.into()).map_err(err)?;
        let socket: UdpSocket = s.into();
        if at.port() == 0 {
            at = socket.local_addr().map_err(err)?;
        }
        // Idle threads wake to flush their counters.
        socket
            .set_read_timeout(Some(Duration::from_millis(200)))
            .map_err(err)?;
        sockets.push(socket);
    }
    Ok(sockets)
}

/// Datagrams read (and answers written) per system call.
const BATCH: usize = 32;
/// Largest query read; longer datagrams are cut and so fail to parse (FORMERR or drop).
const MAX_QUERY: usize = 4096;

/// Runs one socket's loop on the current thread, forever. Queries are read in batches
/// (`recvmmsg`, returning as soon as one is there) and the fast path's answers sent in
/// one `sendmmsg`: two system calls per batch instead of two per query.
pub fn serve(socket: Arc<UdpSocket>, shared: Arc<Shared>, runtime: tokio::runtime::Handle) {
    let fd = socket.as_raw_fd();
    let mut recv = vec![[0u8; MAX_QUERY]; BATCH];
    let mut outs: Vec<Vec<u8>> = (0..BATCH).map(|_| Vec::with_capacity(512)).collect();
    let mut recv_headers = MultiHeaders::<SockaddrStorage>::preallocate(BATCH, None);
    let mut send_headers = MultiHeaders::<SockaddrStorage>::preallocate(BATCH, None);
    let mut got: Vec<(usize, Option<SockaddrStorage>)> = Vec::with_capacity(BATCH);
    let mut replies: Vec<(usize, SockaddrStorage)> = Vec::with_capacity(BATCH);
    let mut counts = LocalCounts::default();
    let mut n_batches: u32 = 0;
    loop {
        got.clear();
        {
            let mut slices: Vec<[IoSliceMut<'_>; 1]> =
                recv.iter_mut().map(|b| [IoSliceMut::new(b)]).collect();
            match recvmmsg(
                fd,
                &mut recv_headers,
                slices.iter_mut(),
                MsgFlags::MSG_WAITFORONE,
                None,
            ) {
                Ok(results) => got.extend(results.map(|r| (r.bytes, r.address))),
                Err(nix::errno::Errno::EAGAIN | nix::errno::Errno::EINTR) => {
                    // The read timeout: idle, so flush the counters.
                    counts.flush(&shared.metrics);
                    continue;
                }
                Err(e) => {
                    tracing::debug!(error = %e, "udp receive failed");
                    continue;
                }
            }
        }
        // Latency is sampled (reading the clock per query costs more than it tells): one
        // batch in 64 is timed from its arrival to its answers' send, the figure of its
        // last query.
        n_batches = n_batches.wrapping_add(1);
        let sample = n_batches.is_multiple_of(64).then(Instant::now);
        replies.clear();
        let index = shared.index.load();
        for (slot, &(len, addr)) in got.iter().enumerate() {
            let Some(src) = addr.and_then(|a| socket_addr(&a)) else {
                continue;
            };
            let pkt = &recv[slot][..len.min(MAX_QUERY)];
            match wire::parse(pkt) {
                Parsed::Drop => continue,
                Parsed::Query(q) => {
                    if let Lookup::Ours(kind, answer) = index.lookup(&q.name, q.qtype) {
                        let out = &mut outs[slot];
                        let (rc, truncated) =
                            wire::write_response(&q, &answer, wire::udp_limit(&q), out);
                        replies.push((slot, addr.expect("checked above")));
                        let zone = match kind {
                            ZoneKind::Cluster => Zone::Cluster,
                            ZoneKind::All => Zone::All,
                        };
                        counts.count(&shared.metrics, zone, rc, truncated);
                        continue;
                    }
                }
                Parsed::Slow => {}
            }
            slow_path(pkt, src, &socket, &shared, &runtime, &mut counts);
        }
        drop(index);
        if !replies.is_empty() {
            let slices: Vec<[IoSlice<'_>; 1]> = replies
                .iter()
                .map(|(slot, _)| [IoSlice::new(&outs[*slot])])
                .collect();
            let addrs: Vec<Option<SockaddrStorage>> =
                replies.iter().map(|(_, a)| Some(*a)).collect();
            let none: [ControlMessage<'_>; 0] = [];
            if let Err(e) = sendmmsg(
                fd,
                &mut send_headers,
                slices.iter(),
                &addrs,
                none,
                MsgFlags::empty(),
            ) {
                tracing::debug!(error = %e, "udp send failed");
            }
        }
        if let Some(t) = sample {
            shared.metrics.latency(Proto::Udp, t.elapsed());
        }
    }
}

fn socket_addr(a: &SockaddrStorage) -> Option<SocketAddr> {
    if let Some(v4) = a.as_sockaddr_in() {
        return Some(SocketAddr::V4((*v4).into()));
    }
    a.as_sockaddr_in6().map(|v6| SocketAddr::V6((*v6).into()))
}

/// Hands a packet to the hickory-server handler; packets it cannot decode get FORMERR.
fn slow_path(
    pkt: &[u8],
    src: SocketAddr,
    socket: &Arc<UdpSocket>,
    shared: &Arc<Shared>,
    runtime: &tokio::runtime::Handle,
    counts: &mut LocalCounts,
) {
    match Request::from_bytes(pkt.to_vec(), src, Protocol::Udp) {
        Ok(request) => {
            let responder = UdpResponder {
                socket: socket.clone(),
                dst: src,
                max: usize::from(request.max_payload()),
            };
            let handler = DnsHandler(shared.clone());
            runtime.spawn(async move {
                handler
                    .handle_request::<_, TokioTime>(&request, responder)
                    .await;
            });
        }
        Err(_) => {
            // The header was read (parse() drops shorter packets): echo the ID with FORMERR.
            let mut out = [0u8; wire::HEADER_LEN];
            out[..2].copy_from_slice(&pkt[..2]);
            out[2] = 0x80 | (pkt[2] & 0x79);
            out[3] = rcode::FORMERR;
            let _ = socket.send_to(&out, src);
            counts.count(&shared.metrics, Zone::Invalid, rcode::FORMERR, false);
        }
    }
}

/// Sends hickory-server responses on our own UDP socket, truncated to the client's size.
#[derive(Clone)]
struct UdpResponder {
    socket: Arc<UdpSocket>,
    dst: SocketAddr,
    max: usize,
}

#[async_trait::async_trait]
impl ResponseHandler for UdpResponder {
    async fn send_response<'a>(
        &mut self,
        response: MessageResponse<
            '_,
            'a,
            impl Iterator<Item = &'a Record> + Send + 'a,
            impl Iterator<Item = &'a Record> + Send + 'a,
            impl Iterator<Item = &'a Record> + Send + 'a,
            impl Iterator<Item = &'a Record> + Send + 'a,
        >,
    ) -> Result<ResponseInfo, NetError> {
        let mut buf = Vec::with_capacity(512);
        let mut encoder = BinEncoder::new(&mut buf);
        encoder.set_max_size(self.max as u16);
        let info = response.destructive_emit(&mut encoder)?;
        self.socket
            .send_to(&buf, self.dst)
            .map_err(|e| NetError::Msg(e.to_string()))?;
        Ok(info)
    }
}
