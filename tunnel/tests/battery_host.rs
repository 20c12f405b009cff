//! One battery of host-interface checks run against the fixed host the control-plane tests
//! use (`StaticHost`) and against rtnetlink in a network namespace (`NetlinkHost`), which
//! keeps the fixed one honest: the namespace's interfaces must list as the tests write them
//! (ifindex order, MAC in lower case, `None` for a device without one, IPv4 before IPv6).
//!
//! The veth pair stays down, so that no IPv6 link-local address appears. Addresses:
//! 10.128.0.13/24 (a pod subnet), 2001:db8::13/64 (RFC 3849), 192.0.2.1/32 on the TUN device
//! (RFC 5737).

use std::sync::Arc;

use anyhow::Result;
use causeway_tests::netns::Netns;
use causeway_tunnel::host::{Host, HostInterface, NetlinkHost, StaticHost};

/// The namespace's interfaces as the tests would write them for a [`StaticHost`].
fn expected() -> Vec<HostInterface> {
    let interface = |name: &str, mac: Option<&str>, addresses: &[&str]| HostInterface {
        name: name.into(),
        mac: mac.map(Into::into),
        addresses: addresses.iter().map(|a| a.parse().expect("ip")).collect(),
    };
    vec![
        interface("lo", Some("00:00:00:00:00:00"), &["127.0.0.1", "::1"]),
        interface(
            "cw-h0",
            Some("02:00:00:00:00:0d"),
            &["10.128.0.13", "2001:db8::13"],
        ),
        interface("cw-h1", Some("02:00:00:00:00:0e"), &[]),
        interface("cw-tun0", None, &["192.0.2.1"]),
    ]
}

/// The battery: the interfaces, in order, as one line each.
async fn battery(host: &dyn Host) -> Result<()> {
    let text = |interfaces: &[HostInterface]| -> String {
        interfaces
            .iter()
            .map(|i| {
                let addresses: Vec<String> = i.addresses.iter().map(ToString::to_string).collect();
                format!(
                    "{} {} {}\n",
                    i.name,
                    i.mac.as_deref().unwrap_or("-"),
                    addresses.join(",")
                )
            })
            .collect()
    };
    assert_eq!(text(&host.interfaces().await?), text(&expected()));
    Ok(())
}

#[tokio::test]
async fn static_host() -> Result<()> {
    battery(&StaticHost(expected())).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn netlink_host_in_a_namespace() -> Result<()> {
    let ns = Netns::new("host")?;
    // The peer is made first, so it gets the lower ifindex: cw-h0 lists before cw-h1.
    ns.exec(
        "ip",
        &[
            "link", "add", "cw-h1", "type", "veth", "peer", "name", "cw-h0",
        ],
    )?;
    // Given in upper case: listed in lower case.
    ns.exec(
        "ip",
        &["link", "set", "cw-h0", "address", "02:00:00:00:00:0D"],
    )?;
    ns.exec(
        "ip",
        &["link", "set", "cw-h1", "address", "02:00:00:00:00:0e"],
    )?;
    ns.exec("ip", &["addr", "add", "10.128.0.13/24", "dev", "cw-h0"])?;
    ns.exec("ip", &["addr", "add", "2001:db8::13/64", "dev", "cw-h0"])?;
    ns.exec("ip", &["tuntap", "add", "dev", "cw-tun0", "mode", "tun"])?;
    ns.exec("ip", &["addr", "add", "192.0.2.1/32", "dev", "cw-tun0"])?;
    let rt = tokio::runtime::Handle::current();
    let host = tokio::task::block_in_place(|| {
        ns.enter(move || {
            rt.block_on(async {
                let (conn, handle, _) = rtnetlink::new_connection()?;
                tokio::spawn(conn);
                anyhow::Ok(NetlinkHost(handle))
            })
        })
    })??;
    let host: Arc<dyn Host> = Arc::new(host);
    battery(host.as_ref()).await
}
