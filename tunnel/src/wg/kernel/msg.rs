//! Pure translation between our types and the kernel's generic-netlink WireGuard messages
//! (`WG_CMD_SET_DEVICE`, `WG_CMD_GET_DEVICE`), unit-tested without a kernel.

use std::net::IpAddr;
use std::time::{Duration, SystemTime};

use ipnet::IpNet;
use netlink_packet_wireguard::{
    WireguardAddressFamily, WireguardAllowedIp, WireguardAllowedIpAttr, WireguardAttribute,
    WireguardCmd, WireguardMessage, WireguardPeer, WireguardPeerAttribute, WireguardPeerFlags,
};

use crate::wg::{DeviceConfig, PeerConfig, PeerDiff, PeerStatus, PresharedKey, PublicKey};

/// Peers per `SET_DEVICE` message. The kernel reads one message at a time from a socket buffer of
/// a few pages, so big peer sets are split like `wg(8)` does.
pub const PEERS_PER_MESSAGE: usize = 32;

/// What `GET_DEVICE` reported about the interface.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DeviceState {
    /// The configured public key (derived from the private key) if any.
    pub public_key: Option<PublicKey>,
    /// The listen port.
    pub listen_port: u16,
    /// The peers, in kernel order.
    pub peers: Vec<PeerStatus>,
    /// Preshared keys by peer, as the kernel reports them (all-zero means none).
    pub preshared: Vec<(PublicKey, Option<PresharedKey>)>,
}

/// The `GET_DEVICE` request for `ifname` (sent with `NLM_F_DUMP`).
pub fn get_device(ifname: &str) -> WireguardMessage {
    WireguardMessage {
        cmd: WireguardCmd::GetDevice,
        attributes: vec![WireguardAttribute::IfName(ifname.to_owned())],
    }
}

/// The `SET_DEVICE` messages that move the interface from its current peers to `config`:
/// private key and port in the first message, then only the peers of `diff`. Unchanged peers are
/// not mentioned, so the kernel keeps their sessions; `WGDEVICE_F_REPLACE_PEERS` is never used.
pub fn set_device(ifname: &str, config: &DeviceConfig, diff: &PeerDiff) -> Vec<WireguardMessage> {
    let mut peers: Vec<WireguardPeer> = diff.removed.iter().map(remove_peer).collect();
    peers.extend(diff.added.iter().chain(&diff.updated).map(set_peer));
    let head = vec![
        WireguardAttribute::IfName(ifname.to_owned()),
        WireguardAttribute::PrivateKey(config.private_key.to_bytes()),
        WireguardAttribute::ListenPort(config.listen_port),
    ];
    let mut messages = Vec::new();
    let mut chunks = peers.chunks(PEERS_PER_MESSAGE);
    let first = chunks.next();
    let mut attributes = head;
    if let Some(chunk) = first {
        attributes.push(WireguardAttribute::Peers(chunk.to_vec()));
    }
    messages.push(WireguardMessage {
        cmd: WireguardCmd::SetDevice,
        attributes,
    });
    for chunk in chunks {
        messages.push(WireguardMessage {
            cmd: WireguardCmd::SetDevice,
            attributes: vec![
                WireguardAttribute::IfName(ifname.to_owned()),
                WireguardAttribute::Peers(chunk.to_vec()),
            ],
        });
    }
    messages
}

fn remove_peer(key: &PublicKey) -> WireguardPeer {
    WireguardPeer(vec![
        WireguardPeerAttribute::PublicKey(*key.as_bytes()),
        WireguardPeerAttribute::Flags(WireguardPeerFlags::RemoveMe),
    ])
}

fn set_peer(peer: &PeerConfig) -> WireguardPeer {
    let mut attrs = vec![
        WireguardPeerAttribute::PublicKey(*peer.public_key.as_bytes()),
        WireguardPeerAttribute::Flags(WireguardPeerFlags::ReplaceAllowedIps),
        // All zeros clears a preshared key.
        WireguardPeerAttribute::PresharedKey(
            peer.preshared_key
                .as_ref()
                .map_or([0; 32], PresharedKey::to_bytes),
        ),
        WireguardPeerAttribute::PersistentKeepalive(peer.persistent_keepalive.unwrap_or(0)),
    ];
    if let Some(ep) = peer.endpoint {
        attrs.push(WireguardPeerAttribute::Endpoint(ep));
    }
    attrs.push(WireguardPeerAttribute::AllowedIps(
        peer.allowed_ips.iter().map(allowed_ip).collect(),
    ));
    WireguardPeer(attrs)
}

fn allowed_ip(net: &IpNet) -> WireguardAllowedIp {
    let family = match net {
        IpNet::V4(_) => WireguardAddressFamily::Ipv4,
        IpNet::V6(_) => WireguardAddressFamily::Ipv6,
    };
    WireguardAllowedIp(vec![
        WireguardAllowedIpAttr::Family(family),
        WireguardAllowedIpAttr::IpAddr(net.network()),
        WireguardAllowedIpAttr::Cidr(net.prefix_len()),
    ])
}

/// Folds the (possibly several) `GET_DEVICE` dump replies into one state. The kernel splits a big
/// peer list over messages and may continue one peer's allowed IPs in the next message.
pub fn parse_device(replies: &[WireguardMessage]) -> DeviceState {
    let mut state = DeviceState::default();
    for msg in replies {
        for attr in &msg.attributes {
            match attr {
                WireguardAttribute::PublicKey(k) if *k != [0; 32] => {
                    state.public_key = Some(PublicKey::from_bytes(*k))
                }
                WireguardAttribute::ListenPort(p) => state.listen_port = *p,
                WireguardAttribute::Peers(peers) => {
                    for peer in peers {
                        merge_peer(&mut state, peer);
                    }
                }
                _ => {}
            }
        }
    }
    state
}

fn merge_peer(state: &mut DeviceState, peer: &WireguardPeer) {
    let Some(key) = peer.0.iter().find_map(|a| match a {
        WireguardPeerAttribute::PublicKey(k) => Some(PublicKey::from_bytes(*k)),
        _ => None,
    }) else {
        return;
    };
    let pos = match state.peers.iter().position(|p| p.public_key == key) {
        Some(pos) => pos,
        None => {
            state.peers.push(PeerStatus {
                public_key: key,
                endpoint: None,
                allowed_ips: Vec::new(),
                last_handshake: None,
                rx_bytes: 0,
                tx_bytes: 0,
                persistent_keepalive: None,
            });
            state.preshared.push((key, None));
            state.peers.len() - 1
        }
    };
    let status = &mut state.peers[pos];
    for attr in &peer.0 {
        match attr {
            WireguardPeerAttribute::Endpoint(ep) => status.endpoint = Some(*ep),
            WireguardPeerAttribute::PersistentKeepalive(k) => {
                status.persistent_keepalive = Some(*k).filter(|&k| k != 0)
            }
            WireguardPeerAttribute::LastHandshake(t) if t.seconds != 0 || t.nano_seconds != 0 => {
                status.last_handshake = Some(
                    SystemTime::UNIX_EPOCH
                        + Duration::new(
                            u64::try_from(t.seconds).unwrap_or(0),
                            u32::try_from(t.nano_seconds).unwrap_or(0),
                        ),
                );
            }
            WireguardPeerAttribute::RxBytes(b) => status.rx_bytes = *b,
            WireguardPeerAttribute::TxBytes(b) => status.tx_bytes = *b,
            WireguardPeerAttribute::AllowedIps(ips) => status
                .allowed_ips
                .extend(ips.iter().filter_map(parse_allowed_ip)),
            WireguardPeerAttribute::PresharedKey(k) if *k != [0; 32] => {
                state.preshared[pos].1 = Some(PresharedKey::from_bytes(*k));
            }
            _ => {}
        }
    }
}

fn parse_allowed_ip(ip: &WireguardAllowedIp) -> Option<IpNet> {
    let mut addr: Option<IpAddr> = None;
    let mut cidr: Option<u8> = None;
    for attr in &ip.0 {
        match attr {
            WireguardAllowedIpAttr::IpAddr(a) => addr = Some(*a),
            WireguardAllowedIpAttr::Cidr(c) => cidr = Some(*c),
            _ => {}
        }
    }
    IpNet::new(addr?, cidr?).ok()
}

#[cfg(test)]
mod tests {
    use netlink_packet_core::{Emitable as _, ParseableParametrized as _};
    use netlink_packet_generic::GenlHeader;

    use super::*;
    use crate::wg::{PrivateKey, diff_peers};

    // Test ranges: RFC 5737 documentation addresses.
    fn peer(byte: u8, ip: &str) -> PeerConfig {
        PeerConfig {
            public_key: PublicKey::from_bytes([byte; 32]),
            preshared_key: None,
            endpoint: Some(format!("192.0.2.{byte}:51820").parse().unwrap()),
            allowed_ips: vec![ip.parse().unwrap()],
            persistent_keepalive: Some(25),
        }
    }

    fn round_trip(msg: &WireguardMessage) -> WireguardMessage {
        let mut buf = vec![0u8; msg.buffer_len()];
        msg.emit(&mut buf);
        let header = GenlHeader {
            cmd: msg.cmd.into(),
            version: 1,
        };
        WireguardMessage::parse_with_param(&buf[..], header).unwrap()
    }

    #[test]
    fn set_device_mentions_only_changed_peers() {
        let config = DeviceConfig {
            private_key: PrivateKey::from_bytes([7; 32]),
            listen_port: 51820,
            peers: vec![peer(1, "198.51.100.0/26"), peer(3, "203.0.113.0/24")],
        };
        let current = vec![peer(1, "198.51.100.0/26"), peer(2, "198.51.100.64/26")];
        let msgs = set_device("cw0", &config, &diff_peers(&current, &config.peers));
        assert_eq!(msgs.len(), 1);
        let msg = round_trip(&msgs[0]);
        assert_eq!(msg, msgs[0]);
        let WireguardAttribute::Peers(peers) = &msg.attributes[3] else {
            panic!("peers attribute")
        };
        assert_eq!(peers.len(), 2);
        assert_eq!(
            peers[0].0,
            vec![
                WireguardPeerAttribute::PublicKey([2; 32]),
                WireguardPeerAttribute::Flags(WireguardPeerFlags::RemoveMe)
            ]
        );
        assert_eq!(peers[1].0[0], WireguardPeerAttribute::PublicKey([3; 32]));
        assert!(peers[1].0.contains(&WireguardPeerAttribute::Flags(
            WireguardPeerFlags::ReplaceAllowedIps
        )));
        assert!(peers[1].0.contains(&WireguardPeerAttribute::Endpoint(
            "192.0.2.3:51820".parse().unwrap()
        )));
        assert!(
            !msg.attributes
                .iter()
                .any(|a| matches!(a, WireguardAttribute::Flags(_))),
            "never REPLACE_PEERS"
        );
    }

    #[test]
    fn set_device_encodes_to_kernel_bytes() {
        let config = DeviceConfig {
            private_key: PrivateKey::from_bytes([7; 32]),
            listen_port: 51820,
            peers: vec![],
        };
        let diff = PeerDiff {
            removed: vec![PublicKey::from_bytes([2; 32])],
            ..PeerDiff::default()
        };
        let msg = &set_device("cw0", &config, &diff)[0];
        let mut buf = vec![0u8; msg.buffer_len()];
        msg.emit(&mut buf);
        // WGDEVICE_A_IFNAME (2) "cw0\0"
        assert_eq!(&buf[..8], &[8, 0, 2, 0, b'c', b'w', b'0', 0]);
        // WGDEVICE_A_PRIVATE_KEY (3), 32 bytes
        assert_eq!(&buf[8..12], &[36, 0, 3, 0]);
        // WGDEVICE_A_LISTEN_PORT (6), u16 host order
        assert_eq!(&buf[44..48], &[6, 0, 6, 0]);
        assert_eq!(u16::from_ne_bytes([buf[48], buf[49]]), 51820);
        // WGDEVICE_A_PEERS (8 | NLA_F_NESTED), one nested peer: public key (1) + flags (3) = REMOVE_ME
        let peers = &buf[52..];
        assert_eq!(u16::from_ne_bytes([peers[2], peers[3]]) & 0x7fff, 8);
        let peer = &peers[8..];
        assert_eq!(&peer[..4], &[36, 0, 1, 0]);
        assert_eq!(&peer[36..44], &[8, 0, 3, 0, 1, 0, 0, 0]);
    }

    #[test]
    fn big_peer_sets_are_split() {
        let peers: Vec<_> = (0..70).map(|i| peer(i, "198.51.100.0/32")).collect();
        let config = DeviceConfig {
            private_key: PrivateKey::from_bytes([7; 32]),
            listen_port: 1,
            peers,
        };
        let msgs = set_device("cw0", &config, &diff_peers(&[], &config.peers));
        assert_eq!(msgs.len(), 3);
        assert!(matches!(
            msgs[1].attributes[..],
            [WireguardAttribute::IfName(_), WireguardAttribute::Peers(_)]
        ));
    }

    #[test]
    fn parse_device_merges_split_replies() {
        let p = |ips: &str, extra: Vec<WireguardPeerAttribute>| {
            let mut attrs = vec![WireguardPeerAttribute::PublicKey([9; 32])];
            attrs.extend(extra);
            attrs.push(WireguardPeerAttribute::AllowedIps(vec![allowed_ip(
                &ips.parse().unwrap(),
            )]));
            WireguardPeer(attrs)
        };
        let first = WireguardMessage {
            cmd: WireguardCmd::GetDevice,
            attributes: vec![
                WireguardAttribute::ListenPort(51820),
                WireguardAttribute::PublicKey([4; 32]),
                WireguardAttribute::Peers(vec![p(
                    "198.51.100.0/24",
                    vec![
                        WireguardPeerAttribute::Endpoint("192.0.2.9:51820".parse().unwrap()),
                        WireguardPeerAttribute::LastHandshake(
                            netlink_packet_wireguard::WireguardTimeSpec {
                                seconds: 1_700_000_000,
                                nano_seconds: 5,
                            },
                        ),
                        WireguardPeerAttribute::RxBytes(10),
                        WireguardPeerAttribute::TxBytes(20),
                        WireguardPeerAttribute::PersistentKeepalive(0),
                    ],
                )]),
            ],
        };
        let second = WireguardMessage {
            cmd: WireguardCmd::GetDevice,
            attributes: vec![WireguardAttribute::Peers(vec![p("203.0.113.0/24", vec![])])],
        };
        let state = parse_device(&[round_trip(&first), round_trip(&second)]);
        assert_eq!(state.listen_port, 51820);
        assert_eq!(state.public_key, Some(PublicKey::from_bytes([4; 32])));
        assert_eq!(state.peers.len(), 1);
        let peer = &state.peers[0];
        assert_eq!(
            peer.allowed_ips,
            vec![
                "198.51.100.0/24".parse().unwrap(),
                "203.0.113.0/24".parse().unwrap()
            ]
        );
        assert_eq!(
            (peer.rx_bytes, peer.tx_bytes, peer.persistent_keepalive),
            (10, 20, None)
        );
        assert_eq!(
            peer.last_handshake,
            Some(SystemTime::UNIX_EPOCH + Duration::new(1_700_000_000, 5))
        );
    }
}
