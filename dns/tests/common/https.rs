//! HTTPS exchanges with the webhook: one request per fresh TLS connection, verified by the
//! client's own roots for a given server name.

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::{Context, Result, bail};
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_rustls::TlsConnector;
use tokio_rustls::rustls::ClientConfig;
use tokio_rustls::rustls::pki_types::{CertificateDer, ServerName};

/// One HTTP/1.1 exchange over a fresh TLS connection: status, body, and the certificate the
/// server presented.
pub struct Exchange {
    pub status: u16,
    pub body: Vec<u8>,
    pub certificate: CertificateDer<'static>,
}

pub async fn exchange(
    addr: SocketAddr,
    server_name: &str,
    tls: &Arc<ClientConfig>,
    method: &str,
    path: &str,
    body: &[u8],
) -> Result<Exchange> {
    let tcp = tokio::net::TcpStream::connect(addr).await?;
    let name = ServerName::try_from(server_name.to_owned())?;
    let mut stream = TlsConnector::from(tls.clone()).connect(name, tcp).await?;
    let certificate = stream
        .get_ref()
        .1
        .peer_certificates()
        .and_then(|chain| chain.first())
        .context("server sent no certificate")?
        .clone()
        .into_owned();
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {server_name}\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).await?;
    stream.write_all(body).await?;
    stream.flush().await?;

    let mut response = Vec::new();
    let mut chunk = [0u8; 16 * 1024];
    loop {
        if let Some((status, body)) = complete_response(&response)? {
            return Ok(Exchange {
                status,
                body,
                certificate,
            });
        }
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            bail!(
                "connection closed mid-response: {:?}",
                String::from_utf8_lossy(&response)
            );
        }
        response.extend_from_slice(&chunk[..n]);
    }
}

/// Status and body once the whole response (Content-Length framed) has arrived.
fn complete_response(bytes: &[u8]) -> Result<Option<(u16, Vec<u8>)>> {
    let Some(end) = bytes.windows(4).position(|w| w == b"\r\n\r\n") else {
        return Ok(None);
    };
    let head = std::str::from_utf8(&bytes[..end])?;
    let status: u16 = head.split(' ').nth(1).context("no status code")?.parse()?;
    let length: usize = head
        .lines()
        .find_map(|line| {
            let (name, value) = line.split_once(':')?;
            name.eq_ignore_ascii_case("content-length")
                .then(|| value.trim().parse().ok())?
        })
        .context("response without content-length")?;
    let body = &bytes[end + 4..];
    Ok((body.len() >= length).then(|| (status, body[..length].to_vec())))
}

/// The dnsConfig the answer's patch writes, applied to the review's pod.
pub fn patched_dns_config(review: &[u8], answer: &[u8]) -> Result<Value> {
    let answer: Value = serde_json::from_slice(answer)?;
    assert_eq!(answer["response"]["allowed"], true, "{answer}");
    let bytes: Vec<u8> = serde_json::from_value(answer["response"]["patch"].clone())
        .context("answer has a patch")?;
    let patch: json_patch::Patch = serde_json::from_slice(&bytes)?;
    let mut pod = serde_json::from_slice::<Value>(review)?["request"]["object"].clone();
    json_patch::patch(&mut pod, &patch)?;
    assert_eq!(pod["spec"]["dnsPolicy"], "None");
    Ok(pod["spec"]["dnsConfig"].clone())
}
