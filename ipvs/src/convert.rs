//! Domain types ⇄ IPVS attributes, with the kernel's quirks in one place.

use std::net::IpAddr;

use super::message::{
    DestAttr, IP_VS_CONN_F_BYPASS, IP_VS_CONN_F_DROUTE, IP_VS_CONN_F_FWD_MASK,
    IP_VS_CONN_F_LOCALNODE, IP_VS_CONN_F_MASQ, IP_VS_CONN_F_TUNNEL, IP_VS_SVC_F_PERSISTENT,
    InetAddr, ServiceAttr, ServiceFlags, StatsAttr, StatsKind, family_of,
};
use super::model::{DestStats, Forward, Protocol, RealServer, Stats, VirtualService, full_prefix};

/// Why a reply could not be turned into domain types.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Malformed(pub String);

/// A service read from the kernel: a protocol service we model, or a firewall-mark
/// service we only acknowledge.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Decoded {
    Service(VirtualService, Stats),
    Fwmark(u32),
}

impl VirtualService {
    /// The attributes the kernel finds a service by (`ip_vs_genl_parse_service` with
    /// `full_entry = false`): AF, PROTOCOL, ADDR, PORT, in ipvsadm's order.
    pub(crate) fn identity_attrs(&self) -> Vec<ServiceAttr> {
        vec![
            ServiceAttr::AddressFamily(family_of(self.addr)),
            ServiceAttr::Protocol(self.proto.number()),
            ServiceAttr::Address(InetAddr::from(self.addr)),
            ServiceAttr::Port(self.port),
        ]
    }

    /// Identity plus everything NEW/SET_SERVICE require (SCHED_NAME, FLAGS, TIMEOUT,
    /// NETMASK), byte-for-byte what ipvsadm sends.
    pub(crate) fn full_attrs(&self) -> Vec<ServiceAttr> {
        let mut attrs = self.identity_attrs();
        let persistent = self.persistent.is_some();
        attrs.extend([
            ServiceAttr::SchedName(self.scheduler.clone()),
            // mask all bits, like ipvsadm: the kernel then ORs in its HASHED flag itself
            ServiceAttr::Flags(ServiceFlags {
                flags: if persistent {
                    IP_VS_SVC_F_PERSISTENT
                } else {
                    0
                },
                mask: !0,
            }),
            ServiceAttr::Timeout(self.persistent.unwrap_or(0)),
            ServiceAttr::Netmask(encode_netmask(self.addr, self.netmask)),
        ]);
        attrs
    }

    /// Reads a service nest from a GET_SERVICE reply.
    pub(crate) fn decode(attrs: &[ServiceAttr]) -> Result<Decoded, Malformed> {
        let mut af = None;
        let (mut proto, mut addr, mut port, mut fwmark) = (None, None, None, None);
        let (mut sched, mut flags, mut timeout, mut netmask) = (None, None, None, None);
        let (mut stats32, mut stats64) = (None, None);
        for a in attrs {
            match a {
                ServiceAttr::AddressFamily(v) => af = Some(*v),
                ServiceAttr::Protocol(v) => proto = Some(*v),
                ServiceAttr::Address(v) => addr = Some(*v),
                ServiceAttr::Port(v) => port = Some(*v),
                ServiceAttr::Fwmark(v) => fwmark = Some(*v),
                ServiceAttr::SchedName(v) => sched = Some(v.clone()),
                ServiceAttr::Flags(v) => flags = Some(*v),
                ServiceAttr::Timeout(v) => timeout = Some(*v),
                ServiceAttr::Netmask(v) => netmask = Some(*v),
                ServiceAttr::Stats(v) => stats32 = Some(v),
                ServiceAttr::Stats64(v) => stats64 = Some(v),
                ServiceAttr::PeName(_) | ServiceAttr::Other(_) => {}
            }
        }
        // the kernel sends FWMARK only for firewall-mark services
        if let Some(mark) = fwmark.filter(|m| *m != 0) {
            return Ok(Decoded::Fwmark(mark));
        }
        let af = af.ok_or_else(|| missing("IPVS_SVC_ATTR_AF"))?;
        let addr = addr.ok_or_else(|| missing("IPVS_SVC_ATTR_ADDR"))?;
        let addr = addr
            .to_ip(af)
            .ok_or_else(|| Malformed(format!("unknown address family {af}")))?;
        let proto = proto.ok_or_else(|| missing("IPVS_SVC_ATTR_PROTOCOL"))?;
        let proto = Protocol::from_number(proto)
            .ok_or_else(|| Malformed(format!("unknown protocol {proto} for {addr}")))?;
        let port = port.ok_or_else(|| missing("IPVS_SVC_ATTR_PORT"))?;
        let flags = flags.map_or(0, |f| f.flags);
        let svc = VirtualService {
            proto,
            addr,
            port,
            scheduler: sched.ok_or_else(|| missing("IPVS_SVC_ATTR_SCHED_NAME"))?,
            persistent: (flags & IP_VS_SVC_F_PERSISTENT != 0).then(|| timeout.unwrap_or(0)),
            netmask: netmask.map_or(full_prefix(addr), |raw| decode_netmask(addr, raw)),
        };
        Ok(Decoded::Service(svc, decode_stats(stats64.or(stats32))))
    }
}

impl RealServer {
    /// The attributes the kernel finds a destination by: ADDR_FAMILY, ADDR, PORT.
    pub(crate) fn identity_attrs(&self) -> Vec<DestAttr> {
        vec![
            DestAttr::AddressFamily(family_of(self.addr)),
            DestAttr::Address(InetAddr::from(self.addr)),
            DestAttr::Port(self.port),
        ]
    }

    /// Identity plus everything NEW/SET_DEST require, in ipvsadm's order. Tunnel type
    /// IPIP and no connection thresholds, as ipvsadm's defaults.
    pub(crate) fn full_attrs(&self) -> Vec<DestAttr> {
        let mut attrs = self.identity_attrs();
        attrs.extend([
            DestAttr::FwdMethod(match self.fwd {
                Forward::Masq => IP_VS_CONN_F_MASQ,
                Forward::Local => IP_VS_CONN_F_LOCALNODE,
                Forward::Tunnel => IP_VS_CONN_F_TUNNEL,
                Forward::Route => IP_VS_CONN_F_DROUTE,
                Forward::Bypass => IP_VS_CONN_F_BYPASS,
            }),
            DestAttr::Weight(self.weight),
            DestAttr::TunnelType(0),
            DestAttr::TunnelPort(0),
            DestAttr::TunnelFlags(0),
            DestAttr::UpperThreshold(0),
            DestAttr::LowerThreshold(0),
        ]);
        attrs
    }

    /// Reads a destination nest from a GET_DEST reply; `service_af` is used when the
    /// kernel (before 4.x) sends no ADDR_FAMILY.
    pub(crate) fn decode(attrs: &[DestAttr], service_af: u16) -> Result<Self, Malformed> {
        let mut af = service_af;
        let (mut addr, mut port, mut fwd, mut weight) = (None, None, None, None);
        let mut stats = DestStats::default();
        let (mut stats32, mut stats64) = (None, None);
        for a in attrs {
            match a {
                DestAttr::Address(v) => addr = Some(*v),
                DestAttr::Port(v) => port = Some(*v),
                DestAttr::FwdMethod(v) => fwd = Some(*v),
                DestAttr::Weight(v) => weight = Some(*v),
                DestAttr::AddressFamily(v) => af = *v,
                DestAttr::ActiveConns(v) => stats.active_conns = *v,
                DestAttr::InactiveConns(v) => stats.inactive_conns = *v,
                DestAttr::PersistentConns(v) => stats.persistent_conns = *v,
                DestAttr::Stats(v) => stats32 = Some(v),
                DestAttr::Stats64(v) => stats64 = Some(v),
                _ => {}
            }
        }
        let addr = addr.ok_or_else(|| missing("IPVS_DEST_ATTR_ADDR"))?;
        let addr = addr
            .to_ip(af)
            .ok_or_else(|| Malformed(format!("unknown address family {af}")))?;
        let fwd = fwd.ok_or_else(|| missing("IPVS_DEST_ATTR_FWD_METHOD"))?;
        let fwd = match fwd & IP_VS_CONN_F_FWD_MASK {
            IP_VS_CONN_F_MASQ => Forward::Masq,
            IP_VS_CONN_F_LOCALNODE => Forward::Local,
            IP_VS_CONN_F_TUNNEL => Forward::Tunnel,
            IP_VS_CONN_F_DROUTE => Forward::Route,
            IP_VS_CONN_F_BYPASS => Forward::Bypass,
            other => {
                return Err(Malformed(format!(
                    "unknown forwarding method {other} for {addr}"
                )));
            }
        };
        stats.traffic = decode_stats(stats64.or(stats32));
        Ok(Self {
            addr,
            port: port.ok_or_else(|| missing("IPVS_DEST_ATTR_PORT"))?,
            weight: weight.ok_or_else(|| missing("IPVS_DEST_ATTR_WEIGHT"))?,
            fwd,
            stats,
        })
    }
}

fn missing(attr: &str) -> Malformed {
    Malformed(format!("attribute {attr} missing"))
}

/// `IPVS_SVC_ATTR_NETMASK` is read by the kernel with `nla_get_be32`. For IPv4 that is
/// a real netmask in network order; for IPv6 `ip_vs_add_service` casts the value back
/// to a host-order prefix length (1..=128), which is what ipvsadm writes.
pub(crate) fn encode_netmask(addr: IpAddr, prefix: u8) -> [u8; 4] {
    match addr {
        IpAddr::V4(_) => {
            let prefix = u32::from(prefix.min(32));
            let mask = u32::MAX.checked_shl(32 - prefix).unwrap_or(0);
            mask.to_be_bytes()
        }
        IpAddr::V6(_) => u32::from(prefix.min(128)).to_ne_bytes(),
    }
}

/// The inverse of [`encode_netmask`]; a non-contiguous IPv4 mask (which only a
/// hand-made request could set) is read as its leading ones.
pub(crate) fn decode_netmask(addr: IpAddr, raw: [u8; 4]) -> u8 {
    match addr {
        IpAddr::V4(_) => u32::from_be_bytes(raw).leading_ones() as u8,
        IpAddr::V6(_) => u32::from_ne_bytes(raw).min(128) as u8,
    }
}

fn decode_stats(attrs: Option<&Vec<StatsAttr>>) -> Stats {
    let mut s = Stats::default();
    for a in attrs.into_iter().flatten() {
        if let StatsAttr::Counter(kind, c) = a {
            let field = match kind {
                StatsKind::Conns => &mut s.conns,
                StatsKind::InPkts => &mut s.in_pkts,
                StatsKind::OutPkts => &mut s.out_pkts,
                StatsKind::InBytes => &mut s.in_bytes,
                StatsKind::OutBytes => &mut s.out_bytes,
                StatsKind::Cps => &mut s.cps,
                StatsKind::InPps => &mut s.in_pps,
                StatsKind::OutPps => &mut s.out_pps,
                StatsKind::InBps => &mut s.in_bps,
                StatsKind::OutBps => &mut s.out_bps,
            };
            *field = c.get();
        }
    }
    s
}

#[cfg(test)]
mod tests {
    //! Test addresses: 192.0.2.0/24 and 2001:db8::/32 (RFC 5737 / 3849).

    use super::*;
    use crate::message::{AF_INET, AF_INET6, Counter};

    fn v4() -> VirtualService {
        VirtualService::new(Protocol::Udp, "192.0.2.1".parse().unwrap(), 53, "wrr")
    }

    #[test]
    fn netmask_encoding_follows_the_kernel_per_family() {
        let a4: IpAddr = "192.0.2.1".parse().unwrap();
        let a6: IpAddr = "2001:db8::1".parse().unwrap();
        assert_eq!(encode_netmask(a4, 32), [0xff; 4]);
        assert_eq!(encode_netmask(a4, 24), [0xff, 0xff, 0xff, 0]);
        assert_eq!(encode_netmask(a4, 0), [0; 4]);
        assert_eq!(encode_netmask(a6, 128), 128u32.to_ne_bytes());
        for p in 0..=32 {
            assert_eq!(decode_netmask(a4, encode_netmask(a4, p)), p);
        }
        for p in 1..=128 {
            assert_eq!(decode_netmask(a6, encode_netmask(a6, p)), p);
        }
    }

    #[test]
    fn service_full_attrs_decode_back() {
        let mut svc = v4().with_persistence(300);
        svc.netmask = 24;
        let Decoded::Service(back, stats) = VirtualService::decode(&svc.full_attrs()).unwrap()
        else {
            panic!("not a service")
        };
        assert_eq!(back, svc);
        assert_eq!(stats, Stats::default());
        // non-persistent: timeout is sent as 0 and read back as None
        let plain = v4();
        let Decoded::Service(back, _) = VirtualService::decode(&plain.full_attrs()).unwrap() else {
            panic!("not a service")
        };
        assert_eq!(back, plain);
    }

    #[test]
    fn service_decode_reads_kernel_flags_stats64_and_fwmark() {
        let mut attrs = v4().full_attrs();
        // the kernel reports HASHED (0x2) with a mask of all ones
        attrs[5] = ServiceAttr::Flags(ServiceFlags {
            flags: 0x2,
            mask: !0,
        });
        attrs.push(ServiceAttr::Stats(vec![StatsAttr::Counter(
            StatsKind::Conns,
            Counter::U32(1),
        )]));
        attrs.push(ServiceAttr::Stats64(vec![StatsAttr::Counter(
            StatsKind::Conns,
            Counter::U64(1 << 40),
        )]));
        let Decoded::Service(svc, stats) = VirtualService::decode(&attrs).unwrap() else {
            panic!("not a service")
        };
        assert_eq!(svc.persistent, None);
        assert_eq!(stats.conns, 1 << 40, "STATS64 wins over STATS");
        let fwm = [ServiceAttr::AddressFamily(AF_INET), ServiceAttr::Fwmark(7)];
        assert_eq!(VirtualService::decode(&fwm), Ok(Decoded::Fwmark(7)));
    }

    #[test]
    fn service_decode_names_what_is_missing() {
        let attrs: Vec<_> = v4()
            .full_attrs()
            .into_iter()
            .filter(|a| !matches!(a, ServiceAttr::Protocol(_)))
            .collect();
        assert_eq!(
            VirtualService::decode(&attrs),
            Err(Malformed("attribute IPVS_SVC_ATTR_PROTOCOL missing".into()))
        );
        let mut attrs = v4().full_attrs();
        attrs[1] = ServiceAttr::Protocol(1);
        assert!(
            VirtualService::decode(&attrs)
                .unwrap_err()
                .0
                .contains("unknown protocol 1")
        );
    }

    #[test]
    fn dest_attrs_decode_back_for_each_forwarding_method() {
        for fwd in [
            Forward::Masq,
            Forward::Route,
            Forward::Tunnel,
            Forward::Local,
            Forward::Bypass,
        ] {
            for addr in ["192.0.2.2", "2001:db8::2"] {
                let rs = RealServer::new(addr.parse().unwrap(), 8080, 3, fwd);
                assert_eq!(RealServer::decode(&rs.full_attrs(), AF_INET).unwrap(), rs);
            }
        }
    }

    #[test]
    fn dest_decode_uses_service_family_without_addr_family_and_reads_counters() {
        let rs = RealServer::new("2001:db8::2".parse().unwrap(), 80, 0, Forward::Masq);
        let mut attrs: Vec<_> = rs
            .full_attrs()
            .into_iter()
            .filter(|a| !matches!(a, DestAttr::AddressFamily(_)))
            .collect();
        attrs.extend([
            DestAttr::ActiveConns(4),
            DestAttr::InactiveConns(5),
            DestAttr::PersistentConns(6),
            DestAttr::Stats(vec![StatsAttr::Counter(
                StatsKind::InBytes,
                Counter::U64(99),
            )]),
        ]);
        let back = RealServer::decode(&attrs, AF_INET6).unwrap();
        assert_eq!(back.addr, rs.addr);
        assert_eq!(
            back.stats,
            DestStats {
                active_conns: 4,
                inactive_conns: 5,
                persistent_conns: 6,
                traffic: Stats {
                    in_bytes: 99,
                    ..Stats::default()
                },
            }
        );
        let mut bad = rs.full_attrs();
        bad[3] = DestAttr::FwdMethod(6);
        assert!(
            RealServer::decode(&bad, AF_INET6)
                .unwrap_err()
                .0
                .contains("forwarding method 6")
        );
    }
}
