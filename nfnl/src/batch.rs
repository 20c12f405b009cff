//! One nf_tables transaction: `BATCH_BEGIN`, numbered messages, `BATCH_END`. The kernel
//! applies all of it or nothing, and names a refused message by its number, which
//! [`FinishedBatch`] maps back to the message's index.

use crate::SUBSYS_NFTABLES;
use crate::msg::{Buffer, F_REQUEST};

const NFNL_MSG_BATCH_BEGIN: u16 = 0x10;
const NFNL_MSG_BATCH_END: u16 = 0x11;

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
    pub(crate) fn begin(&mut self, msg: u16, flags: u16, family: u8) -> &mut Buffer {
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

    pub(crate) fn end(&mut self) {
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
    pub(crate) end_seq: u32,
}

impl FinishedBatch {
    pub fn bytes(&self) -> &[u8] {
        self.buf.bytes()
    }

    /// The message index (0-based, as added) of sequence number `seq`.
    pub(crate) fn index_of(&self, seq: u32) -> Option<usize> {
        let off = seq.wrapping_sub(self.first_seq);
        (off >= 1 && seq != self.end_seq && off < self.end_seq.wrapping_sub(self.first_seq))
            .then(|| off as usize - 1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
