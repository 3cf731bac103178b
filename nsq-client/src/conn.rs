//! Opening a connection to nsqd: magic, IDENTIFY, the upgrades in go-nsq's order (TLS, then
//! snappy or deflate, each confirmed by `OK`), then AUTH when nsqd requires it.

use futures::{SinkExt, StreamExt};
#[cfg(feature = "deflate")]
use nsq_proto::stream::DeflateStream;
use nsq_proto::stream::Rewind;
#[cfg(feature = "snappy")]
use nsq_proto::stream::SnappyStream;
use nsq_proto::{
    AuthResponse, ClientCodec, Command, Compression, Frame, IdentifyResponse, Response, MAGIC_V2,
};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_util::codec::{Framed, FramedParts};

use crate::config::ConnectionConfig;
use crate::error::ConnectError;

/// Any stream a connection runs on, before or after its upgrades.
pub(crate) trait Io: AsyncRead + AsyncWrite + Send + Unpin {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin> Io for T {}
pub(crate) type Transport = Box<dyn Io>;

/// An open, identified connection.
pub(crate) struct Connected {
    pub(crate) framed: Framed<Transport, ClientCodec>,
    /// nsqd's answer to IDENTIFY.
    pub(crate) identify: IdentifyResponse,
    /// nsqd's answer to AUTH, when it asked for it.
    #[allow(dead_code)] // kept for the consumer's stats
    pub(crate) auth: Option<AuthResponse>,
}

impl std::fmt::Debug for Connected {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connected")
            .field("identify", &self.identify)
            .finish_non_exhaustive()
    }
}

/// Connects to `addr` and runs the handshake, all within the dial timeout.
pub(crate) async fn connect(
    addr: &str,
    config: &ConnectionConfig,
) -> Result<Connected, ConnectError> {
    match tokio::time::timeout(config.dial_timeout, handshake(addr, config)).await {
        Ok(result) => result,
        Err(_) => Err(ConnectError::Timeout {
            addr: addr.to_owned(),
            after: config.dial_timeout,
        }),
    }
}

async fn handshake(addr: &str, config: &ConnectionConfig) -> Result<Connected, ConnectError> {
    let io_error = |source| ConnectError::Io {
        addr: addr.to_owned(),
        source,
    };
    let mut io = dial(addr, config).await.map_err(io_error)?;
    io.write_all(&MAGIC_V2).await.map_err(io_error)?;
    let codec = ClientCodec::new().with_max_frame_size(config.max_frame_size);
    let mut framed = Framed::new(io, codec.clone());
    framed
        .send(Command::Identify(Box::new(config.identify())))
        .await
        .map_err(|e| ConnectError::protocol(addr, e))?;
    let data = response(&mut framed, addr).await?;
    let identify = IdentifyResponse::parse(&data)
        .map_err(|e| ConnectError::protocol(addr, e.into()))?
        .ok_or_else(|| ConnectError::FeatureRefused {
            addr: addr.to_owned(),
            feature: "feature negotiation",
        })?;
    tracing::debug!(addr, ?identify, "identified");

    #[cfg(feature = "tls")]
    if let Some(tls) = &config.tls {
        if !identify.tls_v1 {
            return Err(refused(addr, "TLS"));
        }
        framed = upgrade_tls(framed, tls, addr).await?;
    }
    match config.compression {
        Compression::None => {}
        #[cfg(feature = "snappy")]
        Compression::Snappy => {
            if !identify.snappy {
                return Err(refused(addr, "snappy"));
            }
            framed = Framed::new(
                Box::new(SnappyStream::new(rewound(framed))) as Transport,
                codec.clone(),
            );
            expect_ok(&mut framed, addr).await?;
        }
        #[cfg(feature = "deflate")]
        Compression::Deflate { level } => {
            if !identify.deflate {
                return Err(refused(addr, "deflate"));
            }
            let level = u32::try_from(identify.deflate_level).unwrap_or(level);
            let stream = DeflateStream::with_level(rewound(framed), level).map_err(io_error)?;
            framed = Framed::new(Box::new(stream) as Transport, codec.clone());
            expect_ok(&mut framed, addr).await?;
        }
        // Refused by `ConnectionConfig::validate` before any connection is made.
        #[cfg(not(all(feature = "snappy", feature = "deflate")))]
        _ => return Err(refused(addr, "compression (its cargo feature is off)")),
    }

    let mut auth = None;
    if identify.auth_required {
        let secret = config
            .auth_secret
            .clone()
            .ok_or_else(|| ConnectError::AuthRequired {
                addr: addr.to_owned(),
            })?;
        if !config.uses_tls() && unix_path(addr).is_none() && !config.plaintext_auth {
            return Err(ConnectError::AuthWithoutTls {
                addr: addr.to_owned(),
            });
        }
        framed
            .send(Command::Auth(secret.into()))
            .await
            .map_err(|e| ConnectError::protocol(addr, e))?;
        let data = response(&mut framed, addr).await?;
        let reply: AuthResponse =
            serde_json::from_slice(&data).map_err(|e| ConnectError::protocol(addr, e.into()))?;
        tracing::debug!(addr, identity = %reply.identity, "authenticated");
        auth = Some(reply);
    } else if config.auth_secret.is_some() {
        tracing::debug!(addr, "nsqd does not require AUTH; the secret is not sent");
    }
    Ok(Connected {
        framed,
        identify,
        auth,
    })
}

/// The TLS upgrade after IDENTIFY: the handshake over what `framed` runs on, then nsqd's `OK`
/// over TLS.
#[cfg(feature = "tls")]
async fn upgrade_tls(
    framed: Framed<Transport, ClientCodec>,
    tls: &crate::tls::TlsConfig,
    addr: &str,
) -> Result<Framed<Transport, ClientCodec>, ConnectError> {
    let codec = framed.codec().clone();
    let host = match &tls.server_name {
        Some(name) => name.clone(),
        None => host_of(addr).to_owned(),
    };
    let name = rustls::pki_types::ServerName::try_from(host.clone())
        .map_err(|_| ConnectError::ServerName { name: host })?;
    let io = rewound(framed);
    let stream = nsq_proto::stream::tls_connect(tls.config.clone(), name, io)
        .await
        .map_err(|source| ConnectError::Tls {
            addr: addr.to_owned(),
            source,
        })?;
    let mut framed = Framed::new(Box::new(stream) as Transport, codec);
    // With TLS 1.3 the server checks the client's certificate after the client thinks the
    // handshake done: its refusal (an alert) arrives with the first read. It is a TLS
    // failure, not a broken connection.
    expect_ok(&mut framed, addr).await.map_err(|e| match e {
        ConnectError::Io { addr, source }
            if source
                .get_ref()
                .is_some_and(|inner| inner.is::<rustls::Error>()) =>
        {
            ConnectError::Tls { addr, source }
        }
        other => other,
    })?;
    Ok(framed)
}

/// Whether `addr` names a unix socket (`unix:/path`, or a path) rather than `host:port`.
pub(crate) fn unix_path(addr: &str) -> Option<&str> {
    if let Some(path) = addr.strip_prefix("unix:") {
        Some(path)
    } else if addr.starts_with('/') || addr.starts_with("./") {
        Some(addr)
    } else {
        None
    }
}

/// Opens the stream to `addr`: a unix socket for a path, else TCP (from the configured local
/// address, when one is set), with Nagle off.
async fn dial(addr: &str, config: &ConnectionConfig) -> std::io::Result<Transport> {
    if let Some(path) = unix_path(addr) {
        #[cfg(unix)]
        return Ok(Box::new(tokio::net::UnixStream::connect(path).await?));
        #[cfg(not(unix))]
        return Err(std::io::Error::new(
            std::io::ErrorKind::Unsupported,
            format!("unix socket {path} on a platform without unix sockets"),
        ));
    }
    let tcp = match config.local_addr {
        None => TcpStream::connect(addr).await?,
        Some(local) => {
            let mut last = None;
            let mut connected = None;
            for remote in tokio::net::lookup_host(addr).await? {
                if remote.is_ipv4() != local.is_ipv4() {
                    continue;
                }
                let socket = if remote.is_ipv4() {
                    tokio::net::TcpSocket::new_v4()?
                } else {
                    tokio::net::TcpSocket::new_v6()?
                };
                socket.bind(local)?;
                match socket.connect(remote).await {
                    Ok(tcp) => {
                        connected = Some(tcp);
                        break;
                    }
                    Err(e) => last = Some(e),
                }
            }
            connected.ok_or_else(|| {
                last.unwrap_or_else(|| {
                    std::io::Error::new(
                        std::io::ErrorKind::AddrNotAvailable,
                        format!("no address of {addr} in the family of local address {local}"),
                    )
                })
            })?
        }
    };
    let _ = tcp.set_nodelay(true);
    Ok(Box::new(tcp))
}

fn refused(addr: &str, feature: &'static str) -> ConnectError {
    ConnectError::FeatureRefused {
        addr: addr.to_owned(),
        feature,
    }
}

/// The stream under `framed`, with what it had already read put back in front.
pub(crate) fn rewound(framed: Framed<Transport, ClientCodec>) -> Transport {
    let FramedParts { io, read_buf, .. } = framed.into_parts();
    if read_buf.is_empty() {
        io
    } else {
        Box::new(Rewind::with_prefix(io, read_buf.freeze()))
    }
}

/// The host part of `host:port` (brackets removed from an IPv6 literal).
#[cfg(feature = "tls")]
fn host_of(addr: &str) -> &str {
    let host = addr.rsplit_once(':').map_or(addr, |(host, _)| host);
    host.trim_start_matches('[').trim_end_matches(']')
}

/// The data of the next response frame, answering heartbeats on the way.
async fn response(
    framed: &mut Framed<Transport, ClientCodec>,
    addr: &str,
) -> Result<bytes::Bytes, ConnectError> {
    loop {
        let frame = framed
            .next()
            .await
            .ok_or_else(|| ConnectError::Io {
                addr: addr.to_owned(),
                source: std::io::ErrorKind::UnexpectedEof.into(),
            })?
            .map_err(|e| ConnectError::protocol(addr, e))?;
        match frame {
            Frame::Response(Response::Heartbeat) => framed
                .send(Command::Nop)
                .await
                .map_err(|e| ConnectError::protocol(addr, e))?,
            Frame::Response(Response::Data(data)) => return Ok(data),
            Frame::Response(other) => return Ok(bytes::Bytes::copy_from_slice(other.as_bytes())),
            Frame::Error(error) => {
                return Err(ConnectError::Refused {
                    addr: addr.to_owned(),
                    error,
                })
            }
            Frame::Message(_) => {
                return Err(ConnectError::Io {
                    addr: addr.to_owned(),
                    source: std::io::Error::new(
                        std::io::ErrorKind::InvalidData,
                        "message frame before SUB",
                    ),
                })
            }
        }
    }
}

/// Reads the next response, which must be `OK` (after an upgrade, or SUB); heartbeats on
/// the way are answered, an error frame is [`ConnectError::Refused`].
pub(crate) async fn expect_ok(
    framed: &mut Framed<Transport, ClientCodec>,
    addr: &str,
) -> Result<(), ConnectError> {
    let data = response(framed, addr).await?;
    if &data[..] == b"OK" {
        Ok(())
    } else {
        Err(ConnectError::Io {
            addr: addr.to_owned(),
            source: std::io::Error::other(format!(
                "expected OK, got {:?}",
                String::from_utf8_lossy(&data)
            )),
        })
    }
}

/// The wait before reconnection attempt number `failures` (1-based): `min` doubled per
/// failure up to `max`, plus up to 25 % jitter so that many clients do not reconnect in step.
pub(crate) fn reconnect_delay(
    failures: u32,
    min: std::time::Duration,
    max: std::time::Duration,
) -> std::time::Duration {
    let exp = min.saturating_mul(1u32 << failures.clamp(1, 16).saturating_sub(1));
    let wait = exp.min(max);
    wait + wait.mul_f64(fastrand::f64() * 0.25)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn reconnect_delay_doubles_to_the_cap_with_bounded_jitter() {
        let (min, max) = (Duration::from_millis(100), Duration::from_secs(1));
        for (failures, base) in [
            (1, 100),
            (2, 200),
            (3, 400),
            (4, 800),
            (5, 1000),
            (60, 1000),
        ] {
            let d = reconnect_delay(failures, min, max);
            let base = Duration::from_millis(base);
            assert!(d >= base && d <= base.mul_f64(1.25), "{failures}: {d:?}");
        }
    }

    #[test]
    #[cfg(feature = "tls")]
    fn host_of_strips_the_port_and_ipv6_brackets() {
        assert_eq!(host_of("nsqd.internal:4150"), "nsqd.internal");
        assert_eq!(host_of("[::1]:4150"), "::1");
    }
}
