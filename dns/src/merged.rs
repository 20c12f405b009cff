//! The records of the merged zone (`cluster.all` by default, optionally aliased as
//! `clusterset.local`): the union of every contributing cluster, in the manner of the
//! Multi-Cluster Services DNS specification (KEP-1645).
//!
//! Rules, for one `<svc>.<ns>` across clusters (clusters in the order given, which puts
//! the local cluster first when `dns.localFirst` is set):
//! - Each cluster contributes according to *its own* service's shape, so a service that is
//!   ClusterIP in one cluster and headless in another answers the ClusterIPs of the first
//!   and the ready endpoints of the second.
//!   - ClusterIP: its ClusterIPs at `<svc>.<ns>.svc.<all>`; per named port one SRV record
//!     targeting that cluster's own `<svc>.<ns>.svc.cluster.<c>.` with that cluster's port.
//!   - Headless: its published endpoints at `<svc>.<ns>.svc.<all>` and at
//!     `<label>.<c>.<svc>.<ns>.svc.<all>`; one SRV record per endpoint targeting the latter,
//!     with the endpoint's port.
//!   - ExternalName: contributes nothing (ExternalName services are not exported, KEP-1645).
//! - Ports are matched by name and protocol: `_<port>._<proto>` lists exactly the clusters
//!   whose service has a port of that name and protocol, each with its own port number, so
//!   differing port numbers coexist and a port missing in one cluster omits that cluster.
//! - A service whose every contribution is empty (headless without ready endpoints, no
//!   ClusterIP) still exists (NODATA); one that only exists as ExternalName does not (NXDOMAIN).
//! - The same address from two clusters is listed once (the CIDRs never overlap, so this
//!   only happens with broken input).

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use causeway_shared::model::{ClusterData, Service, ServiceKey};

use crate::names::{cluster_zone, is_label, service_name, srv_name};
use crate::records::{Data, Rr, Shape, empty_marker, headless_srv, published_endpoints, shape};

/// One cluster that contributes to the merged zone.
pub struct Member<'a> {
    pub cluster: &'a str,
    pub data: &'a ClusterData,
}

/// Every record of the merged zone `zone` (no final dot), apex records excluded.
pub fn merged_records(zone: &str, members: &[Member<'_>]) -> Vec<Rr> {
    let mut by_service: BTreeMap<&ServiceKey, Vec<(&Member<'_>, &Service)>> = BTreeMap::new();
    for m in members {
        for (key, svc) in &m.data.services {
            by_service.entry(key).or_default().push((m, svc));
        }
    }
    let mut out = Vec::new();
    for (key, svcs) in by_service {
        service_records(zone, key, &svcs, &mut out);
    }
    out
}

/// The records of one service of the merged zone, from the clusters that have it (in
/// member order); nothing for a name that is not a valid label.
pub fn service_records(
    zone: &str,
    key: &ServiceKey,
    svcs: &[(&Member<'_>, &Service)],
    out: &mut Vec<Rr>,
) {
    if !is_label(&key.namespace) || !is_label(&key.name) {
        return;
    }
    let owner = service_name(&key.name, &key.namespace, zone);
    let mut addresses: Vec<IpAddr> = Vec::new();
    let mut pods: Vec<Rr> = Vec::new();
    let mut srv: BTreeMap<(String, &'static str), Vec<Rr>> = BTreeMap::new();
    let mut exists = false;
    for (m, svc) in svcs {
        match shape(svc) {
            Shape::ExternalName(_) => continue,
            Shape::Empty => exists = true,
            Shape::ClusterIp => {
                exists = true;
                addresses.extend(&svc.cluster_ips);
                let target = service_name(&key.name, &key.namespace, &cluster_zone(m.cluster));
                for p in crate::records::srv_ports(svc) {
                    let pname = p.name.to_ascii_lowercase();
                    let proto = p.protocol.as_lower();
                    srv.entry((pname.clone(), proto)).or_default().push(Rr::new(
                        srv_name(&pname, proto, &owner),
                        Data::Srv {
                            priority: 0,
                            weight: 100,
                            port: p.port,
                            target: target.clone(),
                        },
                    ));
                }
            }
            Shape::Headless => {
                exists = true;
                let eps = published_endpoints(svc, m.data);
                let pod_owner = |label: &str| format!("{label}.{}.{owner}", m.cluster);
                for ep in &eps {
                    addresses.push(ep.ip);
                    pods.push(Rr::addr(pod_owner(&ep.label), ep.ip));
                }
                let mut rrs = Vec::new();
                headless_srv(svc, &owner, &eps, |ep| pod_owner(&ep.label), &mut rrs);
                for rr in rrs {
                    // The SRV owner is `_<port>._<proto>.<owner>`: key by its first two labels.
                    let mut labels = rr.owner.splitn(3, '.');
                    let pname = labels.next().unwrap_or_default().trim_start_matches('_');
                    let proto = match labels.next().unwrap_or_default() {
                        "_udp" => "udp",
                        "_sctp" => "sctp",
                        _ => "tcp",
                    };
                    srv.entry((pname.to_string(), proto)).or_default().push(rr);
                }
            }
        }
    }
    if !exists {
        return;
    }
    let mut seen = BTreeSet::new();
    addresses.retain(|ip| seen.insert(*ip));
    if addresses.is_empty() {
        out.push(empty_marker(owner.clone()));
    }
    out.extend(addresses.into_iter().map(|ip| Rr::addr(&owner, ip)));
    out.extend(pods);
    out.extend(srv.into_values().flatten());
}

#[cfg(test)]
mod tests;
