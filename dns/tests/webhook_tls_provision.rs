//! Webhook TLS without a human, as the `kubernetes` overlay deploys it: the webhook
//! container's command, args and env are taken from `kubectl kustomize manifests/kubernetes`,
//! the real `causeway-dns webhook` runs against a test API server holding the rendered
//! MutatingWebhookConfiguration, and a client that trusts only the `caBundle` the webhook
//! published (as the API server does) calls `/mutate` by the Service's DNS name. Then:
//! restarts keep the CA, a broken serving certificate is renewed from the same CA while
//! running, a removed `caBundle` comes back, and the API requests made match the rendered
//! RBAC rules of the webhook's service account both ways.
//!
//! Addresses: the webhook binds 127.0.0.1 ports; causeway-dns is 192.0.2.53 (RFC 5737).

mod common;

use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use causeway_tests::apiserver::TestApiServer;
use causeway_tests::rbac::{self, Access};
use common::free_port;
use common::https::{exchange, patched_dns_config};
use serde_json::{Value, json};
use tokio_rustls::rustls::client::Resumption;
use tokio_rustls::rustls::pki_types::CertificateDer;
use tokio_rustls::rustls::pki_types::pem::PemObject as _;
use tokio_rustls::rustls::{ClientConfig, RootCertStore};

const NAMESPACE: &str = "causeway";
const SERVICE_NAME: &str = "causeway-webhook.causeway.svc";
const MWC: &str = "causeway-dns";
const SECRET: &str = "causeway-webhook-tls";
const MWC_API: &str = "admissionregistration.k8s.io/v1";

fn rendered() -> Vec<Value> {
    causeway_tests::manifests::render("kubernetes")
}

fn find<'a>(docs: &'a [Value], kind: &str, name: &str) -> &'a Value {
    docs.iter()
        .find(|d| d["kind"] == kind && d["metadata"]["name"] == name)
        .unwrap_or_else(|| panic!("the manifests have no {kind} {name}"))
}

/// The webhook container as kubelet would start it: argv with `$(VAR)` expanded from its env
/// (downward API filled in) and the Services' variables.
fn webhook_argv(docs: &[Value]) -> Vec<String> {
    let deployment = find(docs, "Deployment", "causeway-webhook");
    let container = &deployment["spec"]["template"]["spec"]["containers"][0];
    let mut vars = vec![(
        "CAUSEWAY_DNS_SERVICE_HOST".to_owned(),
        "192.0.2.53".to_owned(),
    )];
    for env in container["env"].as_array().into_iter().flatten() {
        let value = match env["valueFrom"]["fieldRef"]["fieldPath"].as_str() {
            Some("metadata.namespace") => NAMESPACE.to_owned(),
            Some(other) => panic!("no downward API value for {other} in this test"),
            None => env["value"].as_str().unwrap_or_default().to_owned(),
        };
        vars.push((env["name"].as_str().unwrap().to_owned(), value));
    }
    let words = container["command"]
        .as_array()
        .into_iter()
        .chain(container["args"].as_array())
        .flatten();
    words
        .map(|w| {
            let mut w = w.as_str().unwrap().to_owned();
            for (name, value) in &vars {
                w = w.replace(&format!("$({name})"), value);
            }
            assert!(!w.contains("$("), "unexpanded variable in {w}");
            w
        })
        .collect()
}

/// A running webhook, killed on drop.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

struct Lab {
    api: TestApiServer,
    kubeconfig: tempfile::TempDir,
    argv: Vec<String>,
    https: SocketAddr,
    metrics: SocketAddr,
}

impl Lab {
    fn start_webhook(&self) -> Running {
        assert_eq!(self.argv[..2], ["causeway-dns", "webhook"]);
        let child = Command::new(env!("CARGO_BIN_EXE_causeway-dns"))
            .args(&self.argv[1..])
            .env("KUBECONFIG", self.kubeconfig.path().join("config"))
            .env("CAUSEWAY_WEBHOOK_LISTEN", self.https.to_string())
            .env("CAUSEWAY_WEBHOOK_METRICS_LISTEN", self.metrics.to_string())
            // Faster than the default minute, so that repairs show within the test.
            .env("CAUSEWAY_WEBHOOK_TLS_CHECK_INTERVAL", "300ms")
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("causeway-dns starts");
        Running(child)
    }

    fn configuration(&self) -> Value {
        self.api
            .get_value(MWC_API, "MutatingWebhookConfiguration", "", MWC)
            .unwrap()
            .unwrap()
    }

    /// The caBundle, once every entry has the same one.
    fn ca_bundle(&self) -> Option<Vec<u8>> {
        let config = self.configuration();
        let bundles: Vec<&str> = config["webhooks"]
            .as_array()?
            .iter()
            .map(|w| w["clientConfig"]["caBundle"].as_str())
            .collect::<Option<_>>()?;
        let first = *bundles.first()?;
        bundles.iter().all(|b| *b == first).then(|| {
            serde_json::from_value::<k8s_openapi::ByteString>(json!(first))
                .unwrap()
                .0
        })
    }

    fn secret(&self) -> Value {
        self.api
            .get_value("v1", "Secret", NAMESPACE, SECRET)
            .unwrap()
            .expect("the webhook created its Secret")
    }

    async fn ready(&self) -> Result<()> {
        for _ in 0..200 {
            let probe = tokio::net::TcpStream::connect(self.metrics).await;
            if probe.is_ok() {
                let out = Command::new("curl")
                    .args(["-sf", &format!("http://{}/healthz", self.metrics)])
                    .output()?;
                if out.status.success() {
                    return Ok(());
                }
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        bail!("the webhook did not pass its readiness probe in 10 s")
    }
}

async fn eventually(what: &str, mut check: impl FnMut() -> bool) -> Result<()> {
    causeway_tests::wait::until(Duration::from_secs(15), what, &mut check)
        .await
        .map_err(Into::into)
}

/// A client that trusts only `ca_pem`, as the API server trusts only `caBundle`.
fn client_trusting(ca_pem: &[u8]) -> Result<Arc<ClientConfig>> {
    let mut roots = RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(ca_pem) {
        roots.add(cert?)?;
    }
    let mut client = ClientConfig::builder()
        .with_root_certificates(roots)
        .with_no_client_auth();
    client.resumption = Resumption::disabled();
    Ok(Arc::new(client))
}

fn review() -> Vec<u8> {
    let path = format!(
        "{}/tests/fixtures/webhook/namespace-selected-pod.json",
        env!("CARGO_MANIFEST_DIR")
    );
    std::fs::read(&path).unwrap()
}

/// Calls `/mutate` by the Service's name and checks the pod is patched. Returns the
/// certificate the webhook presented.
async fn mutate(lab: &Lab, client: &Arc<ClientConfig>) -> Result<CertificateDer<'static>> {
    let answer = exchange(
        lab.https,
        SERVICE_NAME,
        client,
        "POST",
        "/mutate",
        &review(),
    )
    .await
    .context("calling /mutate as the API server would")?;
    assert_eq!(answer.status, 200);
    let dns = patched_dns_config(&review(), &answer.body)?;
    assert_eq!(dns["nameservers"], json!(["192.0.2.53"]));
    Ok(answer.certificate)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhook_provisions_its_tls_and_publishes_the_ca_bundle() -> Result<()> {
    let _ = tokio_rustls::rustls::crypto::ring::default_provider().install_default();
    let docs = rendered();
    let api = TestApiServer::start().await;
    api.apply(&json!({"apiVersion": "v1", "kind": "Namespace",
        "metadata": {"name": NAMESPACE}}))?;
    api.apply(&json!({"apiVersion": "v1", "kind": "Namespace",
        "metadata": {"name": "shop", "labels": {"causeway.io/dns": "enabled"}}}))?;
    let shipped_configuration = find(&docs, "MutatingWebhookConfiguration", MWC).clone();
    api.apply(&shipped_configuration)?;
    let kubeconfig = tempfile::tempdir()?;
    api.write_kubeconfig(&kubeconfig.path().join("config"), "test")?;
    let lab = Lab {
        api,
        kubeconfig,
        argv: webhook_argv(&docs),
        https: SocketAddr::from(([127, 0, 0, 1], free_port())),
        metrics: SocketAddr::from(([127, 0, 0, 1], free_port())),
    };
    lab.api.clear_requests();

    // First start: creates its CA and certificate, publishes the CA on both entries.
    let webhook = lab.start_webhook();
    eventually("caBundle on every webhook entry", || {
        lab.ca_bundle().is_some()
    })
    .await?;
    lab.ready().await?;
    let ca = lab.ca_bundle().unwrap();
    let secret = lab.secret();
    assert_eq!(secret["type"], "kubernetes.io/tls");
    let mut keys: Vec<&String> = secret["data"].as_object().unwrap().keys().collect();
    keys.sort();
    assert_eq!(keys, ["ca.crt", "ca.key", "tls.crt", "tls.key"]);
    let client = client_trusting(&ca)?;
    let first = mutate(&lab, &client).await?;

    // A client trusting another CA refuses the webhook: the check above could fail.
    let stranger = rcgen::generate_simple_self_signed(vec![SERVICE_NAME.to_owned()])?;
    let strange = client_trusting(stranger.cert.pem().as_bytes())?;
    assert!(mutate(&lab, &strange).await.is_err());

    let metrics = Command::new("curl")
        .args(["-sf", &format!("http://{}/metrics", lab.metrics)])
        .output()?;
    let metrics = String::from_utf8_lossy(&metrics.stdout);
    assert!(
        metrics.contains("causeway_webhook_ca_bundle_published 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("causeway_webhook_certificates_issued_total{what=\"ca\"} 1"),
        "{metrics}"
    );

    // A restart keeps the Secret and the CA.
    let version = secret["metadata"]["resourceVersion"].clone();
    drop(webhook);
    let webhook = lab.start_webhook();
    lab.ready().await?;
    assert_eq!(mutate(&lab, &client).await?, first);
    assert_eq!(lab.secret()["metadata"]["resourceVersion"], version);
    assert_eq!(lab.ca_bundle().as_ref(), Some(&ca));

    // A serving certificate that is not for our names is renewed from the same CA while
    // running: the caBundle stays, the certificate changes.
    let mut broken = lab.secret();
    let wrong = rcgen::generate_simple_self_signed(vec!["elsewhere.example".to_owned()])?;
    broken["data"]["tls.crt"] = json!(k8s_openapi::ByteString(wrong.cert.pem().into_bytes()));
    lab.api.apply(&broken)?;
    let broken_version = lab.secret()["metadata"]["resourceVersion"].clone();
    eventually("the broken certificate replaced", || {
        lab.secret()["metadata"]["resourceVersion"] != broken_version
    })
    .await?;
    let mut renewed = None;
    for _ in 0..100 {
        let served = mutate(&lab, &client).await?;
        if served != first {
            renewed = Some(served);
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(renewed.is_some(), "the renewed certificate is served");
    assert_eq!(lab.ca_bundle().as_ref(), Some(&ca));

    // Re-applying the shipped configuration drops caBundle; the webhook puts it back.
    lab.api.apply(&shipped_configuration)?;
    assert!(lab.ca_bundle().is_none());
    eventually("caBundle restored", || {
        lab.ca_bundle().as_ref() == Some(&ca)
    })
    .await?;
    drop(webhook);

    // Least privilege: what it asked for is what the rendered RBAC grants it, both ways.
    let accesses: Vec<Access> = lab
        .api
        .requests()
        .iter()
        .filter_map(Access::from_record)
        .collect();
    let grants = rbac::grants(&docs, NAMESPACE, "causeway-webhook");
    if let Err(problems) = rbac::check(&grants, &accesses) {
        panic!("webhook RBAC is not least privilege:\n{problems}\naccesses: {accesses:#?}");
    }
    Ok(())
}
