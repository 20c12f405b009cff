//! Servers that say who they are, and the clients that ask them: [`Echo`] answers every line
//! over TCP and every datagram over UDP with its name, so a test sees which backend a
//! connection reached. Every socket operation has a timeout; the servers stop on drop.

use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use anyhow::{Context as _, Result};

use super::Netns;

/// Bound on connecting, and on waiting for an answer.
const CLIENT_TIMEOUT: Duration = Duration::from_secs(2);

/// TCP and UDP servers on one port of every address of a namespace, answering `<name>\n`;
/// stopped (threads joined) on drop.
#[derive(Debug)]
pub struct Echo {
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
}

impl Echo {
    /// Starts both servers on `port` in `ns`, answering `name`.
    pub fn start(ns: &Netns, port: u16, name: &str) -> Result<Self> {
        let (tcp, udp) = ns.enter(move || -> std::io::Result<_> {
            let tcp = TcpListener::bind(("0.0.0.0", port))?;
            let udp = UdpSocket::bind(("0.0.0.0", port))?;
            Ok((tcp, udp))
        })??;
        tcp.set_nonblocking(true)?;
        udp.set_read_timeout(Some(Duration::from_millis(50)))?;
        let stop = Arc::new(AtomicBool::new(false));
        let mut threads = Vec::new();
        let (s, n) = (stop.clone(), name.to_owned());
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
        let (s, n) = (stop.clone(), name.to_owned());
        threads.push(std::thread::spawn(move || {
            let mut buf = [0u8; 1500];
            while !s.load(Ordering::Relaxed) {
                if let Ok((_, from)) = udp.recv_from(&mut buf) {
                    let _ = udp.send_to(format!("{n}\n").as_bytes(), from);
                }
            }
        }));
        Ok(Self { stop, threads })
    }
}

/// Answers each line of one connection until it closes or the server stops.
fn serve_tcp(conn: TcpStream, name: &str, stop: &AtomicBool) {
    if conn
        .set_read_timeout(Some(Duration::from_millis(100)))
        .is_err()
    {
        return;
    }
    let Ok(mut writer) = conn.try_clone() else {
        return;
    };
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

/// A new TCP connection from inside `ns` (the socket stays in the namespace).
pub fn connect(ns: &Netns, to: SocketAddr) -> std::io::Result<TcpStream> {
    ns.enter(move || TcpStream::connect_timeout(&to, CLIENT_TIMEOUT))
        .map_err(std::io::Error::other)?
}

/// Asks once over an open connection and reads one answer: the name that answered.
pub fn ask(conn: &mut TcpStream) -> std::io::Result<String> {
    conn.set_read_timeout(Some(CLIENT_TIMEOUT))?;
    conn.write_all(b"hi\n")?;
    let mut buf = [0u8; 64];
    let n = conn.read(&mut buf)?;
    if n == 0 {
        return Err(std::io::Error::new(
            std::io::ErrorKind::UnexpectedEof,
            "closed",
        ));
    }
    Ok(String::from_utf8_lossy(&buf[..n]).trim().to_owned())
}

/// One UDP request from a fresh socket inside `ns`: the name that answered.
pub fn udp_ask(ns: &Netns, to: SocketAddr) -> Result<String> {
    let sock = ns.enter(|| UdpSocket::bind("0.0.0.0:0"))??;
    sock.set_read_timeout(Some(CLIENT_TIMEOUT))?;
    sock.send_to(b"hi\n", to)?;
    let mut buf = [0u8; 64];
    let (n, _) = sock.recv_from(&mut buf).context("no UDP answer")?;
    Ok(String::from_utf8_lossy(&buf[..n]).trim().to_owned())
}
