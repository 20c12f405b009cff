//! nf_tables over netlink, without the `nft` program.
//!
//! `nft -f` reads the table's chains back from the kernel before every transaction (a
//! dump that costs time growing with the square of the number of chains) and parses
//! and evaluates its input in user space; at 10,000 services that is most of a one-line
//! update's time. This module writes the same messages `nft` would send, as one
//! nfnetlink batch (one transaction), and reads back only the errors.
//!
//! - [`msg::Buffer`]: netlink message and attribute encoding;
//! - [`Batch`]: `BATCH_BEGIN`, numbered messages, `BATCH_END`; an error names the
//!   message by its number;
//! - [`NfSocket`]: a `NETLINK_NETFILTER` socket, optionally opened inside a named
//!   network namespace.

pub mod dump;
pub mod msg;

use std::io;
use std::time::Duration;

use netlink_sys::{Socket, SocketAddr, protocols::NETLINK_NETFILTER};

use msg::{Buffer, F_REQUEST};

/// `NFNL_SUBSYS_NFTABLES`.
pub const SUBSYS_NFTABLES: u16 = 10;
const NFNL_MSG_BATCH_BEGIN: u16 = 0x10;
const NFNL_MSG_BATCH_END: u16 = 0x11;
const NLMSG_ERROR: u16 = 2;
const NLMSG_DONE: u16 = 3;

/// Why talking to nf_tables failed.
#[derive(Debug, thiserror::Error)]
pub enum NfnlError {
    /// The socket could not be opened, sized or used.
    #[error("netfilter netlink socket: {op}")]
    Socket {
        op: &'static str,
        #[source]
        source: io::Error,
    },
    /// The network namespace could not be entered.
    #[error("cannot enter network namespace {netns}")]
    Netns {
        netns: String,
        #[source]
        source: io::Error,
    },
    /// The kernel refused message `index` of the batch (the whole batch was undone).
    #[error("message {index} refused: {source}")]
    Refused {
        index: usize,
        #[source]
        source: io::Error,
    },
    /// The kernel refused the batch without naming a message (e.g. at commit).
    #[error("transaction refused: {0}")]
    Batch(#[source] io::Error),
}

/// One nf_tables transaction being built.
#[derive(Debug)]
pub struct Batch {
    buf: Buffer,
    first_seq: u32,
    next_seq: u32,
}

impl Batch {
    /// A batch whose messages are numbered from `first_seq` (the begin marker's number).
    pub fn new(first_seq: u32, capacity: usize) -> Self {
        let mut buf = Buffer::with_capacity(capacity + 64);
        buf.begin_msg(
            NFNL_MSG_BATCH_BEGIN,
            F_REQUEST,
            first_seq,
            0,
            SUBSYS_NFTABLES,
        );
        buf.end_msg();
        Batch {
            buf,
            first_seq,
            next_seq: first_seq.wrapping_add(1),
        }
    }

    /// Starts the next message: nf_tables message `msg` (`NFT_MSG_*`) for `family`.
    /// Add its attributes through the buffer returned, then call [`Batch::end`].
    pub fn begin(&mut self, msg: u16, flags: u16, family: u8) -> &mut Buffer {
        let seq = self.next_seq;
        self.next_seq = self.next_seq.wrapping_add(1);
        self.buf.begin_msg(
            (SUBSYS_NFTABLES << 8) | msg,
            F_REQUEST | flags,
            seq,
            family,
            0,
        );
        &mut self.buf
    }

    pub fn end(&mut self) {
        self.buf.end_msg();
    }

    /// Number of messages (not counting the begin and end markers).
    pub fn messages(&self) -> usize {
        self.next_seq.wrapping_sub(self.first_seq).wrapping_sub(1) as usize
    }

    /// Closes the batch; the bytes to send.
    pub fn finish(mut self) -> FinishedBatch {
        let end_seq = self.next_seq;
        self.buf
            .begin_msg(NFNL_MSG_BATCH_END, F_REQUEST, end_seq, 0, SUBSYS_NFTABLES);
        self.buf.end_msg();
        FinishedBatch {
            buf: self.buf,
            first_seq: self.first_seq,
            end_seq,
        }
    }
}

/// A closed batch, ready to send.
#[derive(Debug)]
pub struct FinishedBatch {
    buf: Buffer,
    first_seq: u32,
    end_seq: u32,
}

impl FinishedBatch {
    pub fn bytes(&self) -> &[u8] {
        self.buf.bytes()
    }

    /// The message index (0-based, as added) of sequence number `seq`.
    fn index_of(&self, seq: u32) -> Option<usize> {
        let off = seq.wrapping_sub(self.first_seq);
        (off >= 1 && seq != self.end_seq && off < self.end_seq.wrapping_sub(self.first_seq))
            .then(|| off as usize - 1)
    }
}

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

    /// Every nf_tables table of the namespace: `(family, name)` (`NFT_MSG_GETTABLE` dump;
    /// tables only, so cheap however many rules they hold).
    pub fn tables(&mut self) -> Result<Vec<(u8, String)>, NfnlError> {
        let mut out = Vec::new();
        self.dump(
            dump::GETTABLE,
            0,
            |_| {},
            |family, attrs| {
                if let Some(name) = string_attr(attrs, 1) {
                    out.push((family, name));
                }
            },
        )?;
        Ok(out)
    }
}

/// One netlink message of a datagram.
struct Message<'a> {
    kind: u16,
    seq: u32,
    /// What follows the 16-byte header.
    body: &'a [u8],
}

/// The messages of a received datagram, up to the first malformed one.
fn messages(mut data: &[u8]) -> impl Iterator<Item = Message<'_>> {
    std::iter::from_fn(move || {
        if data.len() < 16 {
            return None;
        }
        let len = u32::from_ne_bytes(data[0..4].try_into().unwrap()) as usize;
        if len < 16 || len > data.len() {
            return None;
        }
        let m = Message {
            kind: u16::from_ne_bytes(data[4..6].try_into().unwrap()),
            seq: u32::from_ne_bytes(data[8..12].try_into().unwrap()),
            body: &data[16..len],
        };
        data = &data[((len + 3) & !3).min(data.len())..];
        Some(m)
    })
}

/// The attributes of an attribute list, `(kind, value)` (kind without the nested and
/// byte-order flags), up to the first malformed one.
fn attributes(mut attrs: &[u8]) -> impl Iterator<Item = (u16, &[u8])> {
    std::iter::from_fn(move || {
        if attrs.len() < 4 {
            return None;
        }
        let len = u16::from_ne_bytes([attrs[0], attrs[1]]) as usize;
        let kind = u16::from_ne_bytes([attrs[2], attrs[3]]) & 0x3fff;
        if len < 4 || len > attrs.len() {
            return None;
        }
        let value = &attrs[4..len];
        attrs = &attrs[((len + 3) & !3).min(attrs.len())..];
        Some((kind, value))
    })
}

/// A NUL-terminated string value.
fn c_string(value: &[u8]) -> String {
    let value = value.split(|b| *b == 0).next().unwrap_or(value);
    String::from_utf8_lossy(value).into_owned()
}

/// The string attribute `kind` of an attribute list (NUL-terminated in the message).
fn string_attr(attrs: &[u8], kind: u16) -> Option<String> {
    attributes(attrs)
        .find(|(k, _)| *k == kind)
        .map(|(_, v)| c_string(v))
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn datagrams_split_into_messages_until_a_malformed_one() {
        let mut b = Buffer::default();
        b.begin_msg(NLMSG_DONE, 0, 7, 0, 0);
        b.put(1, &[1]); // padded to 4
        b.end_msg();
        b.begin_msg(NLMSG_ERROR, 0, 8, 0, 0);
        b.end_msg();
        let mut data = b.bytes().to_vec();
        data.extend_from_slice(&[200, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
        let got: Vec<(u16, u32, usize)> = messages(&data)
            .map(|m| (m.kind, m.seq, m.body.len()))
            .collect();
        assert_eq!(got, [(NLMSG_DONE, 7, 4 + 8), (NLMSG_ERROR, 8, 4)]);
    }

    #[test]
    fn string_attributes_are_found_among_others() {
        let mut b = Buffer::default();
        b.put_be32(2, 7);
        b.put_str(1, "causeway-3");
        assert_eq!(string_attr(b.bytes(), 1).as_deref(), Some("causeway-3"));
        assert_eq!(string_attr(b.bytes(), 3), None);
        assert_eq!(string_attr(&[200, 0, 1, 0], 1), None, "length past the end");
    }

    #[test]
    fn batch_numbers_messages_and_maps_sequence_numbers_back() {
        let mut b = Batch::new(100, 0);
        for _ in 0..3 {
            b.begin(0, 0, 1).put_str(1, "t");
            b.end();
        }
        assert_eq!(b.messages(), 3);
        let f = b.finish();
        assert_eq!(f.index_of(100), None, "begin marker");
        assert_eq!(f.index_of(101), Some(0));
        assert_eq!(f.index_of(103), Some(2));
        assert_eq!(f.index_of(104), None, "end marker");
        // begin (20) + 3 × (20 + 8) + end (20)
        assert_eq!(f.bytes().len(), 20 + 3 * 28 + 20);
    }
}
