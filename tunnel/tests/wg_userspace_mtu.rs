//! The userspace tunnel over an underlay that carries less than the tunnel MTU needs: device MTU
//! 1420 (+ 80 bytes of IPv6-sized WireGuard overhead = 1500) over a veth of MTU 1400. UDP GSO
//! trains of 1452-byte datagrams are refused there (EMSGSIZE); they must go out one by one (the
//! kernel fragments them) instead of being dropped. 50 MB must cross both ways, the refusal
//! must be counted, and the path-MTU probe must report that the tunnel MTU is too large.
//!
//! Addresses: underlay 192.0.2.0/24 (RFC 5737) on a veth pair; tunnel 198.51.100.1/.2.

use std::time::Duration;

use anyhow::{Context as _, Result, ensure};
use causeway_tests::netns::{Netns, ping, tcp_both_ways, veth};
use causeway_tunnel::wg::userspace::{UserspaceOptions, UserspaceWg};
use causeway_tunnel::wg::{DeviceConfig, PrivateKey, WgBackend as _};

mod wg_battery;

use wg_battery::peer;

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
}

fn device_in(ns: &Netns, addr: &str, peer_addr: &str) -> Result<UserspaceWg> {
    let wg =
        ns.enter(|| runtime().block_on(UserspaceWg::create(UserspaceOptions::new("cw0"))))??;
    ns.exec("ip", &["addr", "add", &format!("{addr}/32"), "dev", "cw0"])?;
    ns.exec(
        "ip",
        &["route", "add", &format!("{peer_addr}/32"), "dev", "cw0"],
    )?;
    Ok(wg)
}

#[test]
fn fifty_megabytes_cross_an_underlay_smaller_than_the_tunnel_needs() -> Result<()> {
    let rt = runtime();
    let a = Netns::new("ma")?;
    let b = Netns::new("mb")?;
    veth(&a, "192.0.2.1", &b, "192.0.2.2")?;
    a.exec("ip", &["link", "set", "cwt-va", "mtu", "1400"])?;
    b.exec("ip", &["link", "set", "cwt-vb", "mtu", "1400"])?;
    let (ka, kb) = (PrivateKey::generate(), PrivateKey::generate());
    let wa = device_in(&a, "198.51.100.1", "198.51.100.2")?;
    let wb = device_in(&b, "198.51.100.2", "198.51.100.1")?;
    let config =
        |own: &PrivateKey, other: &PrivateKey, endpoint: &str, allowed: &str| DeviceConfig {
            private_key: own.clone(),
            listen_port: 51820,
            peers: vec![peer(other, Some(endpoint), &[allowed], None)],
        };
    rt.block_on(wa.configure(&config(&ka, &kb, "192.0.2.2:51820", "198.51.100.2/32")))?;
    rt.block_on(wb.configure(&config(&kb, &ka, "192.0.2.1:51820", "198.51.100.1/32")))?;
    ping(&a, "198.51.100.2", Duration::from_secs(10))?;

    let (up, down) = tcp_both_ways(&a, &b, "198.51.100.2", "50M")
        .context("50 MB through a tunnel whose MTU exceeds the underlay's")?;
    eprintln!(
        "tcp a->b {:.2} Gbit/s, b->a {:.2} Gbit/s",
        up / 1e9,
        down / 1e9
    );
    ensure!(up > 0.0 && down > 0.0);

    for (name, wg) in [("a", &wa), ("b", &wb)] {
        // The probe runs every 5 s.
        let deadline = std::time::Instant::now() + Duration::from_secs(12);
        while wg.datapath_stats().path_mtu.is_empty() && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(200));
        }
        let stats = wg.datapath_stats();
        eprintln!("{name}: {stats:?}");
        ensure!(
            stats.oversize_trains > 0,
            "{name}: the refused GSO trains are counted"
        );
        let path = *stats.path_mtu.values().next().context("path MTU probed")?;
        ensure!(path == 1400, "{name}: path MTU {path}");
        ensure!(
            stats.mtu_too_large_peers == 1,
            "{name}: the tunnel MTU 1420 is reported too large for the path"
        );
    }
    Ok(())
}
