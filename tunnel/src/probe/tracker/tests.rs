use super::*;

fn label(cluster: &str, node: &str) -> PeerLabel {
    PeerLabel {
        cluster: cluster.into(),
        node: node.into(),
    }
}

fn health(cluster: &str, node: &str, handshake: Option<u64>, up: bool) -> PeerHealth {
    PeerHealth {
        cluster: cluster.into(),
        node: node.into(),
        public_key: String::new(),
        endpoint: None,
        allowed_ips: vec![],
        last_handshake_seconds: handshake,
        last_received_seconds: None,
        rx_bytes: 0,
        tx_bytes: 0,
        up,
        probe: None,
    }
}

#[test]
fn answers_make_a_cluster_reachable_and_silence_unreachable() {
    let t0 = Instant::now();
    let s = |ms| t0 + Duration::from_millis(ms);
    let (b1, b2): (SocketAddr, SocketAddr) = (
        "10.129.0.1:51821".parse().unwrap(),
        "10.129.1.1:51821".parse().unwrap(),
    );
    let mut t = Tracker::new(t0);
    t.set_targets(
        [(label("b", "b1"), b1), (label("b", "b2"), b2)],
        vec!["10.129.0.0/16".parse().unwrap()],
        t0,
    );
    assert!(t.answers("10.129.3.4".parse().unwrap()));
    assert!(
        !t.answers("192.0.2.1".parse().unwrap()),
        "not from the tunnel"
    );
    let peers = [
        health("b", "b1", Some(1), true),
        health("b", "b2", Some(1), true),
        // c publishes no probe endpoint: judged by its handshake.
        health("c", "c1", Some(30), true),
    ];
    let remotes = ["b", "c", "d"].map(String::from);
    let interval = Duration::from_secs(1);
    t.sent(b1, 1, s(0));
    t.sent(b2, 2, s(0));
    assert!(t.answered(b1, 1, s(5)));
    assert!(!t.answered(b1, 1, s(6)), "a duplicate answer counts once");
    assert!(!t.answered(b2, 9, s(6)), "an answer to nothing we sent");
    let r = t.report("a1", &remotes, &peers, interval, s(1_000));
    assert_eq!(
        r.clusters,
        [
            ClusterPath {
                cluster: "b".into(),
                peers: 2,
                probed: 2,
                reachable: 2,
                unreachable_ms: 995
            },
            ClusterPath {
                cluster: "c".into(),
                peers: 1,
                probed: 0,
                reachable: 1,
                unreachable_ms: 1_000
            },
            ClusterPath {
                cluster: "d".into(),
                peers: 0,
                probed: 0,
                reachable: 0,
                unreachable_ms: 1_000
            },
        ],
        "b2 counts as reachable from its start until it has been silent for two intervals"
    );
    let v = t.view(&label("b", "b1"), s(1_000)).unwrap();
    assert_eq!((v.sent, v.answered), (1, 1));
    assert_eq!(v.rtt, Some(Duration::from_millis(5)));
    // Nothing answers for 6 s: b's silence is counted from b1's last answer.
    let r = t.report("a1", &remotes, &peers, interval, s(6_005));
    assert_eq!(
        (r.clusters[0].reachable, r.clusters[0].unreachable_ms),
        (0, 6_000)
    );
    // The plan keeps b1: its state stays; a new target starts fresh.
    t.set_targets(
        [
            (label("b", "b1"), b1),
            (label("b", "b3"), "10.129.2.1:51821".parse().unwrap()),
        ],
        vec![],
        s(6_005),
    );
    assert_eq!(t.view(&label("b", "b1"), s(6_005)).unwrap().answered, 1);
    assert!(t.view(&label("b", "b2"), s(6_005)).is_none());
    assert_eq!(t.view(&label("b", "b3"), s(6_005)).unwrap().sent, 0);
}

#[test]
fn old_requests_are_forgotten() {
    let t0 = Instant::now();
    let to: SocketAddr = "10.129.0.1:51821".parse().unwrap();
    let mut t = Tracker::new(t0);
    t.set_targets([(label("b", "b1"), to)], vec![], t0);
    for seq in 0..20 {
        t.sent(to, seq, t0);
    }
    assert!(!t.answered(to, 0, t0), "beyond the pending window");
    assert!(t.answered(to, 19, t0));
}
