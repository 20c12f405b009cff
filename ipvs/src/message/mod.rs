//! Typed IPVS generic-netlink messages (`include/uapi/linux/ip_vs.h`), built on
//! `netlink-packet-generic` the way `netlink-packet-wireguard` is: a payload type that
//! implements [`GenlFamily`], [`Emitable`] and `ParseableParametrized<[u8], GenlHeader>`,
//! wrapped in `NetlinkMessage<GenlMessage<IpvsMessage>>`.
//!
//! Command numbers follow the kernel header (`IPVS_CMD_UNSPEC = 0`, NEW_SERVICE = 1 …
//! GET_INFO = 15, FLUSH = 17); some public snippets use other numbers, which the
//! kernel would read as different commands. A unit test pins every number.

mod dest;
mod inet;
mod service;
mod stats;

use netlink_packet_core::{
    DecodeError, DefaultNla, Emitable, ErrorContext, NLA_F_NESTED, Nla, NlaBuffer, NlasIterator,
    Parseable, ParseableParametrized, parse_u32,
};
use netlink_packet_generic::{GenlFamily, GenlHeader};

pub use dest::{
    DestAttr, IP_VS_CONN_F_BYPASS, IP_VS_CONN_F_DROUTE, IP_VS_CONN_F_FWD_MASK,
    IP_VS_CONN_F_LOCALNODE, IP_VS_CONN_F_MASQ, IP_VS_CONN_F_TUNNEL,
};
pub use inet::{AF_INET, AF_INET6, InetAddr, family_of};
pub use service::{IP_VS_SVC_F_HASHED, IP_VS_SVC_F_PERSISTENT, ServiceAttr, ServiceFlags};
pub use stats::{Counter, StatsAttr, StatsKind};

/// `IPVS_GENL_NAME`: the generic-netlink family name to resolve.
pub const IPVS_GENL_NAME: &str = "IPVS";
/// `IPVS_GENL_VERSION`.
pub const IPVS_GENL_VERSION: u8 = 1;

// IPVS_CMD_ATTR_*: the top level of every command.
const CMD_ATTR_SERVICE: u16 = 1;
const CMD_ATTR_DEST: u16 = 2;
// IPVS_INFO_ATTR_*: the top level of the GET_INFO reply (which reuses numbers 1 and 2).
const INFO_ATTR_VERSION: u16 = 1;
const INFO_ATTR_CONN_TAB_SIZE: u16 = 2;

macro_rules! commands {
    ($($(#[$doc:meta])* $name:ident = $num:literal,)+) => {
        /// `IPVS_CMD_*`, numbered as in `include/uapi/linux/ip_vs.h`.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        pub enum IpvsCmd {
            $($(#[$doc])* $name,)+
            /// A command this client does not know.
            Other(u8),
        }

        impl From<IpvsCmd> for u8 {
            fn from(cmd: IpvsCmd) -> u8 {
                match cmd {
                    $(IpvsCmd::$name => $num,)+
                    IpvsCmd::Other(n) => n,
                }
            }
        }

        impl From<u8> for IpvsCmd {
            fn from(n: u8) -> IpvsCmd {
                match n {
                    $($num => IpvsCmd::$name,)+
                    n => IpvsCmd::Other(n),
                }
            }
        }
    };
}

commands! {
    /// `IPVS_CMD_NEW_SERVICE`: add a service; also the command of GET_SERVICE replies.
    NewService = 1,
    /// `IPVS_CMD_SET_SERVICE`: modify a service.
    SetService = 2,
    /// `IPVS_CMD_DEL_SERVICE`: delete a service and its destinations.
    DelService = 3,
    /// `IPVS_CMD_GET_SERVICE`: get one service, or all with `NLM_F_DUMP`.
    GetService = 4,
    /// `IPVS_CMD_NEW_DEST`: add a destination; also the command of GET_DEST replies.
    NewDest = 5,
    /// `IPVS_CMD_SET_DEST`: modify a destination.
    SetDest = 6,
    /// `IPVS_CMD_DEL_DEST`: delete a destination.
    DelDest = 7,
    /// `IPVS_CMD_GET_DEST`: dump the destinations of one service.
    GetDest = 8,
    /// `IPVS_CMD_NEW_DAEMON`: start a sync daemon.
    NewDaemon = 9,
    /// `IPVS_CMD_DEL_DAEMON`: stop a sync daemon.
    DelDaemon = 10,
    /// `IPVS_CMD_GET_DAEMON`: sync daemon status.
    GetDaemon = 11,
    /// `IPVS_CMD_SET_CONFIG`: set timeouts.
    SetConfig = 12,
    /// `IPVS_CMD_GET_CONFIG`: get timeouts.
    GetConfig = 13,
    /// `IPVS_CMD_SET_INFO`: only used as the command of the GET_INFO reply.
    SetInfo = 14,
    /// `IPVS_CMD_GET_INFO`: version and connection table size.
    GetInfo = 15,
    /// `IPVS_CMD_ZERO`: zero counters.
    Zero = 16,
    /// `IPVS_CMD_FLUSH`: delete every service.
    Flush = 17,
}

/// A top-level attribute of an IPVS message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum IpvsAttr {
    /// `IPVS_CMD_ATTR_SERVICE` (nested [`ServiceAttr`]s).
    Service(Vec<ServiceAttr>),
    /// `IPVS_CMD_ATTR_DEST` (nested [`DestAttr`]s).
    Dest(Vec<DestAttr>),
    /// `IPVS_INFO_ATTR_VERSION` (u32, e.g. `0x010201` for 1.2.1); GET_INFO reply only.
    InfoVersion(u32),
    /// `IPVS_INFO_ATTR_CONN_TAB_SIZE` (u32); GET_INFO reply only.
    InfoConnTabSize(u32),
    /// Any other attribute (daemon, timeouts).
    Other(DefaultNla),
}

impl Nla for IpvsAttr {
    fn value_len(&self) -> usize {
        match self {
            Self::Service(nlas) => nlas.as_slice().buffer_len(),
            Self::Dest(nlas) => nlas.as_slice().buffer_len(),
            Self::InfoVersion(_) | Self::InfoConnTabSize(_) => 4,
            Self::Other(nla) => nla.value_len(),
        }
    }

    fn kind(&self) -> u16 {
        // Nests are flagged NLA_F_NESTED, as libnl (ipvsadm) sends them.
        match self {
            Self::Service(_) => CMD_ATTR_SERVICE | NLA_F_NESTED,
            Self::Dest(_) => CMD_ATTR_DEST | NLA_F_NESTED,
            Self::InfoVersion(_) => INFO_ATTR_VERSION,
            Self::InfoConnTabSize(_) => INFO_ATTR_CONN_TAB_SIZE,
            Self::Other(nla) => nla.kind(),
        }
    }

    fn emit_value(&self, buf: &mut [u8]) {
        match self {
            Self::Service(nlas) => nlas.as_slice().emit(buf),
            Self::Dest(nlas) => nlas.as_slice().emit(buf),
            Self::InfoVersion(v) | Self::InfoConnTabSize(v) => {
                buf.copy_from_slice(&v.to_ne_bytes())
            }
            Self::Other(nla) => nla.emit_value(buf),
        }
    }
}

/// The payload of an IPVS generic-netlink message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IpvsMessage {
    /// The command (`genlmsghdr.cmd`).
    pub cmd: IpvsCmd,
    /// The top-level attributes.
    pub attrs: Vec<IpvsAttr>,
}

impl IpvsMessage {
    /// The first service nest, if any.
    pub fn service(&self) -> Option<&[ServiceAttr]> {
        self.attrs.iter().find_map(|a| match a {
            IpvsAttr::Service(s) => Some(s.as_slice()),
            _ => None,
        })
    }

    /// The first destination nest, if any.
    pub fn dest(&self) -> Option<&[DestAttr]> {
        self.attrs.iter().find_map(|a| match a {
            IpvsAttr::Dest(d) => Some(d.as_slice()),
            _ => None,
        })
    }
}

impl GenlFamily for IpvsMessage {
    fn family_name() -> &'static str {
        IPVS_GENL_NAME
    }

    fn version(&self) -> u8 {
        IPVS_GENL_VERSION
    }

    fn command(&self) -> u8 {
        self.cmd.into()
    }
}

impl Emitable for IpvsMessage {
    fn buffer_len(&self) -> usize {
        self.attrs.as_slice().buffer_len()
    }

    fn emit(&self, buffer: &mut [u8]) {
        self.attrs.as_slice().emit(buffer)
    }
}

impl ParseableParametrized<[u8], GenlHeader> for IpvsMessage {
    fn parse_with_param(buf: &[u8], header: GenlHeader) -> Result<Self, DecodeError> {
        let cmd = IpvsCmd::from(header.cmd);
        let mut attrs = Vec::new();
        for nla in NlasIterator::new(buf) {
            let nla = nla.context("invalid IPVS netlink attribute")?;
            let value = nla.value();
            // The GET_INFO reply puts IPVS_INFO_ATTR_* at the top level, where
            // their numbers collide with IPVS_CMD_ATTR_SERVICE/DEST.
            let attr = match (cmd, nla.kind()) {
                (IpvsCmd::SetInfo, INFO_ATTR_VERSION) => IpvsAttr::InfoVersion(parse_u32(value)?),
                (IpvsCmd::SetInfo, INFO_ATTR_CONN_TAB_SIZE) => {
                    IpvsAttr::InfoConnTabSize(parse_u32(value)?)
                }
                (IpvsCmd::SetInfo, _) => IpvsAttr::Other(DefaultNla::parse(&nla)?),
                (_, CMD_ATTR_SERVICE) => {
                    IpvsAttr::Service(parse_nested(value, "IPVS_CMD_ATTR_SERVICE")?)
                }
                (_, CMD_ATTR_DEST) => IpvsAttr::Dest(parse_nested(value, "IPVS_CMD_ATTR_DEST")?),
                _ => IpvsAttr::Other(DefaultNla::parse(&nla)?),
            };
            attrs.push(attr);
        }
        Ok(Self { cmd, attrs })
    }
}

/// Parses the attributes of a nest named `what` (for error messages).
pub(crate) fn parse_nested<A>(buf: &[u8], what: &str) -> Result<Vec<A>, DecodeError>
where
    A: for<'a> Parseable<NlaBuffer<&'a [u8]>>,
{
    NlasIterator::new(buf)
        .map(|nla| nla.and_then(|nla| A::parse(&nla)))
        .collect::<Result<Vec<_>, _>>()
        .context(format!("invalid attribute in {what}"))
}

#[cfg(test)]
mod tests {
    //! Encode → decode round trips of every attribute kind. Byte-exact comparisons
    //! with ipvsadm live in `proxy/tests/ipvs_fixtures.rs`.

    use super::*;

    fn round_trip(msg: IpvsMessage) {
        let mut buf = vec![0; msg.buffer_len()];
        msg.emit(&mut buf);
        let header = GenlHeader {
            cmd: msg.cmd.into(),
            version: IPVS_GENL_VERSION,
        };
        let back = IpvsMessage::parse_with_param(&buf, header).unwrap();
        assert_eq!(back, msg);
    }

    fn all_counters(wide: bool) -> Vec<StatsAttr> {
        use StatsKind::*;
        [
            Conns, InPkts, OutPkts, InBytes, OutBytes, Cps, InPps, OutPps, InBps, OutBps,
        ]
        .into_iter()
        .zip(1u32..)
        .map(|(k, v)| {
            let c = if wide || matches!(k, InBytes | OutBytes) {
                Counter::U64(u64::from(v) << 33)
            } else {
                Counter::U32(v)
            };
            StatsAttr::Counter(k, c)
        })
        .chain([StatsAttr::Other(DefaultNla::new(11, vec![]))])
        .collect()
    }

    #[test]
    fn commands_use_the_kernel_numbering() {
        let expected = [
            (IpvsCmd::NewService, 1),
            (IpvsCmd::SetService, 2),
            (IpvsCmd::DelService, 3),
            (IpvsCmd::GetService, 4),
            (IpvsCmd::NewDest, 5),
            (IpvsCmd::SetDest, 6),
            (IpvsCmd::DelDest, 7),
            (IpvsCmd::GetDest, 8),
            (IpvsCmd::SetInfo, 14),
            (IpvsCmd::GetInfo, 15),
            (IpvsCmd::Zero, 16),
            (IpvsCmd::Flush, 17),
        ];
        for (cmd, n) in expected {
            assert_eq!(u8::from(cmd), n, "{cmd:?}");
            assert_eq!(IpvsCmd::from(n), cmd);
        }
        for n in 0..=255u8 {
            assert_eq!(u8::from(IpvsCmd::from(n)), n);
        }
    }

    #[test]
    fn every_service_attribute_round_trips() {
        round_trip(IpvsMessage {
            cmd: IpvsCmd::NewService,
            attrs: vec![IpvsAttr::Service(vec![
                ServiceAttr::AddressFamily(AF_INET6),
                ServiceAttr::Protocol(132),
                ServiceAttr::Address(InetAddr::from(
                    "2001:db8::1".parse::<std::net::IpAddr>().unwrap(),
                )),
                ServiceAttr::Port(443),
                ServiceAttr::Fwmark(7),
                ServiceAttr::SchedName("wrr".into()),
                ServiceAttr::Flags(ServiceFlags { flags: 3, mask: !0 }),
                ServiceAttr::Timeout(300),
                ServiceAttr::Netmask([0x80, 0, 0, 0]),
                ServiceAttr::Stats(all_counters(false)),
                ServiceAttr::PeName("sip".into()),
                ServiceAttr::Stats64(all_counters(true)),
                ServiceAttr::Other(DefaultNla::new(99, vec![1, 2, 3])),
            ])],
        });
    }

    #[test]
    fn every_dest_attribute_round_trips() {
        round_trip(IpvsMessage {
            cmd: IpvsCmd::NewDest,
            attrs: vec![
                IpvsAttr::Service(vec![
                    ServiceAttr::AddressFamily(AF_INET),
                    ServiceAttr::Fwmark(1),
                ]),
                IpvsAttr::Dest(vec![
                    DestAttr::Address(InetAddr::from(
                        "192.0.2.9".parse::<std::net::IpAddr>().unwrap(),
                    )),
                    DestAttr::Port(8080),
                    DestAttr::FwdMethod(IP_VS_CONN_F_TUNNEL),
                    DestAttr::Weight(5),
                    DestAttr::UpperThreshold(100),
                    DestAttr::LowerThreshold(10),
                    DestAttr::ActiveConns(1),
                    DestAttr::InactiveConns(2),
                    DestAttr::PersistentConns(3),
                    DestAttr::Stats(all_counters(false)),
                    DestAttr::AddressFamily(AF_INET),
                    DestAttr::Stats64(all_counters(true)),
                    DestAttr::TunnelType(1),
                    DestAttr::TunnelPort(6080),
                    DestAttr::TunnelFlags(3),
                    DestAttr::Other(DefaultNla::new(42, vec![9; 5])),
                ]),
                IpvsAttr::Other(DefaultNla::new(4, 60u32.to_ne_bytes().to_vec())),
            ],
        });
    }

    #[test]
    fn info_reply_attributes_are_read_by_command() {
        round_trip(IpvsMessage {
            cmd: IpvsCmd::SetInfo,
            attrs: vec![
                IpvsAttr::InfoVersion(0x010201),
                IpvsAttr::InfoConnTabSize(4096),
            ],
        });
        // the same numbers in another command are the service and dest nests
        let info = IpvsMessage {
            cmd: IpvsCmd::SetInfo,
            attrs: vec![IpvsAttr::InfoVersion(0x010201)],
        };
        let mut buf = vec![0; info.buffer_len()];
        info.emit(&mut buf);
        let as_service = IpvsMessage::parse_with_param(&buf, GenlHeader { cmd: 1, version: 1 });
        // four bytes are not a valid nest: the parse must fail, not misread
        assert!(as_service.is_err());
    }

    #[test]
    fn ports_are_big_endian_on_the_wire() {
        let attr = ServiceAttr::Port(0x1f90);
        let mut buf = vec![0; attr.buffer_len()];
        attr.emit(&mut buf);
        assert_eq!(buf, [6, 0, 4, 0, 0x1f, 0x90, 0, 0]);
        let attr = DestAttr::TunnelPort(0x1234);
        let mut buf = vec![0; attr.buffer_len()];
        attr.emit(&mut buf);
        assert_eq!(buf, [6, 0, 14, 0, 0x12, 0x34, 0, 0]);
    }

    #[test]
    fn truncated_attributes_are_errors() {
        // a service nest holding a 3-byte AF attribute
        let buf = [12, 0, 1, 0x80, 7, 0, 1, 0, 2, 0, 0, 0];
        assert!(IpvsMessage::parse_with_param(&buf, GenlHeader { cmd: 1, version: 1 }).is_err());
        // an attribute header claiming more bytes than there are
        let buf = [40, 0, 1, 0x80, 0, 0, 0, 0];
        assert!(IpvsMessage::parse_with_param(&buf, GenlHeader { cmd: 1, version: 1 }).is_err());
    }
}
