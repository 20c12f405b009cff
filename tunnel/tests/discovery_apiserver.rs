//! Discovery against test API servers: a tunnel publishes its TunnelEndpoint and per-node
//! Service in its own cluster (its private key stays in its state directory, never in the
//! API); a tunnel of a second cluster sees it as a peer; peers follow nodes joining and
//! leaving and key rotation.
//!
//! Ranges: cluster a pods 10.128.0.0/16 (a1 10.128.0.0/24, a2 10.128.1.0/24), services
//! 172.30.0.0/16; cluster b pods 10.129.0.0/16 (b1 10.129.0.0/24), services 172.31.0.0/16.
//! Addresses are RFC 5737: load balancer VIP 192.0.2.100, b1's endpoint 198.51.100.1.

mod cluster_kit;

use std::os::unix::fs::PermissionsExt as _;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Result;
use causeway_tests::probe;
use causeway_tests::wait::eventually;
use causeway_tunnel::fakewg::FakeWg;
use causeway_tunnel::host::StaticHost;
use causeway_tunnel::keystore::KeyStore;
use causeway_tunnel::wg::{PrivateKey, PublicKey};
use cluster_kit::{NS, TestCluster, clusters_a_b, fake_parts, start_agent, write_config};
use serde_json::json;

const T: Duration = Duration::from_secs(15);

fn peer_line(wg: &FakeWg, key: &str) -> Option<String> {
    wg.dump()
        .lines()
        .find(|l| l.starts_with(key))
        .map(str::to_string)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publish_discover_join_leave_rotate() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let (a, b) = clusters_a_b(dir.path()).await?;
    a.add_node("a1", "10.128.0.0/24", "192.0.2.11")?;
    b.add_node("b1", "10.129.0.0/24", "198.51.100.1")?;
    a.server.apply(&json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "tunnel-a1", "namespace": NS},
        "spec": {"nodeName": "a1", "containers": [{"name": "tunnel", "image": "causeway"}]},
    }))?;

    let cfg_a = write_config(dir.path(), "a", &[&a, &b], "{ endpoint: loadBalancer }")?;
    let cfg_b = write_config(
        dir.path(),
        "b",
        &[&a, &b],
        "{ endpoint: { address: \"198.51.100.1:51820\" } }",
    )?;
    let wg_a = Arc::new(FakeWg::new("causeway0"));
    let wg_b = Arc::new(FakeWg::new("causeway0"));
    let agent_a = start_agent(cfg_a, &a, "a1", Some("tunnel-a1"), fake_parts(&wg_a)).await?;
    let agent_b = start_agent(cfg_b, &b, "b1", None, fake_parts(&wg_b)).await?;
    let key_a = agent_a.agent.public_key().to_base64();
    let key_b = agent_b.agent.public_key().to_base64();

    // a1 published its pod label, its Service and its TunnelEndpoint (no VIP yet); its key
    // is in its state directory, and it never asked the API for a Secret.
    eventually(T, "a1's TunnelEndpoint", || async {
        a.tunnel_endpoint("a1").is_some()
    })
    .await?;
    let store = KeyStore::open(a.state_dir("a1"))?;
    let stored = store.read()?.expect("a1's key file");
    assert_eq!(stored.key.public_key().to_base64(), key_a);
    assert_eq!(
        std::fs::metadata(store.path())?.permissions().mode() & 0o777,
        0o600
    );
    assert_eq!(
        a.server.list_values("v1", "Secret", None)?,
        Vec::<serde_json::Value>::new()
    );
    let secret_requests: Vec<_> = a
        .server
        .requests()
        .into_iter()
        .filter(|r| r.resource == "secrets")
        .collect();
    assert!(secret_requests.is_empty(), "{secret_requests:?}");
    let te = a.tunnel_endpoint("a1").unwrap();
    assert_eq!(te["spec"]["publicKey"], key_a.as_str());
    assert_eq!(te["spec"]["node"], "a1");
    assert_eq!(te["spec"]["podCIDRs"], json!(["10.128.0.0/24"]));
    let node_uid =
        a.server.get_value("v1", "Node", "", "a1")?.expect("node")["metadata"]["uid"].clone();
    assert_eq!(
        te["metadata"]["ownerReferences"],
        json!([{"apiVersion": "v1", "kind": "Node", "name": "a1", "uid": node_uid}]),
        "garbage-collected with its node"
    );
    assert!(
        te["spec"].get("endpoint").is_none_or(|e| e.is_null()),
        "{te}"
    );
    let svc = a
        .server
        .get_value("v1", "Service", NS, "causeway-tunnel-a1")?
        .expect("service");
    assert_eq!(svc["spec"]["type"], "LoadBalancer");
    assert_eq!(
        svc["spec"]["selector"],
        json!({"causeway.io/tunnel-node": "a1"})
    );
    assert_eq!(svc["spec"]["ports"][0]["protocol"], "UDP");
    assert_eq!(svc["spec"]["ports"][0]["port"], 51820);
    let pod = a
        .server
        .get_value("v1", "Pod", NS, "tunnel-a1")?
        .expect("pod");
    assert_eq!(pod["metadata"]["labels"]["causeway.io/tunnel-node"], "a1");

    // Before the VIP: b1 already has a1 as a peer (a1 will dial b1), without endpoint.
    eventually(T, "b1 peers with a1", || async {
        peer_line(&wg_b, &key_a).is_some()
    })
    .await?;
    assert_eq!(
        peer_line(&wg_b, &key_a).unwrap(),
        format!("{key_a} - 10.128.0.0/24,172.30.0.0/16")
    );
    eventually(T, "a1 peers with b1", || async {
        peer_line(&wg_a, &key_b)
            == Some(format!(
                "{key_b} 198.51.100.1:51820 10.129.0.0/24,172.31.0.0/16"
            ))
    })
    .await?;

    // The cloud assigns the VIP: a1 publishes it and b1 dials it.
    let mut svc = svc;
    svc["status"] = json!({"loadBalancer": {"ingress": [{"ip": "192.0.2.100"}]}});
    a.server.apply(&svc)?;
    eventually(T, "b1 learns a1's VIP", || async {
        peer_line(&wg_b, &key_a)
            == Some(format!(
                "{key_a} 192.0.2.100:51820 10.128.0.0/24,172.30.0.0/16"
            ))
    })
    .await?;

    // A node joins cluster a, then leaves.
    let key_a2 = PrivateKey::generate().public_key().to_base64();
    a.server.apply(&json!({
        "apiVersion": "causeway.io/v1alpha1", "kind": "TunnelEndpoint",
        "metadata": {"name": "a2", "namespace": NS},
        "spec": {"node": "a2", "publicKey": key_a2, "endpoint": "192.0.2.102:51820", "podCIDRs": ["10.128.1.0/24"]},
    }))?;
    eventually(T, "b1 peers with a2", || async {
        peer_line(&wg_b, &key_a2) == Some(format!("{key_a2} 192.0.2.102:51820 10.128.1.0/24"))
    })
    .await?;
    let mut metrics = String::new();
    prometheus_client::encoding::text::encode(&mut metrics, &agent_b.registry.lock().unwrap())?;
    let count = metrics
        .lines()
        .find(|l| l.starts_with("causeway_tunnel_network_programming_latency_seconds_count"))
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|v| v.parse::<u64>().ok())
        .unwrap_or(0);
    assert!(count >= 1, "a2's join was measured: {metrics}");
    let configures = wg_b.configures();
    a.server
        .delete_value("causeway.io/v1alpha1", "TunnelEndpoint", NS, "a2")?;
    eventually(T, "a2 leaves b1's peers", || async {
        peer_line(&wg_b, &key_a2).is_none()
    })
    .await?;
    assert!(peer_line(&wg_b, &key_a).is_some(), "other peers stay");
    assert!(wg_b.configures() > configures);

    // Rotation: a new key in a1's key file; a1 reconfigures and republishes; b1 follows.
    let rotated = store.rotate()?.to_base64();
    assert_ne!(rotated, key_a);
    eventually(T, "a1 uses its new key", || async {
        wg_a.config()
            .is_some_and(|c| c.private_key.public_key().to_base64() == rotated)
    })
    .await?;
    eventually(T, "b1 follows a1's rotation", || async {
        peer_line(&wg_b, &rotated).is_some() && peer_line(&wg_b, &key_a).is_none()
    })
    .await?;
    assert_eq!(
        a.tunnel_endpoint("a1").unwrap()["spec"]["publicKey"],
        rotated.as_str()
    );

    // A restart reads the same key back instead of generating one.
    let (again, created) = store.load_or_create()?;
    assert!(!created);
    assert_eq!(again.key.public_key().to_base64(), rotated);
    assert!(
        !format!("{again:?}").contains(&again.key.to_base64()),
        "the private key is never printed"
    );

    // /status names the peers.
    let status = agent_b.agent.refresh_status().await;
    let nodes: Vec<String> = status
        .peers
        .iter()
        .map(|p| format!("{}/{} up={}", p.cluster, p.node, p.up))
        .collect();
    assert_eq!(nodes, ["a/a1 up=false"]);

    // ... and so do /status and /wg over HTTP.
    let addr =
        causeway_shared::telemetry::serve("127.0.0.1:0".parse()?, agent_b.agent.router()).await?;
    let get = |path: &'static str| tokio::task::spawn_blocking(move || probe::get(addr, path));
    let (_, body) = get("/status").await?;
    let json: serde_json::Value = serde_json::from_str(&body)?;
    assert_eq!(json["peers"][0]["node"], "a1");
    assert_eq!(json["peers"][0]["publicKey"], rotated.as_str());
    assert_eq!(json["publicKey"], key_b.as_str());
    let (_, wg) = get("/wg").await?;
    assert!(wg.contains(&format!("peer: {rotated} (a/a1) DOWN")), "{wg}");
    assert!(wg.contains("private key: (hidden)"));
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_port_mode_publishes_node_address_and_port() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let a = TestCluster::start(dir.path(), "a", "10.128.0.0/16", "172.30.0.0/16").await?;
    a.add_node("a1", "10.128.0.0/24", "192.0.2.11")?;
    let cfg = write_config(dir.path(), "a", &[&a], "{ endpoint: nodePort }")?;
    let wg = Arc::new(FakeWg::new("causeway0"));
    let _agent = start_agent(cfg, &a, "a1", None, fake_parts(&wg)).await?;
    eventually(T, "the NodePort service", || async {
        a.server
            .get_value("v1", "Service", NS, "causeway-tunnel-a1")
            .ok()
            .flatten()
            .is_some()
    })
    .await?;
    // The test API server does not allocate node ports: play the apiserver's part.
    let mut svc = a
        .server
        .get_value("v1", "Service", NS, "causeway-tunnel-a1")?
        .unwrap();
    assert_eq!(svc["spec"]["type"], "NodePort");
    svc["spec"]["ports"][0]["nodePort"] = json!(31820);
    a.server.apply(&svc)?;
    eventually(T, "endpoint = node address : node port", || async {
        a.tunnel_endpoint("a1")
            .is_some_and(|te| te["spec"]["endpoint"] == "192.0.2.11:31820")
    })
    .await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn steering_problems_do_not_hold_back_peers() -> Result<()> {
    use causeway_tunnel::host::HostInterface;
    use causeway_tunnel::steering::FakeSwitch;
    let dir = tempfile::tempdir()?;
    let (a, b) = clusters_a_b(dir.path()).await?;
    a.add_node("a1", "10.128.0.0/24", "192.0.2.11")?;
    let key_b1 = PrivateKey::generate().public_key().to_base64();
    b.add_tunnel_endpoint("b1", &key_b1, "198.51.100.1:51820", "10.129.0.0/24")?;
    let cfg = write_config(
        dir.path(),
        "a",
        &[&a, &b],
        "{ endpoint: { address: \"192.0.2.11:51820\" }, steering: ovs }",
    )?;
    // The switch does not know our pod yet (no external_ids:ip on any port).
    let switch = Arc::new(FakeSwitch::with_port("veth9", 9));
    let wg = Arc::new(FakeWg::new("causeway0"));
    let mut p = fake_parts(&wg);
    p.switch = Some(switch.clone());
    p.host = Arc::new(StaticHost(vec![HostInterface {
        name: "eth0".into(),
        mac: Some("0a:58:0a:80:00:09".into()),
        addresses: vec!["10.128.0.9".parse()?],
    }]));
    let _agent = start_agent(cfg, &a, "a1", None, p).await?;
    eventually(T, "peers configured despite steering", || async {
        peer_line(&wg, &key_b1).is_some()
    })
    .await?;
    assert_eq!(switch.dump(), "", "nothing installed without a port");
    // The SDN tags our port; the retry installs the flows.
    switch.set_port_ip("veth9", "10.128.0.9".parse()?);
    eventually(T, "flows installed", || async {
        switch.dump().lines().count() == 4
    })
    .await?;
    assert!(switch.dump().contains("output:9"), "{}", switch.dump());
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn service_cidrs_follow_peer_health() -> Result<()> {
    use std::time::SystemTime;
    let dir = tempfile::tempdir()?;
    let (a, b) = clusters_a_b(dir.path()).await?;
    a.add_node("a1", "10.128.0.0/24", "192.0.2.11")?;
    let mut keys = Vec::new();
    for (i, node) in ["b1", "b2"].iter().enumerate() {
        let key = PrivateKey::generate().public_key();
        b.add_tunnel_endpoint(
            node,
            &key.to_base64(),
            &format!("198.51.100.{}:51820", i + 1),
            &format!("10.129.{i}.0/24"),
        )?;
        keys.push(key);
    }
    let (b1, b2) = (keys[0], keys[1]);
    let cfg = write_config(
        dir.path(),
        "a",
        &[&a, &b],
        "{ endpoint: { address: \"192.0.2.11:51820\" }, peerDownAfter: 60s }",
    )?;
    let wg = Arc::new(FakeWg::new("causeway0"));
    let _agent = start_agent(cfg, &a, "a1", None, fake_parts(&wg)).await?;
    let carries = |key: PublicKey| {
        peer_line(&wg, &key.to_string()).is_some_and(|l| l.ends_with(",172.31.0.0/16"))
    };

    // No handshake yet: both down, the first by node name carries the services.
    eventually(T, "b1 carries the services", || async { carries(b1) }).await?;
    // Only b2 answers: the services move to b2.
    wg.set_handshake(b2, SystemTime::now());
    eventually(T, "the services move to b2", || async {
        carries(b2) && !carries(b1)
    })
    .await?;
    // b1 comes back: the services return to it (deterministic choice).
    wg.set_handshake(b1, SystemTime::now());
    eventually(T, "the services return to b1", || async {
        carries(b1) && !carries(b2)
    })
    .await?;
    // b1's last handshake is now older than peerDownAfter: b2 again.
    wg.set_handshake(b1, SystemTime::now() - Duration::from_secs(600));
    eventually(T, "the services fail over to b2", || async {
        carries(b2) && !carries(b1)
    })
    .await?;
    Ok(())
}
