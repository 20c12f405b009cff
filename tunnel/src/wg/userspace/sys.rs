//! Quarantined syscalls of the userspace data path: UDP sockets with forced buffer sizes, and
//! batched receive (`recvmmsg` + UDP GRO) and send (`sendmmsg` + UDP GSO).
//!
//! Kernel quirks: `SO_RCVBUFFORCE`/`SO_SNDBUFFORCE` need CAP_NET_ADMIN and ignore
//! `net.core.rmem_max`, whose default (208 KiB) drops bursts in a fresh namespace. A socket with
//! `UDP_GRO` receives several datagrams of one flow glued together, with the segment size in a
//! `SOL_UDP`/`UDP_GRO` control message; with `UDP_SEGMENT` one send carries up to 64 datagrams of
//! equal size (the last may be shorter), which a veth passes on unsegmented.
#![allow(unsafe_code)]

use std::io;
use std::mem::{size_of, zeroed};
use std::net::{Ipv6Addr, SocketAddr, SocketAddrV6};
use std::os::fd::AsRawFd;
use std::time::Duration;

use socket2::{Domain, Protocol, SockAddr, Socket, Type};

const SOL_UDP: libc::c_int = 17;
const UDP_SEGMENT: libc::c_int = 103;
const UDP_GRO: libc::c_int = 104;

/// Most datagrams in one GSO send (the kernel's `UDP_MAX_SEGMENTS`).
pub const MAX_GSO_SEGMENTS: usize = 64;
/// Most bytes in one GSO send or GRO receive.
pub const MAX_GSO_BYTES: usize = 65_535 - 8 - 40;

/// Binds a dual-stack UDP socket on `[::]:port` with `SO_REUSEPORT` (one socket per data-path
/// thread), forced buffers of `buf_bytes`, UDP GRO when the kernel has it, and a receive timeout
/// so that blocked threads notice shutdown.
pub fn udp_socket(port: u16, buf_bytes: usize, timeout: Duration) -> io::Result<Socket> {
    let sock = Socket::new(Domain::IPV6, Type::DGRAM.cloexec(), Some(Protocol::UDP))?;
    sock.set_only_v6(false)?;
    sock.set_reuse_port(true)?;
    force_buffers(&sock, buf_bytes);
    let on: libc::c_int = 1;
    // Best effort: without GRO every datagram is one message.
    let _ = setsockopt(&sock, SOL_UDP, UDP_GRO, on);
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
    let val = libc::c_int::try_from(bytes).unwrap_or(libc::c_int::MAX);
    if setsockopt(sock, libc::SOL_SOCKET, libc::SO_RCVBUFFORCE, val).is_err() {
        let _ = sock.set_recv_buffer_size(bytes);
    }
    if setsockopt(sock, libc::SOL_SOCKET, libc::SO_SNDBUFFORCE, val).is_err() {
        let _ = sock.set_send_buffer_size(bytes);
    }
}

fn setsockopt(
    sock: &Socket,
    level: libc::c_int,
    name: libc::c_int,
    val: libc::c_int,
) -> io::Result<()> {
    // SAFETY: the option value is a valid c_int living for the duration of the call.
    let rc = unsafe {
        libc::setsockopt(
            sock.as_raw_fd(),
            level,
            name,
            (&raw const val).cast(),
            size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

fn to_sockaddr(addr: SocketAddr) -> libc::sockaddr_in6 {
    // The socket is dual-stack: IPv4 peers are addressed as v4-mapped IPv6.
    let v6 = match addr {
        SocketAddr::V4(a) => SocketAddrV6::new(a.ip().to_ipv6_mapped(), a.port(), 0, 0),
        SocketAddr::V6(a) => a,
    };
    // SAFETY: sockaddr_in6 is plain data; all-zero is a valid value.
    let mut sa: libc::sockaddr_in6 = unsafe { zeroed() };
    sa.sin6_family = libc::AF_INET6 as libc::sa_family_t;
    sa.sin6_port = v6.port().to_be();
    sa.sin6_addr.s6_addr = v6.ip().octets();
    sa.sin6_flowinfo = v6.flowinfo();
    sa.sin6_scope_id = v6.scope_id();
    sa
}

fn from_sockaddr(sa: &libc::sockaddr_in6) -> SocketAddr {
    let ip = Ipv6Addr::from(sa.sin6_addr.s6_addr);
    let port = u16::from_be(sa.sin6_port);
    match ip.to_ipv4_mapped() {
        Some(v4) => SocketAddr::new(v4.into(), port),
        None => SocketAddr::V6(SocketAddrV6::new(
            ip,
            port,
            sa.sin6_flowinfo,
            sa.sin6_scope_id,
        )),
    }
}

const CMSG_SPACE: usize = 64;

/// Reusable buffers for one `recvmmsg` call.
pub struct RecvBatch {
    bufs: Vec<Vec<u8>>,
    names: Vec<libc::sockaddr_in6>,
    ctrl: Vec<[u64; CMSG_SPACE / 8]>,
    lens: Vec<usize>,
    segs: Vec<usize>,
    n: usize,
}

impl RecvBatch {
    /// `count` messages of `buf_size` bytes each (64 KiB when GRO may glue datagrams).
    pub fn new(count: usize, buf_size: usize) -> Self {
        Self {
            bufs: vec![vec![0; buf_size]; count],
            // SAFETY: plain data, all-zero is valid.
            names: vec![unsafe { zeroed() }; count],
            ctrl: vec![[0; CMSG_SPACE / 8]; count],
            lens: vec![0; count],
            segs: vec![0; count],
            n: 0,
        }
    }

    /// Blocks until at least one message arrives (or the socket's timeout passes, giving
    /// `WouldBlock`) and takes all that are queued, up to the batch size.
    pub fn recv(&mut self, sock: &Socket) -> io::Result<usize> {
        let count = self.bufs.len();
        let mut iovs: Vec<libc::iovec> = self
            .bufs
            .iter_mut()
            .map(|b| libc::iovec {
                iov_base: b.as_mut_ptr().cast(),
                iov_len: b.len(),
            })
            .collect();
        // SAFETY: plain data, all-zero is valid.
        let mut msgs: Vec<libc::mmsghdr> = (0..count).map(|_| unsafe { zeroed() }).collect();
        for (i, m) in msgs.iter_mut().enumerate() {
            m.msg_hdr.msg_name = (&raw mut self.names[i]).cast();
            m.msg_hdr.msg_namelen = size_of::<libc::sockaddr_in6>() as libc::socklen_t;
            m.msg_hdr.msg_iov = &raw mut iovs[i];
            m.msg_hdr.msg_iovlen = 1;
            m.msg_hdr.msg_control = self.ctrl[i].as_mut_ptr().cast();
            m.msg_hdr.msg_controllen = CMSG_SPACE;
        }
        // SAFETY: every pointer in msgs points into buffers owned by self or the local iovs,
        // which outlive the call; lengths match the buffers.
        let n = unsafe {
            libc::recvmmsg(
                sock.as_raw_fd(),
                msgs.as_mut_ptr(),
                count as libc::c_uint,
                libc::MSG_WAITFORONE,
                std::ptr::null_mut(),
            )
        };
        if n < 0 {
            self.n = 0;
            return Err(io::Error::last_os_error());
        }
        self.n = n as usize;
        for (i, m) in msgs.iter().take(self.n).enumerate() {
            self.lens[i] = m.msg_len as usize;
            self.segs[i] = gro_segment(&m.msg_hdr).unwrap_or(self.lens[i]);
        }
        Ok(self.n)
    }

    /// The messages of the last `recv`: source, bytes, and the GRO segment size (each datagram is
    /// `segment` bytes except maybe the last).
    pub fn messages(&self) -> impl Iterator<Item = (SocketAddr, &[u8], usize)> {
        (0..self.n).map(|i| {
            (
                from_sockaddr(&self.names[i]),
                &self.bufs[i][..self.lens[i]],
                self.segs[i].max(1),
            )
        })
    }
}

fn gro_segment(hdr: &libc::msghdr) -> Option<usize> {
    // SAFETY: hdr was filled by recvmmsg; the CMSG_* macros walk its control buffer within
    // msg_controllen.
    unsafe {
        let mut cmsg = libc::CMSG_FIRSTHDR(hdr);
        while !cmsg.is_null() {
            if (*cmsg).cmsg_level == SOL_UDP && (*cmsg).cmsg_type == UDP_GRO {
                let v = std::ptr::read_unaligned(libc::CMSG_DATA(cmsg).cast::<libc::c_int>());
                return usize::try_from(v).ok().filter(|&v| v > 0);
            }
            cmsg = libc::CMSG_NXTHDR(hdr, cmsg);
        }
    }
    None
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

/// Sends all messages with as few `sendmmsg` calls as possible. A message the kernel refuses is
/// skipped and the rest are tried; the refused ones are returned with their errors.
pub fn send_batch(sock: &Socket, msgs: &[SendMsg<'_>]) -> Vec<(usize, io::Error)> {
    if msgs.is_empty() {
        return Vec::new();
    }
    let mut names: Vec<libc::sockaddr_in6> = msgs.iter().map(|m| to_sockaddr(m.dst)).collect();
    let mut iovs: Vec<libc::iovec> = msgs
        .iter()
        .map(|m| libc::iovec {
            iov_base: m.data.as_ptr().cast_mut().cast(),
            iov_len: m.data.len(),
        })
        .collect();
    let mut ctrl: Vec<[u64; CMSG_SPACE / 8]> = vec![[0; CMSG_SPACE / 8]; msgs.len()];
    // SAFETY: plain data, all-zero is valid.
    let mut hdrs: Vec<libc::mmsghdr> = (0..msgs.len()).map(|_| unsafe { zeroed() }).collect();
    for (i, m) in msgs.iter().enumerate() {
        let h = &mut hdrs[i].msg_hdr;
        h.msg_name = (&raw mut names[i]).cast();
        h.msg_namelen = size_of::<libc::sockaddr_in6>() as libc::socklen_t;
        h.msg_iov = &raw mut iovs[i];
        h.msg_iovlen = 1;
        if m.segment > 0 && m.data.len() > usize::from(m.segment) {
            h.msg_control = ctrl[i].as_mut_ptr().cast();
            // SAFETY: the control buffer has room for one u16 cmsg (CMSG_SPACE(2) <= 64).
            unsafe {
                h.msg_controllen = libc::CMSG_SPACE(size_of::<u16>() as u32) as usize;
                let c = libc::CMSG_FIRSTHDR(h);
                (*c).cmsg_level = SOL_UDP;
                (*c).cmsg_type = UDP_SEGMENT;
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
    let (level, name) = if dst.is_ipv4() {
        (libc::IPPROTO_IP, libc::IP_MTU)
    } else {
        (libc::IPPROTO_IPV6, libc::IPV6_MTU)
    };
    let mut mtu: libc::c_int = 0;
    let mut len = size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: a c_int out-parameter of the size passed.
    let rc = unsafe {
        libc::getsockopt(
            sock.as_raw_fd(),
            level,
            name,
            (&raw mut mtu).cast(),
            &raw mut len,
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    u32::try_from(mtu).map_err(|_| io::Error::other("negative MTU"))
}

/// Waits until `fd` is readable or `timeout` passes.
pub fn poll_readable(fd: &impl AsRawFd, timeout: Duration) -> io::Result<bool> {
    let mut pfd = libc::pollfd {
        fd: fd.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    let ms = libc::c_int::try_from(timeout.as_millis()).unwrap_or(libc::c_int::MAX);
    // SAFETY: one valid pollfd.
    let rc = unsafe { libc::poll(&raw mut pfd, 1, ms) };
    match rc {
        0 => Ok(false),
        n if n > 0 => Ok(true),
        _ => {
            let err = io::Error::last_os_error();
            if err.kind() == io::ErrorKind::Interrupted {
                Ok(false)
            } else {
                Err(err)
            }
        }
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
    let fd = ns.as_raw_fd();
    std::thread::scope(|s| {
        s.spawn(|| {
            // SAFETY: setns with a valid namespace fd; it changes only this new thread.
            if unsafe { libc::setns(fd, libc::CLONE_NEWNET) } != 0 {
                return Err(io::Error::last_os_error());
            }
            f()
        })
        .join()
        .unwrap_or_else(|_| Err(io::Error::other("namespace thread panicked")))
    })
}
