//! A tiny HTTP/1.0 client for the brokers' HTTP APIs (`/stats`, `/channel/create`,
//! nsqlookupd's `/lookup`): one request per connection, the whole body read to EOF.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// How long one request may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// Sends `method path` (path includes the query) and returns the status and body.
///
/// # Errors
///
/// When the server cannot be reached, times out or answers something that is not HTTP.
pub async fn request(addr: SocketAddr, method: &str, path: &str) -> Result<(u16, String), String> {
    request_with_body(addr, method, path, b"").await
}

/// Like [`request`], sending `body` as the request body.
///
/// # Errors
///
/// As [`request`].
pub async fn request_with_body(
    addr: SocketAddr,
    method: &str,
    path: &str,
    body: &[u8],
) -> Result<(u16, String), String> {
    let what = format!("{method} http://{addr}{path}");
    let exchange = async {
        let mut stream = TcpStream::connect(addr).await?;
        let head = format!(
            "{method} {path} HTTP/1.0\r\nHost: {addr}\r\nAccept: application/vnd.nsq; version=1.0\r\nContent-Length: {}\r\n\r\n",
            body.len()
        );
        stream.write_all(&[head.as_bytes(), body].concat()).await?;
        let mut raw = Vec::new();
        stream.read_to_end(&mut raw).await?;
        Ok::<_, std::io::Error>(raw)
    };
    let raw = tokio::time::timeout(REQUEST_TIMEOUT, exchange)
        .await
        .map_err(|_| format!("{what}: no answer within {REQUEST_TIMEOUT:?}"))?
        .map_err(|e| format!("{what}: {e}"))?;
    let text = String::from_utf8_lossy(&raw);
    let (head, body) = text
        .split_once("\r\n\r\n")
        .ok_or_else(|| format!("{what}: malformed response {text:?}"))?;
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("{what}: malformed status line in {head:?}"))?;
    Ok((status, body.to_owned()))
}

/// Like [`request`], but wants a 200 with a JSON body.
///
/// # Errors
///
/// As [`request`], and for any other status or a body that is not JSON.
pub async fn json(addr: SocketAddr, method: &str, path: &str) -> Result<serde_json::Value, String> {
    let (status, body) = request(addr, method, path).await?;
    if status != 200 {
        return Err(format!(
            "{method} http://{addr}{path}: status {status}: {body}"
        ));
    }
    serde_json::from_str(&body).map_err(|e| format!("{method} http://{addr}{path}: {e}: {body}"))
}
