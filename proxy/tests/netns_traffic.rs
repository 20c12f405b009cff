//! Real traffic through the real `causeway-proxy` binary (nftables backend) in network
//! namespaces: round robin over TCP and UDP, the `/ipvs` view, VIP aliases, draining,
//! and a restart that keeps an open connection.
//!
//! Test ranges: remote service IPs 192.0.2.0/24, remote pod IPs 198.51.100.0/24; the
//! local cluster uses 10.1.0.0/16 and 10.2.0.0/16 and has no objects.

mod netns;

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use causeway_tests::daemon::Daemon;
use causeway_tests::netns::ask;
use netns::{Lab, wait_for};

const TELEMETRY: &str = "127.0.0.1:9154";
/// `/ipvs` at its default address, the proxy namespace's loopback.
const DEBUG: &str = "127.0.0.1:9164";
const VIP_TCP: &str = "192.0.2.10:80";
const VIP_UDP: &str = "192.0.2.10:53";
const WAIT: Duration = Duration::from_secs(30);

fn telemetry() -> SocketAddr {
    TELEMETRY.parse().unwrap()
}

fn debug() -> SocketAddr {
    DEBUG.parse().unwrap()
}

/// Writes the config and an empty local cluster into `dir`.
fn write_config(dir: &Path) -> std::path::PathBuf {
    write_config_with(dir, "{file: b.yaml}", "3s")
}

/// [`write_config`] with cluster b's `source` and the drain period given.
fn write_config_with(dir: &Path, b_source: &str, drain: &str) -> std::path::PathBuf {
    std::fs::write(
        dir.join("a.yaml"),
        "apiVersion: v1\nkind: List\nitems: []\n",
    )
    .unwrap();
    let config = dir.join("causeway.yaml");
    std::fs::write(
        &config,
        format!(
            "cluster: a
clusters:
- name: a
  podCIDRs: [10.1.0.0/16]
  serviceCIDRs: [10.2.0.0/16]
  source: {{file: a.yaml}}
- name: b
  podCIDRs: [198.51.100.0/24]
  serviceCIDRs: [192.0.2.0/24]
  source: {b_source}
proxy:
  interface: br0
  backend: nftables
  metricsListen: {TELEMETRY}
  minSyncInterval: 10ms
  gracefulTerminationPeriod: {drain}
"
        ),
    )
    .unwrap();
    config
}

/// Cluster b: service demo/web (TCP 80 and UDP 53, both to port 8080) with the given
/// endpoints `(ip, ready, terminating)`; no service at all when `endpoints` is None.
fn write_cluster_b(dir: &Path, endpoints: Option<&[(&str, bool, bool)]>) {
    let text = match endpoints {
        None => "apiVersion: v1\nkind: List\nitems: []\n".to_string(),
        Some(eps) => {
            let mut t = String::from(
                "apiVersion: v1
kind: Service
metadata: {name: web, namespace: demo}
spec:
  clusterIP: 192.0.2.10
  ports:
  - {name: http, port: 80, protocol: TCP, targetPort: 8080}
  - {name: dns, port: 53, protocol: UDP, targetPort: 8080}
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: web-1, namespace: demo, generation: 4, labels: {kubernetes.io/service-name: web}}
addressType: IPv4
ports:
- {name: http, port: 8080, protocol: TCP}
- {name: dns, port: 8080, protocol: UDP}
endpoints:
",
            );
            for (ip, ready, terminating) in eps {
                t.push_str(&format!(
                    "- addresses: [{ip}]\n  conditions: {{ready: {ready}, serving: true, terminating: {terminating}}}\n"
                ));
            }
            if eps.is_empty() {
                t = t.replace("endpoints:\n", "endpoints: []\n");
            }
            t
        }
    };
    // Write and rename, so the file source never reads half a file.
    let tmp = dir.join("b.yaml.tmp");
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(tmp, dir.join("b.yaml")).unwrap();
}

fn ipvs(lab: &Lab) -> Option<String> {
    lab.http_get(debug(), "/ipvs")
        .filter(|t| t.starts_with("IP Virtual Server"))
}

fn wait_reals(lab: &Lab, proxy: &Daemon, n: usize) -> String {
    let mut last = String::new();
    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        wait_for(
            WAIT,
            &format!("{n} real servers per service in /ipvs"),
            || {
                let t = ipvs(lab)?;
                last = t.clone();
                (t.matches(" Masq ").count() == 2 * n).then_some(t)
            },
        )
    }));
    r.unwrap_or_else(|_| panic!("last /ipvs:\n{last}\nproxy log:\n{}", proxy.log()))
}

#[test]
fn remote_service_round_robin_over_tcp_and_udp_with_ipvsadm_view_and_aliases() {
    let lab = Lab::new("rr", 3);
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path());
    let eps: Vec<_> = lab
        .backends
        .iter()
        .map(|(_, ip)| (ip.as_str(), true, false))
        .collect();
    write_cluster_b(dir.path(), Some(&eps));
    // An address that is not ours, equal to no VIP: it must survive every sync.
    lab.sh("ip addr add 192.0.2.77/32 dev br0");
    let proxy = lab.start_proxy(&config, &dir.path().join("proxy.log"));

    let view = wait_reals(&lab, &proxy, 3);
    assert_eq!(
        view,
        "\
IP Virtual Server version 0.0.0 (size=0)
Prot LocalAddress:Port Scheduler Flags
  -> RemoteAddress:Port           Forward Weight ActiveConn InActConn
TCP  192.0.2.10:80 rr
  -> 198.51.100.11:8080           Masq    1      0          0         
  -> 198.51.100.12:8080           Masq    1      0          0         
  -> 198.51.100.13:8080           Masq    1      0          0         
UDP  192.0.2.10:53 rr
  -> 198.51.100.11:8080           Masq    1      0          0         
  -> 198.51.100.12:8080           Masq    1      0          0         
  -> 198.51.100.13:8080           Masq    1      0          0         
"
    );
    let explain = lab.http_get(debug(), "/ipvs?explain").unwrap();
    assert!(
        explain.contains("TCP  192.0.2.10:80 rr  # cluster=b service=demo/web:http generation=4\n"),
        "{explain}"
    );

    // TCP: every connection goes to the next backend in turn.
    let names: Vec<String> = (0..6)
        .map(|_| {
            let mut c = lab
                .connect(VIP_TCP.parse().unwrap())
                .expect("connect to the VIP");
            ask(&mut c).expect("answer")
        })
        .collect();
    let first: BTreeSet<_> = names[..3].iter().cloned().collect();
    assert_eq!(
        first,
        ["b1", "b2", "b3"].map(String::from).into(),
        "{names:?}"
    );
    assert_eq!(
        names[..3],
        names[3..],
        "round robin repeats in the same order: {names:?}"
    );

    // UDP: each new flow goes to the next backend.
    let udp: BTreeSet<String> = (0..6)
        .map(|_| lab.udp_ask(VIP_UDP.parse().unwrap()).expect("udp answer"))
        .collect();
    assert_eq!(udp, ["b1", "b2", "b3"].map(String::from).into());

    // Stats: six TCP connections scheduled.
    let stats = lab.http_get(debug(), "/ipvs?stats").unwrap();
    assert!(
        stats.contains("TCP  192.0.2.10:80                       6        0"),
        "{stats}"
    );
    let json = lab.http_get(debug(), "/ipvs.json").unwrap();
    assert!(json.contains("\"namespace\": \"demo\""), "{json}");

    // The VIP is an alias on br0, marked as ours; the foreign address is untouched.
    let addrs = lab.sh("ip -o addr show dev br0");
    assert!(
        addrs.contains("inet 192.0.2.10/32") && addrs.contains("br0:cw"),
        "{addrs}"
    );
    assert!(addrs.contains("inet 192.0.2.77/32"), "{addrs}");

    // The service goes: its alias and virtual services go, the foreign address stays.
    write_cluster_b(dir.path(), None);
    wait_for(WAIT, "alias removed", || {
        (!lab.sh("ip -o addr show dev br0").contains("192.0.2.10/32")).then_some(())
    });
    wait_for(WAIT, "no virtual service", || {
        ipvs(&lab).filter(|t| !t.contains("TCP  "))
    });
    assert!(
        lab.sh("ip -o addr show dev br0")
            .contains("inet 192.0.2.77/32")
    );
    let metrics = lab.http_get(telemetry(), "/metrics").unwrap();
    assert!(
        metrics.contains("causeway_proxy_sync_duration_seconds_count{kind=\"full\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("causeway_proxy_network_programming_latency_seconds_count"),
        "{metrics}"
    );
}

/// A lab with two backends serving cluster b's service and the proxy started on it, once
/// both real servers show; also returns that `/ipvs` listing.
fn two_backends(tag: &str) -> (Lab, tempfile::TempDir, std::path::PathBuf, Daemon, String) {
    let lab = Lab::new(tag, 2);
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path());
    write_cluster_b(
        dir.path(),
        Some(&[
            ("198.51.100.11", true, false),
            ("198.51.100.12", true, false),
        ]),
    );
    let proxy = lab.start_proxy(&config, &dir.path().join("proxy.log"));
    let listing = wait_reals(&lab, &proxy, 2);
    // The rules are in; the VIP's alias (what routes it here) follows them.
    wait_for(WAIT, "the VIP alias on br0", || {
        lab.sh("ip -o addr show dev br0")
            .contains("192.0.2.10/32")
            .then_some(())
    });
    (lab, dir, config, proxy, listing)
}

#[test]
fn endpoint_removal_drains_without_resetting_an_open_connection() {
    let (lab, dir, _config, _proxy, _) = two_backends("drain");

    let mut conn = lab.connect(VIP_TCP.parse().unwrap()).unwrap();
    let first = ask(&mut conn).unwrap();
    let (gone_ip, kept_ip, kept) = if first == "b1" {
        ("198.51.100.11", "198.51.100.12", "b2")
    } else {
        ("198.51.100.12", "198.51.100.11", "b1")
    };

    // The endpoint goes from the slice: kept at weight 0 while it drains.
    write_cluster_b(dir.path(), Some(&[(kept_ip, true, false)]));
    let draining = format!("  -> {:<28} Masq    0 ", format!("{gone_ip}:8080"));
    wait_for(WAIT, "weight 0 while draining", || {
        ipvs(&lab).filter(|t| t.contains(&draining))
    });
    assert_eq!(
        ask(&mut conn).unwrap(),
        first,
        "the open connection still reaches its backend"
    );
    for _ in 0..4 {
        let mut c = lab.connect(VIP_TCP.parse().unwrap()).unwrap();
        assert_eq!(
            ask(&mut c).unwrap(),
            kept,
            "no new connection to a draining backend"
        );
    }
    // After the grace period it is gone from the rules; the connection lives on.
    wait_for(WAIT, "drained real server removed", || {
        ipvs(&lab).filter(|t| !t.contains(&format!("{gone_ip}:8080")))
    });
    assert_eq!(ask(&mut conn).unwrap(), first);

    // A terminating-but-serving endpoint also gets weight 0 (from the slice itself).
    write_cluster_b(
        dir.path(),
        Some(&[(kept_ip, true, false), (gone_ip, false, true)]),
    );
    wait_for(WAIT, "terminating endpoint at weight 0", || {
        ipvs(&lab).filter(|t| t.contains(&draining))
    });
    assert_eq!(ask(&mut conn).unwrap(), first);
}

/// Connections counted so far by the TCP virtual service (`/ipvs.json`).
fn tcp_conns(lab: &Lab) -> u64 {
    let body = lab.http_get(debug(), "/ipvs.json").unwrap_or_default();
    let v: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
    v["services"]
        .as_array()
        .and_then(|s| {
            s.iter()
                .find(|s| s["protocol"] == "TCP" && s["port"] == 80)
                .and_then(|s| s["stats"]["conns"].as_u64())
        })
        .unwrap_or(0)
}

#[test]
fn restart_adopts_the_rules_and_keeps_an_open_connection() {
    let (lab, dir, config, mut proxy, before) = two_backends("restart");
    let mut conn = lab.connect(VIP_TCP.parse().unwrap()).unwrap();
    let first = ask(&mut conn).unwrap();
    for _ in 0..4 {
        let mut c = lab.connect(VIP_TCP.parse().unwrap()).unwrap();
        assert!(ask(&mut c).is_ok());
    }
    let counted = tcp_conns(&lab);
    assert!(counted >= 5, "every connection counted: {counted}");

    // A crash: rules and aliases stay, traffic keeps flowing.
    proxy.kill();
    let table = lab.sh("nft list ruleset");
    assert!(table.contains("chain svc-"), "{table}");
    assert_eq!(ask(&mut conn).unwrap(), first);
    let mut c = lab
        .connect(VIP_TCP.parse().unwrap())
        .expect("new connections work while the proxy is down");
    assert!(ask(&mut c).is_ok());

    let proxy = lab.start_proxy(&config, &dir.path().join("proxy2.log"));
    wait_for(WAIT, "adopted and synced", || {
        let log = proxy.log();
        (log.contains("adopted the kernel state")
            && log.contains("services=2")
            && log.contains("synced"))
        .then_some(())
    });
    assert_eq!(wait_reals(&lab, &proxy, 2), before);
    // The start's full apply found the rules right and left them: the counters go on
    // (one more connection was made while the proxy was down).
    assert_eq!(tcp_conns(&lab), counted + 1, "counters survive the restart");
    assert_eq!(
        ask(&mut conn).unwrap(),
        first,
        "the open connection survived the restart"
    );
    let mut c = lab.connect(VIP_TCP.parse().unwrap()).unwrap();
    assert!(ask(&mut c).is_ok());
}

/// A client loop until `stop`: a new connection to the TCP VIP and one request every 20 ms;
/// the number that succeeded and the errors of the others.
fn request_loop(lab: &Lab, stop: &std::sync::atomic::AtomicBool) -> (u32, Vec<String>) {
    let (mut ok, mut failed) = (0u32, Vec::new());
    while !stop.load(std::sync::atomic::Ordering::Relaxed) {
        let r = lab
            .connect(VIP_TCP.parse().unwrap())
            .and_then(|mut c| ask(&mut c).map_err(std::io::Error::other));
        match r {
            Ok(_) => ok += 1,
            Err(e) => failed.push(e.to_string()),
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    (ok, failed)
}

#[test]
fn kill_and_restart_under_a_request_loop_fails_no_request() {
    let (lab, dir, config, mut proxy, before) = two_backends("loop");
    let stop = std::sync::atomic::AtomicBool::new(false);
    let (ok, failed) = std::thread::scope(|s| {
        let worker = s.spawn(|| request_loop(&lab, &stop));
        std::thread::sleep(Duration::from_millis(500));
        for run in 2..=3 {
            proxy.kill();
            std::thread::sleep(Duration::from_millis(500));
            proxy = lab.start_proxy(&config, &dir.path().join(format!("proxy{run}.log")));
            wait_for(WAIT, "adopted and synced", || {
                let log = proxy.log();
                (log.contains("adopted the kernel state") && log.contains("synced")).then_some(())
            });
            assert_eq!(wait_reals(&lab, &proxy, 2), before);
            std::thread::sleep(Duration::from_millis(500));
        }
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        worker.join().unwrap()
    });
    println!(
        "two kill -9 and restarts of causeway-proxy under a request loop: {ok} requests, {} failed",
        failed.len()
    );
    assert!(ok > 50, "the loop ran: {ok}");
    assert!(failed.is_empty(), "{failed:?}");
}

/// A stand-in for the tunnel's `/paths` on its default address (the proxy namespace's
/// 127.0.0.1:9155, where the proxy reads it by default), answering what the test sets.
struct PathsServer {
    report: std::sync::Arc<std::sync::Mutex<String>>,
}

impl PathsServer {
    fn start(lab: &Lab) -> Self {
        let listener = lab
            .proxy
            .enter(|| std::net::TcpListener::bind("127.0.0.1:9155"))
            .unwrap()
            .unwrap();
        let report = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
        let r = report.clone();
        std::thread::spawn(move || {
            use std::io::{Read, Write};
            for conn in listener.incoming() {
                let Ok(mut conn) = conn else { return };
                let mut buf = [0u8; 1024];
                let _ = conn.read(&mut buf);
                let body = r.lock().unwrap().clone();
                let _ = write!(
                    conn,
                    "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
            }
        });
        Self { report }
    }

    /// Cluster b with one peer, unreachable for `ms` milliseconds.
    fn set_b(&self, ms: u64) {
        *self.report.lock().unwrap() = format!(
            "{{\"node\":\"p\",\"clusters\":[{{\"cluster\":\"b\",\"peers\":1,\"probed\":1,\"reachable\":{},\"unreachableMs\":{ms}}}]}}",
            u8::from(ms < 1000)
        );
    }
}

#[test]
fn a_cluster_whose_path_is_down_has_its_connections_refused_at_once_until_it_returns() {
    let (lab, _dir, _config, proxy, before) = two_backends("path");
    let paths = PathsServer::start(&lab);
    paths.set_b(0);
    let path_of_b = |lab: &Lab| {
        let body = lab.http_get(telemetry(), "/readyz").unwrap_or_default();
        let v: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
        v["clusters"]
            .as_array()
            .and_then(|c| c.iter().find(|c| c["cluster"] == "b").cloned())
            .map(|c| c["path"].as_str().unwrap_or_default().to_string())
            .unwrap_or_default()
    };
    wait_for(WAIT, "b reachable in /readyz", || {
        (path_of_b(&lab) == "reachable").then_some(())
    });
    let mut c = lab.connect(VIP_TCP.parse().unwrap()).unwrap();
    assert!(ask(&mut c).is_ok());

    // The tunnel reports b unreachable: its virtual services lose their real servers (kept
    // at weight 0 for gracefulTerminationPeriod, 3 s here, taking no new connection).
    paths.set_b(60_000);
    let down = std::time::Instant::now();
    let took = wait_for(WAIT, "new connections refused", || {
        let asked = std::time::Instant::now();
        match lab.connect(VIP_TCP.parse().unwrap()) {
            // Refused at once, not left hanging.
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => Some(asked.elapsed()),
            _ => None,
        }
    });
    let refused_after = down.elapsed();
    assert!(took < Duration::from_secs(1), "{took:?}");
    assert_eq!(path_of_b(&lab), "unreachable");
    wait_for(WAIT, "the real servers drained", || {
        let t = ipvs(&lab)?;
        (t.contains("TCP  192.0.2.10:80") && !t.contains(" Masq ")).then_some(())
    });
    let emptied = down.elapsed();

    // Back: the real servers return and connections work again.
    paths.set_b(0);
    let up = std::time::Instant::now();
    assert_eq!(wait_reals(&lab, &proxy, 2), before);
    let restored = up.elapsed();
    let mut c = lab.connect(VIP_TCP.parse().unwrap()).unwrap();
    assert!(ask(&mut c).is_ok());
    println!(
        "path down: new connections refused {:.2} s after the report said so (in {:.1} ms each), real servers drained after {:.2} s; back {:.2} s after the report did",
        refused_after.as_secs_f64(),
        took.as_secs_f64() * 1000.0,
        emptied.as_secs_f64(),
        restored.as_secs_f64()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_remote_api_failing_in_every_way_fails_no_request() {
    use causeway_tests::apiserver::TestApiServer;
    use causeway_tests::objects;
    let lab = Lab::new("apif", 2);
    let dir = tempfile::tempdir().unwrap();
    // Cluster b's API inside the proxy's namespace, holding the Service and both endpoints.
    let b = TestApiServer::start_in(&lab.proxy).unwrap();
    let slice = |addrs: &[&str]| objects::endpoint_slice("demo", "web-1", "web", 8080, addrs);
    b.load_objects(
        vec![
            objects::service("demo", "web", "192.0.2.10", 80, 8080),
            slice(&["198.51.100.11", "198.51.100.12"]),
        ],
        "cluster b",
    )
    .unwrap();
    b.write_kubeconfig(&dir.path().join("b.kubeconfig"), "b")
        .unwrap();
    let config = write_config_with(dir.path(), "{kubeconfig: b.kubeconfig}", "1s");
    let proxy = lab.start_proxy(&config, &dir.path().join("proxy.log"));
    let synced = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        wait_for(WAIT, "both real servers", || {
            (ipvs(&lab)?.matches(" Masq ").count() == 2).then_some(())
        })
    }));
    synced.unwrap_or_else(|_| panic!("proxy log:\n{}", proxy.log()));
    wait_for(WAIT, "the VIP alias on br0", || {
        lab.sh("ip -o addr show dev br0")
            .contains("192.0.2.10/32")
            .then_some(())
    });
    let stop = std::sync::atomic::AtomicBool::new(false);
    let (ok, failed) = std::thread::scope(|s| {
        let worker = s.spawn(|| request_loop(&lab, &stop));
        // Every fault in turn, 2 s each; gone for 5 s, and back with one endpoint less.
        b.fault_tour(Duration::from_secs(2), Duration::from_secs(5), |b| {
            b.load_objects(
                vec![slice(&["198.51.100.12"])],
                "cluster b, changed while away",
            )
            .unwrap();
        });
        let back = std::time::Instant::now();
        wait_for(WAIT, "one real server left", || {
            let t = ipvs(&lab)?;
            (t.matches(" Masq ").count() == 1).then_some(())
        });
        let converged = back.elapsed();
        std::thread::sleep(Duration::from_millis(500));
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        let (ok, failed) = worker.join().unwrap();
        println!(
            "api faults of b under a request loop through causeway-proxy: {ok} requests, {} failed; the endpoint removed while it was away gone {:.2} s after its API returned (its drain is 1 s)",
            failed.len(),
            converged.as_secs_f64()
        );
        assert!(converged < Duration::from_secs(15), "{converged:?}");
        (ok, failed)
    });
    assert!(ok > 200, "the loop ran: {ok}");
    assert!(failed.is_empty(), "{failed:?}");
}
