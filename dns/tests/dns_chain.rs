//! The DNS chain a patched pod gets, in a network namespace: the pod's resolv.conf is written
//! from the webhook's actual JSON patch the way kubelet writes it for `dnsPolicy: None`,
//! causeway-dns forwards what it does not own to a stand-in cluster DNS (NSD, authoritative
//! for `cluster.local` and for an "external" zone it would forward to in a real cluster), and
//! glibc's `getent` resolves a `cluster.local` name, a bare name through the search path,
//! another cluster's Service and an external name. An upstream that is causeway-dns's own
//! Service IP is dropped as a loop.
//!
//! Addresses (inside the namespace only): causeway-dns 192.0.2.53, the stand-in cluster DNS
//! 192.0.2.10, causeway-dns's Service IP 192.0.2.54 (RFC 5737).

mod common;

use std::process::Stdio;
use std::time::{Duration, Instant};

use causeway_dns::webhook::patch::{self, Decision, Match, PatchSettings};
use causeway_tests::netns::{ChildGuard, Netns};
use k8s_openapi::api::core::v1::Pod;
use serde_json::json;

const CLUSTER_DNS: &str = "192.0.2.10";
const CAUSEWAY_DNS: &str = "192.0.2.53";

/// NSD as the cluster's DNS: `cluster.local` (what CoreDNS answers from the API) and
/// `example.net` (what it forwards to the internet).
fn cluster_dns_config(dir: &std::path::Path) -> std::path::PathBuf {
    let zones = [
        (
            "cluster.local",
            "kubernetes.default.svc 5 IN A 10.96.0.1\nweb.demo.svc 5 IN A 10.96.0.80\n",
        ),
        ("example.net", "www 5 IN A 203.0.113.80\n"),
    ];
    let d = dir.display();
    let mut conf = format!(
        "server:\n  ip-address: {CLUSTER_DNS}\n  server-count: 1\n  username: \"\"\n  \
         zonesdir: \"{d}\"\n  pidfile: \"{d}/nsd.pid\"\n  database: \"\"\n  \
         xfrdfile: \"{d}/xfrd.state\"\n  zonelistfile: \"{d}/zone.list\"\n  verbosity: 0\n\
         remote-control:\n  control-enable: no\n"
    );
    for (apex, body) in zones {
        std::fs::write(
            dir.join(format!("{apex}.zone")),
            format!(
                "$ORIGIN {apex}.\n$TTL 5\n@ IN SOA ns hostmaster 1 7200 1800 86400 5\n\
                 @ IN NS ns\nns IN A {CLUSTER_DNS}\n{body}"
            ),
        )
        .unwrap();
        conf += &format!("zone:\n  name: \"{apex}\"\n  zonefile: \"{apex}.zone\"\n");
    }
    let path = dir.join("nsd.conf");
    std::fs::write(&path, conf).unwrap();
    path
}

/// The lab: a namespace with the DNS servers' addresses and `more` on its loopback, and the
/// stand-in cluster DNS running in it.
fn lab_with_cluster_dns(tag: &str, more: &[&str]) -> (Netns, tempfile::TempDir, ChildGuard) {
    let lab = Netns::new(tag).unwrap();
    for ip in [CLUSTER_DNS, CAUSEWAY_DNS].iter().chain(more) {
        lab.exec("ip", &["addr", "add", &format!("{ip}/32"), "dev", "lo"])
            .unwrap();
    }
    let dir = tempfile::tempdir().unwrap();
    let nsd = spawn_quiet(
        &lab,
        "nsd",
        &["-d", "-c", cluster_dns_config(dir.path()).to_str().unwrap()],
    );
    (lab, dir, nsd)
}

/// Starts a server inside, its stdout dropped and its stderr shown with the test's output
/// (never piped: nothing would drain the pipe).
fn spawn_quiet(lab: &Netns, program: &str, args: &[&str]) -> ChildGuard {
    ChildGuard::spawn(
        lab.command(program)
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::inherit()),
    )
    .unwrap()
}

/// causeway-dns's configuration in the lab: cluster a (this one, pods 192.0.2.0/24) and
/// cluster b (pods 10.132.0.0/14), `upstreams` as given, `extra` lines added to `dns:`.
fn causeway_config(upstreams: &str, extra: &str) -> String {
    let fixtures = common::FIXTURES;
    format!(
        "cluster: a
clusters:
- name: a
  podCIDRs: [192.0.2.0/24]
  serviceCIDRs: [198.51.100.0/25]
  source: {{file: {fixtures}/cluster-a.yaml}}
- name: b
  podCIDRs: [10.132.0.0/14]
  serviceCIDRs: [198.51.100.128/25]
  source: {{file: {fixtures}/cluster-b.yaml}}
dns:
  listen: [\"{CAUSEWAY_DNS}:53\"]
  metricsListen: \"127.0.0.1:9153\"
  upstreams: {upstreams}
{extra}"
    )
}

/// The pod's resolv.conf as kubelet writes it from `dnsConfig` under `dnsPolicy: None`.
fn kubelet_resolv_conf(pod: &serde_json::Value) -> String {
    assert_eq!(pod["spec"]["dnsPolicy"], "None");
    let config = &pod["spec"]["dnsConfig"];
    let list = |key: &str| -> Vec<String> {
        config[key]
            .as_array()
            .into_iter()
            .flatten()
            .map(|v| v.as_str().unwrap().to_owned())
            .collect()
    };
    let options: Vec<String> = config["options"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|o| match o["value"].as_str() {
            Some(v) => format!("{}:{v}", o["name"].as_str().unwrap()),
            None => o["name"].as_str().unwrap().to_owned(),
        })
        .collect();
    let mut text = String::new();
    if !list("searches").is_empty() {
        text += &format!("search {}\n", list("searches").join(" "));
    }
    for ns in list("nameservers") {
        text += &format!("nameserver {ns}\n");
    }
    if !options.is_empty() {
        text += &format!("options {}\n", options.join(" "));
    }
    text
}

/// The webhook's decision for a pod of namespace `demo` selected by its label, applied.
fn patched_pod() -> serde_json::Value {
    let mut pod = json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "client", "namespace": "demo",
                     "labels": {"causeway.io/dns": "enabled"}},
        "spec": {"containers": [{"name": "c", "image": "busybox"}]},
    });
    let settings = PatchSettings {
        nameserver: CAUSEWAY_DNS.parse().unwrap(),
        cluster_domain: "cluster.local".to_owned(),
        selector: Match {
            key: "causeway.io/dns".to_owned(),
            value: "enabled".to_owned(),
        },
        opt_out: Match {
            key: "causeway.io/dns".to_owned(),
            value: "disabled".to_owned(),
        },
        ndots: 5,
    };
    let typed: Pod = serde_json::from_value(pod.clone()).unwrap();
    let Decision::Patch { patch, .. } = patch::plan(&typed, "demo", None, &settings) else {
        panic!("the webhook leaves a selected pod alone");
    };
    json_patch::patch(&mut pod, &patch).unwrap();
    pod
}

fn getent(ns: &Netns, name: &str) -> Option<String> {
    let out = ns.command("getent").args(["hosts", name]).output().unwrap();
    out.status.success().then(|| {
        String::from_utf8_lossy(&out.stdout)
            .split_whitespace()
            .next()
            .unwrap_or_default()
            .to_owned()
    })
}

#[test]
fn a_patched_pod_resolves_cluster_local_search_names_other_clusters_and_external_names() {
    let (lab, dir, _cluster_dns) = lab_with_cluster_dns("chain", &[]);

    // causeway-dns's own resolv.conf, as kubelet writes it for ClusterFirst in namespace
    // causeway; its Service IP is listed first, as a misconfigured node might.
    let upstream = dir.path().join("resolv.conf");
    std::fs::write(
        &upstream,
        format!(
            "search causeway.svc.cluster.local svc.cluster.local cluster.local\n\
             nameserver 192.0.2.54\nnameserver {CLUSTER_DNS}\noptions ndots:5\n"
        ),
    )
    .unwrap();
    let config = causeway_config(&upstream.display().to_string(), "");
    let config_path = dir.path().join("config.yaml");
    std::fs::write(&config_path, config).unwrap();
    let bin = env!("CARGO_BIN_EXE_causeway-dns");
    let child = ChildGuard::spawn(
        lab.command(bin)
            .arg("--config")
            .arg(&config_path)
            .env("CAUSEWAY_DNS_SERVICE_HOST", "192.0.2.54")
            .stdout(Stdio::null())
            .stderr(Stdio::piped()),
    )
    .unwrap();

    // The pod's resolv.conf, where `ip netns exec` mounts it over /etc/resolv.conf.
    lab.write_etc("resolv.conf", &kubelet_resolv_conf(&patched_pod()))
        .unwrap();

    let b_web = {
        // The first Service of cluster b's fixture, by name.
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(ip) = getent(&lab, "web.demo.svc.cluster.b") {
                break ip;
            }
            assert!(
                Instant::now() < deadline,
                "web.demo.svc.cluster.b does not resolve through causeway-dns"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    };
    assert!(b_web.starts_with("198.51.100."), "{b_web}");
    assert_eq!(
        getent(&lab, "kubernetes.default.svc.cluster.local").as_deref(),
        Some("10.96.0.1"),
        "cluster.local through causeway-dns to the cluster DNS"
    );
    assert_eq!(
        getent(&lab, "web").as_deref(),
        Some("10.96.0.80"),
        "a bare name through the pod's search path"
    );
    assert_eq!(
        getent(&lab, "www.example.net").as_deref(),
        Some("203.0.113.80"),
        "an external name through the cluster DNS"
    );

    let out = child.kill_for_stderr();
    assert!(
        out.contains("ignoring upstream that is this server") && out.contains("192.0.2.54:53"),
        "the Service IP upstream is dropped as a loop:\n{out}"
    );
}

/// `dig` from `src` inside the lab: the status word and the first answer's data.
fn dig(lab: &Netns, src: &str, args: &[&str]) -> (String, String) {
    let mut argv = vec![
        "dig",
        "-b",
        src,
        "+tries=1",
        "+time=2",
        "+nocookie",
        "@192.0.2.53",
    ];
    argv.extend_from_slice(args);
    // Not `exec`: dig fails when nothing answers yet, and that is an answer here.
    let out = lab.command(argv[0]).args(&argv[1..]).output().unwrap();
    let out = String::from_utf8_lossy(&out.stdout);
    let status = out
        .split("status: ")
        .nth(1)
        .and_then(|s| s.split(',').next())
        .unwrap_or_default()
        .to_string();
    let answer = out
        .lines()
        .skip_while(|l| !l.starts_with(";; ANSWER SECTION"))
        .nth(1)
        .and_then(|l| l.split_whitespace().last())
        .unwrap_or_default()
        .to_string();
    (status, answer)
}

/// Starts causeway-dns in the lab with `config` and waits until it answers cluster b's names.
fn start_causeway(lab: &Netns, dir: &std::path::Path, config: &str) -> ChildGuard {
    let path = dir.join("config.yaml");
    std::fs::write(&path, config).unwrap();
    let bin = env!("CARGO_BIN_EXE_causeway-dns");
    let guard = spawn_quiet(lab, bin, &["--config", path.to_str().unwrap()]);
    let deadline = Instant::now() + Duration::from_secs(20);
    while dig(lab, "127.0.0.1", &["web.demo.svc.cluster.b"]).0 != "NOERROR" {
        assert!(Instant::now() < deadline, "causeway-dns does not answer");
        std::thread::sleep(Duration::from_millis(100));
    }
    guard
}

#[test]
fn names_outside_our_zones_are_forwarded_only_for_the_clusters_and_loopback() {
    // A pod address of cluster b, and an address in no cluster.
    let (lab, dir, _cluster_dns) = lab_with_cluster_dns("acl", &["10.132.0.9", "203.0.113.9"]);
    let upstreams = format!("[\"{CLUSTER_DNS}\"]");
    let external = ["www.example.net"];

    let dns = start_causeway(&lab, dir.path(), &causeway_config(&upstreams, ""));
    let forwarded = ("NOERROR".to_string(), "203.0.113.80".to_string());
    for src in ["10.132.0.9", CAUSEWAY_DNS, "127.0.0.1"] {
        assert_eq!(
            dig(&lab, src, &external),
            forwarded,
            "a query from {src} (a cluster's CIDR or loopback) is forwarded"
        );
    }
    for proto in ["+notcp", "+tcp"] {
        assert_eq!(
            dig(&lab, "203.0.113.9", &[external[0], proto]).0,
            "REFUSED",
            "a query from an address in no cluster is not forwarded ({proto})"
        );
    }
    let (status, answer) = dig(&lab, "203.0.113.9", &["web.demo.svc.cluster.b"]);
    assert_eq!(status, "NOERROR", "our own zones answer every source");
    assert!(answer.starts_with("198.51.100."), "{answer}");

    // RFC 6891: an OPT version we do not implement gets BADVERS, on UDP and TCP.
    for proto in ["+notcp", "+tcp"] {
        for name in ["web.demo.svc.cluster.b", external[0]] {
            assert_eq!(
                dig(
                    &lab,
                    "127.0.0.1",
                    &[name, "+edns=1", "+noednsnegotiation", proto]
                )
                .0,
                "BADVERS",
                "{name} with EDNS version 1 ({proto})"
            );
        }
    }
    assert_eq!(dig(&lab, "127.0.0.1", &[external[0], "+edns=0"]), forwarded);
    drop(dns);

    // An explicit list replaces the default.
    let _dns = start_causeway(
        &lab,
        dir.path(),
        &causeway_config(&upstreams, "  allowFrom: [203.0.113.0/24, 127.0.0.1/32]\n"),
    );
    assert_eq!(dig(&lab, "203.0.113.9", &external), forwarded);
    assert_eq!(dig(&lab, "10.132.0.9", &external).0, "REFUSED");
}
