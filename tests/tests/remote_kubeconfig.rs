//! tests/make-remote-kubeconfig.sh turns the remote-access token Secret into a kubeconfig
//! that our configuration and the kube client accept.

use std::path::Path;
use std::process::Command;

use causeway_tests::apiserver::TestApiServer;
use serde_json::json;

#[tokio::test]
async fn builds_a_kubeconfig_from_the_token_secret() {
    let server = TestApiServer::start().await;
    server
        .apply(&json!({
            "apiVersion": "v1", "kind": "Secret",
            "metadata": {"name": "causeway-remote-reader-token", "namespace": "causeway"},
            "type": "kubernetes.io/service-account-token",
            "data": {"token": "c2VjcmV0LXRva2Vu", "ca.crt": "Q0EtREFUQQ=="}
        }))
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let admin = dir.path().join("admin.kubeconfig");
    server.write_kubeconfig(&admin, "b").unwrap();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("make-remote-kubeconfig.sh");
    let out = tokio::task::spawn_blocking(move || {
        Command::new("bash")
            .arg(script)
            .args(["--context", "b"])
            .env("KUBECONFIG", admin)
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains("token: secret-token"), "{text}");
    assert!(
        text.contains("certificate-authority-data: Q0EtREFUQQ=="),
        "{text}"
    );
    assert!(
        text.contains(&format!("server: {}", server.url())),
        "{text}"
    );
    let kc = kube::config::Kubeconfig::from_yaml(&text).unwrap();
    assert_eq!(kc.current_context.as_deref(), Some("b"));
}
