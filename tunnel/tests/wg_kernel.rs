//! Kernel WireGuard backend against a real kernel, with the device battery (`wg_battery`)
//! the fake and the userspace backend run too.
//!
//! This host's kernel has no WireGuard module, so the test runs itself inside a QEMU VM booting
//! Debian's stock kernel (`tests/lab/kernel-vm.sh`): on the host
//! (`CAUSEWAY_KERNEL_VM` unset) it boots the VM with this very test binary shared over 9p and
//! asserts that the run inside succeeded; inside (`CAUSEWAY_KERNEL_VM=1`) it does the real work.
//! Set `CAUSEWAY_KERNEL_VM_SCRIPT` to use another copy of the script.
//!
//! Addresses: underlay 192.0.2.0/24 (RFC 5737), tunnel 198.51.100.1/.2, extra range 203.0.113.0/24.

use std::time::Duration;

use anyhow::{Context as _, Result, bail, ensure};
use causeway_tests::kernel_vm;
use causeway_tests::netns::{Netns, ping, veth};
use causeway_tunnel::wg::kernel::KernelWg;
use causeway_tunnel::wg::{
    BackendKind, DeviceConfig, OpenOptions, PeerConfig, PrivateKey, WgBackend, open,
};

mod wg_battery;

const TEST: &str = "kernel_backend";

#[test]
fn kernel_backend() -> Result<()> {
    kernel_vm::test(TEST, 600, inside_vm)
}

/// A peer without keepalive.
fn peer(key: &PrivateKey, endpoint: Option<&str>, ips: &[&str]) -> PeerConfig {
    wg_battery::peer(key, endpoint, ips, None)
}

fn wg_show(ns: Option<&Netns>, iface: &str) -> Result<String> {
    match ns {
        Some(ns) => ns.exec("wg", &["show", iface, "dump"]),
        None => causeway_tests::netns::run("wg", &["show", iface, "dump"]),
    }
}

fn inside_vm() -> Result<()> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    ensure!(
        rt.block_on(KernelWg::available()),
        "wireguard genl family missing in the VM"
    );

    // The device battery shared with the fake and the userspace backend (`battery_wg`), in
    // a namespace of its own: its keepalives then find no route out of it.
    let bat = Netns::new("kbat")?;
    bat.enter(|| -> Result<()> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        rt.block_on(async {
            let wg = KernelWg::create("cwk2", 1420).await?;
            wg_battery::battery(&wg, "cwk2").await
        })
    })??;
    drop(bat);

    // Configure and update peers in place, checked with wg(8).
    let wg = rt.block_on(open(&OpenOptions::new("cwk0")))?;
    ensure!(wg.kind() == BackendKind::Kernel, "kernel backend chosen");
    let (k, p1, p2, p3) = (
        PrivateKey::generate(),
        PrivateKey::generate(),
        PrivateKey::generate(),
        PrivateKey::generate(),
    );
    let mut cfg = DeviceConfig {
        private_key: k.clone(),
        listen_port: 51820,
        peers: vec![
            peer(&p1, Some("192.0.2.11:51820"), &["198.51.100.0/26"]),
            peer(&p2, Some("192.0.2.12:51820"), &["198.51.100.64/26"]),
        ],
    };
    rt.block_on(wg.configure(&cfg))?;
    let dump = wg_show(None, "cwk0")?;
    eprintln!("{dump}");
    ensure!(
        dump.lines()
            .next()
            .unwrap_or("")
            .contains(&k.public_key().to_base64()),
        "device key"
    );
    ensure!(
        dump.contains(&p1.public_key().to_base64()) && dump.contains("198.51.100.0/26"),
        "peer 1"
    );
    ensure!(
        dump.contains(&p2.public_key().to_base64()) && dump.contains("192.0.2.12:51820"),
        "peer 2"
    );

    cfg.peers = vec![
        peer(
            &p1,
            Some("192.0.2.11:51820"),
            &["198.51.100.0/26", "203.0.113.0/24"],
        ),
        peer(&p3, Some("192.0.2.13:51820"), &["198.51.100.128/26"]),
    ];
    rt.block_on(wg.configure(&cfg))?;
    let dump = wg_show(None, "cwk0")?;
    eprintln!("{dump}");
    ensure!(
        !dump.contains(&p2.public_key().to_base64()),
        "peer 2 removed"
    );
    ensure!(
        dump.contains("198.51.100.0/26,203.0.113.0/24")
            || dump.contains("203.0.113.0/24,198.51.100.0/26"),
        "allowed ips replaced"
    );
    let status = rt.block_on(wg.peers())?;
    ensure!(status.len() == 2, "two peers: {status:?}");
    rt.block_on(wg.configure(&cfg))?; // idempotent
    ensure!(
        wg_show(None, "cwk0")? == dump,
        "second configure changes nothing"
    );

    // Traffic between two namespaces, each with a kernel device configured by us.
    let a = Netns::new("ka")?;
    let b = Netns::new("kb")?;
    veth(&a, "192.0.2.1", &b, "192.0.2.2")?;
    let (ka, kb) = (PrivateKey::generate(), PrivateKey::generate());
    for (ns, own, other, ep, addr, peer_addr) in [
        (
            &a,
            &ka,
            &kb,
            "192.0.2.2:51820",
            "198.51.100.1",
            "198.51.100.2",
        ),
        (
            &b,
            &kb,
            &ka,
            "192.0.2.1:51820",
            "198.51.100.2",
            "198.51.100.1",
        ),
    ] {
        let cfg = DeviceConfig {
            private_key: own.clone(),
            listen_port: 51820,
            peers: vec![peer(other, Some(ep), &[&format!("{peer_addr}/32")])],
        };
        ns.enter(move || -> Result<()> {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            rt.block_on(async {
                let wg = KernelWg::create("cwk1", 1420).await?;
                wg.configure(&cfg).await?;
                anyhow::Ok(())
            })
        })??;
        ns.exec("ip", &["addr", "add", &format!("{addr}/32"), "dev", "cwk1"])?;
        ns.exec(
            "ip",
            &["route", "add", &format!("{peer_addr}/32"), "dev", "cwk1"],
        )?;
    }
    ping(&a, "198.51.100.2", Duration::from_secs(20))?;
    ping(&b, "198.51.100.1", Duration::from_secs(20))?;
    let dump = wg_show(Some(&a), "cwk1")?;
    eprintln!("{dump}");
    let handshake: u64 = dump
        .lines()
        .nth(1)
        .and_then(|l| l.split('\t').nth(4))
        .context("dump")?
        .parse()?;
    if handshake == 0 {
        bail!("no handshake recorded: {dump}");
    }
    rt.block_on(rt.block_on(KernelWg::create("cwk0", 1420))?.delete())?;
    Ok(())
}
