//! `tunnel.nodeSubnets`: the TunnelEndpoint publishes the node's pod subnets from where the
//! CNI keeps them, in each project's own object shape, served by the test API server: the
//! OVN-Kubernetes Node annotation, OpenShift SDN's HostSubnet, Cilium's CiliumNode and Calico's
//! BlockAffinity objects (several per node), and `Node.spec.podCIDRs`. Each case changes the
//! subnet while running and sees the publication follow; the Calico case also checks that a
//! tunnel of the other cluster routes the new blocks to the node.
//!
//! Ranges: cluster a pods 10.128.0.0/16 (the Node's own spec.podCIDRs 10.128.0.0/24, which
//! the CNI record must win over), cluster b pods 10.129.0.0/16.

mod cluster_kit;

use std::sync::Arc;
use std::time::Duration;

use anyhow::Result;
use causeway_tests::apiserver::{BLOCK_AFFINITIES, CILIUM_NODES, HOST_SUBNETS};
use causeway_tests::wait::eventually;
use causeway_tunnel::fakewg::FakeWg;
use cluster_kit::{TestCluster, clusters_a_b, fake_parts, start_agent, write_config};
use serde_json::{Value, json};

const T: Duration = Duration::from_secs(15);

fn published(a: &TestCluster) -> Option<Value> {
    a.tunnel_endpoint("a1")
        .map(|te| te["spec"]["podCIDRs"].clone())
}

async fn expect(a: &TestCluster, what: &str, want: Value) -> Result<()> {
    eventually(T, what, || async { published(a).as_ref() == Some(&want) }).await?;
    Ok(())
}

fn ovn_node(a: &TestCluster, subnets: &str) -> Result<()> {
    let mut node = a
        .server
        .get_value("v1", "Node", "", "a1")?
        .expect("node a1");
    node["metadata"]["annotations"] = json!({"k8s.ovn.org/node-subnets": subnets});
    a.server.apply(&node)?;
    Ok(())
}

fn host_subnet(subnet: &str) -> Value {
    json!({
        "apiVersion": "network.openshift.io/v1", "kind": "HostSubnet",
        "metadata": {"name": "a1", "annotations": {"pod.network.openshift.io/node-uid": "x"}},
        "host": "a1", "hostIP": "192.0.2.11", "subnet": subnet,
        "egressCIDRs": [], "egressIPs": []
    })
}

fn cilium_node(name: &str, cidrs: &[&str]) -> Value {
    json!({
        "apiVersion": "cilium.io/v2", "kind": "CiliumNode",
        "metadata": {"name": name},
        "spec": {
            "addresses": [{"type": "InternalIP", "ip": "192.0.2.11"}],
            "ipam": {"podCIDRs": cidrs, "pools": {}}
        }
    })
}

fn block(node: &str, cidr: &str, state: &str) -> Value {
    let name = format!("{node}-{}", cidr.replace(['.', '/'], "-"));
    json!({
        "apiVersion": "crd.projectcalico.org/v1", "kind": "BlockAffinity",
        "metadata": {"name": name},
        "spec": {"node": node, "cidr": cidr, "state": state, "deleted": "false", "type": "host"}
    })
}

async fn agent_on_a(
    dir: &std::path::Path,
    a: &TestCluster,
    b: &TestCluster,
    source: &str,
) -> Result<(cluster_kit::RunningAgent, Arc<FakeWg>)> {
    let cfg = write_config(
        dir,
        "a",
        &[a, b],
        &format!("{{ endpoint: {{ address: \"192.0.2.11:51820\" }}, nodeSubnets: {source} }}"),
    )?;
    let wg = Arc::new(FakeWg::new("causeway0"));
    let agent = start_agent(cfg, a, "a1", None, fake_parts(&wg)).await?;
    Ok((agent, wg))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ovn_annotation_both_families_and_a_change() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let (a, b) = clusters_a_b(dir.path()).await?;
    a.add_node("a1", "10.128.0.0/24", "192.0.2.11")?;
    ovn_node(&a, r#"{"default":["10.128.4.0/23","fd01:0:0:3::/64"]}"#)?;
    let (agent, _) = agent_on_a(dir.path(), &a, &b, "ovnAnnotation").await?;
    // fd01::/64 lies outside the configured podCIDRs, which the plan checks for peers, not for
    // what the node publishes: both families are published as the CNI assigned them.
    expect(
        &a,
        "OVN subnets",
        json!(["10.128.4.0/23", "fd01:0:0:3::/64"]),
    )
    .await?;
    ovn_node(&a, r#"{"default":"10.128.6.0/23"}"#)?;
    expect(&a, "changed OVN subnet", json!(["10.128.6.0/23"])).await?;
    agent.shutdown().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn host_subnet_and_a_change() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let (a, b) = clusters_a_b(dir.path()).await?;
    a.server.register_resource(HOST_SUBNETS);
    a.add_node("a1", "10.128.0.0/24", "192.0.2.11")?;
    a.server.apply(&host_subnet("10.128.2.0/23"))?;
    let (agent, _) = agent_on_a(dir.path(), &a, &b, "auto").await?;
    expect(&a, "HostSubnet (auto)", json!(["10.128.2.0/23"])).await?;
    a.server.apply(&host_subnet("10.128.8.0/23"))?;
    expect(&a, "changed HostSubnet", json!(["10.128.8.0/23"])).await?;
    agent.shutdown().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cilium_node_and_a_change() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let (a, b) = clusters_a_b(dir.path()).await?;
    a.server.register_resource(CILIUM_NODES);
    a.add_node("a1", "10.128.0.0/24", "192.0.2.11")?;
    a.server.apply(&cilium_node("a1", &["10.128.10.0/24"]))?;
    a.server.apply(&cilium_node("a2", &["10.128.11.0/24"]))?;
    let (agent, _) = agent_on_a(dir.path(), &a, &b, "ciliumNode").await?;
    expect(&a, "CiliumNode", json!(["10.128.10.0/24"])).await?;
    a.server
        .apply(&cilium_node("a1", &["10.128.10.0/24", "10.128.12.0/24"]))?;
    expect(
        &a,
        "a second pod CIDR",
        json!(["10.128.10.0/24", "10.128.12.0/24"]),
    )
    .await?;
    agent.shutdown().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calico_blocks_reach_the_remote_peer() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let (a, b) = clusters_a_b(dir.path()).await?;
    a.server.register_resource(BLOCK_AFFINITIES);
    a.add_node("a1", "10.128.0.0/24", "192.0.2.11")?;
    b.add_node("b1", "10.129.0.0/24", "198.51.100.1")?;
    a.server
        .apply(&block("a1", "10.128.20.0/26", "confirmed"))?;
    a.server
        .apply(&block("a1", "10.128.20.64/26", "confirmed"))?;
    a.server
        .apply(&block("a1", "10.128.20.128/26", "pending"))?;
    a.server
        .apply(&block("a2", "10.128.21.0/26", "confirmed"))?;
    let (agent_a, _) = agent_on_a(dir.path(), &a, &b, "auto").await?;
    expect(
        &a,
        "a1's confirmed blocks",
        json!(["10.128.20.0/26", "10.128.20.64/26"]),
    )
    .await?;

    let cfg_b = write_config(
        dir.path(),
        "b",
        &[&a, &b],
        "{ endpoint: { address: \"198.51.100.1:51820\" }, nodeSubnets: nodeSpec }",
    )?;
    let wg_b = Arc::new(FakeWg::new("causeway0"));
    let agent_b = start_agent(cfg_b, &b, "b1", None, fake_parts(&wg_b)).await?;
    let key_a = agent_a.agent.public_key().to_base64();
    let line = |wg: &FakeWg| {
        wg.dump()
            .lines()
            .find(|l| l.starts_with(&key_a))
            .map(str::to_string)
    };
    eventually(T, "b1 routes a1's blocks", || async {
        line(&wg_b)
            == Some(format!(
                "{key_a} 192.0.2.11:51820 10.128.20.0/26,10.128.20.64/26,172.30.0.0/16"
            ))
    })
    .await?;
    // Calico confirms the pending block: the node publishes it, the peer routes it.
    a.server
        .apply(&block("a1", "10.128.20.128/26", "confirmed"))?;
    eventually(T, "b1 routes the new block", || async {
        line(&wg_b)
            == Some(format!(
                "{key_a} 192.0.2.11:51820 10.128.20.0/26,10.128.20.64/26,10.128.20.128/26,172.30.0.0/16"
            ))
    })
    .await?;
    agent_b.shutdown().await;
    agent_a.shutdown().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auto_without_cni_objects_uses_node_spec() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let (a, b) = clusters_a_b(dir.path()).await?;
    a.add_node("a1", "10.128.0.0/24", "192.0.2.11")?;
    let (agent, _) = agent_on_a(dir.path(), &a, &b, "auto").await?;
    expect(
        &a,
        "spec.podCIDRs (Flannel, kindnet)",
        json!(["10.128.0.0/24"]),
    )
    .await?;
    agent.shutdown().await;
    Ok(())
}
