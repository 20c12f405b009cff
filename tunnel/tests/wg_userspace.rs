//! Userspace WireGuard between two network namespaces, with real traffic.
//!
//! Addresses: underlay 192.0.2.0/24 (RFC 5737) on a veth pair; tunnel addresses 198.51.100.1/.2,
//! an extra allowed range 203.0.113.0/24 for the in-place update test.

use std::time::Duration;

use anyhow::{Context as _, Result, ensure};
use causeway_tests::netns::{Netns, ping, tcp_both_ways, veth};
use causeway_tunnel::wg::userspace::UserspaceWg;
use causeway_tunnel::wg::{BackendKind, DeviceConfig, PrivateKey, WgBackend};

mod wg_battery;

use wg_battery::peer;

const PORT: u16 = 51820;

fn runtime() -> tokio::runtime::Runtime {
    wg_battery::runtime().expect("runtime")
}

/// Creates our userspace device `cw0` inside `ns` with tunnel address `addr/32` and a route to
/// the peer's tunnel address.
fn device_in(ns: &Netns, addr: &str, peer_addr: &str) -> Result<UserspaceWg> {
    let wg = wg_battery::userspace_device(ns, "cw0")?;
    ns.exec("ip", &["addr", "add", &format!("{addr}/32"), "dev", "cw0"])?;
    ns.exec(
        "ip",
        &["route", "add", &format!("{peer_addr}/32"), "dev", "cw0"],
    )?;
    Ok(wg)
}

#[test]
fn two_namespaces_ping_tcp_and_update_in_place() -> Result<()> {
    let rt = runtime();
    let a = Netns::new("ua")?;
    let b = Netns::new("ub")?;
    veth(&a, "192.0.2.1", &b, "192.0.2.2")?;
    let (ka, kb) = (PrivateKey::generate(), PrivateKey::generate());

    let wa = device_in(&a, "198.51.100.1", "198.51.100.2")?;
    let wb = device_in(&b, "198.51.100.2", "198.51.100.1")?;
    assert_eq!(wa.kind(), BackendKind::Userspace);
    let cfg_a = DeviceConfig {
        private_key: ka.clone(),
        listen_port: PORT,
        peers: vec![peer(
            &kb,
            Some("192.0.2.2:51820"),
            &["198.51.100.2/32"],
            None,
        )],
    };
    // B knows no endpoint: it learns A's from the first authenticated packet (roaming).
    let cfg_b = DeviceConfig {
        private_key: kb.clone(),
        listen_port: PORT,
        peers: vec![peer(&ka, None, &["198.51.100.1/32"], None)],
    };
    rt.block_on(wa.configure(&cfg_a))?;
    rt.block_on(wb.configure(&cfg_b))?;

    ping(&a, "198.51.100.2", Duration::from_secs(10))?;
    ping(&b, "198.51.100.1", Duration::from_secs(10))?;
    let (up, down) = tcp_both_ways(&a, &b, "198.51.100.2", "20M")?;
    eprintln!(
        "tcp a->b {:.2} Gbit/s, b->a {:.2} Gbit/s",
        up / 1e9,
        down / 1e9
    );
    assert!(up > 0.0 && down > 0.0);

    let status = rt.block_on(wb.peers())?;
    assert_eq!(status.len(), 1);
    assert_eq!(
        status[0].endpoint,
        Some("192.0.2.1:51820".parse()?),
        "roamed endpoint"
    );
    // B sent 20 MiB (b->a) and received most of 20 MiB (a->b): iperf3 -n ends the test once the
    // client has written its bytes, and with TUN offloads a debug build's receiver may still have
    // a few MiB queued in its 8 MiB UDP buffer when the server closes the stream.
    assert!(
        status[0].rx_bytes > 10_000_000 && status[0].tx_bytes > 20_000_000,
        "{:?}",
        status[0]
    );
    let handshake = rt.block_on(wa.peers())?[0]
        .last_handshake
        .context("handshake done")?;

    // Add a third peer and change B's keepalive and allowed IPs: the A-B session must survive
    // (same handshake time, traffic keeps flowing without a new handshake).
    let kc = PrivateKey::generate();
    let mut cfg_a2 = cfg_a.clone();
    cfg_a2.peers[0] = peer(
        &kb,
        Some("192.0.2.2:51820"),
        &["198.51.100.2/32", "203.0.113.0/24"],
        Some(25),
    );
    cfg_a2.peers.push(peer(
        &kc,
        Some("192.0.2.3:51820"),
        &["198.51.100.3/32"],
        None,
    ));
    rt.block_on(wa.configure(&cfg_a2))?;
    let status = rt.block_on(wa.peers())?;
    assert_eq!(status.len(), 2);
    let b_status = status
        .iter()
        .find(|p| p.public_key == kb.public_key())
        .context("peer b")?;
    assert_eq!(
        b_status.last_handshake,
        Some(handshake),
        "session of the updated peer kept"
    );
    assert_eq!(b_status.persistent_keepalive, Some(25));
    assert_eq!(b_status.allowed_ips.len(), 2);
    ping(&a, "198.51.100.2", Duration::from_secs(5))?;

    // Remove the third peer again; B is untouched.
    rt.block_on(wa.configure(&cfg_a))?;
    let status = rt.block_on(wa.peers())?;
    assert_eq!(status.len(), 1);
    assert_eq!(status[0].last_handshake, Some(handshake));
    ping(&b, "198.51.100.1", Duration::from_secs(5))?;
    Ok(())
}

#[test]
fn key_rotation_renegotiates() -> Result<()> {
    let rt = runtime();
    let a = Netns::new("ra")?;
    let b = Netns::new("rb")?;
    veth(&a, "192.0.2.1", &b, "192.0.2.2")?;
    let (ka, kb) = (PrivateKey::generate(), PrivateKey::generate());
    let wa = device_in(&a, "198.51.100.1", "198.51.100.2")?;
    let wb = device_in(&b, "198.51.100.2", "198.51.100.1")?;
    let cfg = |own: &PrivateKey, other: &PrivateKey, ep: &str, ip: &str| DeviceConfig {
        private_key: own.clone(),
        listen_port: PORT,
        peers: vec![peer(other, Some(ep), &[ip], None)],
    };
    rt.block_on(wa.configure(&cfg(&ka, &kb, "192.0.2.2:51820", "198.51.100.2/32")))?;
    rt.block_on(wb.configure(&cfg(&kb, &ka, "192.0.2.1:51820", "198.51.100.1/32")))?;
    ping(&a, "198.51.100.2", Duration::from_secs(10))?;

    // A rotates its key; B learns the new public key. Traffic resumes within seconds.
    let ka2 = PrivateKey::generate();
    rt.block_on(wa.configure(&cfg(&ka2, &kb, "192.0.2.2:51820", "198.51.100.2/32")))?;
    rt.block_on(wb.configure(&cfg(&kb, &ka2, "192.0.2.1:51820", "198.51.100.1/32")))?;
    ping(&a, "198.51.100.2", Duration::from_secs(10))?;
    ping(&b, "198.51.100.1", Duration::from_secs(10))?;
    Ok(())
}

/// The userspace tunnel over an underlay that carries less than the tunnel MTU needs: device MTU
/// 1420 (+ 80 bytes of IPv6-sized WireGuard overhead = 1500) over a veth of MTU 1400. UDP GSO
/// trains of 1452-byte datagrams are refused there (EMSGSIZE); they must go out one by one (the
/// kernel fragments them) instead of being dropped. 50 MB must cross both ways, the refusal
/// must be counted, and the path-MTU probe must report that the tunnel MTU is too large.
///
/// Addresses: underlay 192.0.2.0/24 (RFC 5737) on a veth pair; tunnel 198.51.100.1/.2.
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
