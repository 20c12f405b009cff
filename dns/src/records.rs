//! The records of one `cluster.<name>` zone, built from a cluster's data by pure
//! functions (the Kubernetes DNS-Based Service Discovery specification, with
//! `cluster.<name>` in place of `cluster.local`).
//!
//! Records are plain data ([`Rr`]) printed in zone-file form, so tests compare whole zones
//! to golden text. TTLs are applied when the zone is encoded ([`crate::zone_index`]).

use std::collections::BTreeSet;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use causeway_shared::model::{AddressType, ClusterData, EndpointPort, Service, ServiceType};

use crate::names::{ip_label, is_label, reverse_name, service_name, srv_name};

/// Version of the Kubernetes DNS schema we implement (`dns-version` TXT).
pub const SCHEMA_VERSION: &str = "1.1.0";

/// Record types we serve (RFC 1035 / 2782 / 3596 numbers).
pub mod rtype {
    pub const A: u16 = 1;
    pub const NS: u16 = 2;
    pub const CNAME: u16 = 5;
    pub const SOA: u16 = 6;
    pub const PTR: u16 = 12;
    pub const TXT: u16 = 16;
    pub const AAAA: u16 = 28;
    pub const SRV: u16 = 33;
    pub const OPT: u16 = 41;
    pub const ANY: u16 = 255;
}

/// Data of an SOA record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Soa {
    pub mname: String,
    pub rname: String,
    pub serial: u32,
    pub refresh: u32,
    pub retry: u32,
    pub expire: u32,
    /// Negative-caching TTL (RFC 2308).
    pub minimum: u32,
}

/// Data of one record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Data {
    A(Ipv4Addr),
    Aaaa(Ipv6Addr),
    Cname(String),
    Ns(String),
    Ptr(String),
    Srv {
        priority: u16,
        weight: u16,
        port: u16,
        target: String,
    },
    Txt(String),
    Soa(Soa),
    /// No record: the owner exists but has nothing to answer (NODATA, not NXDOMAIN).
    Empty,
}

/// One record: absolute lower-case owner name and data.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rr {
    pub owner: String,
    pub data: Data,
}

impl Rr {
    pub fn new(owner: impl Into<String>, data: Data) -> Self {
        Self {
            owner: owner.into(),
            data,
        }
    }

    /// A or AAAA for an address.
    pub fn addr(owner: impl Into<String>, ip: IpAddr) -> Self {
        Self::new(
            owner,
            match ip {
                IpAddr::V4(v4) => Data::A(v4),
                IpAddr::V6(v6) => Data::Aaaa(v6),
            },
        )
    }

    pub fn rtype(&self) -> u16 {
        match self.data {
            Data::A(_) => rtype::A,
            Data::Aaaa(_) => rtype::AAAA,
            Data::Cname(_) => rtype::CNAME,
            Data::Ns(_) => rtype::NS,
            Data::Ptr(_) => rtype::PTR,
            Data::Srv { .. } => rtype::SRV,
            Data::Txt(_) => rtype::TXT,
            Data::Soa(_) => rtype::SOA,
            Data::Empty => 0,
        }
    }
}

impl fmt::Display for Rr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let o = &self.owner;
        match &self.data {
            Data::A(ip) => write!(f, "{o} A {ip}"),
            Data::Aaaa(ip) => write!(f, "{o} AAAA {ip}"),
            Data::Cname(t) => write!(f, "{o} CNAME {t}"),
            Data::Ns(t) => write!(f, "{o} NS {t}"),
            Data::Ptr(t) => write!(f, "{o} PTR {t}"),
            Data::Srv {
                priority,
                weight,
                port,
                target,
            } => write!(f, "{o} SRV {priority} {weight} {port} {target}"),
            Data::Txt(t) => write!(f, "{o} TXT \"{t}\""),
            Data::Soa(s) => write!(
                f,
                "{o} SOA {} {} {} {} {} {} {}",
                s.mname, s.rname, s.serial, s.refresh, s.retry, s.expire, s.minimum
            ),
            Data::Empty => write!(f, "{o} ; exists, no records"),
        }
    }
}

/// Zone-file text of records, one per line (golden tests).
pub fn render(rrs: &[Rr]) -> String {
    rrs.iter().map(|r| format!("{r}\n")).collect()
}

/// SRV priority and weight: every target is equal.
const SRV_PRIORITY: u16 = 0;
const SRV_WEIGHT: u16 = 100;

/// SOA, NS and the `dns-version` TXT at the apex of `zone` (no final dot).
pub fn apex_records(zone: &str, serial: u32, negative_ttl: u32) -> Vec<Rr> {
    let apex = format!("{zone}.");
    let ns = format!("ns.dns.{zone}.");
    vec![
        soa_record(&apex, zone, serial, negative_ttl),
        Rr::new(&apex, Data::Ns(ns)),
        Rr::new(
            format!("dns-version.{zone}."),
            Data::Txt(SCHEMA_VERSION.into()),
        ),
    ]
}

/// The SOA of a zone whose apex is `apex` (absolute); `zone` names its mailbox and server.
pub fn soa_record(apex: &str, zone: &str, serial: u32, negative_ttl: u32) -> Rr {
    Rr::new(
        apex,
        Data::Soa(Soa {
            mname: format!("ns.dns.{zone}."),
            rname: format!("hostmaster.{zone}."),
            serial,
            refresh: 7200,
            retry: 1800,
            expire: 86400,
            minimum: negative_ttl,
        }),
    )
}

/// One published address of a headless service: the endpoint's label (its hostname, or
/// the address in dashed form) and the ports of the slice it came from.
#[derive(Clone, Debug)]
pub struct Published<'a> {
    pub label: String,
    pub ip: IpAddr,
    pub ports: &'a [EndpointPort],
}

/// The addresses a headless service publishes: ready endpoints (all of them when the
/// service sets `publishNotReadyAddresses`), IP slices only, first occurrence of each address.
pub fn published_endpoints<'a>(svc: &Service, data: &'a ClusterData) -> Vec<Published<'a>> {
    let mut seen = BTreeSet::new();
    let mut out = Vec::new();
    for slice in data.slices_of(&svc.key) {
        if slice.address_type == AddressType::Fqdn {
            continue;
        }
        for ep in &slice.endpoints {
            if !(ep.ready || svc.publish_not_ready_addresses) {
                continue;
            }
            let hostname = ep.hostname.as_deref().filter(|h| is_label(h));
            for &ip in &ep.addresses {
                if !seen.insert(ip) {
                    continue;
                }
                out.push(Published {
                    label: hostname.map_or_else(|| ip_label(ip), str::to_string),
                    ip,
                    ports: &slice.ports,
                });
            }
        }
    }
    out
}

/// How a service is answered.
pub enum Shape {
    /// ClusterIP, NodePort or LoadBalancer with ClusterIPs.
    ClusterIp,
    /// `clusterIP: None`: the endpoints are answered.
    Headless,
    /// A CNAME to the given name.
    ExternalName(String),
    /// Nothing to answer (no IPs, or an unusable ExternalName): the name exists, empty.
    Empty,
}

pub fn shape(svc: &Service) -> Shape {
    if svc.service_type == ServiceType::ExternalName {
        return match &svc.external_name {
            Some(t) if !t.is_empty() => {
                let t = t.trim_end_matches('.').to_ascii_lowercase();
                Shape::ExternalName(format!("{t}."))
            }
            _ => Shape::Empty,
        };
    }
    if svc.headless {
        Shape::Headless
    } else if svc.cluster_ips.is_empty() {
        Shape::Empty
    } else {
        Shape::ClusterIp
    }
}

/// The SRV port names of a service: named ports with a usable label.
pub fn srv_ports(svc: &Service) -> impl Iterator<Item = &causeway_shared::model::ServicePort> {
    svc.ports
        .iter()
        .filter(|p| is_label(&p.name.to_ascii_lowercase()))
}

/// Every record of the zone `zone` (no final dot) for one cluster's services,
/// apex records excluded, in service order.
pub fn cluster_records(zone: &str, data: &ClusterData) -> Vec<Rr> {
    let mut out = Vec::with_capacity(data.services.len() * 3);
    for svc in data.services.values() {
        service_records(zone, svc, data, &mut out);
    }
    out
}

/// The records of one service of `data` in the zone `zone` (no final dot).
pub fn service_records(zone: &str, svc: &Service, data: &ClusterData, out: &mut Vec<Rr>) {
    let (ns, name) = (&svc.key.namespace, &svc.key.name);
    if !is_label(ns) || !is_label(name) {
        let shown: String = format!("{ns}/{name}").chars().take(80).collect();
        tracing::warn!(zone, service = %shown, "name or namespace is not a DNS label (1-63 of a-z, 0-9, '-'): the service has no name in this zone");
        return;
    }
    let owner = service_name(name, ns, zone);
    match shape(svc) {
        Shape::ExternalName(target) => out.push(Rr::new(owner, Data::Cname(target))),
        Shape::Empty => out.push(empty_marker(owner)),
        Shape::ClusterIp => {
            for &ip in &svc.cluster_ips {
                out.push(Rr::addr(&owner, ip));
            }
            for p in srv_ports(svc) {
                out.push(Rr::new(
                    srv_name(&p.name.to_ascii_lowercase(), p.protocol.as_lower(), &owner),
                    Data::Srv {
                        priority: SRV_PRIORITY,
                        weight: SRV_WEIGHT,
                        port: p.port,
                        target: owner.clone(),
                    },
                ));
            }
        }
        Shape::Headless => {
            let eps = published_endpoints(svc, data);
            if eps.is_empty() {
                out.push(empty_marker(owner.clone()));
            }
            for ep in &eps {
                out.push(Rr::addr(&owner, ep.ip));
            }
            for ep in &eps {
                out.push(Rr::addr(format!("{}.{owner}", ep.label), ep.ip));
            }
            headless_srv(svc, &owner, &eps, |ep| format!("{}.{owner}", ep.label), out);
        }
    }
}

/// A service with nothing to answer yet still exists: its name answers NODATA, not NXDOMAIN.
pub fn empty_marker(owner: String) -> Rr {
    Rr::new(owner, Data::Empty)
}

/// SRV records of a headless service: for each named service port, one record per
/// published endpoint whose slice has a port of that name and protocol, with the
/// endpoint's port number and `target(ep)` as target (CoreDNS does the same).
pub fn headless_srv(
    svc: &Service,
    owner: &str,
    eps: &[Published<'_>],
    target: impl Fn(&Published<'_>) -> String,
    out: &mut Vec<Rr>,
) {
    for p in srv_ports(svc) {
        let pname = p.name.to_ascii_lowercase();
        let name = srv_name(&pname, p.protocol.as_lower(), owner);
        let mut seen = BTreeSet::new();
        for ep in eps {
            let Some(ep_port) = ep
                .ports
                .iter()
                .find(|q| q.name.eq_ignore_ascii_case(&p.name) && q.protocol == p.protocol)
            else {
                continue;
            };
            let t = target(ep);
            if seen.insert((t.clone(), ep_port.port)) {
                out.push(Rr::new(
                    &name,
                    Data::Srv {
                        priority: SRV_PRIORITY,
                        weight: SRV_WEIGHT,
                        port: ep_port.port,
                        target: t,
                    },
                ));
            }
        }
    }
}

/// PTR records of one cluster, as (address, target): ClusterIPs point at the service
/// name, published endpoints of headless services at their per-endpoint name.
pub fn cluster_ptrs(zone: &str, data: &ClusterData) -> Vec<(IpAddr, String)> {
    let mut out = Vec::new();
    for svc in data.services.values() {
        let (ns, name) = (&svc.key.namespace, &svc.key.name);
        if !is_label(ns) || !is_label(name) {
            continue;
        }
        let owner = service_name(name, ns, zone);
        match shape(svc) {
            Shape::ClusterIp => out.extend(svc.cluster_ips.iter().map(|&ip| (ip, owner.clone()))),
            Shape::Headless => out.extend(
                published_endpoints(svc, data)
                    .into_iter()
                    .map(|ep| (ep.ip, format!("{}.{owner}", ep.label))),
            ),
            Shape::ExternalName(_) | Shape::Empty => {}
        }
    }
    out
}

/// The PTR records of [`cluster_ptrs`] as zone-file records (golden tests, NSD zones).
pub fn ptr_records(ptrs: &[(IpAddr, String)]) -> Vec<Rr> {
    ptrs.iter()
        .map(|(ip, t)| Rr::new(reverse_name(*ip), Data::Ptr(t.clone())))
        .collect()
}

#[cfg(test)]
mod tests;
