//! A GET of a small JSON document over plain HTTP/1.1 (the tunnel's `/paths`, on this host
//! or the node's): one connection per request, bounded in time and size.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::PathHealthError;
use crate::config::path_health::split_http_url;

/// Largest body read (a report of hundreds of clusters is a few tens of kilobytes).
const MAX_BODY: usize = 1 << 20;

/// The body of `url`, or why not.
pub async fn get(url: &str, timeout: Duration) -> Result<Vec<u8>, PathHealthError> {
    let (authority, path) = split_http_url(url).map_err(PathHealthError::Url)?;
    let io = |source| PathHealthError::Fetch {
        url: url.to_string(),
        source,
    };
    let exchange = async {
        let mut conn = TcpStream::connect(authority).await?;
        let request = format!(
            "GET {path} HTTP/1.1\r\nHost: {authority}\r\nConnection: close\r\nAccept: application/json\r\n\r\n"
        );
        conn.write_all(request.as_bytes()).await?;
        let mut buf = Vec::new();
        (&mut conn)
            .take(MAX_BODY as u64 + 16 * 1024)
            .read_to_end(&mut buf)
            .await?;
        Ok::<_, std::io::Error>(buf)
    };
    let raw = tokio::time::timeout(timeout, exchange)
        .await
        .map_err(|_| {
            io(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                "timed out",
            ))
        })?
        .map_err(io)?;
    let invalid = |what: &str| {
        io(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            what.to_string(),
        ))
    };
    let head_end = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| invalid("no end of the response head"))?;
    let head =
        std::str::from_utf8(&raw[..head_end]).map_err(|_| invalid("response head is not UTF-8"))?;
    let status: u16 = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| invalid("no status line"))?;
    if status != 200 {
        return Err(PathHealthError::Status {
            url: url.to_string(),
            status,
        });
    }
    if head.lines().any(|l| {
        l.to_ascii_lowercase().starts_with("transfer-encoding:")
            && l.to_ascii_lowercase().contains("chunked")
    }) {
        return Err(invalid("chunked responses are not read"));
    }
    let body = raw[head_end + 4..].to_vec();
    if body.len() > MAX_BODY {
        return Err(invalid("body larger than 1 MiB"));
    }
    Ok(body)
}
