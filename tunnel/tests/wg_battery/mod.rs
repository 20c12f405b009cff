//! One battery of WireGuard device checks, run through [`WgBackend`] against the fake and
//! against a real backend (`battery_wg`: the userspace one on a TUN device in a namespace;
//! `wg_kernel`: the kernel's, in the kernel VM), which keeps the fake honest: the same
//! configurations must give the same peer listing. Also the helpers of the tests that drive
//! devices: peers, a runtime, a userspace device in a namespace.
//!
//! The device has no route to the peers' endpoints (192.0.2.0/24, RFC 5737): no packet
//! leaves the namespace and no handshake completes, so every peer lists "no handshake".
//! Allowed ranges: 198.51.100.0/24 (RFC 5737), 2001:db8::/32 (RFC 3849).

#![allow(dead_code)]

use anyhow::Result;
use causeway_tests::netns::Netns;
use causeway_tunnel::wg::userspace::{UserspaceOptions, UserspaceWg};
use causeway_tunnel::wg::{DeviceConfig, PeerConfig, PeerStatus, PrivateKey, WgBackend};

/// A peer of `key` at `endpoint` routing `ips`.
pub fn peer(
    key: &PrivateKey,
    endpoint: Option<&str>,
    ips: &[&str],
    keepalive: Option<u16>,
) -> PeerConfig {
    PeerConfig {
        public_key: key.public_key(),
        preshared_key: None,
        endpoint: endpoint.map(|e| e.parse().expect("endpoint")),
        allowed_ips: ips.iter().map(|s| s.parse().expect("net")).collect(),
        persistent_keepalive: keepalive,
    }
}

/// A current-thread runtime, for the blocking tests that drive a device.
pub fn runtime() -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
}

/// Our userspace device `interface` (default options), created inside `ns`: its TUN device
/// and UDP socket live there.
pub fn userspace_device(ns: &Netns, interface: &str) -> Result<UserspaceWg> {
    let options = UserspaceOptions::new(interface);
    ns.enter(move || Ok(runtime()?.block_on(UserspaceWg::create(options))?))?
}

/// The peers as canonical text, one line each in the order listed:
/// `key endpoint allowed-ips keepalive handshake`.
pub fn listing(peers: &[PeerStatus]) -> String {
    peers
        .iter()
        .map(|p| {
            let ips: Vec<String> = p.allowed_ips.iter().map(ToString::to_string).collect();
            format!(
                "{} {} {} keepalive={} handshake={}\n",
                p.public_key,
                p.endpoint.map_or("-".to_string(), |e| e.to_string()),
                ips.join(","),
                p.persistent_keepalive.unwrap_or(0),
                if p.last_handshake.is_some() {
                    "yes"
                } else {
                    "no"
                },
            )
        })
        .collect()
}

/// The expected listing: `(key, line without the key)` sorted by key, as `peers()` promises.
fn expected(mut lines: Vec<(&PrivateKey, &str)>) -> String {
    lines.sort_by_key(|(k, _)| k.public_key());
    lines
        .iter()
        .map(|(k, rest)| format!("{} {rest}\n", k.public_key()))
        .collect()
}

/// The battery, on a device named `interface` that has no peers yet.
pub async fn battery(wg: &dyn WgBackend, interface: &str) -> Result<()> {
    assert_eq!(wg.interface(), interface);
    assert_eq!(listing(&wg.peers().await?), "", "a new device has no peers");
    let (own, p1, p2, p3) = (
        PrivateKey::generate(),
        PrivateKey::generate(),
        PrivateKey::generate(),
        PrivateKey::generate(),
    );
    let mut cfg = DeviceConfig {
        private_key: own.clone(),
        listen_port: 51820,
        peers: vec![
            peer(&p1, Some("192.0.2.11:51820"), &["198.51.100.0/26"], None),
            peer(
                &p2,
                Some("192.0.2.12:51820"),
                &["198.51.100.64/26", "2001:db8:2::/48"],
                Some(25),
            ),
        ],
    };
    wg.configure(&cfg).await?;
    let first = expected(vec![
        (
            &p1,
            "192.0.2.11:51820 198.51.100.0/26 keepalive=0 handshake=no",
        ),
        (
            &p2,
            "192.0.2.12:51820 198.51.100.64/26,2001:db8:2::/48 keepalive=25 handshake=no",
        ),
    ]);
    assert_eq!(listing(&wg.peers().await?), first);
    // The same configuration again changes nothing.
    wg.configure(&cfg).await?;
    assert_eq!(listing(&wg.peers().await?), first);

    // Change one peer in place, remove one, add one without an endpoint.
    cfg.peers = vec![
        peer(
            &p1,
            Some("192.0.2.21:51820"),
            &["198.51.100.0/26", "198.51.100.128/26"],
            Some(10),
        ),
        peer(&p3, None, &["2001:db8:3::/48"], None),
    ];
    wg.configure(&cfg).await?;
    assert_eq!(
        listing(&wg.peers().await?),
        expected(vec![
            (
                &p1,
                "192.0.2.21:51820 198.51.100.0/26,198.51.100.128/26 keepalive=10 handshake=no",
            ),
            (&p3, "- 2001:db8:3::/48 keepalive=0 handshake=no"),
        ])
    );

    // A new private key keeps the peers; an empty peer set removes them all.
    cfg.private_key = PrivateKey::generate();
    wg.configure(&cfg).await?;
    assert_eq!(wg.peers().await?.len(), 2);
    cfg.peers.clear();
    wg.configure(&cfg).await?;
    assert_eq!(listing(&wg.peers().await?), "");
    Ok(())
}
