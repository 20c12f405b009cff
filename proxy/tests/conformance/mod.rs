//! One battery of backend tests, run against the fake and a real backend (nftables in a
//! network namespace, IPVS in the kernel VM), step for step on both: the same desired
//! states must give the same `ipvsadm -Ln` view after a full apply, a partial apply, and an
//! adoption by a new backend instance (a restart), and the adoption must see what was
//! applied.
//!
//! Test ranges: service IPs 192.0.2.0/24 and 2001:db8:5::/64, pod IPs 198.51.100.0/24
//! and 2001:db8:10::/64.

#![allow(dead_code)]

use std::collections::BTreeMap;

use causeway_proxy::backend::ipvsadm::{View, render_ipvsadm};
use causeway_proxy::backend::{Backend, FakeBackend, Header, KernelState};
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

/// What one backend shows at each step of the battery.
#[derive(Debug, PartialEq, Eq)]
struct Views {
    full: String,
    partial: String,
    adopted: String,
    after_restart: String,
}

/// The steps on one backend: a full apply of v1, a partial apply of v2, then a new instance
/// (`reopen`, given the old one) reads the state back and fully applies v3.
fn steps(b: &mut dyn Backend, reopen: impl FnOnce(&mut dyn Backend) -> Box<dyn Backend>) -> Views {
    let (v1, v2, v3) = (v1(), v2(), v3());
    b.apply(&v1, None).expect("full apply");
    let full = view(b, &v1);
    b.apply(&v2, Some(&v1)).expect("partial apply");
    let partial = view(b, &v2);
    let mut again = reopen(b);
    let adopted = plain(
        &again
            .read()
            .expect("read after restart")
            .to_desired(|_| None),
    );
    again.apply(&v3, None).expect("full apply after restart");
    Views {
        full,
        partial,
        adopted,
        after_restart: view(again.as_mut(), &v3),
    }
}

/// The battery, on the real backend and on the fake, whose views must agree at every step.
/// `reopen` makes a new instance of the real backend (a restarted process); the fake's new
/// instance starts from the state the old one holds (the fake is its own kernel).
pub fn run(real: &mut dyn Backend, reopen: impl FnOnce() -> Box<dyn Backend>) {
    let r = steps(real, |_| reopen());
    let f = steps(&mut FakeBackend::default(), |old| {
        Box::new(FakeBackend {
            state: old.read().expect("read the fake"),
            ..FakeBackend::default()
        })
    });
    assert_eq!(r.full, f.full, "after a full apply");
    assert_eq!(r.partial, f.partial, "after a partial apply");
    assert_eq!(r.adopted, f.adopted, "adoption by a new instance");
    assert_eq!(r.after_restart, f.after_restart, "after adopt + full apply");
    // Checked on both sides, so that neither can agree with the other on a wrong answer.
    for (side, views) in [("real", &r), ("fake", &f)] {
        assert!(
            views.full.contains(
                "UDP  192.0.2.53:53 rr persistent 600  # cluster=c service=demo/dns:http generation=3"
            ),
            "{side}: {}",
            views.full
        );
        assert_eq!(
            views.adopted,
            plain(&v2()),
            "{side}: adoption sees what was applied"
        );
    }
}
