//! Conversion of real-looking Kubernetes YAML into the model, through the file parser.

use std::net::IpAddr;

use causeway_shared::model::convert::ConvertError;
use causeway_shared::model::*;
use causeway_shared::source::{ObjectsError, parse_objects};

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn fixture() -> ClusterData {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/cluster-b.yaml"
    ))
    .unwrap();
    let (data, summary) = parse_objects(&text).unwrap();
    assert_eq!(summary.ignored, 1, "the ConfigMap is skipped");
    data
}

#[test]
fn dual_stack_cluster_ip_service() {
    let data = fixture();
    let web = &data.services[&ServiceKey::new("demo", "web")];
    assert_eq!(web.service_type, ServiceType::ClusterIP);
    assert_eq!(web.cluster_ips, vec![ip("172.31.10.10"), ip("fd00:b:1::a")]);
    assert!(!web.headless);
    assert_eq!(web.ports.len(), 2);
    assert_eq!(web.ports[0].name, "http");
    assert_eq!(web.ports[0].target_port, Some(TargetPort::Number(8080)));
    assert_eq!(
        web.ports[1].target_port,
        Some(TargetPort::Name("metrics".into()))
    );
    assert_eq!(web.session_affinity, SessionAffinity::None);
    // Only our own annotations are kept.
    assert_eq!(web.annotations.len(), 1);
    assert_eq!(web.annotations["causeway.io/scheduler"], "lc");
    assert_eq!(web.resource_version.as_deref(), Some("1001"));
}

#[test]
fn multi_slice_service_merges_all_slices() {
    let data = fixture();
    let key = ServiceKey::new("demo", "web");
    let slices: Vec<_> = data.slices_of(&key).collect();
    assert_eq!(slices.len(), 3);
    let all: Vec<&Endpoint> = slices.iter().flat_map(|s| &s.endpoints).collect();
    assert_eq!(all.len(), 5);
    let by_ip = |a: &str| all.iter().find(|e| e.addresses == vec![ip(a)]).unwrap();
    let ready = by_ip("10.132.1.5");
    assert!(ready.ready && ready.serving && !ready.terminating);
    assert_eq!(ready.node_name.as_deref(), Some("b-node-1"));
    assert_eq!(ready.zone.as_deref(), Some("zone-a"));
    assert_eq!(ready.pod_name.as_deref(), Some("web-6f7d-1"));
    let draining = by_ip("10.132.2.7");
    assert!(!draining.ready && draining.serving && draining.terminating);
    let not_ready = by_ip("10.132.3.9");
    assert!(
        !not_ready.ready && !not_ready.serving && !not_ready.terminating,
        "serving defaults to ready"
    );
    let unset = by_ip("10.132.3.10");
    assert!(
        unset.ready && unset.serving,
        "unset conditions count as ready"
    );
    let v6 = slices.iter().find(|s| s.name == "web-v6").unwrap();
    assert_eq!(v6.address_type, AddressType::IPv6);
    assert_eq!(v6.endpoints[0].addresses, vec![ip("fd00:b::5")]);
    let first = slices.iter().find(|s| s.name == "web-abcde").unwrap();
    assert_eq!(first.generation, 3);
    assert_eq!(
        first.ports[1],
        EndpointPort {
            name: "metrics".into(),
            protocol: Protocol::Tcp,
            port: 9102,
            app_protocol: None
        }
    );
}

#[test]
fn headless_service_with_hostnames() {
    let data = fixture();
    let db = &data.services[&ServiceKey::new("demo", "db")];
    assert!(db.headless);
    assert!(db.cluster_ips.is_empty());
    assert!(db.publish_not_ready_addresses);
    let eps: Vec<_> = data
        .slices_of(&db.key)
        .flat_map(|s| s.endpoints.clone())
        .collect();
    assert_eq!(
        eps.iter()
            .map(|e| e.hostname.as_deref().unwrap())
            .collect::<Vec<_>>(),
        ["db-0", "db-1"]
    );
    assert!(!eps[1].ready);
}

#[test]
fn external_name_and_node_port_with_affinity() {
    let data = fixture();
    let search = &data.services[&ServiceKey::new("demo", "search")];
    assert_eq!(search.service_type, ServiceType::ExternalName);
    assert_eq!(search.external_name.as_deref(), Some("search.example.com"));
    assert!(search.cluster_ips.is_empty());
    let dns = &data.services[&ServiceKey::new("kube-system", "dns")];
    assert_eq!(dns.service_type, ServiceType::NodePort);
    assert_eq!(dns.ports[0].protocol, Protocol::Udp);
    assert_eq!(dns.ports[0].node_port, Some(30053));
    assert_eq!(
        dns.session_affinity,
        SessionAffinity::ClientIp {
            timeout_seconds: 600
        }
    );
}

#[test]
fn nodes_and_tunnel_endpoints() {
    let data = fixture();
    let n = &data.nodes["b-node-1"];
    assert_eq!(
        n.pod_cidrs,
        vec![
            "10.132.1.0/24".parse().unwrap(),
            "fd00:b:0:1::/64".parse().unwrap()
        ]
    );
    assert_eq!(
        n.addresses[0],
        NodeAddress {
            kind: "InternalIP".into(),
            address: "192.0.2.11".into()
        }
    );
    let te = &data.tunnel_endpoints[&("causeway".to_string(), "b-node-1".to_string())];
    assert_eq!(te.node, "b-node-1");
    assert_eq!(te.endpoint.as_deref(), Some("198.51.100.11:51820"));
    assert_eq!(te.public_key.len(), 44);
}

#[test]
fn slice_moving_to_another_service_is_refiled() {
    let mut data = fixture();
    let mut slice = (**data
        .slices_of(&ServiceKey::new("demo", "web"))
        .next()
        .unwrap())
    .clone();
    let name = slice.name.clone();
    slice.service_name = "web2".into();
    data.upsert_slice(slice);
    assert_eq!(data.slices_of(&ServiceKey::new("demo", "web")).count(), 2);
    assert_eq!(data.slices_of(&ServiceKey::new("demo", "web2")).count(), 1);
    assert!(data.remove_slice("demo", &name));
    assert_eq!(data.slices_of(&ServiceKey::new("demo", "web2")).count(), 0);
    assert_eq!(data.count(ObjectKind::EndpointSlice), 3);
}

fn parse_err(yaml: &str) -> String {
    match parse_objects(yaml) {
        Err(e) => e.to_string(),
        Ok(_) => panic!("expected an error for:\n{yaml}"),
    }
}

#[test]
fn errors_name_the_object_and_field() {
    let bad_ip = "apiVersion: v1\nkind: Service\nmetadata: {name: web, namespace: demo}\nspec: {clusterIP: 172.31.300.1}\n";
    let msg = parse_err(bad_ip);
    assert!(
        msg.contains(
            "document 1: Service demo/web: spec.clusterIPs[0]: invalid value \"172.31.300.1\""
        ),
        "{msg}"
    );

    let wrong_family = "apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata: {name: s, namespace: demo, labels: {kubernetes.io/service-name: web}}\naddressType: IPv4\nendpoints: [{addresses: [\"fd00::1\"]}]\n";
    let msg = parse_err(wrong_family);
    assert!(
        msg.contains("EndpointSlice demo/s: endpoints[0].addresses[0]"),
        "{msg}"
    );

    let no_label = "apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata: {name: s, namespace: demo}\naddressType: IPv4\nendpoints: []\n";
    let msg = parse_err(no_label);
    assert!(
        msg.contains("missing metadata.labels[kubernetes.io/service-name]"),
        "{msg}"
    );

    let schema = "---\napiVersion: v1\nkind: List\nitems:\n- apiVersion: v1\n  kind: Service\n  metadata: {name: x, namespace: demo}\n  spec: {ports: [{port: \"eighty\"}]}\n";
    let msg = parse_err(schema);
    assert!(msg.starts_with("document 1 item 0: Service x:"), "{msg}");

    let bad_key = "apiVersion: causeway.io/v1alpha1\nkind: TunnelEndpoint\nmetadata: {name: node1, namespace: causeway}\nspec: {node: node1, publicKey: nope}\n";
    let msg = parse_err(bad_key);
    assert!(msg.contains("spec.publicKey"), "{msg}");

    assert!(matches!(parse_objects("a: [b"), Err(ObjectsError::Yaml(_))));
}

#[test]
fn convert_error_is_typed() {
    use k8s_openapi::api::core::v1::Service as K8sService;
    let svc: K8sService = serde_json::from_value(serde_json::json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": "ext", "namespace": "demo"},
        "spec": {"type": "ExternalName"}
    }))
    .unwrap();
    assert_eq!(
        Service::try_from(&svc).unwrap_err(),
        ConvertError::MissingField {
            object: "Service demo/ext".into(),
            field: "spec.externalName".into()
        }
    );
}

#[test]
fn json_list_and_many_documents_are_accepted() {
    let json = r#"{"apiVersion": "v1", "kind": "List", "items": [
        {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web", "namespace": "demo"},
         "spec": {"clusterIP": "172.31.0.1", "ports": [{"port": 80}]}}]}"#;
    let (data, _) = parse_objects(json).unwrap();
    assert_eq!(data.services.len(), 1);
    // More documents than serde-saphyr's default budget of 1,024.
    let many: String = (0..1500)
        .map(|i| format!("---\napiVersion: v1\nkind: Service\nmetadata: {{name: s{i}, namespace: demo}}\nspec: {{clusterIP: None}}\n"))
        .collect();
    let (data, _) = parse_objects(&many).unwrap();
    assert_eq!(data.services.len(), 1500);
}
