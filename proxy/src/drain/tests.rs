//! Test ranges (RFC 5737): service IPs 192.0.2.0/24, pod IPs 198.51.100.0/24.

use causeway_shared::model::{Protocol, ServiceKey};

use super::*;
use crate::plan::{Origin, VirtualServer};

/// Virtual services `vip:80/TCP` with their real servers and weights.
fn state(services: &[(&str, &[(&str, u32)])]) -> DesiredState {
    let vs = |reals: &[(&str, u32)]| VirtualServer {
        scheduler: "rr".into(),
        affinity: None,
        reals: reals
            .iter()
            .map(|(a, w)| (a.parse().unwrap(), *w))
            .collect(),
        origin: Origin {
            cluster: "b".into(),
            service: ServiceKey::new("demo", "web"),
            port: "http".into(),
            slice_generation: 1,
        },
    };
    let key = |vip: &str| VsKey {
        proto: Protocol::Tcp,
        addr: SocketAddr::new(vip.parse().unwrap(), 80),
    };
    DesiredState {
        services: services
            .iter()
            .map(|(vip, reals)| (key(vip), vs(reals)))
            .collect(),
    }
}

#[tokio::test(start_paused = true)]
async fn only_the_real_servers_that_left_a_kept_service_are_drained() {
    let applied = state(&[
        ("192.0.2.10", &[("198.51.100.1:80", 1)]),
        (
            "192.0.2.20",
            &[("198.51.100.11:80", 1), ("198.51.100.12:80", 1)],
        ),
        ("192.0.2.30", &[("198.51.100.21:80", 1)]),
    ]);
    // 192.0.2.10 goes (with its real server, at once) and 192.0.2.15 arrives; in
    // 192.0.2.20, .11 leaves, .10 (sorted before both) arrives and .12 stays.
    let desired = state(&[
        ("192.0.2.15", &[("198.51.100.5:80", 1)]),
        (
            "192.0.2.20",
            &[("198.51.100.10:80", 1), ("198.51.100.12:80", 1)],
        ),
        ("192.0.2.30", &[]),
    ]);
    let expected = state(&[
        ("192.0.2.15", &[("198.51.100.5:80", 1)]),
        (
            "192.0.2.20",
            &[
                ("198.51.100.10:80", 1),
                ("198.51.100.11:80", 0),
                ("198.51.100.12:80", 1),
            ],
        ),
        ("192.0.2.30", &[("198.51.100.21:80", 0)]),
    ]);
    // Every key walked, or only the keys the caller lists as possibly different (all of
    // them here): the same answer.
    let keys: Vec<VsKey> = applied
        .services
        .keys()
        .chain(desired.services.keys())
        .copied()
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect();
    for differ in [None, Some(&keys[..])] {
        let mut desired = desired.clone();
        let mut drains = Drains::new(Duration::from_secs(30));
        drains.retain(&mut desired, &applied, differ, Instant::now(), |_, _| None);
        assert_eq!(desired, expected, "differ: {differ:?}");
        assert_eq!(drains.len(), 2);
    }
}

#[tokio::test(start_paused = true)]
async fn keys_said_not_to_differ_are_not_looked_at() {
    let applied = state(&[
        ("192.0.2.20", &[("198.51.100.11:80", 1)]),
        ("192.0.2.30", &[("198.51.100.21:80", 1)]),
    ]);
    let mut desired = state(&[("192.0.2.20", &[]), ("192.0.2.30", &[])]);
    let only: Vec<VsKey> = desired.services.keys().take(1).copied().collect();
    let mut drains = Drains::new(Duration::from_secs(30));
    drains.retain(
        &mut desired,
        &applied,
        Some(&only),
        Instant::now(),
        |_, _| None,
    );
    let expected = state(&[
        ("192.0.2.20", &[("198.51.100.11:80", 0)]),
        ("192.0.2.30", &[]),
    ]);
    assert_eq!(desired, expected);
}
