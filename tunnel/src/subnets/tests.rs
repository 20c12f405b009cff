use serde_json::json;

use super::*;

fn nets(list: &[&str]) -> Vec<IpNet> {
    list.iter().map(|s| s.parse().unwrap()).collect()
}

#[test]
fn ovn_annotation_both_forms_and_both_families() {
    assert_eq!(
        from_ovn_annotation("n1", r#"{"default":["10.128.2.0/23","fd01:0:0:3::/64"]}"#).unwrap(),
        nets(&["10.128.2.0/23", "fd01:0:0:3::/64"])
    );
    assert_eq!(
        from_ovn_annotation("n1", r#"{"default":"10.128.2.0/23"}"#).unwrap(),
        nets(&["10.128.2.0/23"])
    );
    // Other (user-defined) networks are not the cluster's pod network.
    assert_eq!(
        from_ovn_annotation("n1", r#"{"tenant-blue":["10.200.0.0/24"]}"#).unwrap(),
        Vec::<IpNet>::new()
    );
    let err = from_ovn_annotation("n1", r#"{"default":["10.128.2.0/33"]}"#).unwrap_err();
    let text = err.to_string();
    assert!(
        text.contains("Node n1") && text.contains(OVN_ANNOTATION) && text.contains("/33"),
        "{text}"
    );
    assert!(from_ovn_annotation("n1", "not json").is_err());
}

#[test]
fn host_subnet_of_this_node_only() {
    let hs = json!({
        "apiVersion": "network.openshift.io/v1", "kind": "HostSubnet",
        "metadata": {"name": "n1"}, "host": "n1", "hostIP": "192.0.2.11",
        "subnet": "10.128.2.0/23"
    });
    assert_eq!(
        from_host_subnet("n1", &hs).unwrap(),
        nets(&["10.128.2.0/23"])
    );
    assert_eq!(from_host_subnet("n2", &hs).unwrap(), Vec::<IpNet>::new());
    let bad = json!({"metadata": {"name": "n1"}, "host": "n1"});
    assert!(
        from_host_subnet("n1", &bad)
            .unwrap_err()
            .to_string()
            .contains("HostSubnet n1: subnet")
    );
}

#[test]
fn cilium_node_cluster_pool_and_multi_pool() {
    let cn = json!({
        "apiVersion": "cilium.io/v2", "kind": "CiliumNode", "metadata": {"name": "n1"},
        "spec": {"ipam": {
            "podCIDRs": ["10.0.1.0/24", "fd00:10::/64"],
            "pools": {"allocated": [{"pool": "extra", "cidrs": ["10.9.0.0/27"]}]}
        }}
    });
    assert_eq!(
        from_cilium_node("n1", &cn).unwrap(),
        nets(&["10.0.1.0/24", "fd00:10::/64", "10.9.0.0/27"])
    );
    assert_eq!(from_cilium_node("n2", &cn).unwrap(), Vec::<IpNet>::new());
    let bad = json!({"metadata": {"name": "n1"}, "spec": {"ipam": {"podCIDRs": [7]}}});
    assert!(
        from_cilium_node("n1", &bad)
            .unwrap_err()
            .to_string()
            .contains("spec.ipam.podCIDRs[0]")
    );
}

#[test]
fn calico_blocks_confirmed_and_undeleted_of_this_node() {
    let block = |name: &str, node: &str, cidr: &str, state: &str, deleted: &str| {
        json!({
            "apiVersion": "crd.projectcalico.org/v1", "kind": "BlockAffinity",
            "metadata": {"name": name},
            "spec": {"node": node, "cidr": cidr, "state": state, "deleted": deleted}
        })
    };
    let objs = [
        block(
            "n1-10-244-1-0-26",
            "n1",
            "10.244.1.0/26",
            "confirmed",
            "false",
        ),
        block(
            "n1-10-244-1-64-26",
            "n1",
            "10.244.1.64/26",
            "confirmed",
            "false",
        ),
        block(
            "n1-10-244-1-128-26",
            "n1",
            "10.244.1.128/26",
            "pending",
            "false",
        ),
        block(
            "n1-10-244-1-192-26",
            "n1",
            "10.244.1.192/26",
            "confirmed",
            "true",
        ),
        block(
            "n2-10-244-2-0-26",
            "n2",
            "10.244.2.0/26",
            "confirmed",
            "false",
        ),
    ];
    assert_eq!(
        from_calico_blocks("n1", &objs).unwrap(),
        nets(&["10.244.1.0/26", "10.244.1.64/26"])
    );
}

#[test]
fn auto_prefers_the_cni_record_over_node_spec_and_skips_broken_sources() {
    let spec = nets(&["10.244.0.0/24"]);
    let none = Observed::default();
    let c = choose(NodeSubnetSource::Auto, &none, &spec);
    assert_eq!(
        (c.subnets, c.from),
        (spec.clone(), NodeSubnetSource::NodeSpec)
    );

    let cilium = Observed::from([(NodeSubnetSource::CiliumNode, Ok(nets(&["10.0.1.0/24"])))]);
    let c = choose(NodeSubnetSource::Auto, &cilium, &spec);
    assert_eq!(
        (c.subnets, c.from),
        (nets(&["10.0.1.0/24"]), NodeSubnetSource::CiliumNode)
    );

    let broken_ovn = Observed::from([
        (
            NodeSubnetSource::OvnAnnotation,
            Err(field_err("Node n1", "x", "bad")),
        ),
        (NodeSubnetSource::CalicoBlocks, Ok(nets(&["10.244.1.0/26"]))),
    ]);
    let c = choose(NodeSubnetSource::Auto, &broken_ovn, &spec);
    assert_eq!(c.from, NodeSubnetSource::CalicoBlocks);
    assert_eq!(c.problems.len(), 1);

    // A configured source is used alone, even when empty.
    let c = choose(NodeSubnetSource::HostSubnet, &cilium, &spec);
    assert_eq!(
        (c.subnets, c.from),
        (Vec::new(), NodeSubnetSource::HostSubnet)
    );
    let c = choose(NodeSubnetSource::NodeSpec, &cilium, &spec);
    assert_eq!(c.subnets, spec);
}
