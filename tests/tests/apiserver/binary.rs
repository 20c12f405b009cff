//! The `causeway-test-apiserver` binary: loads a YAML file, writes a kubeconfig, serves.

use std::process::Stdio;

use k8s_openapi::api::core::v1::{Node, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::Api;
use kube::api::ListParams;
use tokio::io::{AsyncBufReadExt as _, BufReader};

use crate::common::{WAIT, client_from_kubeconfig};

const OBJECTS: &str = r#"
apiVersion: v1
kind: List
items:
- apiVersion: v1
  kind: Service
  metadata: {name: web, namespace: shop}
  spec: {clusterIP: 192.0.2.10, ports: [{port: 80, protocol: TCP}]}
- apiVersion: discovery.k8s.io/v1
  kind: EndpointSlice
  metadata: {name: web-abc12, namespace: shop, labels: {kubernetes.io/service-name: web}}
  addressType: IPv4
  endpoints: [{addresses: [10.128.0.5], conditions: {ready: true}}]
  ports: [{port: 8080, protocol: TCP}]
---
apiVersion: v1
kind: Node
metadata: {name: n1}
status: {addresses: [{type: InternalIP, address: 198.51.100.1}]}
"#;

#[tokio::test]
async fn binary_serves_a_loaded_file() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let objects = dir.path().join("cluster.yaml");
    let kubeconfig = dir.path().join("kubeconfig");
    std::fs::write(&objects, OBJECTS)?;

    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_causeway-test-apiserver"))
        .arg("--load")
        .arg(&objects)
        .arg("--kubeconfig-out")
        .arg(&kubeconfig)
        .args(["--context", "b"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()?;
    let stdout = child.stdout.take().expect("piped");
    let url = tokio::time::timeout(WAIT, BufReader::new(stdout).lines().next_line())
        .await??
        .expect("the server prints its URL");
    assert!(url.starts_with("http://127.0.0.1:"), "{url}");

    let client = client_from_kubeconfig(&kubeconfig, "b", |_| {}).await?;
    let services = Api::<Service>::all(client.clone())
        .list(&ListParams::default())
        .await?;
    assert_eq!(services.items.len(), 1);
    let slices = Api::<EndpointSlice>::namespaced(client.clone(), "shop")
        .list(&ListParams::default().labels("kubernetes.io/service-name=web"))
        .await?;
    assert_eq!(slices.items.len(), 1);
    assert_eq!(
        Api::<Node>::all(client)
            .list(&ListParams::default())
            .await?
            .items
            .len(),
        1
    );

    child.kill().await?;
    Ok(())
}

#[tokio::test]
async fn binary_rejects_a_bad_file_before_serving() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let objects = dir.path().join("broken.yaml");
    std::fs::write(&objects, "items: [")?;
    let output = tokio::time::timeout(
        WAIT,
        tokio::process::Command::new(env!("CARGO_BIN_EXE_causeway-test-apiserver"))
            .arg("--load")
            .arg(&objects)
            .kill_on_drop(true)
            .output(),
    )
    .await??;
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("broken.yaml"), "{stderr}");
    assert!(output.stdout.is_empty());
    Ok(())
}
