//! Links and traffic between test namespaces: bridges, veth pairs, pods on a bridge, pings,
//! TCP transfers.

use std::time::{Duration, Instant};

use anyhow::{Context as _, Result};

use super::Netns;

/// Creates a veth pair: `a_if` in `a`, `b_if` in `b`, both down and without addresses.
pub fn veth_pair(a: &Netns, a_if: &str, b: &Netns, b_if: &str) -> Result<()> {
    let args = ["link", "add", a_if, "type", "veth", "peer", "name", b_if];
    a.exec("ip", &[&args[..], &["netns", b.name()]].concat())?;
    Ok(())
}

/// Adds bridge `name` in `ns` with address `addr` (`ip/prefix`) when given, and sets it up.
pub fn bridge(ns: &Netns, name: &str, addr: Option<&str>) -> Result<()> {
    ns.exec("ip", &["link", "add", name, "type", "bridge"])?;
    if let Some(addr) = addr {
        ns.exec("ip", &["addr", "add", addr, "dev", name])?;
    }
    ns.exec("ip", &["link", "set", name, "up"])?;
    Ok(())
}

/// A "pod": a new namespace `short` whose `eth0` is a veth port (`port`, up) of bridge
/// `bridge` in `host`, with address `addr` (`ip/prefix`) and, when given, a default route
/// via `gateway`.
pub fn pod(
    host: &Netns,
    bridge: &str,
    port: &str,
    short: &str,
    addr: &str,
    gateway: Option<&str>,
) -> Result<Netns> {
    let pod = Netns::new(short)?;
    veth_pair(host, port, &pod, "eth0")?;
    host.exec("ip", &["link", "set", port, "master", bridge, "up"])?;
    pod.exec("ip", &["addr", "add", addr, "dev", "eth0"])?;
    pod.exec("ip", &["link", "set", "eth0", "up"])?;
    if let Some(gateway) = gateway {
        pod.exec("ip", &["route", "add", "default", "via", gateway])?;
    }
    Ok(pod)
}

/// A node of a routed test network, with one pod (addresses by the convention of the mesh
/// tests: the node's pod subnet `<subnet>.0/24`, its gateway `.1`, the pod `.11`):
/// - namespace `short`, forwarding on, bridge `br0` with `<subnet>.1/24`, and a leg `ul0`
///   with `underlay_addr` (`ip/prefix`) that is port `ul-<name>` of bridge `underlay_bridge`
///   in `underlay`;
/// - namespace `<short>p`, the pod: `eth0` with `<subnet>.11/24` on `br0` (node side
///   `veth1`), default route via `<subnet>.1`.
pub fn routed_node(
    underlay: &Netns,
    underlay_bridge: &str,
    name: &str,
    short: &str,
    subnet: &str,
    underlay_addr: &str,
) -> Result<(Netns, Netns)> {
    let ns = Netns::new(short)?;
    ns.exec("sysctl", &["-qw", "net.ipv4.ip_forward=1"])?;
    bridge(&ns, "br0", Some(&format!("{subnet}.1/24")))?;
    let pod = pod(
        &ns,
        "br0",
        "veth1",
        &format!("{short}p"),
        &format!("{subnet}.11/24"),
        Some(&format!("{subnet}.1")),
    )?;
    let port = format!("ul-{name}");
    veth_pair(underlay, &port, &ns, "ul0")?;
    underlay.exec(
        "ip",
        &["link", "set", &port, "master", underlay_bridge, "up"],
    )?;
    ns.exec("ip", &["addr", "add", underlay_addr, "dev", "ul0"])?;
    ns.exec("ip", &["link", "set", "ul0", "up"])?;
    Ok((ns, pod))
}

/// Joins two namespaces with a veth pair (`cwt-va` in `a`, `cwt-vb` in `b`) and gives each
/// end an address (`a_addr/24`, `b_addr/24`).
pub fn veth(a: &Netns, a_addr: &str, b: &Netns, b_addr: &str) -> Result<()> {
    let (ia, ib) = ("cwt-va", "cwt-vb");
    veth_pair(a, ia, b, ib)?;
    a.exec("ip", &["addr", "add", &format!("{a_addr}/24"), "dev", ia])?;
    b.exec("ip", &["addr", "add", &format!("{b_addr}/24"), "dev", ib])?;
    a.exec("ip", &["link", "set", ia, "up"])?;
    b.exec("ip", &["link", "set", ib, "up"])?;
    Ok(())
}

/// Pings from `ns` until one reply arrives or `timeout` passes.
pub fn ping(ns: &Netns, dst: &str, timeout: Duration) -> Result<()> {
    let deadline = Instant::now() + timeout;
    loop {
        match ns.exec("ping", &["-c", "1", "-W", "1", dst]) {
            Ok(_) => return Ok(()),
            Err(e) if Instant::now() > deadline => {
                return Err(e.context(format!("ping {dst} from {}", ns.name())));
            }
            Err(_) => std::thread::sleep(Duration::from_millis(200)),
        }
    }
}

/// Whether one ping from `ns` to `dst` goes unanswered within a second.
pub fn fails_to_ping(ns: &Netns, dst: &str) -> bool {
    ns.exec("ping", &["-c", "1", "-W", "1", dst]).is_err()
}

/// Moves `bytes` over TCP from `client` to an iperf3 server in `server` listening on `addr`,
/// and back with `-R`; returns the receiver throughput in bit/s of each direction. Each
/// client run is bounded to 30 s, with up to ten attempts while the server starts.
pub fn tcp_both_ways(
    client: &Netns,
    server: &Netns,
    addr: &str,
    bytes: &str,
) -> Result<(f64, f64)> {
    let mut rates = Vec::new();
    for reverse in [false, true] {
        let srv = server.spawn("iperf3", &["-s", "-1", "-B", addr])?;
        std::thread::sleep(Duration::from_millis(300));
        let mut args = vec!["-c", addr, "-n", bytes, "-J", "--connect-timeout", "3000"];
        if reverse {
            args.push("-R");
        }
        let mut out = Err(anyhow::anyhow!("not run"));
        for _ in 0..10 {
            out = client.exec("timeout", &[&["30", "iperf3"][..], &args].concat());
            if out.is_ok() {
                break;
            }
            std::thread::sleep(Duration::from_millis(300));
        }
        let out = out?;
        drop(srv);
        let json: serde_json::Value = serde_json::from_str(&out).context("iperf3 json")?;
        let bps = json["end"]["sum_received"]["bits_per_second"]
            .as_f64()
            .context("bits_per_second")?;
        rates.push(bps);
    }
    Ok((rates[0], rates[1]))
}
