//! Reading netlink datagrams: the messages of a datagram and the attributes of a
//! message, each up to the first malformed one.

pub(crate) const NLMSG_ERROR: u16 = 2;
pub(crate) const NLMSG_DONE: u16 = 3;

/// One netlink message of a datagram.
pub(crate) struct Message<'a> {
    pub(crate) kind: u16,
    pub(crate) seq: u32,
    /// What follows the 16-byte header.
    pub(crate) body: &'a [u8],
}

/// The messages of a received datagram, up to the first malformed one.
pub(crate) fn messages(mut data: &[u8]) -> impl Iterator<Item = Message<'_>> {
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
pub(crate) fn attributes(mut attrs: &[u8]) -> impl Iterator<Item = (u16, &[u8])> {
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
pub(crate) fn c_string(value: &[u8]) -> String {
    let value = value.split(|b| *b == 0).next().unwrap_or(value);
    String::from_utf8_lossy(value).into_owned()
}

/// The string attribute `kind` of an attribute list (NUL-terminated in the message).
pub(crate) fn string_attr(attrs: &[u8], kind: u16) -> Option<String> {
    attributes(attrs)
        .find(|(k, _)| *k == kind)
        .map(|(_, v)| c_string(v))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::msg::Buffer;

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
}
