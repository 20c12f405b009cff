//! The `NETLINK_NETFILTER` socket: opened (optionally inside a named network namespace),
//! sends a batch and collects the kernel's verdict, and runs dump requests.

use std::io;
use std::time::Duration;

use netlink_sys::{Socket, SocketAddr, protocols::NETLINK_NETFILTER};

use crate::SUBSYS_NFTABLES;
use crate::batch::FinishedBatch;
use crate::error::NfnlError;
use crate::msg::{Buffer, F_REQUEST};
use crate::parse::{NLMSG_DONE, NLMSG_ERROR, messages};

/// How long to wait for the kernel's answer to a batch. The kernel handles the batch
/// inside `sendmsg`, so its errors are queued by the time the send returns; this only
/// bounds a wait that should never happen.
const REPLY_TIMEOUT: Duration = Duration::from_secs(10);

/// A `NETLINK_NETFILTER` socket.
#[derive(Debug)]
pub struct NfSocket {
    socket: Socket,
    seq: u32,
    sndbuf: usize,
}

impl NfSocket {
    /// Opens a socket in the current network namespace.
    pub fn open() -> Result<Self, NfnlError> {
        let err = |op| move |source| NfnlError::Socket { op, source };
        let mut socket = Socket::new(NETLINK_NETFILTER).map_err(err("open"))?;
        socket.bind_auto().map_err(err("bind"))?;
        socket
            .connect(&SocketAddr::new(0, 0))
            .map_err(err("connect"))?;
        socket2::SockRef::from(&socket)
            .set_read_timeout(Some(REPLY_TIMEOUT))
            .map_err(err("set timeout"))?;
        // Room for many error replies (each carries the refused message back).
        let _ = nix::sys::socket::setsockopt(
            &socket,
            nix::sys::socket::sockopt::RcvBufForce,
            &(8 << 20),
        );
        Ok(NfSocket {
            socket,
            seq: seed_seq(),
            sndbuf: 0,
        })
    }

    /// Opens a socket inside network namespace `netns` (a name under `/run/netns`):
    /// a socket stays in the namespace it was created in, so a helper thread enters the
    /// namespace, opens it and ends.
    pub fn open_in_netns(netns: &str) -> Result<Self, NfnlError> {
        let path = format!("/run/netns/{netns}");
        let name = netns.to_string();
        std::thread::spawn(move || {
            let ns_err = |source| NfnlError::Netns {
                netns: name.clone(),
                source,
            };
            let file = std::fs::File::open(&path).map_err(ns_err)?;
            nix::sched::setns(&file, nix::sched::CloneFlags::CLONE_NEWNET)
                .map_err(|e| ns_err(io::Error::from(e)))?;
            NfSocket::open()
        })
        .join()
        .map_err(|_| NfnlError::Netns {
            netns: netns.to_string(),
            source: io::Error::other("namespace thread panicked"),
        })?
    }

    /// The sequence number the next batch should start at.
    pub fn next_seq(&self) -> u32 {
        self.seq
    }

    /// Sends `batch` (one transaction) and collects the kernel's verdict.
    pub fn send(&mut self, batch: FinishedBatch) -> Result<(), NfnlError> {
        self.seq = batch.end_seq.wrapping_add(1);
        let bytes = batch.bytes();
        if bytes.len() + 4096 > self.sndbuf {
            // A batch is one datagram: the send buffer must hold all of it.
            let want = (bytes.len() + 65536).next_power_of_two();
            nix::sys::socket::setsockopt(
                &self.socket,
                nix::sys::socket::sockopt::SndBufForce,
                &want,
            )
            .map_err(|e| NfnlError::Socket {
                op: "size the send buffer",
                source: e.into(),
            })?;
            self.sndbuf = want;
        }
        self.socket
            .send(bytes, 0)
            .map_err(|source| NfnlError::Socket {
                op: "send the batch",
                source,
            })?;
        self.collect(&batch)
    }

    /// Reads what the kernel queued for the batch: nothing when it succeeded, one
    /// error per refused message otherwise.
    fn collect(&mut self, batch: &FinishedBatch) -> Result<(), NfnlError> {
        let mut first: Option<NfnlError> = None;
        let mut buf: Vec<u8> = Vec::with_capacity(1 << 16);
        loop {
            buf.clear();
            let n = match self.socket.recv(&mut buf, libc_dontwait()) {
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(source) => {
                    return Err(first.unwrap_or(NfnlError::Socket {
                        op: "read the replies",
                        source,
                    }));
                }
            };
            for m in messages(&buf[..n.min(buf.len())]) {
                match m.kind {
                    // `struct nlmsgerr`: the error, then the refused message's header.
                    NLMSG_ERROR if m.body.len() >= 20 => {
                        let code = i32::from_ne_bytes(m.body[0..4].try_into().unwrap());
                        let seq = u32::from_ne_bytes(m.body[12..16].try_into().unwrap());
                        if code != 0 && first.is_none() {
                            let source = io::Error::from_raw_os_error(-code);
                            first = Some(match batch.index_of(seq) {
                                Some(index) => NfnlError::Refused { index, source },
                                None => NfnlError::Batch(source),
                            });
                        }
                    }
                    NLMSG_DONE => break,
                    _ => {}
                }
            }
        }
        match first {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    /// Sends dump request `msg` (an `NFT_MSG_GET…` type) for `family`, with the filter
    /// attributes `filter` writes, and hands each answer's family and attributes to
    /// `each`.
    pub(crate) fn dump(
        &mut self,
        msg: u16,
        family: u8,
        filter: impl FnOnce(&mut Buffer),
        mut each: impl FnMut(u8, &[u8]),
    ) -> Result<(), NfnlError> {
        const NLM_F_DUMP: u16 = 0x300;
        let seq = self.seq;
        self.seq = self.seq.wrapping_add(1);
        let mut buf = Buffer::default();
        buf.begin_msg(
            (SUBSYS_NFTABLES << 8) | msg,
            F_REQUEST | NLM_F_DUMP,
            seq,
            family,
            0,
        );
        filter(&mut buf);
        buf.end_msg();
        let err = |op| move |source| NfnlError::Socket { op, source };
        self.socket
            .send(buf.bytes(), 0)
            .map_err(err("send a dump request"))?;
        let mut data: Vec<u8> = Vec::with_capacity(1 << 16);
        loop {
            data.clear();
            let n = self.socket.recv(&mut data, 0).map_err(err("read a dump"))?;
            for m in messages(&data[..n.min(data.len())]) {
                if m.seq != seq {
                    continue;
                }
                match m.kind {
                    NLMSG_DONE => return Ok(()),
                    NLMSG_ERROR if m.body.len() >= 4 => {
                        let code = i32::from_ne_bytes(m.body[0..4].try_into().unwrap());
                        if code != 0 {
                            return Err(NfnlError::Batch(io::Error::from_raw_os_error(-code)));
                        }
                    }
                    NLMSG_ERROR => {}
                    // `struct nfgenmsg` (family first), then the object's attributes.
                    _ if m.body.len() >= 4 => each(m.body[0], &m.body[4..]),
                    _ => {}
                }
            }
        }
    }
}

fn libc_dontwait() -> i32 {
    nix::sys::socket::MsgFlags::MSG_DONTWAIT.bits()
}

/// A starting sequence number that differs between processes (replies are matched by
/// sequence number; a fresh start avoids confusing a previous run's numbers).
fn seed_seq() -> u32 {
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    (t.as_secs() as u32).wrapping_mul(2654435761) ^ std::process::id()
}
