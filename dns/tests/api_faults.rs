//! API faults of one remote cluster under a steady query load, against the real binary: b's
//! API drops every watch, stalls, answers 500, expires its history (410), goes away, and
//! comes back with changed state. Meanwhile a client asks for a name of b, a name of c and
//! a merged name every 20 ms: no query may fail (b's last-known-good keeps answering, c never
//! notices), and b's change is answered within seconds of its API returning.
//!
//! Three test API servers on loopback: a (local, the DNS fixtures' cluster a), b (the
//! fixtures' cluster b: services 198.51.100.128/25) and c (services 203.0.113.0/24).

mod common;

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use causeway_tests::apiserver::TestApiServer;
use causeway_tests::objects;
use common::{Dns, FIXTURES, answers, ask, free_port};
use hickory_server::proto::rr::RecordType;

fn config(dir: &Path) -> String {
    let kc = |c: &str| dir.join(format!("{c}.kubeconfig")).display().to_string();
    format!(
        "cluster: a
clusters:
- name: a
  podCIDRs: [192.0.2.0/25]
  serviceCIDRs: [198.51.100.0/25]
  source: {{kubeconfig: {a}}}
- name: b
  podCIDRs: [192.0.2.128/25]
  serviceCIDRs: [198.51.100.128/25]
  source: {{kubeconfig: {b}}}
- name: c
  podCIDRs: [10.99.0.0/16]
  serviceCIDRs: [203.0.113.0/24]
  source: {{kubeconfig: {c}}}
dns:
  upstreams: [\"127.0.0.1:9\"]
  localFirst: false
",
        a = kc("a"),
        b = kc("b"),
        c = kc("c"),
    )
}

/// The steady client: every 20 ms one query for each of `names`, counting the answers that
/// are not the expected ones.
struct Load {
    stop: Arc<AtomicBool>,
    asked: Arc<AtomicUsize>,
    failed: Arc<AtomicUsize>,
    thread: Option<std::thread::JoinHandle<Vec<String>>>,
}

impl Load {
    fn start(addr: std::net::SocketAddr, names: Vec<(&'static str, Vec<String>)>) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let asked = Arc::new(AtomicUsize::new(0));
        let failed = Arc::new(AtomicUsize::new(0));
        let (s, a, f) = (stop.clone(), asked.clone(), failed.clone());
        let thread = std::thread::spawn(move || {
            let mut failures = Vec::new();
            while !s.load(Ordering::Relaxed) {
                for (name, want) in &names {
                    a.fetch_add(1, Ordering::Relaxed);
                    let got = std::panic::catch_unwind(|| {
                        answers(&ask(addr, name, RecordType::A, false))
                    });
                    match got {
                        Ok(got) if got == *want => {}
                        other => {
                            f.fetch_add(1, Ordering::Relaxed);
                            if failures.len() < 10 {
                                failures.push(format!("{name}: {other:?}"));
                            }
                        }
                    }
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            failures
        });
        Self {
            stop,
            asked,
            failed,
            thread: Some(thread),
        }
    }

    fn finish(mut self) -> (usize, usize, Vec<String>) {
        self.stop.store(true, Ordering::Relaxed);
        let failures = self.thread.take().unwrap().join().unwrap();
        (
            self.asked.load(Ordering::Relaxed),
            self.failed.load(Ordering::Relaxed),
            failures,
        )
    }
}

/// The three clusters' API servers (a and b loaded from the fixtures, c with one Service)
/// and their kubeconfigs in a temporary directory.
struct Apis {
    b: TestApiServer,
    _a: TestApiServer,
    _c: TestApiServer,
    tmp: tempfile::TempDir,
    _rt: tokio::runtime::Runtime,
}

fn apis() -> Apis {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let (a, b, c) = rt.block_on(async {
        (
            TestApiServer::start().await,
            TestApiServer::start().await,
            TestApiServer::start().await,
        )
    });
    a.load_file(&Path::new(FIXTURES).join("cluster-a.yaml"))
        .unwrap();
    b.load_file(&Path::new(FIXTURES).join("cluster-b.yaml"))
        .unwrap();
    c.load_objects(
        vec![
            objects::service("demo", "api", "203.0.113.10", 443, 8443),
            objects::endpoint_slice("demo", "api-1", "api", 8443, &["10.99.0.10"]),
        ],
        "cluster c",
    )
    .unwrap();
    let tmp = tempfile::tempdir().unwrap();
    for (server, name) in [(&a, "a"), (&b, "b"), (&c, "c")] {
        server
            .write_kubeconfig(&tmp.path().join(format!("{name}.kubeconfig")), name)
            .unwrap();
    }
    Apis {
        b,
        _a: a,
        _c: c,
        tmp,
        _rt: rt,
    }
}

#[test]
fn a_remote_api_failing_in_every_way_fails_no_query() {
    let apis = apis();
    let (b, dir) = (&apis.b, apis.tmp.path());
    let dns = Dns::launch_with(dir, &config(dir), true, free_port(), &[]);
    let web_b = vec!["web.demo.svc.cluster.b. A 198.51.100.140".to_string()];
    let api_c = vec!["api.demo.svc.cluster.c. A 203.0.113.10".to_string()];
    let api_all = vec!["api.demo.svc.cluster.all. A 203.0.113.10".to_string()];
    assert_eq!(
        answers(&ask(
            dns.addr,
            "web.demo.svc.cluster.b.",
            RecordType::A,
            false
        )),
        web_b
    );
    let load = Load::start(
        dns.addr,
        vec![
            ("web.demo.svc.cluster.b.", web_b.clone()),
            ("api.demo.svc.cluster.c.", api_c),
            ("api.demo.svc.cluster.all.", api_all),
        ],
    );
    std::thread::sleep(Duration::from_millis(500));
    // Every fault in turn, 3 s each; gone for 10 s, and back with a new Service.
    b.fault_tour(Duration::from_secs(3), Duration::from_secs(10), |b| {
        b.load_objects(
            vec![objects::service(
                "demo",
                "fresh",
                "198.51.100.199",
                80,
                8080,
            )],
            "cluster b, changed while away",
        )
        .unwrap();
    });
    let back = Instant::now();
    let fresh = vec!["fresh.demo.svc.cluster.b. A 198.51.100.199".to_string()];
    while answers(&ask(
        dns.addr,
        "fresh.demo.svc.cluster.b.",
        RecordType::A,
        false,
    )) != fresh
    {
        assert!(back.elapsed() < Duration::from_secs(30), "never converged");
        std::thread::sleep(Duration::from_millis(50));
    }
    let converged = back.elapsed();
    std::thread::sleep(Duration::from_millis(500));
    let (asked, failed, failures) = load.finish();
    println!(
        "api faults of b: {asked} queries, {failed} failed; b's change answered {:.2} s after its API returned",
        converged.as_secs_f64()
    );
    assert_eq!(failed, 0, "{failures:?}");
    assert!(asked > 500, "the load ran: {asked}");
    assert!(converged < Duration::from_secs(10), "{converged:?}");
}

#[test]
fn kill_9_under_a_query_load_serves_again_within_a_second_of_the_restart() {
    let apis = apis();
    let dir = apis.tmp.path();
    let port = free_port();
    let state = dir.join("state");
    let state = state.to_string_lossy().to_string();
    let flags = ["--state-dir", state.as_str()];
    let mut dns = Dns::launch_with(dir, &config(dir), true, port, &flags);
    let web_b = vec!["web.demo.svc.cluster.b. A 198.51.100.140".to_string()];
    // The loop's view: when each answer came.
    let addr = dns.addr;
    let answered = Arc::new(std::sync::Mutex::new(Vec::<Instant>::new()));
    let stop = Arc::new(AtomicBool::new(false));
    let (ans, st, want) = (answered.clone(), stop.clone(), web_b.clone());
    let client = std::thread::spawn(move || {
        while !st.load(Ordering::Relaxed) {
            let pkt = common::query_msg("web.demo.svc.cluster.b.", RecordType::A, None)
                .to_vec()
                .unwrap();
            if let Some(reply) = common::udp_raw(addr, &pkt, Duration::from_millis(100))
                && hickory_server::proto::op::Message::from_vec(&reply)
                    .is_ok_and(|m| answers(&m) == want)
            {
                ans.lock().unwrap().push(Instant::now());
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    });
    std::thread::sleep(Duration::from_secs(1));
    let mut figures = Vec::new();
    for _ in 0..3 {
        dns.child.kill().unwrap(); // SIGKILL
        dns.child.wait().unwrap();
        drop(dns);
        let restarted = Instant::now();
        dns = Dns::launch_with(dir, &config(dir), false, port, &flags);
        let deadline = restarted + Duration::from_secs(10);
        let first = loop {
            if let Some(t) = answered.lock().unwrap().iter().find(|t| **t > restarted) {
                break *t;
            }
            assert!(
                Instant::now() < deadline,
                "no answer within 10 s of the restart"
            );
            std::thread::sleep(Duration::from_millis(10));
        };
        figures.push(first - restarted);
        std::thread::sleep(Duration::from_millis(500));
    }
    stop.store(true, Ordering::Relaxed);
    client.join().unwrap();
    let shown: Vec<String> = figures
        .iter()
        .map(|d| format!("{:.2}", d.as_secs_f64()))
        .collect();
    println!(
        "kill -9 and restart of causeway-dns under a query loop: first answer {} s after each restart",
        shown.join(" / ")
    );
    assert!(
        figures.iter().all(|d| *d < Duration::from_secs(1)),
        "{figures:?}"
    );
}
