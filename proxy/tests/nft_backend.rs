//! The nftables backend through the `Backend` trait, against a real kernel in a network
//! namespace, checked against the fake: the same desired states give the same
//! `ipvsadm -Ln` view (full apply, partial apply, adoption after a "restart").
//!
//! Test ranges: service IPs 192.0.2.0/24 and 2001:db8:5::/64, pod IPs 198.51.100.0/24.

mod netns;

use std::collections::BTreeMap;

use causeway_proxy::backend::nft::NftBackend;
use causeway_proxy::backend::{Backend, FakeBackend, Header, KernelState};
use causeway_proxy::debug::{View, render_ipvsadm};
use causeway_proxy::plan::{DesiredState, Origin, VirtualServer, VsKey};
use causeway_shared::model::{Protocol, ServiceKey};

fn vs(cluster: &str, name: &str, reals: &[(&str, u32)], affinity: Option<u32>) -> VirtualServer {
    VirtualServer {
        scheduler: "rr".into(),
        affinity,
        reals: reals.iter().map(|(a, w)| (a.parse().unwrap(), *w)).collect(),
        origin: Origin {
            cluster: cluster.into(),
            service: ServiceKey::new("demo", name),
            port: "http".into(),
            slice_generation: 3,
        },
    }
}

fn key(proto: Protocol, addr: &str) -> VsKey {
    VsKey { proto, addr: addr.parse().unwrap() }
}

fn state(entries: Vec<(VsKey, VirtualServer)>) -> DesiredState {
    DesiredState { services: entries.into_iter().collect::<BTreeMap<_, _>>() }
}

/// Both backends' views, with the header (which differs by design) left out.
fn views(real: &mut dyn Backend, fake: &mut FakeBackend) -> (String, String) {
    let strip = |mut k: KernelState| {
        k.header = Header { version: 0, size: 0 };
        for s in k.services.values_mut() {
            s.stats = Default::default();
            for r in s.reals.values_mut() {
                r.stats = Default::default();
            }
        }
        render_ipvsadm(&k, View { explain: true, ..View::default() })
    };
    (strip(real.read().unwrap()), strip(fake.read().unwrap()))
}

#[test]
fn nft_backend_matches_the_fake_through_full_partial_and_adopt() {
    let ns = netns::Netns::new(format!("cwp-{}-conf", std::process::id()));
    let mut real = NftBackend::new("cwtest").in_netns(&ns.0);
    let mut fake = FakeBackend::default();
    assert!(real.read().unwrap().services.is_empty(), "no table yet");

    let v1 = state(vec![
        (key(Protocol::Tcp, "192.0.2.10:80"), vs("b", "web", &[("198.51.100.11:8080", 1), ("198.51.100.12:8080", 0)], None)),
        (key(Protocol::Udp, "192.0.2.53:53"), vs("c", "dns", &[("198.51.100.53:53", 1)], Some(600))),
        (key(Protocol::Tcp, "[2001:db8:5::10]:80"), vs("b", "web", &[("[2001:db8:10::11]:8080", 1)], None)),
        (key(Protocol::Sctp, "192.0.2.30:3868"), vs("b", "diameter", &[], None)),
    ]);
    for b in [&mut real as &mut dyn Backend, &mut fake] {
        b.apply(&v1, None).unwrap();
    }
    let (r, f) = views(&mut real, &mut fake);
    assert_eq!(r, f);
    assert!(r.contains("UDP  192.0.2.53:53 rr persistent 600  # cluster=c service=demo/dns:http generation=3"), "{r}");

    // Partial: one endpoint drains, one service goes, one comes, affinity goes.
    let v2 = state(vec![
        (key(Protocol::Tcp, "192.0.2.10:80"), vs("b", "web", &[("198.51.100.11:8080", 0), ("198.51.100.13:8080", 1)], None)),
        (key(Protocol::Udp, "192.0.2.53:53"), vs("c", "dns", &[("198.51.100.53:53", 1)], None)),
        (key(Protocol::Tcp, "192.0.2.11:443"), vs("b", "api", &[("198.51.100.14:6443", 1)], None)),
    ]);
    for b in [&mut real as &mut dyn Backend, &mut fake] {
        b.apply(&v2, Some(&v1)).unwrap();
    }
    let (r, f) = views(&mut real, &mut fake);
    assert_eq!(r, f);

    // A new process: reads the table back (adopt), then a full apply removes leftovers.
    let mut again = NftBackend::new("cwtest").in_netns(&ns.0);
    let adopted = again.read().unwrap().to_desired(|_| None);
    assert_eq!(adopted, v2, "the table round-trips through its comments");
    let v3 = state(vec![(key(Protocol::Tcp, "192.0.2.10:80"), vs("b", "web", &[("198.51.100.13:8080", 1)], None))]);
    again.apply(&v3, None).unwrap();
    fake.apply(&v3, None).unwrap();
    let (r, f) = views(&mut again, &mut fake);
    assert_eq!(r, f);
    let table = netns::run(&format!("ip netns exec {} nft list table inet cwtest", ns.0));
    assert_eq!(table.matches("\tchain ").count(), 4 + 2, "base chains + one svc + one ep chain:\n{table}");
    assert!(!table.contains("set aff-"), "affinity sets removed:\n{table}");
}
