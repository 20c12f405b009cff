//! Syscalls of the userspace data path: UDP sockets with forced buffer sizes, batched receive
//! (`recvmmsg` + UDP GRO) and send (`sendmmsg` + UDP GSO), `poll`, `setns` and the path MTU —
//! through `nix`, except [`send_batch`], the one function here that needs `unsafe` (its
//! comment says why).
//!
//! Kernel quirks: `SO_RCVBUFFORCE`/`SO_SNDBUFFORCE` need CAP_NET_ADMIN and ignore
//! `net.core.rmem_max`, whose default (208 KiB) drops bursts in a fresh namespace. A socket with
//! `UDP_GRO` receives several datagrams of one flow glued together, with the segment size in a
//! `SOL_UDP`/`UDP_GRO` control message; with `UDP_SEGMENT` one send carries up to 64 datagrams of
//! equal size (the last may be shorter), which a veth passes on unsegmented.

use std::io::{self, IoSliceMut};
use std::mem::size_of;
use std::net::{Ipv6Addr, SocketAddr, SocketAddrV6};
use std::os::fd::{AsFd, AsRawFd};
use std::time::Duration;

use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sched::{CloneFlags, setns};
use nix::sys::socket::{
    ControlMessageOwned, MsgFlags, MultiHeaders, RecvMsg, SockaddrIn6, SockaddrLike as _,
    getsockopt, recvmmsg, setsockopt, sockopt,
};
use nix::{cmsg_space, getsockopt_impl, sockopt_impl};
use socket2::{Domain, Protocol, SockAddr, Socket, Type};

/// Most datagrams in one GSO send (the kernel's `UDP_MAX_SEGMENTS`).
pub const MAX_GSO_SEGMENTS: usize = 64;
/// Most bytes in one GSO send or GRO receive.
pub const MAX_GSO_BYTES: usize = 65_535 - 8 - 40;

// `IPV6_MTU`, which nix does not define, through nix's own accessor macro (nix's code does the
// `getsockopt`).
sockopt_impl!(
    /// The path MTU of a connected IPv6 socket.
    Ipv6Mtu,
    GetOnly,
    libc::IPPROTO_IPV6,
    libc::IPV6_MTU,
    libc::c_int
);

/// Binds a dual-stack UDP socket on `[::]:port` with `SO_REUSEPORT` (one socket per data-path
/// thread), forced buffers of `buf_bytes`, UDP GRO when the kernel has it, and a receive timeout
/// so that blocked threads notice shutdown.
pub fn udp_socket(port: u16, buf_bytes: usize, timeout: Duration) -> io::Result<Socket> {
    let sock = Socket::new(Domain::IPV6, Type::DGRAM.cloexec(), Some(Protocol::UDP))?;
    sock.set_only_v6(false)?;
    sock.set_reuse_port(true)?;
    force_buffers(&sock, buf_bytes);
    // Best effort: without GRO every datagram is one message.
    let _ = setsockopt(&sock, sockopt::UdpGroSegment, &true);
    sock.set_read_timeout(Some(timeout))?;
    sock.bind(&SockAddr::from(SocketAddrV6::new(
        Ipv6Addr::UNSPECIFIED,
        port,
        0,
        0,
    )))?;
    Ok(sock)
}

fn force_buffers(sock: &Socket, bytes: usize) {
    let bytes = bytes.min(libc::c_int::MAX as usize);
    if setsockopt(sock, sockopt::RcvBufForce, &bytes).is_err() {
        let _ = sock.set_recv_buffer_size(bytes);
    }
    if setsockopt(sock, sockopt::SndBufForce, &bytes).is_err() {
        let _ = sock.set_send_buffer_size(bytes);
    }
}

/// The dual-stack socket's address for `addr`: IPv4 peers are addressed as v4-mapped IPv6.
fn to_sockaddr(addr: SocketAddr) -> SockaddrIn6 {
    SockaddrIn6::from(match addr {
        SocketAddr::V4(a) => SocketAddrV6::new(a.ip().to_ipv6_mapped(), a.port(), 0, 0),
        SocketAddr::V6(a) => a,
    })
}

fn from_sockaddr(sa: &SockaddrIn6) -> SocketAddr {
    let v6 = SocketAddrV6::from(*sa);
    match v6.ip().to_ipv4_mapped() {
        Some(v4) => SocketAddr::new(v4.into(), v6.port()),
        None => SocketAddr::V6(v6),
    }
}

/// Reusable buffers for one `recvmmsg` call.
pub struct RecvBatch {
    bufs: Vec<Vec<u8>>,
    /// The `mmsghdr`s with their address and control buffers, kept from call to call.
    headers: MultiHeaders<SockaddrIn6>,
    /// A message of the last call came without a `UDP_GRO` control message, so its header's
    /// control length is now 0 (see `recv`).
    headers_shrunk: bool,
    srcs: Vec<SocketAddr>,
    lens: Vec<usize>,
    segs: Vec<usize>,
    n: usize,
}

fn recv_headers(count: usize) -> MultiHeaders<SockaddrIn6> {
    MultiHeaders::preallocate(count, Some(cmsg_space!(libc::c_int)))
}

impl RecvBatch {
    /// `count` messages of `buf_size` bytes each (64 KiB when GRO may glue datagrams).
    pub fn new(count: usize, buf_size: usize) -> Self {
        Self {
            bufs: vec![vec![0; buf_size]; count],
            headers: recv_headers(count),
            headers_shrunk: false,
            srcs: vec![SocketAddr::from(([0, 0, 0, 0], 0)); count],
            lens: vec![0; count],
            segs: vec![0; count],
            n: 0,
        }
    }

    /// Blocks until at least one message arrives (or the socket's timeout passes, giving
    /// `WouldBlock`) and takes all that are queued, up to the batch size.
    pub fn recv(&mut self, sock: &Socket) -> io::Result<usize> {
        // The kernel writes back into each header the control length it used, and nix does
        // not restore the capacity before the next call (nix PR #2813, open): a header whose
        // message carried no UDP_GRO size would receive the next train's size truncated
        // (MSG_CTRUNC) and the train would be taken for one datagram. Such a header gets
        // fresh buffers; one that carried the size has room for it again.
        if self.headers_shrunk {
            self.headers = recv_headers(self.bufs.len());
            self.headers_shrunk = false;
        }
        let mut iovs: Vec<[IoSliceMut<'_>; 1]> =
            self.bufs.iter_mut().map(|b| [IoSliceMut::new(b)]).collect();
        let received = recvmmsg(
            sock.as_raw_fd(),
            &mut self.headers,
            iovs.iter_mut(),
            MsgFlags::MSG_WAITFORONE,
            None,
        );
        let msgs = match received {
            Ok(msgs) => msgs,
            Err(e) => {
                self.n = 0;
                return Err(e.into());
            }
        };
        let mut n = 0;
        for m in msgs {
            let segment = gro_segment(&m);
            self.headers_shrunk |= segment.is_none();
            // recvmmsg always fills the source of a datagram.
            let Some(src) = m.address else { continue };
            self.srcs[n] = from_sockaddr(&src);
            self.lens[n] = m.bytes;
            self.segs[n] = segment.unwrap_or(m.bytes);
            n += 1;
        }
        self.n = n;
        Ok(n)
    }

    /// The messages of the last `recv`: source, bytes, and the GRO segment size (each datagram is
    /// `segment` bytes except maybe the last).
    pub fn messages(&self) -> impl Iterator<Item = (SocketAddr, &[u8], usize)> {
        (0..self.n).map(|i| {
            (
                self.srcs[i],
                &self.bufs[i][..self.lens[i]],
                self.segs[i].max(1),
            )
        })
    }
}

/// The `UDP_GRO` segment size of a received message, if it carries one.
fn gro_segment(m: &RecvMsg<'_, '_, SockaddrIn6>) -> Option<usize> {
    m.cmsgs().ok()?.find_map(|c| match c {
        ControlMessageOwned::UdpGroSegments(v) => usize::try_from(v).ok().filter(|&v| v > 0),
        _ => None,
    })
}

/// One datagram, or with `segment > 0` and `data.len() > segment` a GSO train of datagrams.
pub struct SendMsg<'a> {
    /// Destination.
    pub dst: SocketAddr,
    /// Payload.
    pub data: &'a [u8],
    /// GSO segment size, 0 for a single datagram.
    pub segment: u16,
}

/// Room for one `UDP_SEGMENT` control message (a `u16`; `CMSG_SPACE(2)` is 24 on 64-bit).
const SEND_CMSG_SPACE: usize = 32;

/// Sends all messages with as few `sendmmsg` calls as possible. A message the kernel refuses is
/// skipped and the rest are tried; the refused ones are returned with their errors.
///
/// Raw `libc::sendmmsg`, not nix's: nix's `sendmmsg` gives every message of a call the same
/// control messages (nix issue #1954, open), and a batch here mixes GSO trains of different
/// segment sizes with single datagrams that must carry no `UDP_SEGMENT` (a train refused as too
/// large for the path is resent as singles for the kernel to fragment). With nix a batch would
/// take one syscall per run of equal segment size instead of one for all.
#[allow(unsafe_code)]
pub fn send_batch(sock: &Socket, msgs: &[SendMsg<'_>]) -> Vec<(usize, io::Error)> {
    if msgs.is_empty() {
        return Vec::new();
    }
    let names: Vec<SockaddrIn6> = msgs.iter().map(|m| to_sockaddr(m.dst)).collect();
    let mut iovs: Vec<libc::iovec> = msgs
        .iter()
        .map(|m| libc::iovec {
            iov_base: m.data.as_ptr().cast_mut().cast(),
            iov_len: m.data.len(),
        })
        .collect();
    let mut ctrl: Vec<[u64; SEND_CMSG_SPACE / 8]> = vec![[0; SEND_CMSG_SPACE / 8]; msgs.len()];
    // SAFETY: plain data, all-zero is valid.
    let mut hdrs: Vec<libc::mmsghdr> = (0..msgs.len())
        .map(|_| unsafe { std::mem::zeroed() })
        .collect();
    for (i, m) in msgs.iter().enumerate() {
        let h = &mut hdrs[i].msg_hdr;
        // The kernel only reads the address.
        h.msg_name = names[i].as_ptr().cast_mut().cast();
        h.msg_namelen = names[i].len();
        h.msg_iov = &raw mut iovs[i];
        h.msg_iovlen = 1;
        if m.segment > 0 && m.data.len() > usize::from(m.segment) {
            h.msg_control = ctrl[i].as_mut_ptr().cast();
            // SAFETY: the control buffer has room for one u16 cmsg (CMSG_SPACE(2) <= 32).
            unsafe {
                h.msg_controllen = libc::CMSG_SPACE(size_of::<u16>() as u32) as usize;
                let c = libc::CMSG_FIRSTHDR(h);
                (*c).cmsg_level = libc::SOL_UDP;
                (*c).cmsg_type = libc::UDP_SEGMENT;
                (*c).cmsg_len = libc::CMSG_LEN(size_of::<u16>() as u32) as usize;
                std::ptr::write_unaligned(libc::CMSG_DATA(c).cast::<u16>(), m.segment);
            }
        }
    }
    let mut failed = Vec::new();
    let mut done = 0;
    while done < hdrs.len() {
        // SAFETY: hdrs[done..] point into names/iovs/ctrl and the callers' data, all alive here.
        let n = unsafe {
            libc::sendmmsg(
                sock.as_raw_fd(),
                hdrs[done..].as_mut_ptr(),
                (hdrs.len() - done) as libc::c_uint,
                0,
            )
        };
        if n < 0 {
            let err = io::Error::last_os_error();
            if err.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            failed.push((done, err));
            done += 1; // skip the message that failed
        } else {
            done += n as usize;
        }
    }
    failed
}

/// The path MTU the kernel knows towards `dst` (the route's MTU, lowered by any ICMP "packet too
/// big" it has seen), read from a connected UDP socket that sends nothing.
pub fn path_mtu(dst: SocketAddr) -> io::Result<u32> {
    let dst = match dst {
        SocketAddr::V6(v6) => match v6.ip().to_ipv4_mapped() {
            Some(v4) => SocketAddr::from((v4, v6.port())),
            None => dst,
        },
        v4 => v4,
    };
    let domain = if dst.is_ipv4() {
        Domain::IPV4
    } else {
        Domain::IPV6
    };
    let sock = Socket::new(domain, Type::DGRAM, None)?;
    sock.connect(&dst.into())?;
    let mtu = if dst.is_ipv4() {
        getsockopt(&sock, sockopt::IpMtu)?
    } else {
        getsockopt(&sock, Ipv6Mtu)?
    };
    u32::try_from(mtu).map_err(|_| io::Error::other("negative MTU"))
}

/// Waits until `fd` is readable or `timeout` passes.
pub fn poll_readable(fd: &impl AsFd, timeout: Duration) -> io::Result<bool> {
    let mut fds = [PollFd::new(fd.as_fd(), PollFlags::POLLIN)];
    let timeout = PollTimeout::try_from(timeout).unwrap_or(PollTimeout::MAX);
    match poll(&mut fds, timeout) {
        Ok(n) => Ok(n > 0),
        Err(nix::errno::Errno::EINTR) => Ok(false),
        Err(e) => Err(e.into()),
    }
}

/// A handle on the calling thread's network namespace.
pub fn current_netns() -> io::Result<std::fs::File> {
    std::fs::File::open("/proc/thread-self/ns/net")
}

/// Runs `f` on a short-lived thread inside the namespace `ns`, so that sockets it creates belong
/// there whatever namespace the caller (e.g. an async runtime thread) is in.
pub fn in_netns<T: Send>(
    ns: &std::fs::File,
    f: impl FnOnce() -> io::Result<T> + Send,
) -> io::Result<T> {
    std::thread::scope(|s| {
        s.spawn(|| {
            // Changes only this new thread.
            setns(ns, CloneFlags::CLONE_NEWNET)?;
            f()
        })
        .join()
        .unwrap_or_else(|_| Err(io::Error::other("namespace thread panicked")))
    })
}
