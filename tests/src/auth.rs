//! A tiny auth service of the kind `nsqd --auth-http-address` asks (`GET /auth?...&secret=..`),
//! for tests that make a broker require AUTH.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// Starts an auth service on a free loopback port and returns its address (for
/// `--auth-http-address`). It answers `grant` (a JSON object with `ttl`, `identity`,
/// `identity_url` and `authorizations`) to `secret`, and 403 `NOT_AUTHORIZED` to anything
/// else. It runs until the runtime stops.
///
/// # Panics
///
/// When no loopback port can be bound.
pub async fn start(secret: &str, grant: serde_json::Value) -> SocketAddr {
    serve(secret, grant).await.addr
}

/// A running auth service (see [`serve`]).
#[derive(Debug, Clone)]
pub struct AuthService {
    /// Its address, for `--auth-http-address`.
    pub addr: SocketAddr,
    requests: Arc<AtomicUsize>,
    revoked: Arc<AtomicBool>,
}

impl AuthService {
    /// How many requests it has read (each one an nsqd passing on a client's secret), so a
    /// test can tell whether a secret was sent at all, or asked about again.
    pub fn requests(&self) -> usize {
        self.requests.load(Ordering::SeqCst)
    }

    /// From now on the secret is refused too (403), as when a user's access is withdrawn.
    pub fn revoke(&self) {
        self.revoked.store(true, Ordering::SeqCst);
    }
}

/// [`start`], returning the service itself: its request count, and a switch to revoke the
/// grant.
///
/// # Panics
///
/// When no loopback port can be bound.
pub async fn serve(secret: &str, grant: serde_json::Value) -> AuthService {
    let requests = Arc::new(AtomicUsize::new(0));
    let revoked = Arc::new(AtomicBool::new(false));
    let (counter, revoked2) = (requests.clone(), revoked.clone());
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("address");
    let (secret, grant) = (secret.to_owned(), grant.to_string());
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let (secret, grant, counter, revoked) = (
                secret.clone(),
                grant.clone(),
                counter.clone(),
                revoked2.clone(),
            );
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut buf = [0u8; 1024];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    match stream.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => head.extend_from_slice(&buf[..n]),
                    }
                }
                counter.fetch_add(1, Ordering::SeqCst);
                let head = String::from_utf8_lossy(&head);
                let known = !revoked.load(Ordering::SeqCst)
                    && head.lines().next().is_some_and(|l| {
                        l.contains(&format!("secret={secret}&"))
                            || l.contains(&format!("secret={secret} "))
                    });
                let (status, body) = if known {
                    ("200 OK", grant)
                } else {
                    (
                        "403 Forbidden",
                        r#"{"message":"NOT_AUTHORIZED"}"#.to_owned(),
                    )
                };
                let reply = format!(
                    "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = stream.write_all(reply.as_bytes()).await;
            });
        }
    });
    AuthService {
        addr,
        requests,
        revoked,
    }
}
