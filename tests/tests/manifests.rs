//! The manifests users apply: every overlay renders, every object validates offline
//! against the Kubernetes 1.33 schemas (`kubernetes-validate --strict`), and the
//! configuration they ship is accepted by our own config loader.

use std::path::{Path, PathBuf};
use std::process::Command;

fn manifests() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../manifests")
}

fn render(dir: &str) -> String {
    let out = Command::new("kubectl")
        .args(["kustomize"])
        .arg(manifests().join(dir))
        .output()
        .expect("kubectl is needed to render the manifests (tests/install-deps.sh installs it)");
    assert!(
        out.status.success(),
        "kubectl kustomize {dir}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn validate(dir: &str, rendered: &str) -> String {
    let file = tempfile::Builder::new().suffix(".yaml").tempfile().unwrap();
    std::fs::write(file.path(), rendered).unwrap();
    let out = Command::new("kubernetes-validate")
        .args(["-k", "1.33.0", "--strict"])
        .arg(file.path())
        .output()
        .expect("kubernetes-validate is needed (pip install kubernetes-validate; tests/install-deps.sh does it)");
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
