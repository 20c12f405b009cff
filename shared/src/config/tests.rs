use super::*;

const GOOD: &str = r#"
cluster: a
clusters:
  - name: a
    podCIDRs: ["10.128.0.0/14"]
    serviceCIDRs: ["172.30.0.0/16"]
    source: { inCluster: true }
  - name: b
    podCIDRs: ["10.132.0.0/14", "fd00:b::/48"]
    serviceCIDRs: ["172.31.0.0/16", "fd00:b:1::/112"]
    source: { kubeconfig: b/kubeconfig, context: admin }
  - name: c
    podCIDRs: ["10.136.0.0/14"]
    serviceCIDRs: ["172.29.0.0/16"]
    source: { file: clusters/c.yaml }
dns: {}
proxy: {}
tunnel: {}
"#;

fn load(text: &str) -> Result<Config, ConfigError> {
    Config::from_yaml(Path::new("/etc/causeway/config.yaml"), text)
}

fn problems(text: &str) -> Vec<Problem> {
    match load(text) {
        Err(ConfigError::Invalid { problems, .. }) => problems,
        other => panic!("expected validation problems, got {other:?}"),
    }
}

#[test]
fn good_config_loads_with_resolved_paths() {
    let cfg = load(GOOD).unwrap();
    assert_eq!(cfg.local_cluster, "a");
    assert_eq!(cfg.clusters.len(), 3);
    assert_eq!(cfg.clusters[0].source, SourceSpec::InCluster);
    assert_eq!(
        cfg.clusters[1].source,
        SourceSpec::Kubeconfig {
            path: PathBuf::from("/etc/causeway/b/kubeconfig"),
            context: Some("admin".into())
        }
    );
    assert_eq!(
        cfg.clusters[2].source,
        SourceSpec::File {
            path: PathBuf::from("/etc/causeway/clusters/c.yaml")
        }
    );
    assert_eq!(
        cfg.clusters[1].pod_cidrs.len(),
        2,
        "dual-stack CIDRs are accepted"
    );
    assert_eq!(
        cfg.remotes().map(|c| c.name.as_str()).collect::<Vec<_>>(),
        ["b", "c"]
    );
    assert_eq!(
        cfg.owner_of("172.31.4.5".parse().unwrap()).unwrap().name,
        "b"
    );
    assert_eq!(
        cfg.owner_of("fd00:b::9".parse().unwrap()).unwrap().name,
        "b"
    );
    assert!(cfg.owner_of("192.0.2.1".parse().unwrap()).is_none());
    assert_eq!(cfg.dns.ttl, 5);
    assert_eq!(cfg.proxy.interface, "eth0");
    assert_eq!(cfg.tunnel.listen_port, 51820);
}

#[test]
fn sections_are_optional() {
    let text = "cluster: a\nclusters:\n  - name: a\n    source: { inCluster: true }\n";
    let cfg = load(text).unwrap();
    assert_eq!(cfg.dns, DnsConfig::default());
}

#[test]
fn unknown_field_is_rejected_with_its_name() {
    let text = GOOD.replace(
        "podCIDRs: [\"10.136.0.0/14\"]",
        "podCIDR: [\"10.136.0.0/14\"]",
    );
    let err = load(&text).unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, ConfigError::Invalid { .. }), "{msg}");
    assert!(msg.contains("/etc/causeway/config.yaml"), "{msg}");
    assert!(msg.contains("podCIDR"), "{msg}");
    assert!(
        msg.contains("clusters[2].podCIDR: unknown field"),
        "the field path: {msg}"
    );
}

#[test]
fn three_mistakes_in_three_places_are_named_together() {
    // An unknown key, a bad duration and overlapping CIDRs: all three, each by its path.
    let text = GOOD
        .replace("dns: {}", "dns: { tll: 5 }")
        .replace("proxy: {}", "proxy: { fullResyncInterval: 5 parsecs }")
        .replace("10.136.0.0/14", "10.128.0.0/16");
    let err = load(&text).unwrap_err();
    let msg = err.to_string();
    let problems = err.problems();
    assert_eq!(problems.len(), 3, "{msg}");
    assert!(
        matches!(&problems[0], Problem::InvalidValue { field, reason }
            if field == "dns.tll" && reason.contains("unknown field")),
        "{msg}"
    );
    assert!(
        matches!(&problems[1], Problem::InvalidValue { field, reason }
            if field == "proxy.fullResyncInterval" && reason.contains("parsecs")),
        "{msg}"
    );
    assert!(
        matches!(&problems[2], Problem::Overlap { a_cluster, b_cluster, .. }
            if a_cluster == "a" && b_cluster == "c"),
        "{msg}"
    );
    // One prefix per message: the file once, then one line a problem.
    assert_eq!(msg.matches("/etc/causeway/config.yaml").count(), 1, "{msg}");
    assert_eq!(msg.lines().count(), 4, "{msg}");
}

#[test]
fn every_bad_field_of_one_section_and_of_a_cluster_is_named() {
    let text = GOOD
        .replace(
            "tunnel: {}",
            "tunnel: { mtu: big, steering: ovz, ovsBrige: br0, ovsBridge: br1 }",
        )
        .replace(
            "source: { file: clusters/c.yaml }",
            "source: { fil: c.yaml }",
        );
    let mut fields: Vec<String> = problems(&text)
        .iter()
        .map(|p| match p {
            Problem::InvalidValue { field, .. } => field.clone(),
            other => other.to_string(),
        })
        .collect();
    fields.sort();
    assert_eq!(
        fields,
        [
            "clusters[2].source",
            "tunnel.mtu",
            "tunnel.ovsBrige",
            "tunnel.steering",
        ],
        "a good field beside bad ones is no problem"
    );
}

#[test]
fn scalars_that_look_like_numbers_are_still_strings_where_a_string_is_expected() {
    // A field error elsewhere sends the file down the field-by-field path; `interface: 0`
    // must still read as the string "0" there, as it does in the typed parse.
    let text = GOOD.replace("proxy: {}", "proxy: { interface: 0, nftShards: many }");
    let problems = problems(&text);
    assert_eq!(problems.len(), 1, "{problems:?}");
    assert!(
        matches!(&problems[0], Problem::InvalidValue { field, .. } if field == "proxy.nftShards"),
        "{problems:?}"
    );
}

#[test]
fn unknown_field_in_a_section_is_rejected() {
    let text = GOOD.replace("dns: {}", "dns: { tll: 5 }");
    let msg = load(&text).unwrap_err().to_string();
    assert!(msg.contains("tll"), "{msg}");
}

#[test]
fn invalid_cluster_names() {
    for (name, reason) in [
        ("B", "only lower-case"),
        ("-b", "must start and end"),
        ("b_c", "only lower-case"),
        (&"x".repeat(64), "longer than 63"),
    ] {
        let text = GOOD.replace("name: b", &format!("name: \"{name}\""));
        let p = problems(&text);
        assert!(
            p.iter().any(|p| matches!(p, Problem::InvalidName { index: 1, reason: r, .. } if r.contains(reason))),
            "{name}: {p:?}"
        );
    }
}

#[test]
fn duplicate_cluster_name() {
    let text = GOOD.replace("name: c", "name: b");
    let p = problems(&text);
    assert!(
        p.contains(&Problem::DuplicateName {
            index: 2,
            first: 1,
            name: "b".into()
        }),
        "{p:?}"
    );
}

#[test]
fn local_cluster_must_be_listed() {
    let text = GOOD.replace("cluster: a", "cluster: z");
    let p = problems(&text);
    assert!(
        matches!(&p[..], [Problem::UnknownLocalCluster { name, known }] if name == "z" && known == "a, b, c")
    );
}

#[test]
fn bad_cidr_names_cluster_and_field() {
    let text = GOOD.replace("172.29.0.0/16", "172.29.0/16");
    let err = load(&text).unwrap_err();
    let msg = err.to_string();
    assert!(
        matches!(err.problems(), [Problem::InvalidCidr { cluster, field, .. }] if cluster == "c" && field == "serviceCIDRs[0]"),
        "{msg}"
    );
    assert!(
        msg.contains("cluster \"c\": serviceCIDRs[0]: invalid CIDR \"172.29.0/16\""),
        "{msg}"
    );
}

#[test]
fn host_bits_are_flagged() {
    let p = problems(&GOOD.replace("10.136.0.0/14", "10.136.0.1/14"));
    assert!(
        matches!(&p[..], [Problem::HostBitsSet { suggestion, .. }] if suggestion == "10.136.0.0/14"),
        "{p:?}"
    );
}

#[test]
fn overlap_across_clusters_names_both() {
    // c's pod CIDR inside a's pod CIDR.
    let text = GOOD.replace("10.136.0.0/14", "10.129.0.0/16");
    let err = load(&text).unwrap_err();
    let p = err.problems();
    assert_eq!(p.len(), 1, "{p:?}");
    assert!(
        matches!(&p[0], Problem::Overlap { a_cluster, a_field, b_cluster, b_field, .. }
        if a_cluster == "a" && a_field == "podCIDRs[0]" && b_cluster == "c" && b_field == "podCIDRs[0]")
    );
    let msg = err.to_string();
    assert!(
        msg.contains("cluster \"a\" podCIDRs[0] 10.128.0.0/14 overlaps cluster \"c\" podCIDRs[0] 10.129.0.0/16"),
        "{msg}"
    );
}

#[test]
fn overlap_between_pod_and_service_cidrs_and_v6() {
    let text = GOOD
        .replace("172.29.0.0/16", "10.132.128.0/24")
        .replace("fd00:b:1::/112", "fd00:b::/64");
    let p = problems(&text);
    assert_eq!(p.len(), 2, "{p:?}");
    assert!(p.iter().all(|p| matches!(p, Problem::Overlap { .. })));
}

#[test]
fn source_needs_exactly_one_kind() {
    let two = GOOD.replace("{ inCluster: true }", "{ inCluster: true, file: x.yaml }");
    assert!(
        matches!(&problems(&two)[..], [Problem::SourceKinds { cluster, found }] if cluster == "a" && found == "inCluster, file")
    );
    let none = GOOD.replace("{ inCluster: true }", "{}");
    assert!(
        matches!(&problems(&none)[..], [Problem::SourceKinds { found, .. }] if found == "none")
    );
    let ctx = GOOD.replace("{ file: clusters/c.yaml }", "{ file: c.yaml, context: x }");
    assert!(
        matches!(&problems(&ctx)[..], [Problem::ContextWithoutKubeconfig { cluster }] if cluster == "c")
    );
}

#[test]
fn all_problems_are_reported_together() {
    let text = GOOD
        .replace("name: c", "name: C")
        .replace("cluster: a", "cluster: q");
    assert_eq!(problems(&text).len(), 2);
}

#[test]
fn section_values_are_checked() {
    let text = GOOD.replace(
        "dns: {}",
        "dns: { allZone: cluster.b, upstreams: [\"8.8.8.8:53\", \"resolver\"] }",
    );
    let p = problems(&text);
    assert!(
        p.iter()
            .any(|p| matches!(p, Problem::InvalidValue { field, .. } if field == "dns.allZone")),
        "{p:?}"
    );
    assert!(
        p.iter().any(
            |p| matches!(p, Problem::InvalidValue { field, .. } if field == "dns.upstreams[1]")
        ),
        "{p:?}"
    );
    let text = GOOD.replace("tunnel: {}", "tunnel: { mtu: 100 }");
    assert!(
        matches!(&problems(&text)[..], [Problem::InvalidValue { field, .. }] if field == "tunnel.mtu")
    );
    let text = GOOD.replace("proxy: {}", "proxy: { nftShards: 0 }");
    assert!(
        matches!(&problems(&text)[..], [Problem::InvalidValue { field, reason }] if field == "proxy.nftShards" && reason.contains("outside")),
        "{:?}",
        problems(&text)
    );
    let ok = load(&GOOD.replace("proxy: {}", "proxy: { nftShards: 4, nftWriter: nft }")).unwrap();
    assert_eq!(ok.proxy.nft_shards, 4);
    assert_eq!(ok.proxy.nft_writer, super::NftWriter::Nft);
}

#[test]
fn upstreams_take_a_list_or_a_path() {
    let list = load(&GOOD.replace("dns: {}", "dns: { upstreams: [\"192.0.2.53\"] }")).unwrap();
    assert_eq!(
        list.dns.upstreams,
        Upstreams::List(vec!["192.0.2.53".into()])
    );
    let path = load(&GOOD.replace("dns: {}", "dns: { upstreams: /run/upstream.conf }")).unwrap();
    assert_eq!(
        path.dns.upstreams,
        Upstreams::ResolvConf("/run/upstream.conf".into())
    );
}

#[test]
fn missing_file_names_it() {
    let err = Config::load("/nonexistent/causeway.yaml").unwrap_err();
    assert!(
        err.to_string()
            .starts_with("/nonexistent/causeway.yaml: cannot read"),
        "{err}"
    );
}

#[test]
fn syntax_error_names_file() {
    let err = load("cluster: [a\n").unwrap_err();
    assert!(matches!(err, ConfigError::Parse { .. }));
    assert!(
        err.to_string().starts_with("/etc/causeway/config.yaml: "),
        "{err}"
    );
}

#[test]
fn tunnel_steering_and_rotation_fields() {
    let text = GOOD.replace(
        "tunnel: {}",
        "tunnel: { steering: ovs, ovsBridge: br-sdn, ovsPort: veth1, rotateInterval: 24h }",
    );
    let cfg = load(&text).unwrap();
    assert_eq!(cfg.tunnel.steering, SteeringMode::Ovs);
    assert_eq!(cfg.tunnel.ovs_bridge, "br-sdn");
    assert_eq!(cfg.tunnel.ovs_port.as_deref(), Some("veth1"));
    assert_eq!(cfg.tunnel.rotate_interval, ConfigDuration::secs(24 * 3600));
    let defaults = load(GOOD).unwrap().tunnel;
    assert_eq!(defaults.ovs_bridge, "br0");
    assert_eq!(defaults.ovs_port, None);
    assert_eq!(defaults.rotate_interval, ConfigDuration::secs(0));
    let typo = GOOD.replace("tunnel: {}", "tunnel: { ovsBrige: br0 }");
    assert!(matches!(
        &problems(&typo)[..],
        [Problem::InvalidValue { field, .. }] if field == "tunnel.ovsBrige"
    ));
}

#[test]
fn readiness_section_defaults_and_names_its_field() {
    let cfg = load(GOOD).unwrap();
    assert_eq!(
        cfg.readiness.remote_sync_timeout,
        ConfigDuration::secs(5),
        "remotes are waited for 5s by default"
    );
    let text = format!("{GOOD}readiness: {{ remoteSyncTimeout: 250ms }}\n");
    assert_eq!(
        load(&text).unwrap().readiness.remote_sync_timeout,
        ConfigDuration::millis(250)
    );
    let text = format!("{GOOD}readiness: {{ remoteSyncTimeout: 5 parsecs }}\n");
    let err = load(&text).unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, ConfigError::Invalid { .. }), "{msg}");
    assert!(msg.contains("readiness.remoteSyncTimeout: "), "{msg}");
    let text = format!("{GOOD}readiness: {{ remoteSyncTimout: 5s }}\n");
    let msg = load(&text).unwrap_err().to_string();
    assert!(msg.contains("remoteSyncTimout"), "{msg}");
    let text = format!("{GOOD}readiness: {{ remoteSyncTimeout: 2h }}\n");
    assert_eq!(
        problems(&text),
        [Problem::InvalidValue {
            field: "readiness.remoteSyncTimeout".into(),
            reason: "7200s is longer than 1h".into()
        }]
    );
}

#[test]
fn debug_views_listen_on_loopback_unless_told_otherwise() {
    let cfg = load(GOOD).unwrap();
    assert_eq!(cfg.proxy.debug_listen.to_string(), "127.0.0.1:9164");
    assert_eq!(cfg.tunnel.debug_listen.to_string(), "127.0.0.1:9165");
    assert!(cfg.proxy.metrics_listen.ip().is_unspecified());

    // The very address of metricsListen: one listener serves both.
    let same = GOOD.replace(
        "proxy: {}",
        "proxy: { metricsListen: \"127.0.0.1:9200\", debugListen: \"127.0.0.1:9200\" }",
    );
    assert_eq!(load(&same).unwrap().proxy.debug_listen.port(), 9200);

    // The metrics port on an overlapping address cannot be bound twice.
    let clash = GOOD
        .replace("proxy: {}", "proxy: { debugListen: \"127.0.0.1:9154\" }")
        .replace(
            "tunnel: {}",
            "tunnel: { metricsListen: \"10.0.0.1:9300\", debugListen: \"0.0.0.0:9300\" }",
        );
    let fields: Vec<String> = problems(&clash)
        .into_iter()
        .filter_map(|p| match p {
            Problem::InvalidValue { field, reason } => Some(format!("{field}: {reason}")),
            _ => None,
        })
        .collect();
    assert_eq!(fields.len(), 2, "{fields:?}");
    assert!(
        fields[0].starts_with(
            "proxy.debugListen: 127.0.0.1:9154 takes the port of metricsListen 0.0.0.0:9154"
        ),
        "{fields:?}"
    );
    assert!(
        fields[1].starts_with("tunnel.debugListen: 0.0.0.0:9300"),
        "{fields:?}"
    );
}

#[test]
fn path_health_defaults_to_the_tunnel_on_this_host_and_checks_its_timing() {
    let cfg = load(GOOD).unwrap();
    assert_eq!(
        cfg.path_health_url().as_deref(),
        Some("http://127.0.0.1:9155/paths"),
        "the tunnel's metrics port on loopback"
    );
    assert_eq!(cfg.path_health.unreachable_after, ConfigDuration::secs(5));
    assert_eq!(cfg.tunnel.probe_port, 51821);
    assert_eq!(cfg.tunnel.probe_interval, ConfigDuration::secs(1));
    let text = GOOD.replace(
        "tunnel: {}",
        "tunnel: { metricsListen: \"[::]:19155\" }\npathHealth: { unreachableAfter: 3s }",
    );
    let cfg = load(&text).unwrap();
    assert_eq!(
        cfg.path_health_url().as_deref(),
        Some("http://[::1]:19155/paths")
    );
    assert_eq!(cfg.path_health.unreachable_after, ConfigDuration::secs(3));
    let off = format!("{GOOD}pathHealth: {{ url: \"\" }}\n");
    assert_eq!(load(&off).unwrap().path_health_url(), None);
    // Every mistake of the section at once, each naming its field.
    let text = GOOD.replace(
        "tunnel: {}",
        "tunnel: { probePort: 51820, probeInterval: 2s }\n\
         pathHealth: { url: \"https://x:1/\", unreachableAfter: 3s, pollInterval: 0s }",
    );
    let fields: Vec<String> = problems(&text)
        .into_iter()
        .map(|p| match p {
            Problem::InvalidValue { field, .. } => field,
            other => panic!("{other}"),
        })
        .collect();
    assert_eq!(
        fields,
        [
            "pathHealth.url",
            "pathHealth.unreachableAfter",
            "pathHealth.pollInterval",
            "tunnel.probePort"
        ]
    );
}
