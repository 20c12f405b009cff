//! `union nf_inet_addr`: how IPVS carries addresses on the wire.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use netlink_packet_core::DecodeError;

/// Linux `AF_INET`, as carried in `IPVS_SVC_ATTR_AF` and `IPVS_DEST_ATTR_ADDR_FAMILY`.
pub const AF_INET: u16 = 2;
/// Linux `AF_INET6`.
pub const AF_INET6: u16 = 10;

/// The 16 bytes of a kernel `union nf_inet_addr`.
///
/// Both the kernel and ipvsadm always send all 16 bytes, an IPv4 address in the first
/// four and zeros after it; which family it is comes from a separate attribute
/// (`IPVS_SVC_ATTR_AF`, `IPVS_DEST_ATTR_ADDR_FAMILY`), so the raw bytes are kept here
/// and interpreted with [`InetAddr::to_ip`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct InetAddr(pub [u8; 16]);

impl InetAddr {
    /// Length of the attribute value.
    pub const LEN: usize = 16;

    /// Parses an attribute value; shorter values (4 bytes for IPv4) are zero-padded,
    /// as the kernel's `nla_memcpy` would do.
    pub fn parse(value: &[u8]) -> Result<Self, DecodeError> {
        if value.len() > Self::LEN {
            return Err(DecodeError::invalid_ip_address(value.len()));
        }
        let mut bytes = [0; Self::LEN];
        bytes[..value.len()].copy_from_slice(value);
        Ok(Self(bytes))
    }

    /// Interprets the bytes for address family `af` (`AF_INET`/`AF_INET6`).
    pub fn to_ip(self, af: u16) -> Option<IpAddr> {
        match af {
            AF_INET => {
                let [a, b, c, d, ..] = self.0;
                Some(IpAddr::V4(Ipv4Addr::new(a, b, c, d)))
            }
            AF_INET6 => Some(IpAddr::V6(Ipv6Addr::from(self.0))),
            _ => None,
        }
    }
}

impl From<IpAddr> for InetAddr {
    fn from(ip: IpAddr) -> Self {
        match ip {
            IpAddr::V4(v4) => {
                let mut bytes = [0; Self::LEN];
                bytes[..4].copy_from_slice(&v4.octets());
                Self(bytes)
            }
            IpAddr::V6(v6) => Self(v6.octets()),
        }
    }
}

/// The address family number of `ip`.
pub fn family_of(ip: IpAddr) -> u16 {
    match ip {
        IpAddr::V4(_) => AF_INET,
        IpAddr::V6(_) => AF_INET6,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ipv4_is_zero_padded_and_round_trips() {
        let ip: IpAddr = "192.0.2.7".parse().unwrap();
        let raw = InetAddr::from(ip);
        assert_eq!(&raw.0[..4], &[192, 0, 2, 7]);
        assert_eq!(&raw.0[4..], &[0; 12]);
        assert_eq!(raw.to_ip(AF_INET), Some(ip));
        assert_eq!(InetAddr::parse(&[192, 0, 2, 7]).unwrap(), raw);
    }

    #[test]
    fn ipv6_round_trips_and_unknown_family_is_none() {
        let ip: IpAddr = "2001:db8::1".parse().unwrap();
        let raw = InetAddr::from(ip);
        assert_eq!(raw.to_ip(AF_INET6), Some(ip));
        assert_eq!(raw.to_ip(7), None);
        assert!(InetAddr::parse(&[0; 17]).is_err());
    }
}
