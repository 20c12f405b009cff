//! Building nfnetlink messages: a netlink header, the `nfgenmsg` header, then
//! attributes (type-length-value, 4-byte aligned, nestable).

/// `NLM_F_REQUEST`.
pub const F_REQUEST: u16 = 0x1;
/// `NLM_F_CREATE`: create the object if it does not exist.
pub const F_CREATE: u16 = 0x400;
/// `NLM_F_APPEND`: a new rule goes to the end of its chain (without it, to the start).
pub const F_APPEND: u16 = 0x800;
/// `NLA_F_NESTED`.
const NLA_F_NESTED: u16 = 0x8000;

const NLMSG_HDRLEN: usize = 16;

fn align(n: usize) -> usize {
    (n + 3) & !3
}

/// A batch of messages being written into one buffer.
#[derive(Debug, Default)]
pub struct Buffer {
    bytes: Vec<u8>,
    /// Start of the message being written.
    msg_start: usize,
    /// Starts of the open nested attributes.
    nests: Vec<usize>,
}

impl Buffer {
    pub fn with_capacity(n: usize) -> Self {
        Buffer {
            bytes: Vec::with_capacity(n),
            ..Default::default()
        }
    }

    pub fn bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// Starts a message: netlink header (length filled in by [`Buffer::end_msg`]) and
    /// `nfgenmsg { family, version 0, res_id }`.
    pub fn begin_msg(&mut self, msg_type: u16, flags: u16, seq: u32, family: u8, res_id: u16) {
        debug_assert!(self.nests.is_empty(), "message started inside a nest");
        self.msg_start = self.bytes.len();
        self.bytes.extend_from_slice(&0u32.to_ne_bytes());
        self.bytes.extend_from_slice(&msg_type.to_ne_bytes());
        self.bytes.extend_from_slice(&flags.to_ne_bytes());
        self.bytes.extend_from_slice(&seq.to_ne_bytes());
        self.bytes.extend_from_slice(&0u32.to_ne_bytes()); // port id: the kernel's
        self.bytes.push(family);
        self.bytes.push(0); // NFNETLINK_V0
        self.bytes.extend_from_slice(&res_id.to_be_bytes());
    }

    /// Closes the message started last.
    pub fn end_msg(&mut self) {
        debug_assert!(self.nests.is_empty(), "message ended inside a nest");
        let len = (self.bytes.len() - self.msg_start) as u32;
        self.bytes[self.msg_start..self.msg_start + 4].copy_from_slice(&len.to_ne_bytes());
        debug_assert!(len as usize >= NLMSG_HDRLEN);
    }

    /// One attribute with a raw value (padded to 4 bytes).
    pub fn put(&mut self, kind: u16, value: &[u8]) {
        let len = 4 + value.len();
        self.bytes.extend_from_slice(&(len as u16).to_ne_bytes());
        self.bytes.extend_from_slice(&kind.to_ne_bytes());
        self.bytes.extend_from_slice(value);
        self.bytes.resize(self.bytes.len() + align(len) - len, 0);
    }

    /// A NUL-terminated string attribute.
    pub fn put_str(&mut self, kind: u16, value: &str) {
        let len = 4 + value.len() + 1;
        self.bytes.extend_from_slice(&(len as u16).to_ne_bytes());
        self.bytes.extend_from_slice(&kind.to_ne_bytes());
        self.bytes.extend_from_slice(value.as_bytes());
        self.bytes.push(0);
        self.bytes.resize(self.bytes.len() + align(len) - len, 0);
    }

    /// A big-endian `u32` attribute (nf_tables numbers travel in network order).
    pub fn put_be32(&mut self, kind: u16, value: u32) {
        self.put(kind, &value.to_be_bytes());
    }

    /// A big-endian `u64` attribute.
    pub fn put_be64(&mut self, kind: u16, value: u64) {
        self.put(kind, &value.to_be_bytes());
    }

    /// Opens a nested attribute; close it with [`Buffer::end_nest`].
    pub fn begin_nest(&mut self, kind: u16) {
        self.nests.push(self.bytes.len());
        self.bytes.extend_from_slice(&0u16.to_ne_bytes());
        self.bytes
            .extend_from_slice(&(kind | NLA_F_NESTED).to_ne_bytes());
    }

    /// Closes the nested attribute opened last.
    ///
    /// # Panics
    /// When no nest is open, or the nest outgrew the 64 KiB an attribute length allows
    /// (callers split large lists into several messages).
    pub fn end_nest(&mut self) {
        let start = self.nests.pop().expect("end_nest without begin_nest");
        let len = self.bytes.len() - start;
        let len = u16::try_from(len).expect("netlink attribute longer than 64 KiB");
        self.bytes[start..start + 2].copy_from_slice(&len.to_ne_bytes());
    }

    /// Bytes written since the innermost open nest began (to split long lists).
    pub fn nest_len(&self) -> usize {
        self.nests.last().map_or(0, |s| self.bytes.len() - s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn message_with_nested_attributes_has_kernel_layout() {
        let mut b = Buffer::default();
        b.begin_msg(0x0a00, F_REQUEST | F_CREATE, 7, 1, 0);
        b.put_str(1, "t");
        b.begin_nest(4);
        b.put_be32(1, 0);
        b.end_nest();
        b.end_msg();
        let expected: Vec<u8> = [
            &40u32.to_ne_bytes()[..],
            &0x0a00u16.to_ne_bytes(),
            &0x0401u16.to_ne_bytes(),
            &7u32.to_ne_bytes(),
            &0u32.to_ne_bytes(),
            &[1, 0, 0, 0],
            // NFTA 1 "t\0" padded
            &6u16.to_ne_bytes(),
            &1u16.to_ne_bytes(),
            b"t\0\0\0",
            // nest 4 holding be32 0
            &12u16.to_ne_bytes(),
            &(4u16 | 0x8000).to_ne_bytes(),
            &8u16.to_ne_bytes(),
            &1u16.to_ne_bytes(),
            &[0, 0, 0, 0],
        ]
        .concat();
        assert_eq!(b.bytes(), &expected[..]);
    }

    #[test]
    fn odd_lengths_are_padded_but_not_counted() {
        let mut b = Buffer::default();
        b.put(3, &[0x06]);
        assert_eq!(b.bytes(), &[5, 0, 3, 0, 6, 0, 0, 0]);
        assert_eq!(b.nest_len(), 0);
    }
}
