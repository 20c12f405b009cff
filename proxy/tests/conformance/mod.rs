//! One battery of backend tests, run against the fake and a real backend (nftables in a
//! network namespace, IPVS in the kernel VM): the same desired states must give the
//! same `ipvsadm -Ln` view after a full apply, a partial apply, and an adoption by a
//! new backend instance (a restart).
//!
//! Test ranges: service IPs 192.0.2.0/24 and 2001:db8:5::/64, pod IPs 198.51.100.0/24
//! and 2001:db8:10::/64.

#![allow(dead_code)]

use std::collections::BTreeMap;

use causeway_proxy::backend::{Backend, FakeBackend, Header, KernelState};
use causeway_proxy::backend::ipvsadm::{View, render_ipvsadm};
use causeway_proxy::plan::{DesiredState, Origin, VirtualServer, VsKey};
use causeway_shared::model::{Protocol, ServiceKey};

/// A virtual service of `demo/<name>` in `cluster`, port `http`, generation 3.
pub fn vs(
    cluster: &str,
    name: &str,
    sched: &str,
    reals: &[(&str, u32)],
    affinity: Option<u32>,
) -> VirtualServer {
    VirtualServer {
        scheduler: sched.into(),
        affinity,
        reals: reals
            .iter()
            .map(|(a, w)| (a.parse().unwrap(), *w))
            .collect(),
        origin: Origin {
            cluster: cluster.into(),
            service: ServiceKey::new("demo", name),
            port: "http".into(),
            slice_generation: 3,
        },
    }
}

pub fn key(proto: Protocol, addr: &str) -> VsKey {
    VsKey {
        proto,
        addr: addr.parse().unwrap(),
    }
}

fn state(entries: Vec<(VsKey, VirtualServer)>) -> DesiredState {
    DesiredState {
        services: entries.into_iter().collect::<BTreeMap<_, _>>(),
    }
}

/// Start: four services (IPv4 and IPv6, TCP/UDP/SCTP, a draining real server, affinity,
/// one service without endpoints).
pub fn v1() -> DesiredState {
    state(vec![
        (
            key(Protocol::Tcp, "192.0.2.10:80"),
            vs(
                "b",
                "web",
                "rr",
                &[("198.51.100.11:8080", 1), ("198.51.100.12:8080", 0)],
                None,
            ),
        ),
        (
            key(Protocol::Udp, "192.0.2.53:53"),
            vs("c", "dns", "rr", &[("198.51.100.53:53", 1)], Some(600)),
        ),
        (
            key(Protocol::Tcp, "[2001:db8:5::10]:80"),
            vs("b", "web", "rr", &[("[2001:db8:10::11]:8080", 1)], None),
        ),
        (
            key(Protocol::Sctp, "192.0.2.30:3868"),
            vs("b", "diameter", "rr", &[], None),
        ),
    ])
}

/// One real server drains, one is added, a service goes, one comes, affinity goes, a
/// scheduler changes.
pub fn v2() -> DesiredState {
    state(vec![
        (
            key(Protocol::Tcp, "192.0.2.10:80"),
            vs(
                "b",
                "web",
                "rr",
                &[("198.51.100.11:8080", 0), ("198.51.100.13:8080", 1)],
                None,
            ),
        ),
        (
            key(Protocol::Udp, "192.0.2.53:53"),
            vs("c", "dns", "sh", &[("198.51.100.53:53", 1)], None),
        ),
        (
            key(Protocol::Tcp, "192.0.2.11:443"),
            vs("b", "api", "rr", &[("198.51.100.14:6443", 1)], None),
        ),
    ])
}

/// Almost everything goes.
pub fn v3() -> DesiredState {
    state(vec![(
        key(Protocol::Tcp, "192.0.2.10:80"),
        vs("b", "web", "rr", &[("198.51.100.13:8080", 1)], None),
    )])
}

/// A backend's state as `ipvsadm -Ln` prints it, header and counters left out, origins
/// taken from `desired` when the backend keeps none.
pub fn view(b: &mut dyn Backend, desired: &DesiredState) -> String {
    let mut k = b.read().expect("read");
    k.header = Header {
        version: 0,
        size: 0,
    };
    k.annotate(desired);
    for s in k.services.values_mut() {
        s.stats = Default::default();
        for r in s.reals.values_mut() {
            r.stats = Default::default();
            r.active_conns = 0;
            r.inactive_conns = 0;
        }
    }
    render_ipvsadm(
        &k,
        View {
            explain: true,
            ..View::default()
        },
    )
}

fn plain(d: &DesiredState) -> String {
    render_ipvsadm(
        &KernelState::from_desired(
            d,
            Header {
                version: 0,
                size: 0,
            },
        ),
        View::default(),
    )
}

/// The battery. `reopen` makes a new instance of the real backend (a restarted process).
pub fn run(real: &mut dyn Backend, reopen: impl FnOnce() -> Box<dyn Backend>) {
    let mut fake = FakeBackend::default();
    let (v1, v2, v3) = (v1(), v2(), v3());
    for b in [real as &mut dyn Backend, &mut fake] {
        b.apply(&v1, None).expect("full apply");
    }
    let (r, f) = (view(real, &v1), view(&mut fake, &v1));
    assert_eq!(r, f, "after a full apply");
    assert!(
        r.contains(
            "UDP  192.0.2.53:53 rr persistent 600  # cluster=c service=demo/dns:http generation=3"
        ),
        "{r}"
    );

    for b in [real as &mut dyn Backend, &mut fake] {
        b.apply(&v2, Some(&v1)).expect("partial apply");
    }
    assert_eq!(
        view(real, &v2),
        view(&mut fake, &v2),
        "after a partial apply"
    );

    // A new process reads the state back (adopt) and reconciles with a full apply.
    let mut again = reopen();
    let adopted = again
        .read()
        .expect("read after restart")
        .to_desired(|_| None);
    assert_eq!(
        plain(&adopted),
        plain(&v2),
        "adoption sees what was applied"
    );
    again.apply(&v3, None).expect("full apply after restart");
    fake.apply(&v3, None).unwrap();
    assert_eq!(
        view(again.as_mut(), &v3),
        view(&mut fake, &v3),
        "after adopt + full apply"
    );
}
