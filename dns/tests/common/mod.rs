//! Starts the real `causeway-dns` binary on loopback with file-source clusters, and
//! queries it with hickory-proto messages over UDP/TCP and with `dig`.
#![allow(dead_code)]

pub mod https;

use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use hickory_server::proto::op::{Edns, Message, MessageType, OpCode, Query};
use hickory_server::proto::rr::{Name, RecordType};

pub const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures");

pub use causeway_tests::probe::{free_port, get as http_get};

/// A running causeway-dns, killed on drop.
pub struct Dns {
    pub child: Child,
    pub addr: SocketAddr,
    pub metrics: SocketAddr,
    pub dir: PathBuf,
    _tmp: Option<tempfile::TempDir>,
}

impl Drop for Dns {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The test clusters "a" and "b" (see the fixtures for their address ranges).
pub fn clusters_ab(dns_section: &str) -> String {
    format!(
        "cluster: a
clusters:
- name: a
  podCIDRs: [192.0.2.0/25, \"2001:db8:a::/64\"]
  serviceCIDRs: [198.51.100.0/25, \"2001:db8:a:1::/64\"]
  source: {{file: cluster-a.yaml}}
- name: b
  podCIDRs: [192.0.2.128/25, \"2001:db8:b::/64\"]
  serviceCIDRs: [198.51.100.128/25, \"2001:db8:b:1::/64\"]
  source: {{file: cluster-b.yaml}}
dns:
{dns_section}"
    )
}

impl Dns {
    /// Copies the fixtures into a temp dir, writes `config` there and starts the binary;
    /// `ready` waits for /readyz.
    pub fn start(config: &str, ready: bool) -> Dns {
        let tmp = tempfile::tempdir().unwrap();
        for f in ["cluster-a.yaml", "cluster-b.yaml"] {
            std::fs::copy(Path::new(FIXTURES).join(f), tmp.path().join(f)).unwrap();
        }
        let dir = tmp.path().to_path_buf();
        let mut dns = Self::start_in(&dir, config, ready);
        dns._tmp = Some(tmp);
        dns
    }

    pub fn start_in(dir: &Path, config: &str, ready: bool) -> Dns {
        Self::launch(dir, config, ready, free_port())
    }

    /// Like [`Dns::start_in`] on a given port.
    pub fn launch(dir: &Path, config: &str, ready: bool, port: u16) -> Dns {
        Self::launch_with(dir, config, ready, port, &[])
    }

    /// [`Dns::launch`] with more flags.
    pub fn launch_with(dir: &Path, config: &str, ready: bool, port: u16, extra: &[&str]) -> Dns {
        let mport = free_port();
        let addr: SocketAddr = (Ipv4Addr::LOCALHOST, port).into();
        let metrics: SocketAddr = (Ipv4Addr::LOCALHOST, mport).into();
        std::fs::write(dir.join("config.yaml"), config).unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_causeway-dns"))
            .arg("--config")
            .arg(dir.join("config.yaml"))
            .arg("--listen")
            .arg(addr.to_string())
            .arg("--metrics-listen")
            .arg(metrics.to_string())
            .arg("--udp-threads")
            .arg("2")
            .args(extra)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let dns = Dns {
            child,
            addr,
            metrics,
            dir: dir.to_path_buf(),
            _tmp: None,
        };
        dns.wait_listening();
        if ready {
            assert_eq!(
                dns.wait_readyz(200, Duration::from_secs(20)),
                200,
                "never ready"
            );
        }
        dns
    }

    /// The exit status, if the binary has exited.
    pub fn child_status(&mut self) -> Option<std::process::ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    fn wait_listening(&self) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(self.addr).is_err() {
            assert!(
                Instant::now() < deadline,
                "causeway-dns never listened on {}",
                self.addr
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Polls /readyz until it returns `want` or `timeout` passes; returns the last status.
    pub fn wait_readyz(&self, want: u16, timeout: Duration) -> u16 {
        let deadline = Instant::now() + timeout;
        loop {
            let status = http_get(self.metrics, "/readyz").0;
            if status == want || Instant::now() >= deadline {
                return status;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// A query message for `name`/`rtype`, with EDNS when `edns` gives a payload size.
pub fn query_msg(name: &str, rtype: RecordType, edns: Option<u16>) -> Message {
    let mut m = Message::new(0x4242, MessageType::Query, OpCode::Query);
    m.metadata.recursion_desired = true;
    m.add_query(Query::query(Name::from_ascii(name).unwrap(), rtype));
    if let Some(size) = edns {
        let mut e = Edns::new();
        e.set_max_payload(size);
        m.edns = Some(e);
    }
    m
}

/// Sends raw bytes over UDP; the reply, or None after `timeout`.
pub fn udp_raw(addr: SocketAddr, pkt: &[u8], timeout: Duration) -> Option<Vec<u8>> {
    let s = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
    s.set_read_timeout(Some(timeout)).unwrap();
    s.send_to(pkt, addr).unwrap();
    let mut buf = vec![0u8; 65535];
    let (n, _) = s.recv_from(&mut buf).ok()?;
    Some(buf[..n].to_vec())
}

/// Sends a length-prefixed message over TCP; the reply.
pub fn tcp_raw(addr: SocketAddr, pkt: &[u8]) -> Option<Vec<u8>> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(2)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut framed = (pkt.len() as u16).to_be_bytes().to_vec();
    framed.extend_from_slice(pkt);
    s.write_all(&framed).ok()?;
    let mut len = [0u8; 2];
    s.read_exact(&mut len).ok()?;
    let mut buf = vec![0u8; usize::from(u16::from_be_bytes(len))];
    s.read_exact(&mut buf).ok()?;
    Some(buf)
}

/// Queries over UDP (or TCP) and decodes the answer with hickory.
pub fn ask(addr: SocketAddr, name: &str, rtype: RecordType, tcp: bool) -> Message {
    ask_edns(addr, name, rtype, tcp, Some(1232))
}

pub fn ask_edns(
    addr: SocketAddr,
    name: &str,
    rtype: RecordType,
    tcp: bool,
    edns: Option<u16>,
) -> Message {
    let pkt = query_msg(name, rtype, edns).to_vec().unwrap();
    let reply = if tcp {
        tcp_raw(addr, &pkt)
    } else {
        udp_raw(addr, &pkt, Duration::from_secs(5))
    }
    .unwrap_or_else(|| panic!("no answer to {name} {rtype} (tcp={tcp})"));
    Message::from_vec(&reply).unwrap()
}

/// The answer records as sorted zone-file-like lines without TTL ("name TYPE data").
pub fn answers(m: &Message) -> Vec<String> {
    let mut v: Vec<String> = m
        .answers
        .iter()
        .map(|r| format!("{} {} {}", r.name, r.record_type(), r.data))
        .collect();
    v.sort();
    v
}

/// Runs `dig` against the server; its stdout.
pub fn dig(addr: SocketAddr, args: &[&str]) -> String {
    let out = Command::new("dig")
        .arg(format!("@{}", addr.ip()))
        .arg("-p")
        .arg(addr.port().to_string())
        .args(["+tries=1", "+time=3"])
        .args(args)
        .output()
        .expect("dig is installed (Debian dnsutils)");
    String::from_utf8_lossy(&out.stdout).into_owned()
}
