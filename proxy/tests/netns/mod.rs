//! Network-namespace topology of the proxy's data-plane tests, built on the kit's
//! namespaces, pods and echo servers (`causeway_tests::netns`).
//!
//! Topology (one set per test, namespaces `cw-<pid>-<tag>-…` so tests run in parallel):
//!
//! ```text
//!  ns P (client + proxy)                       ns B1..Bn (backends)
//!  br0 198.51.100.1/24 ── veth ──────────────── eth0 198.51.100.1i/24, default via .1
//!  (VIP aliases 192.0.2.x/32 on br0)            TCP+UDP echo on :8080 answering "<name>"
//! ```
//!
//! Test ranges: service IPs 192.0.2.0/24 (RFC 5737 TEST-NET-1), pod IPs 198.51.100.0/24
//! (TEST-NET-2). Everything is torn down by `Drop`, also when a test fails; every wait is
//! bounded.

#![allow(dead_code)]

use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::time::Duration;

use causeway_tests::daemon::Daemon;
use causeway_tests::netns::{self, Echo, Netns};
use causeway_tests::{probe, wait};

pub const BACKEND_PORT: u16 = 8080;

/// A namespace of the kit, `cw-<pid>-<short>`; the test fails if it cannot be made.
pub fn namespace(short: &str) -> Netns {
    Netns::new(short).expect("network namespace")
}

/// Runs a shell script on the host (bounded), failing the test on a non-zero status.
pub fn run(script: &str) -> String {
    netns::sh(script).unwrap_or_else(|e| panic!("{e:#}"))
}

/// The whole topology. Fields drop in order: echo servers, then the backends' namespaces,
/// then the proxy's.
pub struct Lab {
    _echo: Vec<Echo>,
    /// `(name, address)` of each backend.
    pub backends: Vec<(String, String)>,
    _backend_ns: Vec<Netns>,
    pub proxy: Netns,
}

impl Lab {
    /// A proxy namespace and `n` backends named `b1..bn` at 198.51.100.11.. .
    pub fn new(tag: &str, n: usize) -> Lab {
        let proxy = namespace(&format!("{tag}-p"));
        netns::bridge(&proxy, "br0", Some("198.51.100.1/24")).expect("br0");
        let (mut echo, mut backends, mut backend_ns) = (vec![], vec![], vec![]);
        for i in 1..=n {
            let ip = format!("198.51.100.{}", 10 + i);
            let b = netns::pod(
                &proxy,
                "br0",
                &format!("v{i}"),
                &format!("{tag}-b{i}"),
                &format!("{ip}/24"),
                Some("198.51.100.1"),
            )
            .expect("backend namespace");
            let name = format!("b{i}");
            echo.push(Echo::start(&b, BACKEND_PORT, &name).expect("echo server"));
            backends.push((name, ip));
            backend_ns.push(b);
        }
        Lab {
            _echo: echo,
            backends,
            _backend_ns: backend_ns,
            proxy,
        }
    }

    /// A new TCP connection from the proxy namespace.
    pub fn connect(&self, to: SocketAddr) -> std::io::Result<TcpStream> {
        netns::connect(&self.proxy, to)
    }

    /// One UDP request from a fresh socket; the answer.
    pub fn udp_ask(&self, to: SocketAddr) -> anyhow::Result<String> {
        netns::udp_ask(&self.proxy, to)
    }

    /// GET on the proxy's telemetry port inside the proxy namespace: the body, or `None`
    /// when nothing answers.
    pub fn http_get(&self, addr: SocketAddr, path: &str) -> Option<String> {
        let path = path.to_string();
        match self.proxy.enter(move || probe::get(addr, &path)) {
            Ok((status, body)) if status != 0 => Some(body),
            _ => None,
        }
    }

    /// Runs a command in the proxy namespace.
    pub fn sh(&self, cmd: &str) -> String {
        self.proxy.sh(cmd).unwrap_or_else(|e| panic!("{e:#}"))
    }

    /// The real `causeway-proxy` binary in the proxy namespace, logging to `log`; killed on
    /// drop.
    pub fn start_proxy(&self, config: &Path, log: &Path) -> Daemon {
        let mut command = self.proxy.command(env!("CARGO_BIN_EXE_causeway-proxy"));
        command
            .arg("--config")
            .arg(config)
            .env("RUST_LOG", "info,causeway_proxy=debug")
            .env("NO_COLOR", "1");
        Daemon::spawn(&mut command, log).expect("spawn causeway-proxy")
    }
}

/// Polls `f` every 50 ms until it returns `Some`, for at most `timeout`.
pub fn wait_for<T>(timeout: Duration, what: &str, f: impl FnMut() -> Option<T>) -> T {
    wait::poll(timeout, Duration::from_millis(50), what, f).unwrap_or_else(|e| panic!("{e}"))
}
