//! The UDP fast path: one SO_REUSEPORT socket per core, each read by its own thread,
//! answering from the index straight into a reused buffer. Queries it cannot answer
//! (forwarded names, unusual queries) go to the hickory-server handler on the runtime.

use std::net::{SocketAddr, UdpSocket};
use std::sync::Arc;
use std::time::{Duration, Instant};

use hickory_server::net::NetError;
use hickory_server::net::runtime::TokioTime;
use hickory_server::net::xfer::Protocol;
use hickory_server::proto::rr::Record;
use hickory_server::proto::serialize::binary::BinEncoder;
use hickory_server::server::{Request, RequestHandler, ResponseHandler, ResponseInfo};
use hickory_server::zone_handler::MessageResponse;
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

/// Runs one socket's loop on the current thread, forever.
pub fn serve(socket: Arc<UdpSocket>, shared: Arc<Shared>, runtime: tokio::runtime::Handle) {
    let mut recv = vec![0u8; 4096];
    let mut out = Vec::with_capacity(4096);
    let mut counts = LocalCounts::default();
    let mut n_queries: u32 = 0;
    loop {
        let (len, src) = match socket.recv_from(&mut recv) {
            Ok(x) => x,
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                counts.flush(&shared.metrics);
                continue;
            }
            Err(e) => {
                tracing::debug!(error = %e, "udp receive failed");
                continue;
            }
        };
        n_queries = n_queries.wrapping_add(1);
        // Latency is sampled: reading the clock twice per query costs more than it tells.
        let sample = n_queries.is_multiple_of(64).then(Instant::now);
        let pkt = &recv[..len];
        match wire::parse(pkt) {
            Parsed::Drop => continue,
            Parsed::Query(q) => {
                let index = shared.index.load();
                if let Lookup::Ours(kind, answer) = index.lookup(&q.name, q.qtype) {
                    let (rc, truncated) =
                        wire::write_response(&q, &answer, wire::udp_limit(&q), &mut out);
                    drop(index);
                    let _ = socket.send_to(&out, src);
                    let zone = match kind {
                        ZoneKind::Cluster => Zone::Cluster,
                        ZoneKind::All => Zone::All,
                    };
                    counts.count(&shared.metrics, zone, rc, truncated);
                    if let Some(t) = sample {
                        shared.metrics.latency(Proto::Udp, t.elapsed());
                    }
                    continue;
                }
            }
            Parsed::Slow => {}
        }
        slow_path(pkt, src, &socket, &shared, &runtime, &mut counts);
    }
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
