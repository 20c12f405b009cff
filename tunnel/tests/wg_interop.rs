//! Interoperability with Debian's `wireguard-go` configured by `wg(8)`: our userspace device in
//! one namespace, wireguard-go in the other, ping and TCP in both directions.
//!
//! Addresses: underlay 192.0.2.0/24 (RFC 5737) on a veth pair; tunnel 198.51.100.1 (ours) and
//! 198.51.100.2 (wireguard-go).

use std::io::Write as _;
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail};
use causeway_tests::netns::{Netns, ping, tcp_both_ways, veth};
use causeway_tunnel::wg::{DeviceConfig, PrivateKey, WgBackend};
use wg_battery::peer;

mod wg_battery;

#[test]
fn interop_with_wireguard_go() -> Result<()> {
    let rt = wg_battery::runtime()?;
    let ours = Netns::new("io")?;
    let theirs = Netns::new("ig")?;
    veth(&ours, "192.0.2.1", &theirs, "192.0.2.2")?;
    let (k_ours, k_go) = (PrivateKey::generate(), PrivateKey::generate());

    // wireguard-go in the foreground (so the guard owns the process), configured with wg.
    // The UAPI socket /var/run/wireguard/NAME.sock is not per namespace: a unique name.
    let dev = format!("cwgo{}", std::process::id() % 100_000);
    let dev = dev.as_str();
    // The guard kills wireguard-go with SIGKILL, so it cannot remove its socket itself; declared
    // before the guard, this is dropped after it.
    let _socket = RemoveOnDrop(format!("/var/run/wireguard/{dev}.sock").into());
    let go = theirs.spawn(
        "env",
        &["WG_PROCESS_FOREGROUND=1", "wireguard-go", "-f", dev],
    )?;
    let deadline = Instant::now() + Duration::from_secs(10);
    while theirs.exec("ip", &["link", "show", dev]).is_err() {
        if Instant::now() > deadline {
            bail!("wireguard-go did not create its interface");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let mut keyfile = tempfile::NamedTempFile::new()?;
    writeln!(keyfile, "{}", k_go.to_base64())?;
    let keypath = keyfile.path().to_str().context("key path")?;
    theirs.exec(
        "wg",
        &[
            "set",
            dev,
            "private-key",
            keypath,
            "listen-port",
            "51820",
            "peer",
            &k_ours.public_key().to_base64(),
            "endpoint",
            "192.0.2.1:51820",
            "allowed-ips",
            "198.51.100.1/32",
        ],
    )?;
    theirs.exec("ip", &["addr", "add", "198.51.100.2/32", "dev", dev])?;
    theirs.exec("ip", &["link", "set", dev, "up"])?;
    theirs.exec("ip", &["route", "add", "198.51.100.1/32", "dev", dev])?;

    let wg = wg_battery::userspace_device(&ours, "cw0")?;
    ours.exec("ip", &["addr", "add", "198.51.100.1/32", "dev", "cw0"])?;
    ours.exec("ip", &["route", "add", "198.51.100.2/32", "dev", "cw0"])?;
    rt.block_on(wg.configure(&DeviceConfig {
        private_key: k_ours.clone(),
        listen_port: 51820,
        peers: vec![peer(
            &k_go,
            Some("192.0.2.2:51820"),
            &["198.51.100.2/32"],
            None,
        )],
    }))?;

    // wireguard-go initiates first this time, then we do after its session exists.
    ping(&theirs, "198.51.100.1", Duration::from_secs(10))?;
    ping(&ours, "198.51.100.2", Duration::from_secs(10))?;
    let (up, down) = tcp_both_ways(&ours, &theirs, "198.51.100.2", "20M")?;
    eprintln!(
        "ours->go {:.2} Gbit/s, go->ours {:.2} Gbit/s",
        up / 1e9,
        down / 1e9
    );
    let (up, down) = tcp_both_ways(&theirs, &ours, "198.51.100.1", "20M")?;
    eprintln!(
        "go->ours {:.2} Gbit/s, ours->go {:.2} Gbit/s",
        up / 1e9,
        down / 1e9
    );

    // Both sides agree on the session.
    let dump = theirs.exec("wg", &["show", dev, "latest-handshakes"])?;
    let when: u64 = dump
        .split_whitespace()
        .nth(1)
        .context("wg show output")?
        .parse()?;
    assert!(when > 0, "wireguard-go saw a handshake: {dump}");
    let status = rt.block_on(wg.peers())?;
    assert!(
        status[0].last_handshake.is_some() && status[0].rx_bytes > 20_000_000,
        "{status:?}"
    );
    drop(go);
    Ok(())
}

/// Deletes a file when dropped.
struct RemoveOnDrop(std::path::PathBuf);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}
