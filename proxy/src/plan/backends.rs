//! Which endpoints a Service's virtual services get: one per (ClusterIP, port), ready
//! endpoints at weight 1, terminating-but-serving ones at 0, `publishNotReadyAddresses`
//! taking every one; the scheduler from the `causeway.io/scheduler` annotation and the
//! `sessionAffinity: ClientIP` timeout.

use std::collections::BTreeMap;
use std::net::SocketAddr;

use causeway_shared::model::{AddressType, ClusterData, Service, ServiceType, SessionAffinity};

use super::{Origin, VirtualServer, VsKey};

/// Annotation choosing the IPVS scheduler of a service.
pub const SCHEDULER_ANNOTATION: &str = "causeway.io/scheduler";

/// Schedulers a service may ask for (the IPVS kernel modules `ip_vs_<name>`).
pub const SCHEDULERS: &[&str] = &[
    "rr", "wrr", "lc", "wlc", "lblc", "lblcr", "dh", "sh", "sed", "nq", "mh", "fo", "ovf", "twos",
];

/// The scheduler a service asks for, `rr` when it asks for none or an unknown one.
pub fn scheduler_of(svc: &Service) -> String {
    match svc.annotations.get(SCHEDULER_ANNOTATION) {
        Some(s) if SCHEDULERS.contains(&s.trim()) => s.trim().to_string(),
        _ => "rr".to_string(),
    }
}

/// The virtual services of one Service (none for headless and ExternalName ones).
pub fn virtual_servers(
    cluster: &str,
    data: &ClusterData,
    svc: &Service,
) -> Vec<(VsKey, VirtualServer)> {
    if svc.headless || svc.service_type == ServiceType::ExternalName {
        return Vec::new();
    }
    let scheduler = scheduler_of(svc);
    let affinity = match svc.session_affinity {
        SessionAffinity::ClientIp { timeout_seconds } => Some(timeout_seconds),
        SessionAffinity::None => None,
    };
    let mut out = Vec::new();
    for &vip in &svc.cluster_ips {
        let family = if vip.is_ipv4() {
            AddressType::IPv4
        } else {
            AddressType::IPv6
        };
        for port in &svc.ports {
            let mut reals: BTreeMap<SocketAddr, u32> = BTreeMap::new();
            let mut generation = 0;
            for slice in data
                .slices_of(&svc.key)
                .filter(|s| s.address_type == family)
            {
                let Some(sp) = slice
                    .ports
                    .iter()
                    .find(|p| p.name == port.name && p.protocol == port.protocol)
                else {
                    continue;
                };
                generation = generation.max(slice.generation);
                for ep in &slice.endpoints {
                    let weight = if ep.ready || svc.publish_not_ready_addresses {
                        1
                    } else if ep.serving && ep.terminating {
                        0
                    } else {
                        continue;
                    };
                    for addr in ep.addresses.iter().filter(|a| a.is_ipv4() == vip.is_ipv4()) {
                        let w = reals
                            .entry(SocketAddr::new(*addr, sp.port))
                            .or_insert(weight);
                        *w = (*w).max(weight);
                    }
                }
            }
            out.push((
                VsKey {
                    proto: port.protocol,
                    addr: SocketAddr::new(vip, port.port),
                },
                VirtualServer {
                    scheduler: scheduler.clone(),
                    affinity,
                    reals,
                    origin: Origin {
                        cluster: cluster.to_string(),
                        service: svc.key.clone(),
                        port: port.name.clone(),
                        slice_generation: generation,
                    },
                },
            ));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use causeway_shared::model::Protocol;
    use tokio::time::Instant;

    use super::super::{VsKey, plan};
    use crate::testdata::{CLUSTER_B, catalog_with, plan_settings as settings, snapshot};

    #[tokio::test]
    async fn graceful_termination_weights() {
        let p = plan(&snapshot(), &settings(), Instant::now());
        let web = &p.desired.services[&VsKey {
            proto: Protocol::Tcp,
            addr: "192.0.2.10:80".parse().unwrap(),
        }];
        // ready → 1, terminating but serving → 0, neither → absent.
        let weights: Vec<_> = web.reals.iter().map(|(a, w)| (a.to_string(), *w)).collect();
        assert_eq!(
            weights,
            [
                ("198.51.100.11:8080".into(), 1),
                ("198.51.100.12:8080".into(), 1),
                ("198.51.100.13:8080".to_string(), 0)
            ]
        );
    }

    #[tokio::test]
    async fn publish_not_ready_addresses_takes_every_endpoint() {
        let yaml = CLUSTER_B.replacen(
            "targetPort: 8080}",
            "targetPort: 8080}\n    publishNotReadyAddresses: true",
            1,
        );
        let p = plan(&catalog_with(&yaml).snapshot(), &settings(), Instant::now());
        let web = &p.desired.services[&VsKey {
            proto: Protocol::Tcp,
            addr: "192.0.2.10:80".parse().unwrap(),
        }];
        assert_eq!(
            web.reals.values().copied().collect::<Vec<_>>(),
            [1, 1, 1, 1]
        );
    }

    #[tokio::test]
    async fn affinity_and_scheduler() {
        let p = plan(&snapshot(), &settings(), Instant::now());
        let dns = &p.desired.services[&VsKey {
            proto: Protocol::Udp,
            addr: "192.0.2.53:53".parse().unwrap(),
        }];
        assert_eq!((dns.scheduler.as_str(), dns.affinity), ("sh", Some(600)));
        let empty = &p.desired.services[&VsKey {
            proto: Protocol::Tcp,
            addr: "192.0.2.20:443".parse().unwrap(),
        }];
        assert_eq!(
            (empty.scheduler.as_str(), empty.affinity),
            ("rr", None),
            "unknown scheduler falls back to rr"
        );
    }
}
