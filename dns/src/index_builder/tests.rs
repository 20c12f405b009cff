//! Incremental builds against full builds. Clusters "a" (local), "b", "c"; test
//! addresses from 10.<k>.0.0/16 (pods) and 10.10<k>.0.0/16 (services), as the benchmark.

use std::net::{IpAddr, Ipv4Addr};
use std::path::Path;

use causeway_shared::catalog::{Catalog, ClusterStatus, PathState};
use causeway_shared::model::{
    AddressType, Endpoint, EndpointPort, EndpointSlice, Protocol, ServicePort, ServiceType,
    SessionAffinity,
};

use super::*;

const CLUSTERS: [&str; 3] = ["a", "b", "c"];

fn config(alias: bool) -> Arc<Config> {
    let clusters: String = CLUSTERS
        .iter()
        .enumerate()
        .map(|(k, c)| {
            format!(
                "- name: {c}\n  podCIDRs: [10.{k}.0.0/16]\n  serviceCIDRs: [10.10{k}.0.0/16]\n  source: {{file: {c}.yaml}}\n"
            )
        })
        .collect();
    let text = format!(
        "cluster: a\nclusters:\n{clusters}dns:\n  clustersetAlias: {alias}\n  dropUnreachableAfter: 60s\n"
    );
    Arc::new(Config::from_yaml(Path::new("/test/config.yaml"), &text).unwrap())
}

/// xorshift64*: a fixed seed gives the same sequence of changes on every run.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }
}

fn port(name: &str, protocol: Protocol, port: u16) -> ServicePort {
    ServicePort {
        name: name.into(),
        protocol,
        port,
        target_port: None,
        node_port: None,
        app_protocol: None,
    }
}

fn service(key: ServiceKey, k: usize, rng: &mut Rng) -> Service {
    let (service_type, headless, cluster_ips, external_name) = match rng.below(10) {
        0..=5 => (
            ServiceType::ClusterIP,
            false,
            vec![IpAddr::V4(Ipv4Addr::new(
                10,
                100 + k as u8,
                0,
                rng.below(50) as u8 + 1,
            ))],
            None,
        ),
        6..=7 => (ServiceType::ClusterIP, true, vec![], None),
        8 => (
            ServiceType::ExternalName,
            false,
            vec![],
            Some(format!("ext{}.example.org", rng.below(3))),
        ),
        _ => (ServiceType::ClusterIP, false, vec![], None),
    };
    let mut ports = vec![port("http", Protocol::Tcp, 80 + rng.below(2) as u16)];
    if rng.chance(40) {
        ports.push(port("dns", Protocol::Udp, 53));
    }
    Service {
        key,
        service_type,
        cluster_ips,
        headless,
        external_name,
        ports,
        publish_not_ready_addresses: rng.chance(20),
        session_affinity: SessionAffinity::None,
        annotations: Default::default(),
        resource_version: None,
    }
}

fn slice(key: &ServiceKey, name: &str, k: usize, rng: &mut Rng) -> EndpointSlice {
    let endpoints = (0..rng.below(4))
        .map(|_| Endpoint {
            addresses: vec![IpAddr::V4(Ipv4Addr::new(
                10,
                k as u8,
                0,
                rng.below(40) as u8 + 1,
            ))],
            ready: rng.chance(80),
            serving: true,
            terminating: false,
            hostname: rng.chance(30).then(|| format!("pod-{}", rng.below(5))),
            node_name: None,
            zone: None,
            pod_name: None,
        })
        .collect();
    EndpointSlice {
        namespace: key.namespace.clone(),
        name: name.into(),
        service_name: key.name.clone(),
        address_type: AddressType::IPv4,
        endpoints,
        ports: vec![EndpointPort {
            name: if rng.chance(80) { "http" } else { "dns" }.into(),
            protocol: Protocol::Tcp,
            port: 8080,
            app_protocol: None,
        }],
        generation: 0,
        resource_version: None,
    }
}

/// One random change: a service or slice added, changed or removed; now and then every
/// object re-created with equal values (what the file source publishes on a re-read).
fn mutate(data: &ClusterData, k: usize, rng: &mut Rng) -> ClusterData {
    let mut d = data.clone();
    let key = ServiceKey::new(
        format!("ns{}", rng.below(3)),
        format!("svc-{}", rng.below(12)),
    );
    match rng.below(10) {
        0..=3 => d.upsert_service(service(key, k, rng)),
        4 => {
            d.remove_service(&key);
        }
        5..=7 => {
            let name = format!("{}-{}", key.name, rng.below(2));
            d.upsert_slice(slice(&key, &name, k, rng));
        }
        8 => {
            d.remove_slice(&key.namespace, &format!("{}-{}", key.name, rng.below(2)));
        }
        _ => {
            let mut fresh = ClusterData::default();
            for s in d.services.values() {
                fresh.upsert_service((**s).clone());
            }
            for (_, slices) in d.slices_by_service() {
                for s in slices.values() {
                    fresh.upsert_slice((**s).clone());
                }
            }
            d = fresh;
        }
    }
    d
}

fn synced() -> ClusterStatus {
    ClusterStatus {
        synced: true,
        connected: true,
        ..ClusterStatus::default()
    }
}

#[test]
fn incremental_builds_equal_full_builds() {
    for (seed, alias) in [(1u64, false), (7, true), (42, false)] {
        let config = config(alias);
        let catalog = Catalog::for_config(&config);
        let mut rng = Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1);
        let mut builder = IndexBuilder::new(config.clone());
        let mut data: Vec<ClusterData> = vec![ClusterData::default(); CLUSTERS.len()];
        let mut seen = BuildStats::default();
        for step in 0..300 {
            let k = rng.below(CLUSTERS.len() as u64) as usize;
            let now = Instant::now();
            if step > 20 && rng.chance(3) {
                // Unreachable for longer than dropUnreachableAfter: leaves the merged zone.
                catalog.update_status(CLUSTERS[k], |s| {
                    s.connected = false;
                    s.disconnected_since = now.checked_sub(Duration::from_secs(120));
                });
            } else if step > 10 && rng.chance(5) {
                // The tunnel reports the path down (or back): the merged zone follows.
                let path = if rng.chance(50) {
                    PathState::Unreachable
                } else {
                    PathState::Reachable
                };
                catalog.set_path(CLUSTERS[k], path);
            } else if step > 5 || rng.chance(50) {
                data[k] = mutate(&data[k], k, &mut rng);
                catalog.publish(CLUSTERS[k], Arc::new(data[k].clone()), synced());
            }
            let snap = catalog.snapshot();
            let incremental = builder.build(&snap, now);
            seen.incremental_clusters += builder.stats.incremental_clusters;
            seen.full_clusters += builder.stats.full_clusters;
            seen.merged_full |= !builder.stats.merged_full;
            let full = IndexBuilder::new(config.clone()).build(&snap, now);
            assert_eq!(
                incremental.dump(),
                full.dump(),
                "seed {seed} step {step}: incremental build differs from a full build"
            );
        }
        // The incremental paths were taken (not only full builds).
        assert!(seen.incremental_clusters > 200, "{seen:?}");
        assert_eq!(seen.full_clusters, CLUSTERS.len(), "{seen:?}");
        assert!(seen.merged_full, "merged zone never updated incrementally");
    }
}

#[test]
fn index_is_ready_only_when_every_cluster_is_built() {
    let config = config(false);
    let catalog = Catalog::for_config(&config);
    let mut builder = IndexBuilder::new(config.clone());
    assert!(!builder.build(&catalog.snapshot(), Instant::now()).ready());
    for (i, c) in CLUSTERS.iter().enumerate() {
        catalog.publish(c, Arc::new(ClusterData::default()), synced());
        let ready = builder.build(&catalog.snapshot(), Instant::now()).ready();
        assert_eq!(ready, i + 1 == CLUSTERS.len(), "after {c}");
    }
}

#[test]
fn a_remote_past_the_first_sync_wait_no_longer_holds_the_index_back() {
    let config = config(false);
    let catalog = Catalog::for_config(&config);
    let mut builder = IndexBuilder::new(config.clone());
    let mut data = ClusterData::default();
    let mut rng = Rng(3);
    data.upsert_service(service(ServiceKey::new("demo", "web"), 0, &mut rng));
    catalog.publish("a", Arc::new(data), synced());
    catalog.publish("b", Arc::new(ClusterData::default()), synced());
    let snap = catalog.snapshot();
    let deadline = snap.remote_wait_deadline();
    let before = deadline - Duration::from_millis(1);
    assert!(
        !builder.build(&snap, before).ready(),
        "c is still waited for"
    );
    assert_eq!(
        builder.next_deadline(&snap, before),
        Some(deadline),
        "a rebuild is due when the wait ends"
    );
    let index = builder.build(&snap, deadline);
    assert!(
        index.ready(),
        "c failed its first sync: shown, not waited for"
    );
    let dump = index.dump();
    assert!(
        dump.contains("zone cluster.c. Cluster ready=false"),
        "{dump}"
    );
    assert!(dump.contains("zone cluster.all. All ready=true"), "{dump}");
    assert_eq!(builder.next_deadline(&snap, deadline), None);
    // The local cluster is waited for however long it takes.
    let catalog = Catalog::for_config(&config);
    catalog.publish("b", Arc::new(ClusterData::default()), synced());
    catalog.publish("c", Arc::new(ClusterData::default()), synced());
    let snap = catalog.snapshot();
    let late = snap.remote_wait_deadline() + Duration::from_secs(3600);
    assert!(!IndexBuilder::new(config).build(&snap, late).ready());
}

#[test]
fn a_cluster_whose_path_is_down_leaves_the_merged_zone_and_keeps_its_own() {
    let config = config(false);
    let catalog = Catalog::for_config(&config);
    let mut builder = IndexBuilder::new(config);
    let mut rng = Rng(5);
    let mut b = ClusterData::default();
    let key = ServiceKey::new("demo", "web");
    let mut svc = service(key, 1, &mut rng);
    svc.service_type = ServiceType::ClusterIP;
    svc.headless = false;
    svc.external_name = None;
    svc.cluster_ips = vec!["10.101.0.80".parse().unwrap()];
    b.upsert_service(svc);
    catalog.publish("a", Arc::default(), synced());
    catalog.publish("b", Arc::new(b), synced());
    catalog.publish("c", Arc::default(), synced());
    let merged_has_web = |builder: &mut IndexBuilder| {
        let dump = builder.build(&catalog.snapshot(), Instant::now()).dump();
        let zone = |apex: &str| {
            let start = dump.find(&format!("zone {apex}")).unwrap();
            let rest = &dump[start + 5..];
            rest[..rest.find("zone ").unwrap_or(rest.len())].to_string()
        };
        (
            zone("cluster.all.").contains("web.demo.svc.cluster.all."),
            zone("cluster.b.").contains("web.demo.svc.cluster.b."),
        )
    };
    assert_eq!(merged_has_web(&mut builder), (true, true));
    catalog.set_path("b", PathState::Unreachable);
    assert_eq!(
        merged_has_web(&mut builder),
        (false, true),
        "out of cluster.all; cluster.b keeps answering"
    );
    catalog.set_path("b", PathState::Reachable);
    assert_eq!(merged_has_web(&mut builder), (true, true), "back");
    catalog.set_path("b", PathState::Unknown);
    assert_eq!(
        merged_has_web(&mut builder),
        (true, true),
        "unknown is not down"
    );
}
