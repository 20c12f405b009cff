//! Collecting the reply to one request from the datagrams the kernel sends: several
//! netlink messages per datagram, a dump spread over many datagrams and ended by
//! `NLMSG_DONE`, and `NLMSG_ERROR` as acknowledgement (code 0) or failure (-errno).
//! Pure, so the cases are unit-tested without a kernel.

use netlink_packet_core::{
    DecodeError, NetlinkBuffer, NetlinkDeserializable, NetlinkMessage, NetlinkPayload,
};

/// Why an exchange failed.
#[derive(Debug)]
pub(crate) enum ReplyError {
    /// The kernel refused the request with this (positive) errno.
    Errno(i32),
    /// A message could not be parsed.
    Decode(DecodeError),
    /// `NLMSG_OVERRUN`: the kernel dropped data.
    Overrun,
}

/// The messages answering the request with sequence number `seq`.
pub(crate) struct Exchange<I> {
    seq: u32,
    replies: Vec<I>,
    finished: bool,
}

impl<I: NetlinkDeserializable> Exchange<I> {
    pub(crate) fn new(seq: u32) -> Self {
        Self {
            seq,
            replies: Vec::new(),
            finished: false,
        }
    }

    /// Takes in one received datagram. Returns `Ok(true)` once the request is
    /// answered: acknowledged (after any reply messages) or its dump is done.
    /// Messages of other sequence numbers are skipped: they are what remains of an
    /// earlier request that failed half-way.
    pub(crate) fn absorb(&mut self, datagram: &[u8]) -> Result<bool, ReplyError> {
        let mut rest = datagram;
        while !rest.is_empty() && !self.finished {
            let len = NetlinkBuffer::new_checked(rest)
                .map_err(ReplyError::Decode)?
                .length() as usize;
            let msg = NetlinkMessage::<I>::deserialize(&rest[..len]).map_err(ReplyError::Decode)?;
            rest = &rest[len.next_multiple_of(4).min(rest.len())..];
            if msg.header.sequence_number != self.seq {
                continue;
            }
            match msg.payload {
                NetlinkPayload::InnerMessage(m) => self.replies.push(m),
                NetlinkPayload::Error(e) => match e.code {
                    None => self.finished = true,
                    Some(code) => return Err(ReplyError::Errno(-code.get())),
                },
                NetlinkPayload::Done(d) if d.code < 0 => return Err(ReplyError::Errno(-d.code)),
                NetlinkPayload::Done(_) => self.finished = true,
                NetlinkPayload::Overrun(_) => return Err(ReplyError::Overrun),
                _ => {}
            }
        }
        Ok(self.finished)
    }

    /// The reply messages, in order.
    pub(crate) fn into_replies(self) -> Vec<I> {
        self.replies
    }
}

#[cfg(test)]
mod tests {
    //! Hand-built datagrams in the kernel's layout (little-endian host).

    use netlink_packet_core::{
        DoneMessage, Emitable, ErrorMessage, NLM_F_MULTIPART, NetlinkHeader, NetlinkMessage,
    };
    use netlink_packet_generic::GenlMessage;
    use std::num::NonZeroI32;

    use super::*;
    use crate::message::{IpvsAttr, IpvsCmd, IpvsMessage};

    type Msg = GenlMessage<IpvsMessage>;
    const FAMILY: u16 = 0x20;

    fn bytes(seq: u32, payload: NetlinkPayload<Msg>) -> Vec<u8> {
        let mut header = NetlinkHeader::default();
        header.sequence_number = seq;
        header.flags = NLM_F_MULTIPART;
        let mut msg = NetlinkMessage::new(header, payload);
        msg.finalize();
        let mut buf = vec![0; msg.buffer_len()];
        msg.serialize(&mut buf);
        buf
    }

    fn service(seq: u32, n: u32) -> Vec<u8> {
        let mut genl = GenlMessage::from_payload(IpvsMessage {
            cmd: IpvsCmd::NewService,
            // an odd-length attribute keeps alignment padding in play
            attrs: vec![IpvsAttr::Other(netlink_packet_core::DefaultNla::new(
                9,
                n.to_ne_bytes()[..3].to_vec(),
            ))],
        });
        genl.set_resolved_family_id(FAMILY);
        bytes(seq, NetlinkPayload::InnerMessage(genl))
    }

    fn done(seq: u32, code: i32) -> Vec<u8> {
        let mut d = DoneMessage::default();
        d.code = code;
        bytes(seq, NetlinkPayload::Done(d))
    }

    fn ack(seq: u32, errno: i32) -> Vec<u8> {
        let mut e = ErrorMessage::default();
        e.code = NonZeroI32::new(-errno);
        e.header = vec![0; 16]; // the echoed request header
        bytes(seq, NetlinkPayload::Error(e))
    }

    fn ids(ex: Exchange<Msg>) -> Vec<u8> {
        ex.into_replies()
            .into_iter()
            .map(|m| match &m.payload.attrs[0] {
                IpvsAttr::Other(nla) => {
                    let mut v = vec![0; nla.buffer_len()];
                    nla.emit(&mut v);
                    v[4]
                }
                other => panic!("{other:?}"),
            })
            .collect()
    }

    #[test]
    fn dump_over_several_datagrams_ends_at_done() {
        let mut ex = Exchange::<Msg>::new(7);
        let first = [service(7, 1), service(7, 2)].concat();
        assert!(!ex.absorb(&first).unwrap());
        assert!(!ex.absorb(&service(7, 3)).unwrap());
        assert!(ex.absorb(&[service(7, 4), done(7, 0)].concat()).unwrap());
        assert_eq!(ids(ex), [1, 2, 3, 4]);
    }

    #[test]
    fn reply_then_ack_and_stale_messages_are_skipped() {
        let mut ex = Exchange::<Msg>::new(9);
        // leftovers of request 8, which failed half-way through its dump
        assert!(!ex.absorb(&[service(8, 1), done(8, 0)].concat()).unwrap());
        assert!(ex.absorb(&[service(9, 5), ack(9, 0)].concat()).unwrap());
        assert_eq!(ids(ex), [5]);
    }

    #[test]
    fn nack_and_failed_done_carry_the_errno() {
        let mut ex = Exchange::<Msg>::new(1);
        assert!(matches!(ex.absorb(&ack(1, 17)), Err(ReplyError::Errno(17))));
        let mut ex = Exchange::<Msg>::new(2);
        let r = ex.absorb(&[service(2, 1), done(2, -12)].concat());
        assert!(matches!(r, Err(ReplyError::Errno(12))));
    }

    #[test]
    fn empty_dump_and_garbage() {
        let mut ex = Exchange::<Msg>::new(3);
        assert!(ex.absorb(&done(3, 0)).unwrap());
        assert!(ids(ex).is_empty());
        let mut ex = Exchange::<Msg>::new(3);
        let mut bad = service(3, 1);
        bad[0] = 200; // length beyond the datagram
        assert!(matches!(ex.absorb(&bad), Err(ReplyError::Decode(_))));
        let mut ex = Exchange::<Msg>::new(3);
        assert!(matches!(ex.absorb(&[1, 2, 3]), Err(ReplyError::Decode(_))));
    }
}
