//! The manifests users apply: every overlay renders, every object validates offline
//! against the Kubernetes 1.33 schemas (`kubernetes-validate --strict`), and the
//! configuration they ship is accepted by our own config loader. The tunnels' private keys
//! stay on their nodes: no service account may read Secrets but the webhook its own.

use std::path::Path;
use std::process::Command;

use causeway_tests::manifests::render_text as render;
use causeway_tests::rbac::{self, Access};
use serde_json::json;

fn validate(dir: &str, rendered: &str) -> String {
    let file = tempfile::Builder::new().suffix(".yaml").tempfile().unwrap();
    std::fs::write(file.path(), rendered).unwrap();
    let out = Command::new("kubernetes-validate")
        .args(["-k", "1.33.0", "--strict"])
        .arg(file.path())
        .output()
        .expect(
            "kubernetes-validate is needed (tests/install-deps.sh installs it in a virtualenv)",
        );
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{dir} does not validate:\n{text}");
    assert!(!text.contains("ERROR"), "{dir}:\n{text}");
    text
}

fn documents(rendered: &str) -> Vec<serde_json::Value> {
    serde_saphyr::from_multiple(rendered).unwrap()
}

fn shipped_config(docs: &[serde_json::Value]) -> String {
    docs.iter()
        .find(|d| {
            d["kind"] == "ConfigMap"
                && d["metadata"]["name"]
                    .as_str()
                    .unwrap_or("")
                    .starts_with("causeway-config")
        })
        .and_then(|d| d["data"]["config.yaml"].as_str())
        .expect("a causeway-config ConfigMap with config.yaml")
        .to_string()
}

#[test]
fn kubernetes_overlay_renders_and_validates() {
    let rendered = render("");
    let report = validate("manifests/", &rendered);
    assert!(
        !report.contains("WARN"),
        "every object of the plain overlay has a schema:\n{report}"
    );
    let docs = documents(&rendered);
    let kinds: Vec<&str> = docs.iter().filter_map(|d| d["kind"].as_str()).collect();
    for kind in [
        "Namespace",
        "CustomResourceDefinition",
        "DaemonSet",
        "Deployment",
        "MutatingWebhookConfiguration",
        "ClusterRole",
        "Role",
    ] {
        assert!(kinds.contains(&kind), "missing {kind}: {kinds:?}");
    }
    let config = shipped_config(&docs);
    let cfg = causeway_shared::config::Config::from_yaml(
        Path::new("manifests/base/config.yaml"),
        &config,
    )
    .unwrap_or_else(|e| panic!("the shipped configuration is rejected: {e}"));
    assert_eq!(
        cfg.tunnel.steering,
        causeway_shared::config::SteeringMode::None
    );
    // Remote kubeconfigs: one Secret, one key per cluster, mounted where the config says.
    for (kind, name) in [
        ("DaemonSet", "causeway-node"),
        ("Deployment", "causeway-dns"),
    ] {
        let workload = docs
            .iter()
            .find(|d| d["kind"] == kind && d["metadata"]["name"] == name)
            .unwrap();
        let volumes = workload["spec"]["template"]["spec"]["volumes"]
            .as_array()
            .unwrap();
        assert!(
            volumes
                .iter()
                .any(|v| v["name"] == "remotes" && v["secret"]["secretName"] == "causeway-remotes"),
            "{name} mounts the causeway-remotes Secret"
        );
    }
    for cluster in cfg.clusters.iter().filter(|c| c.name != cfg.local_cluster) {
        let shown = format!("{:?}", cluster.source);
        assert!(
            shown.contains(&format!(
                "/etc/causeway/remotes/{}.kubeconfig",
                cluster.name
            )),
            "{shown}"
        );
    }
    // causeway-dns forwards to the cluster DNS and is never patched by its own webhook.
    let dns = docs
        .iter()
        .find(|d| d["kind"] == "Deployment" && d["metadata"]["name"] == "causeway-dns")
        .unwrap();
    assert_eq!(dns["spec"]["template"]["spec"]["dnsPolicy"], "ClusterFirst");
    assert_eq!(
        dns["spec"]["template"]["metadata"]["annotations"]["causeway.io/dns"],
        "disabled"
    );
    assert_eq!(
        cfg.dns.upstreams,
        causeway_shared::config::Upstreams::ResolvConf("/etc/resolv.conf".into())
    );
    // The webhook keeps its own CA (dns/tests/webhook_tls_provision.rs runs it as rendered).
    assert!(args_of(webhook_container(&docs)).contains(&"--tls-secret=causeway-webhook-tls"));
    assert_state_dir_on_host(&docs);
    // The webhook reads the one Secret it owns, by name; nobody else reads any.
    assert_eq!(
        secret_readers(&docs),
        ["causeway/causeway-webhook: get causeway/causeway-webhook-tls"]
    );
}

#[test]
fn openshift_overlay_renders_and_validates() {
    let rendered = render("openshift");
    let report = validate("manifests/openshift", &rendered);
    // The only object without an upstream schema is OpenShift's own SCC.
    for line in report.lines().filter(|l| l.contains("WARN")) {
        assert!(line.contains("SecurityContextConstraints"), "{line}");
    }
    let docs = documents(&rendered);
    assert!(
        docs.iter()
            .any(|d| d["kind"] == "SecurityContextConstraints")
    );
    let ds = docs.iter().find(|d| d["kind"] == "DaemonSet").unwrap();
    assert!(
        ds["spec"]["template"]["spec"]["volumes"]
            .as_array()
            .unwrap()
            .iter()
            .any(|v| v["name"] == "ovs-run"),
        "the OVS socket is mounted"
    );
    let cfg = causeway_shared::config::Config::from_yaml(
        Path::new("manifests/openshift/config.yaml"),
        &shipped_config(&docs),
    )
    .unwrap();
    assert_eq!(
        cfg.tunnel.steering,
        causeway_shared::config::SteeringMode::Ovs
    );
    // The service-ca operator provides the webhook's certificate and caBundle; restricted-v2
    // picks the UID, and the webhook has no access to Secrets.
    let webhook = webhook_container(&docs);
    assert!(args_of(webhook).contains(&"--tls-cert=/etc/causeway/tls/tls.crt"));
    assert!(webhook["securityContext"].get("runAsUser").is_none());
    let mwc = docs
        .iter()
        .find(|d| d["kind"] == "MutatingWebhookConfiguration")
        .unwrap();
    assert_eq!(
        mwc["metadata"]["annotations"]["service.beta.openshift.io/inject-cabundle"],
        "true"
    );
    let service = docs
        .iter()
        .find(|d| d["kind"] == "Service" && d["metadata"]["name"] == "causeway-webhook")
        .unwrap();
    assert_eq!(
        service["metadata"]["annotations"]["service.beta.openshift.io/serving-cert-secret-name"],
        "causeway-webhook-tls"
    );
    assert!(
        !docs
            .iter()
            .any(|d| d["kind"] == "Role" && d["metadata"]["name"] == "causeway-webhook")
    );
    // The node pod's SCC admits its hostPath volumes, the state directory among them.
    assert_state_dir_on_host(&docs);
    let scc = docs
        .iter()
        .find(|d| d["kind"] == "SecurityContextConstraints")
        .unwrap();
    assert_eq!(scc["allowHostDirVolumePlugin"], true);
    assert!(
        scc["volumes"]
            .as_array()
            .unwrap()
            .contains(&json!("hostPath"))
    );
    assert!(
        scc["users"]
            .as_array()
            .unwrap()
            .contains(&json!("system:serviceaccount:causeway:causeway-node"))
    );
    // The service-ca operator writes the webhook's Secret: no service account reads any.
    assert_eq!(secret_readers(&docs), Vec::<String>::new());
}

/// The tunnel's key stays on its node: the DaemonSet mounts the host's `/var/lib/causeway`
/// (created if missing) writable at the tunnel's default `--state-dir`, the same path.
fn assert_state_dir_on_host(docs: &[serde_json::Value]) {
    let ds = docs
        .iter()
        .find(|d| d["kind"] == "DaemonSet" && d["metadata"]["name"] == "causeway-node")
        .expect("the node DaemonSet");
    let spec = &ds["spec"]["template"]["spec"];
    let volume = spec["volumes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["name"] == "state")
        .expect("a state volume");
    assert_eq!(
        volume["hostPath"],
        json!({"path": "/var/lib/causeway", "type": "DirectoryOrCreate"})
    );
    let tunnel = spec["containers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "tunnel")
        .expect("the tunnel container");
    let mounts: Vec<&serde_json::Value> = tunnel["volumeMounts"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["name"] == "state")
        .collect();
    assert_eq!(
        mounts,
        [&json!({"name": "state", "mountPath": "/var/lib/causeway"})]
    );
}

/// Every read of a Secret (get, list, watch) that the rendered RBAC grants some service
/// account, as `namespace/account: verb namespace/name` (`*`: any name; an empty namespace:
/// all of them), tried in the account's namespace, another one and across all, on any name
/// and on the names Causeway uses.
fn secret_readers(docs: &[serde_json::Value]) -> Vec<String> {
    let accounts: Vec<(&str, &str)> = docs
        .iter()
        .filter(|d| d["kind"] == "ServiceAccount")
        .filter_map(|d| {
            Some((
                d["metadata"]["namespace"].as_str()?,
                d["metadata"]["name"].as_str()?,
            ))
        })
        .collect();
    assert!(
        accounts.contains(&("causeway", "causeway-node")),
        "{accounts:?}"
    );
    let names = [
        None,
        Some("causeway-tunnel-key-a1"),
        Some("causeway-remotes"),
        Some("causeway-webhook-tls"),
    ];
    let mut readers = Vec::new();
    for (namespace, account) in accounts {
        let grants = rbac::grants(docs, namespace, account);
        for verb in ["get", "list", "watch"] {
            for in_namespace in [namespace, "kube-system", ""] {
                for name in names {
                    let access = Access {
                        verb,
                        group: String::new(),
                        resource: "secrets".into(),
                        namespace: in_namespace.into(),
                        name: name.map(Into::into),
                    };
                    if rbac::check_allowed(&grants, &[access]).is_ok() {
                        readers.push(format!(
                            "{namespace}/{account}: {verb} {in_namespace}/{}",
                            name.unwrap_or("*")
                        ));
                    }
                }
            }
        }
    }
    readers
}

fn webhook_container(docs: &[serde_json::Value]) -> &serde_json::Value {
    let deployment = docs
        .iter()
        .find(|d| d["kind"] == "Deployment" && d["metadata"]["name"] == "causeway-webhook")
        .expect("the webhook Deployment");
    &deployment["spec"]["template"]["spec"]["containers"][0]
}

fn args_of(container: &serde_json::Value) -> Vec<&str> {
    container["args"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|a| a.as_str())
        .collect()
}

#[test]
fn remote_access_renders_and_validates() {
    let rendered = render("remote-access");
    validate("manifests/remote-access", &rendered);
    let docs = documents(&rendered);
    let role = docs.iter().find(|d| d["kind"] == "ClusterRole").unwrap();
    let verbs: Vec<&str> = role["rules"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|r| {
            r["verbs"]
                .as_array()
                .unwrap()
                .iter()
                .filter_map(|v| v.as_str())
        })
        .collect();
    assert!(
        verbs.iter().all(|v| ["get", "list", "watch"].contains(v)),
        "read-only: {verbs:?}"
    );
}

#[test]
fn every_component_keeps_its_state_dir_and_probes_readyz() {
    for overlay in ["", "openshift"] {
        let docs = documents(&render(overlay));
        for (kind, name, volume) in [
            ("DaemonSet", "causeway-node", "hostPath"),
            ("Deployment", "causeway-dns", "emptyDir"),
        ] {
            let spec = &docs
                .iter()
                .find(|d| d["kind"] == kind && d["metadata"]["name"] == name)
                .unwrap_or_else(|| panic!("{overlay:?}: no {kind} {name}"))["spec"]["template"]["spec"];
            let state = spec["volumes"]
                .as_array()
                .unwrap()
                .iter()
                .find(|v| v["name"] == "state")
                .unwrap_or_else(|| panic!("{overlay:?}: {name} has no state volume"));
            assert!(state.get(volume).is_some(), "{overlay:?} {name}: {state}");
            if volume == "hostPath" {
                assert_eq!(state["hostPath"]["path"], "/var/lib/causeway");
                assert_eq!(state["hostPath"]["type"], "DirectoryOrCreate");
            }
            for c in spec["containers"].as_array().unwrap() {
                let cname = c["name"].as_str().unwrap();
                let dir = c["env"]
                    .as_array()
                    .and_then(|e| e.iter().find(|v| v["name"] == "CAUSEWAY_STATE_DIR"))
                    .and_then(|v| v["value"].as_str())
                    .unwrap_or_else(|| panic!("{overlay:?} {cname}: no CAUSEWAY_STATE_DIR"));
                assert_eq!(dir, format!("/var/lib/causeway/state/{cname}"));
                let mount = c["volumeMounts"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .find(|m| m["name"] == "state")
                    .unwrap_or_else(|| panic!("{overlay:?} {cname}: state is not mounted"));
                let at = mount["mountPath"].as_str().unwrap();
                assert!(dir.starts_with(at), "{cname}: {dir} is outside {at}");
                assert_eq!(c["readinessProbe"]["httpGet"]["path"], "/readyz", "{cname}");
            }
        }
    }
}

#[test]
fn dns_reads_the_path_report_of_its_own_nodes_tunnel() {
    for overlay in ["", "openshift"] {
        let docs = documents(&render(overlay));
        let find = |kind: &str, name: &str| {
            docs.iter()
                .find(|d| d["kind"] == kind && d["metadata"]["name"] == name)
                .unwrap_or_else(|| panic!("{overlay:?}: no {kind} {name}"))
        };
        let dns = &find("Deployment", "causeway-dns")["spec"]["template"]["spec"]["containers"][0];
        let url = dns["env"]
            .as_array()
            .unwrap()
            .iter()
            .find(|v| v["name"] == "CAUSEWAY_PATH_HEALTH_URL")
            .and_then(|v| v["value"].as_str())
            .unwrap_or_else(|| panic!("{overlay:?}: causeway-dns has no CAUSEWAY_PATH_HEALTH_URL"));
        let (authority, path) = causeway_shared::config::path_health::split_http_url(url).unwrap();
        assert_eq!(path, "/paths");
        let (host, port) = authority.rsplit_once(':').unwrap();
        // The Service named keeps traffic on the caller's node and reaches the tunnel's
        // metrics port, where the shipped configuration has the tunnel serve /paths.
        let svc = find("Service", host);
        assert_eq!(svc["spec"]["internalTrafficPolicy"], "Local", "{overlay:?}");
        let node = find("DaemonSet", "causeway-node");
        assert_eq!(
            svc["spec"]["selector"], node["spec"]["selector"]["matchLabels"],
            "{overlay:?}: the Service selects the node pods"
        );
        let svc_port = svc["spec"]["ports"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["port"].as_u64().map(|n| n.to_string()).as_deref() == Some(port))
            .unwrap_or_else(|| panic!("{overlay:?}: {host} has no port {port}"));
        let tunnel = node["spec"]["template"]["spec"]["containers"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["name"] == "tunnel")
            .unwrap();
        let container_port = tunnel["ports"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["name"] == svc_port["targetPort"])
            .unwrap_or_else(|| {
                panic!(
                    "{overlay:?}: the tunnel has no port {}",
                    svc_port["targetPort"]
                )
            });
        let cfg = causeway_shared::config::Config::from_yaml(
            Path::new("config.yaml"),
            &shipped_config(&docs),
        )
        .unwrap();
        assert_eq!(
            container_port["containerPort"],
            json!(cfg.tunnel.metrics_listen.port()),
            "{overlay:?}: /paths is served on tunnel.metricsListen"
        );
        // The proxy, in the tunnel's pod, reads it on loopback (the default).
        assert_eq!(
            cfg.path_health_url().as_deref(),
            Some(
                format!(
                    "http://127.0.0.1:{}/paths",
                    cfg.tunnel.metrics_listen.port()
                )
                .as_str()
            )
        );
    }
}
