//! Network-namespace harness for the proxy's data-plane tests.
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

use std::fs::File;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use causeway_tests::netns::{self, ChildGuard, Netns};
use causeway_tests::wait;

pub const BACKEND_PORT: u16 = 8080;

/// Runs `f` on a thread that has entered network namespace `ns`. Sockets it returns stay
/// in that namespace.
pub fn in_ns<T: Send + 'static>(ns: &str, f: impl FnOnce() -> T + Send + 'static) -> T {
    netns::enter(ns, f).expect("run in the namespace")
}

/// A namespace of the kit, `cw-<pid>-<short>`; the test fails if it cannot be made.
pub fn namespace(short: &str) -> Netns {
    Netns::new(short).expect("network namespace")
}

/// Runs a shell script on the host (bounded), failing the test on a non-zero status.
pub fn run(script: &str) -> String {
    netns::sh(script).unwrap_or_else(|e| panic!("{e:#}"))
}

/// TCP and UDP echo servers in one namespace: each line (or datagram) is answered with
/// `<name>\n`.
pub struct Echo {
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
}

impl Echo {
    pub fn start(ns: &str, name: &str) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let (tcp, udp) = in_ns(ns, || {
            let tcp = TcpListener::bind(("0.0.0.0", BACKEND_PORT)).expect("bind tcp");
            let udp = UdpSocket::bind(("0.0.0.0", BACKEND_PORT)).expect("bind udp");
            (tcp, udp)
        });
        tcp.set_nonblocking(true).unwrap();
        udp.set_read_timeout(Some(Duration::from_millis(50)))
            .unwrap();
        let mut threads = Vec::new();
        let (s, n) = (stop.clone(), name.to_string());
        threads.push(std::thread::spawn(move || {
            while !s.load(Ordering::Relaxed) {
                match tcp.accept() {
                    Ok((conn, _)) => {
                        let (s, n) = (s.clone(), n.clone());
                        std::thread::spawn(move || serve_tcp(conn, &n, &s));
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(10)),
                }
            }
        }));
        let (s, n) = (stop.clone(), name.to_string());
        threads.push(std::thread::spawn(move || {
            let mut buf = [0u8; 1500];
            while !s.load(Ordering::Relaxed) {
                if let Ok((_, from)) = udp.recv_from(&mut buf) {
                    let _ = udp.send_to(format!("{n}\n").as_bytes(), from);
                }
            }
        }));
        Echo { stop, threads }
    }
}

fn serve_tcp(conn: TcpStream, name: &str, stop: &AtomicBool) {
    conn.set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    let mut writer = conn.try_clone().unwrap();
    let mut reader = BufReader::new(conn);
    let mut line = String::new();
    while !stop.load(Ordering::Relaxed) {
        match reader.read_line(&mut line) {
            Ok(0) => return,
            Ok(_) => {
                if writer.write_all(format!("{name}\n").as_bytes()).is_err() {
                    return;
                }
                line.clear();
            }
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(_) => return,
        }
    }
}

impl Drop for Echo {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

/// The whole topology.
pub struct Lab {
    pub proxy_ns: String,
    pub backends: Vec<(String, String)>,
    _echo: Vec<Echo>,
    _ns: Vec<Netns>,
}

impl Lab {
    /// A proxy namespace and `n` backends named `b1..bn` at 198.51.100.11.. .
    pub fn new(tag: &str, n: usize) -> Lab {
        let p = namespace(&format!("{tag}-p"));
        let mut nss = vec![];
        run(&format!(
            "ip -n {p} link add br0 type bridge && ip -n {p} addr add 198.51.100.1/24 dev br0 && ip -n {p} link set br0 up",
            p = p.name()
        ));
        let mut backends = vec![];
        let mut echo = vec![];
        for i in 1..=n {
            let b = namespace(&format!("{tag}-b{i}"));
            run(&format!(
                "ip -n {p} link add v{i} type veth peer name eth0 netns {b} && ip -n {p} link set v{i} master br0 up && \
                 ip -n {b} addr add 198.51.100.{ip}/24 dev eth0 && ip -n {b} link set eth0 up && \
                 ip -n {b} route add default via 198.51.100.1",
                p = p.name(),
                b = b.name(),
                ip = 10 + i
            ));
            let name = format!("b{i}");
            echo.push(Echo::start(b.name(), &name));
            backends.push((name, format!("198.51.100.{}", 10 + i)));
            nss.push(b);
        }
        let proxy_ns = p.name().to_string();
        nss.insert(0, p);
        Lab {
            proxy_ns,
            backends,
            _echo: echo,
            _ns: nss,
        }
    }

    /// A new TCP connection from the proxy namespace.
    pub fn connect(&self, to: SocketAddr) -> std::io::Result<TcpStream> {
        in_ns(&self.proxy_ns, move || {
            TcpStream::connect_timeout(&to, Duration::from_secs(2))
        })
    }

    /// One UDP request from a fresh socket; the answer.
    pub fn udp_ask(&self, to: SocketAddr) -> std::io::Result<String> {
        let sock = in_ns(&self.proxy_ns, || UdpSocket::bind("0.0.0.0:0"))?;
        sock.set_read_timeout(Some(Duration::from_secs(2)))?;
        sock.send_to(b"hi\n", to)?;
        let mut buf = [0u8; 64];
        let (n, _) = sock.recv_from(&mut buf)?;
        Ok(String::from_utf8_lossy(&buf[..n]).trim().to_string())
    }

    /// GET on the proxy's telemetry port inside the proxy namespace.
    pub fn http_get(&self, addr: SocketAddr, path: &str) -> std::io::Result<String> {
        let path = path.to_string();
        in_ns(&self.proxy_ns, move || {
            let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2))?;
            s.set_read_timeout(Some(Duration::from_secs(5)))?;
            write!(s, "GET {path} HTTP/1.0\r\nHost: x\r\n\r\n")?;
            let mut body = String::new();
            s.read_to_string(&mut body)?;
            Ok(body
                .split_once("\r\n\r\n")
                .map(|(_, b)| b.to_string())
                .unwrap_or_default())
        })
    }

    /// Runs a command in the proxy namespace.
    pub fn sh(&self, cmd: &str) -> String {
        self._ns[0].sh(cmd).unwrap_or_else(|e| panic!("{e:#}"))
    }
}

/// Asks once over an open connection and reads one answer line.
pub fn ask(conn: &mut TcpStream) -> std::io::Result<String> {
    conn.set_read_timeout(Some(Duration::from_secs(2)))?;
    conn.write_all(b"hi\n")?;
    let mut buf = [0u8; 64];
    let n = conn.read(&mut buf)?;
    if n == 0 {
        return Err(std::io::Error::new(
            std::io::ErrorKind::UnexpectedEof,
            "closed",
        ));
    }
    Ok(String::from_utf8_lossy(&buf[..n]).trim().to_string())
}

/// Polls `f` every 50 ms until it returns `Some`, for at most `timeout`.
pub fn wait_for<T>(timeout: Duration, what: &str, f: impl FnMut() -> Option<T>) -> T {
    wait::poll(timeout, Duration::from_millis(50), what, f).unwrap_or_else(|e| panic!("{e}"))
}

/// The real `causeway-proxy` binary running inside a namespace; killed on drop (by its
/// [`ChildGuard`]).
pub struct ProxyProcess {
    child: ChildGuard,
    pub log: std::path::PathBuf,
}

impl ProxyProcess {
    pub fn start(ns: &str, config: &std::path::Path, log: std::path::PathBuf) -> Self {
        let out = File::create(&log).expect("log file");
        let child = ChildGuard::spawn(
            std::process::Command::new("ip")
                .args([
                    "netns",
                    "exec",
                    ns,
                    env!("CARGO_BIN_EXE_causeway-proxy"),
                    "--config",
                ])
                .arg(config)
                .env("RUST_LOG", "info,causeway_proxy=debug")
                .env("NO_COLOR", "1")
                .stdout(Stdio::null())
                .stderr(out),
        )
        .expect("spawn causeway-proxy");
        ProxyProcess { child, log }
    }

    /// Kills the process (SIGKILL): nothing is cleaned up, as after a crash.
    pub fn kill(&mut self) {
        self.child.kill();
    }

    /// The log so far, without terminal colour sequences.
    pub fn log_text(&self) -> String {
        let raw = std::fs::read_to_string(&self.log).unwrap_or_default();
        let mut out = String::with_capacity(raw.len());
        let mut chars = raw.chars();
        while let Some(c) = chars.next() {
            if c == '\u{1b}' {
                // CSI: ESC [ parameters final-byte
                for c in chars.by_ref() {
                    if c.is_ascii_alphabetic() {
                        break;
                    }
                }
            } else {
                out.push(c);
            }
        }
        out
    }
}
