//! Links and traffic between test namespaces.

use std::time::{Duration, Instant};

use anyhow::{Context as _, Result};

use super::Netns;

/// Creates a veth pair: `a_if` in `a`, `b_if` in `b`, both down and without addresses.
pub fn veth_pair(a: &Netns, a_if: &str, b: &Netns, b_if: &str) -> Result<()> {
    let args = ["link", "add", a_if, "type", "veth", "peer", "name", b_if];
    a.exec("ip", &[&args[..], &["netns", b.name()]].concat())?;
    Ok(())
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
