//! A userspace WireGuard node for the benchmark: creates the TUN device, configures one peer and
//! runs until SIGTERM/SIGINT.
//!
//! `wg_node IFACE PRIVATE_KEY_FILE LISTEN_PORT PEER_PUBLIC_KEY PEER_ENDPOINT PEER_ALLOWED_IP [THREADS]`
//!
//! `CAUSEWAY_WG_OFFLOAD=0` turns the TUN offloads off (for comparisons).

use anyhow::{Context as _, Result};
use causeway_tunnel::wg::userspace::{UserspaceOptions, UserspaceWg};
use causeway_tunnel::wg::{DeviceConfig, PeerConfig, PrivateKey, WgBackend};

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [iface, key, port, peer, endpoint, allowed, rest @ ..] = args.as_slice() else {
        anyhow::bail!(
            "usage: wg_node IFACE KEY_FILE PORT PEER_PUBKEY PEER_ENDPOINT PEER_ALLOWED_IP [THREADS]"
        );
    };
    let mut opts = UserspaceOptions::new(iface.as_str());
    if let Some(t) = rest.first() {
        opts.threads = t.parse().context("threads")?;
    }
    if let Ok(v) = std::env::var("CAUSEWAY_WG_OFFLOAD") {
        opts.offload = v != "0";
    }
    let wg = UserspaceWg::create(opts).await?;
    let private_key = PrivateKey::from_base64(&std::fs::read_to_string(key).context("key file")?)?;
    wg.configure(&DeviceConfig {
        private_key,
        listen_port: port.parse().context("port")?,
        peers: vec![PeerConfig {
            public_key: peer.parse()?,
            preshared_key: None,
            endpoint: Some(endpoint.parse().context("endpoint")?),
            allowed_ips: vec![allowed.parse().context("allowed ip")?],
            persistent_keepalive: None,
        }],
    })
    .await?;
    causeway_shared::signal::shutdown_signal().await;
    Ok(())
}
