//! Load: 50 remote clusters of 500 Services each (with an EndpointSlice of two endpoints
//! each), every one behind its own test API server, and causeway-dns starting against all of
//! them: time to Ready, resident memory, and the last Service of the last cluster answered.
//! Debug build, as `cargo test` runs it; the figure is printed.
//!
//! Ranges: cluster k (1..=50) has services 10.<k>.0.0/16 and pods 10.<100+k>.0.0/16; the local
//! cluster a 10.0.0.0/16 and 10.100.0.0/16.

mod common;

use std::time::{Duration, Instant};

use causeway_tests::apiserver::TestApiServer;
use causeway_tests::objects;
use common::{Dns, answers, ask, free_port};
use hickory_server::proto::rr::RecordType;

const CLUSTERS: usize = 50;
const SERVICES: usize = 500;

fn rss_mb(pid: u32) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse::<f64>().ok())
        .map_or(0.0, |kb| kb / 1024.0)
}

#[test]
fn fifty_clusters_of_five_hundred_services_sync_and_answer() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let servers: Vec<TestApiServer> = rt.block_on(async {
        let mut servers = Vec::new();
        for _ in 0..=CLUSTERS {
            servers.push(TestApiServer::start().await);
        }
        servers
    });
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let mut config = String::from("cluster: a\nclusters:\n");
    for (k, server) in servers.iter().enumerate() {
        let name = if k == 0 {
            "a".to_string()
        } else {
            format!("c{k}")
        };
        let kubeconfig = dir.join(format!("{name}.kubeconfig"));
        server.write_kubeconfig(&kubeconfig, &name).unwrap();
        config.push_str(&format!(
            "- name: {name}\n  podCIDRs: [10.{}.0.0/16]\n  serviceCIDRs: [10.{k}.0.0/16]\n  source: {{kubeconfig: {}}}\n",
            100 + k,
            kubeconfig.display()
        ));
        if k == 0 {
            continue;
        }
        let objects: Vec<_> = (0..SERVICES)
            .flat_map(|i| {
                let ip = format!("10.{k}.{}.{}", i / 250, i % 250 + 1);
                let name = format!("svc-{i}");
                let eps = [
                    format!("10.{}.{}.{}", 100 + k, i / 125, (i % 125) * 2 + 1),
                    format!("10.{}.{}.{}", 100 + k, i / 125, (i % 125) * 2 + 2),
                ];
                [
                    objects::service("load", &name, &ip, 80, 8080),
                    objects::endpoint_slice(
                        "load",
                        &format!("{name}-1"),
                        &name,
                        8080,
                        &[&eps[0], &eps[1]],
                    ),
                ]
            })
            .collect();
        server.load_objects(objects, &name).unwrap();
    }
    config.push_str("dns:\n  upstreams: [\"127.0.0.1:9\"]\npathHealth: {url: \"\"}\nreadiness:\n  remoteSyncTimeout: 300s\n");
    let started = Instant::now();
    let mut dns = Dns::launch_with(dir, &config, false, free_port(), &[]);
    assert_eq!(
        dns.wait_readyz(200, Duration::from_secs(240)),
        200,
        "never ready"
    );
    let ready = started.elapsed();
    let last = format!("svc-{}.load.svc.cluster.c{CLUSTERS}.", SERVICES - 1);
    let want = format!("{last} A 10.{CLUSTERS}.1.250");
    assert_eq!(answers(&ask(dns.addr, &last, RecordType::A, false)), [want]);
    let rss = rss_mb(dns.child.id());
    println!(
        "{CLUSTERS} clusters x {SERVICES} services ({} services, {} endpoints): ready {:.2} s after start, {rss:.0} MB resident",
        CLUSTERS * SERVICES,
        CLUSTERS * SERVICES * 2,
        ready.as_secs_f64()
    );
    assert!(dns.child_status().is_none());
    drop(servers);
}
