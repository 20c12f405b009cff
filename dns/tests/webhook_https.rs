//! The webhook's real HTTPS server on loopback: admission reviews over TLS, the namespace
//! lookup against an in-process fake API server, and certificate rotation on disk.
//!
//! Addresses: the server binds 127.0.0.1:0; causeway-dns is 192.0.2.53 (RFC 5737).

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use anyhow::{Result, bail};
use axum::Router;
use axum::extract::{Path as UrlPath, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Json};
use axum::routing::get;
use axum_server::Handle;
use causeway_dns::webhook::metrics::Metrics;
use causeway_dns::webhook::namespaces::NamespaceLabels;
use causeway_dns::webhook::patch::{Match, PatchSettings};
use causeway_dns::webhook::server::{self, ServingCertificate, Webhook};
use causeway_dns::webhook::settings::CertFiles;
use prometheus_client::registry::Registry;
use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
use serde_json::{Value, json};
use tokio_rustls::rustls::client::Resumption;
use tokio_rustls::rustls::pki_types::CertificateDer;
use tokio_rustls::rustls::{ClientConfig, RootCertStore};

mod common;

use common::https::{exchange, patched_dns_config};

const RELOAD_INTERVAL: Duration = Duration::from_millis(50);

fn fixture(name: &str) -> Vec<u8> {
    let path = format!(
        "{}/tests/fixtures/webhook/{name}",
        env!("CARGO_MANIFEST_DIR")
    );
    std::fs::read(&path).unwrap_or_else(|e| panic!("read {path}: {e}"))
}

/// A test CA issuing serving certificates for `localhost` and 127.0.0.1.
struct TestCa {
    der: CertificateDer<'static>,
    issuer: Issuer<'static, KeyPair>,
}

impl TestCa {
    fn new() -> Result<Self> {
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let key = KeyPair::generate()?;
        let der = params.self_signed(&key)?.der().clone();
        Ok(Self {
            der,
            issuer: Issuer::new(params, key),
        })
    }

    /// Writes a fresh certificate and key to `files`, replacing them atomically the way a
    /// Secret volume update does, and returns the certificate.
    fn issue(&self, files: &CertFiles) -> Result<CertificateDer<'static>> {
        let params = CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()])?;
        let key = KeyPair::generate()?;
        let cert = params.signed_by(&key, &self.issuer)?;
        replace(&files.key, &key.serialize_pem())?;
        replace(&files.cert, &cert.pem())?;
        Ok(cert.der().clone())
    }
}

fn replace(path: &Path, text: &str) -> Result<()> {
    let tmp = path.with_extension("new");
    std::fs::write(&tmp, text)?;
    std::fs::rename(&tmp, path)?;
    Ok(())
}

/// A fake API server knowing namespace `shop` (selected) and counting its requests.
fn fake_api_server(hits: Arc<AtomicUsize>) -> kube::Client {
    async fn namespace(
        State(hits): State<Arc<AtomicUsize>>,
        UrlPath(name): UrlPath<String>,
    ) -> impl IntoResponse {
        hits.fetch_add(1, Ordering::SeqCst);
        if name == "shop" {
            return (
                StatusCode::OK,
                Json(json!({
                    "apiVersion": "v1", "kind": "Namespace",
                    "metadata": {"name": "shop", "labels": {"causeway.io/dns": "enabled"}},
                })),
            );
        }
        (
            StatusCode::NOT_FOUND,
            Json(json!({
                "apiVersion": "v1", "kind": "Status", "metadata": {}, "status": "Failure",
                "message": format!("namespaces \"{name}\" not found"), "reason": "NotFound",
                "code": 404,
            })),
        )
    }
    let router = Router::new()
        .route("/api/v1/namespaces/{name}", get(namespace))
        .with_state(hits);
    kube::Client::new(router, "default")
}

fn patch_settings() -> PatchSettings {
    PatchSettings {
        nameserver: [192, 0, 2, 53].into(),
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
    }
}

#[tokio::test]
async fn webhook_serves_reviews_over_https_and_reloads_its_certificate() -> Result<()> {
    let _ = tokio_rustls::rustls::crypto::ring::default_provider().install_default();
    let dir = tempfile::tempdir()?;
    let files = CertFiles {
        cert: dir.path().join("tls.crt"),
        key: dir.path().join("tls.key"),
    };
    let ca = TestCa::new()?;
    let first = ca.issue(&files)?;

    let hits = Arc::new(AtomicUsize::new(0));
    let mut registry = Registry::default();
    let metrics = Metrics::new(&mut registry);
    let namespaces = NamespaceLabels::new(fake_api_server(hits.clone()), Duration::from_secs(60));
    let webhook = Webhook::new(patch_settings(), namespaces, metrics);

    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    let addr = listener.local_addr()?;
    let certificate = ServingCertificate::load(files.clone()).await?;
    let handle = Handle::new();
    let serving = tokio::spawn(server::serve(
        listener,
        certificate,
        RELOAD_INTERVAL,
        webhook,
        handle.clone(),
    ));

    let mut roots = RootCertStore::empty();
    roots.add(ca.der.clone())?;
    let mut client = ClientConfig::builder()
        .with_root_certificates(roots)
        .with_no_client_auth();
    // A resumed session presents no certificate; every exchange must show the live one.
    client.resumption = Resumption::disabled();
    let client = Arc::new(client);

    let health = exchange(addr, "localhost", &client, "GET", "/healthz", b"").await?;
    assert_eq!((health.status, health.body.as_slice()), (200, &b"ok"[..]));
    assert_eq!(health.certificate, first);

    // Selected by its own label: patched, no namespace lookup.
    let review = fixture("pod-without-dns-config.json");
    let answer = exchange(addr, "localhost", &client, "POST", "/mutate", &review).await?;
    assert_eq!(answer.status, 200);
    assert_eq!(
        patched_dns_config(&review, &answer.body)?,
        json!({
            "nameservers": ["192.0.2.53"],
            "searches": ["demo.svc.cluster.local", "svc.cluster.local", "cluster.local"],
            "options": [{"name": "ndots", "value": "5"}],
        })
    );
    assert_eq!(hits.load(Ordering::SeqCst), 0);

    // Selected by its namespace: one lookup, then the cache answers.
    let review = fixture("namespace-selected-pod.json");
    for _ in 0..2 {
        let answer = exchange(addr, "localhost", &client, "POST", "/mutate", &review).await?;
        assert_eq!(answer.status, 200);
        let config = patched_dns_config(&review, &answer.body)?;
        assert_eq!(config["searches"][0], "shop.svc.cluster.local");
    }
    assert_eq!(hits.load(Ordering::SeqCst), 1);

    // A pod in a namespace the API server does not know: admitted unchanged.
    let mut review: Value = serde_json::from_slice(&fixture("namespace-selected-pod.json"))?;
    review["request"]["namespace"] = json!("ghost");
    let answer = exchange(
        addr,
        "localhost",
        &client,
        "POST",
        "/mutate",
        review.to_string().as_bytes(),
    )
    .await?;
    let answer: Value = serde_json::from_slice(&answer.body)?;
    assert_eq!(answer["response"]["allowed"], true);
    assert!(answer["response"].get("patch").is_none(), "{answer}");

    // Readable uid: allowed unchanged. No uid: 400 with the reason.
    let answer = exchange(
        addr,
        "localhost",
        &client,
        "POST",
        "/mutate",
        &fixture("malformed-request.json"),
    )
    .await?;
    assert_eq!(answer.status, 200);
    let answer: Value = serde_json::from_slice(&answer.body)?;
    assert_eq!(
        answer["response"]["uid"],
        "7f4d1c52-0c1e-4b8a-9f57-8d7c1f0e5a07"
    );
    assert_eq!(answer["response"]["allowed"], true);
    let refused = exchange(
        addr,
        "localhost",
        &client,
        "POST",
        "/mutate",
        &fixture("malformed-no-uid.json"),
    )
    .await?;
    assert_eq!(refused.status, 400);
    assert!(
        String::from_utf8(refused.body)?.starts_with("malformed AdmissionReview: "),
        "400 names the problem"
    );

    // Rotate: the next connections get the new certificate without a restart.
    let second = ca.issue(&files)?;
    assert_ne!(first, second);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let health = exchange(addr, "localhost", &client, "GET", "/healthz", b"").await?;
        if health.certificate == second {
            break;
        }
        assert_eq!(
            health.certificate, first,
            "only the old or the new certificate"
        );
        if tokio::time::Instant::now() > deadline {
            bail!("the rotated certificate was not served within 10s");
        }
        tokio::time::sleep(RELOAD_INTERVAL).await;
    }

    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, &registry)?;
    for line in [
        r#"causeway_webhook_admissions_total{result="patched",reason="pod"} 1"#,
        r#"causeway_webhook_admissions_total{result="patched",reason="namespace"} 2"#,
        r#"causeway_webhook_admissions_total{result="skipped",reason="not-selected"} 1"#,
        r#"causeway_webhook_admissions_total{result="error",reason="malformed-review"} 2"#,
        r#"causeway_webhook_certificate_reloads_total{result="success"} 1"#,
    ] {
        assert!(text.contains(line), "missing {line} in\n{text}");
    }

    handle.graceful_shutdown(Some(Duration::from_secs(1)));
    tokio::time::timeout(Duration::from_secs(5), serving).await???;
    Ok(())
}
