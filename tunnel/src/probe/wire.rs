//! The probe datagram: 24 bytes, `CWPRB1`, a kind (request or reply), one zero byte, the
//! sender's session (random per process) and a sequence number, big-endian. A reply is the
//! request with its kind changed, so it is never larger than what it answers.

pub const LEN: usize = 24;
const MAGIC: &[u8; 6] = b"CWPRB1";

/// Request or reply.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Request = 1,
    Reply = 2,
}

/// One probe datagram.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Probe {
    pub kind: Kind,
    pub session: u64,
    pub seq: u64,
}

impl Probe {
    pub fn encode(&self) -> [u8; LEN] {
        let mut b = [0u8; LEN];
        b[..6].copy_from_slice(MAGIC);
        b[6] = self.kind as u8;
        b[8..16].copy_from_slice(&self.session.to_be_bytes());
        b[16..24].copy_from_slice(&self.seq.to_be_bytes());
        b
    }

    /// The probe in `b`, or None for anything else (other lengths, other magic, a bad kind).
    pub fn decode(b: &[u8]) -> Option<Probe> {
        if b.len() != LEN || &b[..6] != MAGIC || b[7] != 0 {
            return None;
        }
        let kind = match b[6] {
            1 => Kind::Request,
            2 => Kind::Reply,
            _ => return None,
        };
        let word = |r: std::ops::Range<usize>| -> Option<u64> {
            Some(u64::from_be_bytes(b[r].try_into().ok()?))
        };
        Some(Probe {
            kind,
            session: word(8..16)?,
            seq: word(16..24)?,
        })
    }

    /// The answer to a request.
    pub fn reply(&self) -> Probe {
        Probe {
            kind: Kind::Reply,
            ..*self
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_garbage() {
        let p = Probe {
            kind: Kind::Request,
            session: 0x0102_0304_0506_0708,
            seq: 42,
        };
        let b = p.encode();
        assert_eq!(Probe::decode(&b), Some(p));
        assert_eq!(
            Probe::decode(&p.reply().encode()).unwrap().kind,
            Kind::Reply
        );
        assert_eq!(Probe::decode(&b[..23]), None);
        let mut bad = b;
        bad[6] = 3;
        assert_eq!(Probe::decode(&bad), None);
        let mut bad = b;
        bad[0] = b'X';
        assert_eq!(Probe::decode(&bad), None);
        assert_eq!(Probe::decode(&[0u8; LEN]), None);
    }
}
