//! Probes of the binaries' telemetry endpoints (`/readyz`, `/metrics`, `/status`, ...): one
//! bounded HTTP/1.0 GET, from the host or, through [`Netns::http_get`](crate::netns::Netns::http_get),
//! from inside a namespace; the readiness document's per-cluster state; and free loopback ports
//! to tell the binaries to listen on.

use std::io::{Read as _, Write as _};
use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::time::Duration;

/// Bound on connecting.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// Bound on each read of the answer.
const READ_TIMEOUT: Duration = Duration::from_secs(5);

/// `GET path` on `addr`: the status code and the body; `(0, "")` when nothing answers.
pub fn get(addr: SocketAddr, path: &str) -> (u16, String) {
    let Ok(mut conn) = TcpStream::connect_timeout(&addr, CONNECT_TIMEOUT) else {
        return (0, String::new());
    };
    let _ = conn.set_read_timeout(Some(READ_TIMEOUT));
    let _ = write!(conn, "GET {path} HTTP/1.0\r\nHost: test\r\n\r\n");
    let mut text = String::new();
    let _ = conn.read_to_string(&mut text);
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    (status, body)
}

/// `http://IP:PORT/path` as the address and the path (`/` when none).
pub fn parse_url(url: &str) -> Option<(SocketAddr, String)> {
    let rest = url.strip_prefix("http://")?;
    let (host, path) = rest.split_once('/').unwrap_or((rest, ""));
    Some((host.parse().ok()?, format!("/{path}")))
}

/// The `state` of `cluster` in a `/readyz` body (`synced`, `stale-from-disk`, `waiting`,
/// `failed`); empty when the body does not list it.
pub fn readyz_state(body: &str, cluster: &str) -> String {
    let v: serde_json::Value = serde_json::from_str(body).unwrap_or_default();
    v["clusters"]
        .as_array()
        .and_then(|cs| cs.iter().find(|c| c["cluster"] == cluster))
        .and_then(|c| c["state"].as_str())
        .unwrap_or_default()
        .to_owned()
}

/// A port of 127.0.0.1 free for both UDP and TCP right now, for a binary told where to
/// listen. It is released before use: another test could only take it by binding the same
/// ephemeral port in between.
pub fn free_port() -> u16 {
    loop {
        let udp = UdpSocket::bind("127.0.0.1:0").expect("bind a UDP port of 127.0.0.1");
        let port = udp.local_addr().expect("local address").port();
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}
