//! Sync benchmark of causeway-proxy (nftables backend). `cargo bench -p causeway-proxy --bench sync`
//! (root and `nft` needed for part 2; part 1 runs anywhere). `-- plan`: part 1 only;
//! `-- api`: part 1 and the API-server run of part 2 only; `-- kernel`: the kernel time
//! of one 10,000-service full load with kinds of statement left out (root).
//!
//! 1. Planner, render and netlink encoding alone, in process: 30,000 services / 150,000
//!    endpoints.
//! 2. The real binary in a network namespace: 10,000 services / 50,000 endpoints across
//!    3 remote clusters, served by test API servers (netlink writer), then by YAML files
//!    (netlink writer, and `nftWriter: nft` for comparison). Time to the first full sync
//!    and to all VIP aliases, two endpoint changes (incremental), CPU and peak memory of
//!    the proxy process.
//!
//! Ranges (RFC 2544 benchmarking): service IPs 198.18.0.0/16, pod IPs 198.19.0.0/16.

use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use causeway_nfnl::Batch;
use causeway_proxy::backend::nft::{
    Kernel, Layout, ops, render_full, render_full_into, render_partial,
};
use causeway_proxy::drain::Drains;
use causeway_proxy::plan::{PlanSettings, Planner, plan};
use causeway_shared::catalog::{Catalog, ClusterStatus};
use causeway_shared::source::{ObjectCache, parse_objects};
use causeway_tests::daemon::strip_ansi;
use causeway_tests::netns::{self, Netns};

const ENDPOINTS_PER_SERVICE: usize = 5;

/// One cluster's services `[first, first+count)` as YAML: one `kind: List` document
/// (the YAML reader caps multi-document files at 1024 documents).
fn cluster_yaml(first: usize, count: usize, changed: Option<usize>) -> String {
    let mut t = String::with_capacity(count * 700);
    t.push_str("apiVersion: v1\nkind: List\nitems:\n");
    for i in first..first + count {
        let (ns, a, b) = (i % 50, i / 250, i % 250 + 1);
        let _ = writeln!(
            t,
            "- {{apiVersion: v1, kind: Service, metadata: {{name: svc-{i}, namespace: ns-{ns}}}, \
             spec: {{clusterIP: 198.18.{a}.{b}, ports: [{{name: http, port: 80, protocol: TCP, targetPort: 8080}}]}}}}"
        );
        let eps: Vec<String> = (0..ENDPOINTS_PER_SERVICE)
            .map(|e| {
                let n = i * ENDPOINTS_PER_SERVICE + e;
                let last = if changed == Some(i) && e == 0 {
                    250
                } else {
                    n % 250 + 1
                };
                format!("{{addresses: [198.19.{}.{}]}}", n / 250 % 256, last)
            })
            .collect();
        let _ = writeln!(
            t,
            "- {{apiVersion: discovery.k8s.io/v1, kind: EndpointSlice, metadata: {{name: svc-{i}-x, namespace: ns-{ns}, \
             generation: 1, labels: {{kubernetes.io/service-name: svc-{i}}}}}, addressType: IPv4, \
             ports: [{{name: http, port: 8080, protocol: TCP}}], endpoints: [{}]}}",
            eps.join(", ")
        );
    }
    t
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn part1(services: usize) {
    println!(
        "== planner + render, {services} services / {} endpoints",
        services * ENDPOINTS_PER_SERVICE
    );
    let per = services / 3;
    let clusters = ["c1", "c2", "c3"];
    let cat = Catalog::new(["a", "c1", "c2", "c3"], "a");
    let synced = ClusterStatus {
        synced: true,
        connected: true,
        ..Default::default()
    };
    // c1 is read as the file source reads its file: the text with one endpoint changed
    // shares the `Arc`s of its unchanged objects with the first one.
    let mut c1_reader = ObjectCache::default();
    let mut read_c1 = |changed| {
        let (data, _) = c1_reader
            .parse(&cluster_yaml(0, per, changed))
            .expect("bench YAML");
        Arc::new(data)
    };
    let (c1_before, c1_after) = (read_c1(None), read_c1(Some(7)));
    cat.publish("c1", c1_before.clone(), synced.clone());
    for (k, c) in clusters.iter().enumerate().skip(1) {
        let (data, _) = parse_objects(&cluster_yaml(k * per, per, None)).expect("bench YAML");
        cat.publish(c, Arc::new(data), synced.clone());
    }
    let snap = cat.snapshot();
    let settings = PlanSettings {
        stale_rules_expiry: Duration::ZERO,
    };
    let now = tokio::time::Instant::now();
    let mut plans = vec![];
    let t_plan = median(
        (0..5)
            .map(|_| {
                let t = Instant::now();
                plans.push(plan(&snap, &settings, now).desired);
                t.elapsed()
            })
            .collect(),
    );
    let desired = plans.pop().unwrap();
    // One endpoint of c1 changes back and forth: each plan walks c1's services and
    // builds one of them anew; c2 and c3 are reused whole. With `recycle`, each state
    // is handed back to the planner once the next one replaced it, as the sync loop
    // does (the first two plans fill that pipeline and are not counted).
    let mut changed_plan = None;
    let mut replan = |recycle: bool| {
        let mut planner = Planner::default();
        let mut held = (0, planner.plan(&snap, &settings, now).desired);
        let times: Vec<Duration> = (0..7)
            .map(|i| {
                let c1 = if i % 2 == 0 { &c1_after } else { &c1_before };
                cat.publish("c1", c1.clone(), synced.clone());
                let snap = cat.snapshot();
                let t = Instant::now();
                let p = planner.plan(&snap, &settings, now);
                let elapsed = t.elapsed();
                if i % 2 == 0 {
                    changed_plan = Some(p.desired.clone());
                }
                let (plan, state) = std::mem::replace(&mut held, (planner.plans(), p.desired));
                if recycle {
                    planner.recycle(state, plan, vec![]);
                }
                elapsed
            })
            .skip(2)
            .collect();
        // What the last plan changed, as the sync loop asks the planner for its drains.
        let differ = planner.changed_since(planner.plans() - 1, &[]).unwrap();
        (median(times), planner.stats(), differ)
    };
    let (t_copying, ..) = replan(false);
    let (t_replan, stats, differ) = replan(true);
    let changed_plan = changed_plan.unwrap();
    assert_eq!(changed_plan.services.len(), desired.services.len());
    // The rest of a sync's work before the backend: carry-over, drains (told where the
    // plan changed, as the sync loop does), VIPs, counts.
    let t_bookkeeping = median(
        (0..5)
            .map(|i| {
                let (applied, planned) = if i % 2 == 0 {
                    (&desired, &changed_plan)
                } else {
                    (&changed_plan, &desired)
                };
                let mut d = planned.clone();
                let mut drains = Drains::new(Duration::from_secs(30));
                let t = Instant::now();
                d.carry_over(applied, &BTreeSet::new());
                drains.retain(&mut d, applied, Some(&differ), now, |_, _| None);
                let (vips, counts) = (d.vips(), d.counts());
                let elapsed = t.elapsed();
                assert_eq!(
                    (drains.len(), vips.len(), counts.len()),
                    (1, d.services.len(), 3)
                );
                elapsed
            })
            .collect(),
    );
    let layout = Layout::new("causeway", 16);
    let mut full = vec![];
    let t_render = median(
        (0..5)
            .map(|_| {
                let t = Instant::now();
                full = render_full(&layout, &[], &desired, &Kernel::default());
                t.elapsed()
            })
            .collect(),
    );
    let mut bytes = 0;
    let t_encode = median(
        (0..5)
            .map(|_| {
                let t = Instant::now();
                let mut batch = Batch::new(1, full.len() * 448);
                for op in &full {
                    ops::encode(op, &mut batch);
                }
                bytes = batch.finish().bytes().len();
                t.elapsed()
            })
            .collect(),
    );
    // What the netlink writer does: each operation encoded as it is rendered, none kept.
    let t_stream = median(
        (0..5)
            .map(|_| {
                let t = Instant::now();
                let mut batch = Batch::new(1, full.len() * 448);
                render_full_into(&layout, &[], &desired, &Kernel::default(), &mut |op| {
                    ops::encode(&op, &mut batch)
                });
                assert_eq!(batch.finish().bytes().len(), bytes);
                t.elapsed()
            })
            .collect(),
    );
    let text = ops::script(&full).len();
    let mut changed = desired.clone();
    let vs = changed.services.values_mut().next().unwrap();
    let first = *vs.reals.keys().next().unwrap();
    vs.reals.remove(&first);
    let t = Instant::now();
    let partial = render_partial(&layout, &desired, &changed);
    let t_partial = t.elapsed();
    println!(
        "plan (median of 5):           {:>8.1} ms  ({} virtual services)",
        ms(t_plan),
        desired.services.len()
    );
    println!(
        "re-plan, one endpoint changed: {:>8.1} ms  (memoized, median of 5; {} service built anew, {} virtual services patched into a state handed back)",
        ms(t_replan),
        stats.rebuilt,
        stats.copied
    );
    println!(
        "  the same, no state handed back: {:>5.1} ms  (every virtual service copied)",
        ms(t_copying)
    );
    println!(
        "carry-over, drains, VIPs, counts: {:>5.1} ms  (median of 5)",
        ms(t_bookkeeping)
    );
    println!(
        "render full (median of 5):    {:>8.1} ms  ({} operations; {:.1} MB as nft text)",
        ms(t_render),
        full.len(),
        text as f64 / 1e6
    );
    println!(
        "encode full as netlink:       {:>8.1} ms  ({:.1} MB)",
        ms(t_encode),
        bytes as f64 / 1e6
    );
    println!(
        "render + encode, streamed:    {:>8.1} ms  (as the netlink writer does a full sync)",
        ms(t_stream)
    );
    println!(
        "render one endpoint change:   {:>8.3} ms  ({} operations)",
        ms(t_partial),
        partial.len()
    );
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// `field` (`elapsed_ms`, `plan_ms`) of every "synced" log line with `services=<n>`.
fn synced_lines(log: &Path, services: usize, field: &str) -> Vec<f64> {
    let text = strip_ansi(&std::fs::read_to_string(log).unwrap_or_default());
    text.lines()
        .filter(|l| l.contains(" synced ") && l.contains(&format!("services={services} ")))
        .filter_map(|l| {
            l.split(&format!(" {field}="))
                .nth(1)?
                .split_whitespace()
                .next()?
                .parse()
                .ok()
        })
        .collect()
}

fn proc_stats(pid: u32) -> (f64, u64) {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let fields: Vec<&str> = stat
        .rsplit_once(") ")
        .map(|(_, r)| r.split(' ').collect())
        .unwrap_or_default();
    let ticks: f64 = fields
        .get(11)
        .and_then(|u| u.parse::<f64>().ok())
        .unwrap_or(0.0)
        + fields
            .get(12)
            .and_then(|s| s.parse::<f64>().ok())
            .unwrap_or(0.0);
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let hwm = status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        .unwrap_or(0);
    (ticks / 100.0, hwm)
}

fn wait<T>(what: &str, timeout: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let end = Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < end, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// (sum, count) of the network-programming-latency histogram, from `/metrics`.
/// GET `path` from the proxy's telemetry port inside namespace `ns`: the answer and how
/// long it took.
/// `GET path` inside `ns`: `/ipvs` from the debug listener (its default address), the
/// rest from the metrics listener.
fn http_get(ns: &str, path: &str) -> Option<(String, Duration)> {
    use std::io::{Read, Write};
    let request = format!("GET {path} HTTP/1.0\r\n\r\n");
    let at = if path.starts_with("/ipvs") {
        "127.0.0.1:9164"
    } else {
        "127.0.0.1:9154"
    };
    netns::enter(ns, move || -> Option<(String, Duration)> {
        let t = Instant::now();
        let mut s = std::net::TcpStream::connect(at).ok()?;
        s.write_all(request.as_bytes()).ok()?;
        let mut body = String::new();
        s.read_to_string(&mut body).ok()?;
        Some((body, t.elapsed()))
    })
    .ok()?
}

fn programming_latency(ns: &str) -> Option<(f64, f64)> {
    let (body, _) = http_get(ns, "/metrics")?;
    let value = |name: &str| -> Option<f64> {
        body.lines()
            .find(|l| l.starts_with(name))?
            .split_whitespace()
            .last()?
            .parse()
            .ok()
    };
    Some((
        value("causeway_proxy_network_programming_latency_seconds_sum")?,
        value("causeway_proxy_network_programming_latency_seconds_count")?,
    ))
}

/// Three test API servers (one per remote cluster) on 127.0.0.1 inside network namespace
/// `ns`, each on a thread of its own (as each cluster's API server is a machine of its
/// own); objects are applied to server k through `apply[k]`.
struct ApiServers {
    apply: Vec<tokio::sync::mpsc::UnboundedSender<serde_json::Value>>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl ApiServers {
    /// Starts the servers, loads services `ranges[k]` (first, count) into server k and
    /// writes `c{k+1}.kubeconfig`.
    fn start(ns: &str, dir: &Path, ranges: Vec<(usize, usize)>) -> Self {
        use causeway_tests::apiserver::{TestApiServer, objects_from_yaml};
        let mut servers = ApiServers {
            apply: vec![],
            threads: vec![],
        };
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        for (k, (first, count)) in ranges.into_iter().enumerate() {
            let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<serde_json::Value>();
            let ns = ns.to_string();
            let kubeconfig = dir.join(format!("c{}.kubeconfig", k + 1));
            let ready = ready_tx.clone();
            servers.threads.push(std::thread::spawn(move || {
                netns::enter(&ns, move || {
                    let rt = tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build()
                        .unwrap();
                    rt.block_on(async move {
                        let server = TestApiServer::start().await;
                        // In chunks: the YAML reader caps the nodes of one text.
                        for at in (first..first + count).step_by(500) {
                            let text = cluster_yaml(at, 500.min(first + count - at), None);
                            for o in objects_from_yaml(&text, "bench").unwrap() {
                                server.apply(&o).unwrap();
                            }
                        }
                        server
                            .write_kubeconfig(&kubeconfig, &format!("c{}", k + 1))
                            .unwrap();
                        ready.send(()).unwrap();
                        while let Some(o) = rx.recv().await {
                            server.apply(&o).unwrap();
                        }
                    });
                })
                .expect("API server in the namespace");
            }));
            servers.apply.push(tx);
        }
        for _ in 0..servers.threads.len() {
            ready_rx.recv().expect("API server started");
        }
        servers
    }
}

impl Drop for ApiServers {
    fn drop(&mut self) {
        self.apply.clear();
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

/// `source`: `file` (the YAML files the file source watches) or `api` (test API servers,
/// watched through the Kubernetes client like a real cluster).
fn part2(services: usize, writer: &str, source: &str) {
    println!(
        "\n== causeway-proxy in a namespace, {services} services / {} endpoints, 3 remote clusters ({source} sources), nftWriter: {writer}",
        services * ENDPOINTS_PER_SERVICE
    );
    let dir = tempfile::tempdir().unwrap();
    let per = services / 3;
    let counts = [per, per, services - 2 * per];
    let mut first = 0;
    for (k, n) in counts.iter().enumerate() {
        std::fs::write(
            dir.path().join(format!("c{}.yaml", k + 1)),
            cluster_yaml(first, *n, None),
        )
        .unwrap();
        first += n;
    }
    std::fs::write(
        dir.path().join("a.yaml"),
        "apiVersion: v1\nkind: List\nitems: []\n",
    )
    .unwrap();
    let mut config = String::from(
        "cluster: a\nclusters:\n- name: a\n  serviceCIDRs: [10.2.0.0/16]\n  source: {file: a.yaml}\n",
    );
    for k in 1..=3 {
        if source == "api" {
            let _ = write!(
                config,
                "- name: c{k}\n  source: {{kubeconfig: c{k}.kubeconfig}}\n"
            );
        } else {
            let _ = write!(config, "- name: c{k}\n  source: {{file: c{k}.yaml}}\n");
        }
    }
    let _ = write!(
        config,
        "proxy:\n  interface: br0\n  backend: nftables\n  nftWriter: {writer}\n  metricsListen: 127.0.0.1:9154\n  minSyncInterval: 10ms\n"
    );
    let cfg = dir.path().join("causeway.yaml");
    std::fs::write(&cfg, config).unwrap();
    let ns = Netns::new("bench").expect("network namespace");
    ns.sh("ip link add br0 type bridge && ip link set br0 up")
        .expect("br0");
    let api = (source == "api").then(|| {
        let ranges = vec![
            (0, counts[0]),
            (counts[0], counts[1]),
            (counts[0] + counts[1], counts[2]),
        ];
        ApiServers::start(ns.name(), dir.path(), ranges)
    });
    let log = dir.path().join("proxy.log");
    let start = Instant::now();
    let mut child = Command::new("ip")
        .args([
            "netns",
            "exec",
            ns.name(),
            env!("CARGO_BIN_EXE_causeway-proxy"),
            "--config",
        ])
        .arg(&cfg)
        .env("NO_COLOR", "1")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .expect("spawn causeway-proxy");
    let pid = child.id();
    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        wait("first full sync", Duration::from_secs(300), || {
            synced_lines(&log, services, "elapsed_ms").first().copied()
        });
        let first_sync = start.elapsed();
        let (cpu1, _) = proc_stats(pid);
        let alias_line = format!("vips={services} ");
        wait("aliases", Duration::from_secs(300), || {
            let text = strip_ansi(&std::fs::read_to_string(&log).unwrap());
            text.lines()
                .any(|l| l.contains("aliases synced") && l.contains(&alias_line))
                .then_some(())
        });
        let aliases_done = start.elapsed();
        // One endpoint of one service of c1 changes, then another (the first sync after
        // the start-up ones shows their transient, the second the steady state).
        let change = |changed| {
            let syncs_before = strip_ansi(&std::fs::read_to_string(&log).unwrap())
                .matches(" synced services=")
                .count();
            std::thread::sleep(Duration::from_millis(500));
            let t = match &api {
                Some(api) => {
                    // The one EndpointSlice that changes, as a controller would write it.
                    let text = cluster_yaml(changed, 1, Some(changed));
                    let slice = causeway_tests::apiserver::objects_from_yaml(&text, "bench")
                        .unwrap()
                        .into_iter()
                        .find(|o| o["kind"] == "EndpointSlice")
                        .unwrap();
                    let t = Instant::now();
                    api.apply[0].send(slice).unwrap();
                    t
                }
                None => {
                    let tmp = dir.path().join("c1.yaml.tmp");
                    std::fs::write(&tmp, cluster_yaml(0, counts[0], Some(changed))).unwrap();
                    let t = Instant::now();
                    std::fs::rename(&tmp, dir.path().join("c1.yaml")).unwrap();
                    t
                }
            };
            wait("incremental sync", Duration::from_secs(60), || {
                let text = strip_ansi(&std::fs::read_to_string(&log).unwrap());
                (text.matches(" synced services=").count() > syncs_before).then_some(())
            });
            let wall = t.elapsed();
            let last = |field| *synced_lines(&log, services, field).last().unwrap();
            (wall, last("elapsed_ms"), last("plan_ms"))
        };
        let changes = [change(7), change(8)];
        let syncs = synced_lines(&log, services, "elapsed_ms");
        let (cpu2, hwm) = proc_stats(pid);
        let latency = programming_latency(ns.name());
        // The debug view reads every service back from the kernel.
        let (view, read_back) = http_get(ns.name(), "/ipvs").expect("GET /ipvs");
        assert_eq!(
            view.lines().filter(|l| l.starts_with("TCP ")).count(),
            services,
            "/ipvs lists every service"
        );
        let chains = Command::new("ip")
            .args(["netns", "exec", ns.name(), "nft", "list", "ruleset"])
            .output()
            .unwrap();
        let chains = String::from_utf8_lossy(&chains.stdout)
            .matches("\tchain ")
            .count();
        println!(
            "first full sync, from process start: {:>8.0} ms (the sync itself {:.0} ms; {chains} chains)",
            ms(first_sync),
            syncs.first().unwrap_or(&0.0)
        );
        println!(
            "all {services} VIP aliases on the interface, from process start: {:>6.0} ms",
            ms(aliases_done)
        );
        for ((wall, sync, plan), which) in changes.iter().zip(["one", "a second"]) {
            println!(
                "{which} endpoint change, written → applied: {:>6.0} ms (the sync itself {sync:.1} ms: plan {plan:.1} ms, then nft)",
                ms(*wall)
            );
        }
        if let Some((sum, count)) = latency {
            println!(
                "network programming latency (slice seen → applied), mean of {count}: {:.1} ms",
                sum / count * 1000.0
            );
        }
        println!(
            "/ipvs (every service read back from the kernel): {:>6.0} ms",
            ms(read_back)
        );
        println!("CPU of the proxy: {cpu1:.2} s to the first sync, {cpu2:.2} s in all");
        println!(
            "peak RSS of the proxy (VmHWM): {:.1} MB",
            hwm as f64 / 1024.0
        );
    }));
    let _ = child.kill();
    let _ = child.wait();
    let _ = std::fs::copy(
        &log,
        std::env::temp_dir().join(format!("causeway-proxy-bench-{writer}-{source}.log")),
    );
    if let Err(e) = r {
        eprintln!(
            "proxy log:\n{}",
            std::fs::read_to_string(&log)
                .unwrap_or_default()
                .lines()
                .rev()
                .take(20)
                .collect::<Vec<_>>()
                .join("\n")
        );
        std::panic::resume_unwind(e);
    }
}

/// Kernel time of one full-sync transaction of `n` services into an empty namespace,
/// with statements left out of the rendered rules (what each kind of expression costs).
fn kernel_variants(n: usize) {
    use causeway_nfnl::NfSocket;
    use causeway_proxy::backend::nft::ops::{Op, Stmt};
    let cat = Catalog::new(["a", "c1"], "a");
    let (data, _) = parse_objects(&cluster_yaml(0, n, None)).unwrap();
    let synced = ClusterStatus {
        synced: true,
        connected: true,
        ..Default::default()
    };
    cat.publish("c1", Arc::new(data), synced);
    let settings = PlanSettings {
        stale_rules_expiry: Duration::ZERO,
    };
    let d = plan(&cat.snapshot(), &settings, tokio::time::Instant::now()).desired;
    let layout = Layout::new("causeway", 16);
    type Keep = fn(&[Stmt], &Stmt) -> bool;
    let variants: [(&str, Keep); 3] = [
        ("as rendered", |_, _| true),
        ("no endpoint counters", |all, s| {
            !(matches!(s, Stmt::Counter) && all.iter().any(|x| matches!(x, Stmt::Dnat(_))))
        }),
        ("no service rule statements", |all, _| {
            !all.iter().any(|x| matches!(x, Stmt::MarkOr(_)))
        }),
    ];
    for (name, keep) in variants {
        let mut times = vec![];
        for _ in 0..5 {
            let ns = Netns::new("kernel").expect("network namespace");
            let mut socket = NfSocket::open_in_netns(ns.name()).unwrap();
            let mut batch = Batch::new(socket.next_seq(), n * 3000);
            render_full_into(&layout, &[], &d, &Kernel::default(), &mut |mut op| {
                if let Op::AddRule { stmts, .. } = &mut op {
                    let all = stmts.clone();
                    stmts.retain(|s| keep(&all, s));
                }
                ops::encode(&op, &mut batch)
            });
            let batch = batch.finish();
            let t = Instant::now();
            socket.send(batch).unwrap();
            times.push(t.elapsed());
            drop(socket);
        }
        times.sort();
        println!(
            "{name:<28} kernel {:>7.1} ms median of 5 (min {:.1}, max {:.1})",
            ms(times[2]),
            ms(times[0]),
            ms(times[4])
        );
    }
}

fn main() {
    // `dump N FILE`: write the full ruleset of N services to FILE (for timing `nft -f`).
    let args: Vec<String> = std::env::args().collect();
    if let Some(i) = args.iter().position(|a| a == "dump") {
        let n: usize = args[i + 1].parse().unwrap();
        let cat = Catalog::new(["a", "c1"], "a");
        let (data, _) = parse_objects(&cluster_yaml(0, n, None)).unwrap();
        cat.publish(
            "c1",
            Arc::new(data),
            ClusterStatus {
                synced: true,
                connected: true,
                ..Default::default()
            },
        );
        let d = plan(
            &cat.snapshot(),
            &PlanSettings {
                stale_rules_expiry: Duration::ZERO,
            },
            tokio::time::Instant::now(),
        )
        .desired;
        std::fs::write(
            &args[i + 2],
            ops::script(&render_full(
                &Layout::new("causeway", 16),
                &[],
                &d,
                &Kernel::default(),
            )),
        )
        .unwrap();
        return;
    }
    if args.iter().any(|a| a == "kernel") {
        kernel_variants(10_000);
        return;
    }
    // `cargo bench` passes `--bench`; a filter argument `plan` runs part 1 only.
    let only_plan = std::env::args().any(|a| a == "plan");
    part1(30_000);
    if only_plan {
        return;
    }
    part2(10_000, "netlink", "api");
    if std::env::args().any(|a| a == "api") {
        return;
    }
    part2(10_000, "netlink", "file");
    part2(10_000, "nft", "file");
    println!(
        "\nPublished kube-proxy figures (see proxy/README.md for sources):
  iptables mode, time to add one rule: 5,000 services 11 min, 20,000 services 5 h;
  IPVS mode: 2 ms at any of those sizes (Kubernetes blog, 2018-07-09, IPVS deep dive)."
    );
}
