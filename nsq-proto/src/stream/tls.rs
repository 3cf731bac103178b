//! The TLS upgrade (IDENTIFY `tls_v1`), on tokio-rustls.
//!
//! nsqd answers IDENTIFY in plaintext, then runs a server-side handshake on the raw socket and
//! sends a framed `OK` over TLS (nsqd `protocol_v2.go`). Either side may have read ahead of the handshake:
//! pass the socket wrapped in a [`Rewind`](super::Rewind) holding the codec's read buffer.

use std::io;
use std::sync::Arc;

use rustls::pki_types::ServerName;
use rustls::{ClientConfig, ServerConfig};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_rustls::{TlsAcceptor, TlsConnector};

/// The client side of an upgraded connection (a re-export of `tokio_rustls::client::TlsStream`).
pub use tokio_rustls::client::TlsStream as ClientTlsStream;
/// The server side of an upgraded connection (a re-export of `tokio_rustls::server::TlsStream`).
pub use tokio_rustls::server::TlsStream as ServerTlsStream;

/// Runs the client side of the TLS handshake over `io`, as a client does after nsqd's IDENTIFY
/// response says `"tls_v1": true`.
///
/// `server_name` is checked against the certificate; go-nsq uses the host it dialled. Put the
/// bytes the plaintext codec had buffered in front of `io` with
/// [`Rewind`](super::Rewind). The handshake has no deadline of its own (nsqd gives it 5 s);
/// wrap the call in `tokio::time::timeout`.
///
/// # Errors
///
/// Any IO error of `io`, or the handshake failing (for example
/// [`io::ErrorKind::InvalidData`] for a certificate that does not verify).
///
/// # Cancel safety
///
/// Not cancel safe: if the future is dropped, `io` is gone mid-handshake.
///
/// # Examples
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// # use std::sync::Arc;
/// # let cert = rcgen::generate_simple_self_signed(vec!["nsqd.local".to_string()])?;
/// # let key = rustls::pki_types::PrivateKeyDer::Pkcs8(cert.key_pair.serialize_der().into());
/// # let provider = Arc::new(rustls::crypto::ring::default_provider());
/// # let server_config = Arc::new(
/// #     rustls::ServerConfig::builder_with_provider(provider.clone())
/// #         .with_safe_default_protocol_versions()?
/// #         .with_no_client_auth()
/// #         .with_single_cert(vec![cert.cert.der().clone()], key)?,
/// # );
/// # let mut roots = rustls::RootCertStore::empty();
/// # roots.add(cert.cert.der().clone())?;
/// # let client_config = Arc::new(
/// #     rustls::ClientConfig::builder_with_provider(provider)
/// #         .with_safe_default_protocol_versions()?
/// #         .with_root_certificates(roots)
/// #         .with_no_client_auth(),
/// # );
/// use nsq_proto::stream::{tls_accept, tls_connect, Rewind};
/// use rustls::pki_types::ServerName;
/// use tokio::io::{AsyncReadExt, AsyncWriteExt};
///
/// let (client_io, server_io) = tokio::io::duplex(16 * 1024);
/// let server = tokio::spawn(async move {
///     let mut tls = tls_accept(server_config, Rewind::new(server_io)).await?;
///     tls.write_all(b"\x00\x00\x00\x06\x00\x00\x00\x00OK").await?;
///     tls.flush().await?;
///     std::io::Result::Ok(())
/// });
///
/// let name = ServerName::try_from("nsqd.local")?;
/// let mut tls = tls_connect(client_config, name, Rewind::new(client_io)).await?;
/// let mut ok = [0u8; 10];
/// tls.read_exact(&mut ok).await?;
/// assert_eq!(&ok[8..], b"OK");
/// server.await??;
/// # Ok(())
/// # }
/// ```
pub async fn tls_connect<S>(
    config: Arc<ClientConfig>,
    server_name: ServerName<'static>,
    io: S,
) -> io::Result<ClientTlsStream<S>>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    TlsConnector::from(config).connect(server_name, io).await
}

/// Runs the server side of the TLS handshake over `io`, as nsqd does right after sending the
/// IDENTIFY response when the client asked for `tls_v1`.
///
/// A client may send its ClientHello as soon as it has read the IDENTIFY response, so the
/// server's command codec may already hold the start of it: pass
/// `Rewind::with_prefix(io, parts.read_buf)`. The handshake has no deadline of its own (nsqd
/// gives it 5 s); wrap the call in `tokio::time::timeout`.
///
/// # Errors
///
/// Any IO error of `io`, or the handshake failing (for example
/// [`io::ErrorKind::InvalidData`] for bytes that are not TLS).
///
/// # Cancel safety
///
/// Not cancel safe: if the future is dropped, `io` is gone mid-handshake.
///
/// # Examples
///
/// The server's codec read the first bytes of the ClientHello before the upgrade; they are
/// handed back with [`Rewind`](super::Rewind).
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// # use std::sync::Arc;
/// # let cert = rcgen::generate_simple_self_signed(vec!["nsqd.local".to_string()])?;
/// # let key = rustls::pki_types::PrivateKeyDer::Pkcs8(cert.key_pair.serialize_der().into());
/// # let provider = Arc::new(rustls::crypto::ring::default_provider());
/// # let server_config = Arc::new(
/// #     rustls::ServerConfig::builder_with_provider(provider.clone())
/// #         .with_safe_default_protocol_versions()?
/// #         .with_no_client_auth()
/// #         .with_single_cert(vec![cert.cert.der().clone()], key)?,
/// # );
/// # let mut roots = rustls::RootCertStore::empty();
/// # roots.add(cert.cert.der().clone())?;
/// # let client_config = Arc::new(
/// #     rustls::ClientConfig::builder_with_provider(provider)
/// #         .with_safe_default_protocol_versions()?
/// #         .with_root_certificates(roots)
/// #         .with_no_client_auth(),
/// # );
/// use nsq_proto::stream::{tls_accept, tls_connect, Rewind};
/// use rustls::pki_types::ServerName;
/// use tokio::io::{AsyncReadExt, AsyncWriteExt};
///
/// let (client_io, mut server_io) = tokio::io::duplex(16 * 1024);
/// let client = tokio::spawn(async move {
///     let name = ServerName::try_from("nsqd.local").unwrap();
///     let mut tls = tls_connect(client_config, name, client_io).await?;
///     tls.write_all(b"NOP\n").await?;
///     tls.flush().await?;
///     std::io::Result::Ok(tls)
/// });
///
/// // Read ahead: the TLS record header of the ClientHello.
/// let mut read_ahead = [0u8; 5];
/// server_io.read_exact(&mut read_ahead).await?;
/// assert_eq!(read_ahead[0], 0x16); // handshake record
///
/// let io = Rewind::with_prefix(server_io, read_ahead.to_vec());
/// let mut tls = tls_accept(server_config, io).await?;
/// let mut nop = [0u8; 4];
/// tls.read_exact(&mut nop).await?;
/// assert_eq!(&nop, b"NOP\n");
/// drop(client.await??);
/// # Ok(())
/// # }
/// ```
pub async fn tls_accept<S>(config: Arc<ServerConfig>, io: S) -> io::Result<ServerTlsStream<S>>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    TlsAcceptor::from(config).accept(io).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stream::Rewind;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    fn configs(host: &str) -> (Arc<ServerConfig>, Arc<ClientConfig>) {
        crate::stream::test_util::tls_configs(host)
    }

    fn name(host: &str) -> ServerName<'static> {
        ServerName::try_from(host.to_string()).unwrap()
    }

    #[tokio::test]
    async fn handshake_and_data_both_ways() {
        let (server_config, client_config) = configs("localhost");
        let (c, s) = tokio::io::duplex(4096);
        let server = tokio::spawn(async move {
            let mut tls = tls_accept(server_config, Rewind::new(s)).await.unwrap();
            let mut got = vec![0u8; 100_000];
            tls.read_exact(&mut got).await.unwrap();
            tls.write_all(&got).await.unwrap();
            tls.shutdown().await.unwrap();
        });
        let mut tls = tls_connect(client_config, name("localhost"), Rewind::new(c))
            .await
            .unwrap();
        let data: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
        tls.write_all(&data).await.unwrap();
        tls.flush().await.unwrap();
        let mut echo = Vec::new();
        tls.read_to_end(&mut echo).await.unwrap();
        assert_eq!(echo, data);
        server.await.unwrap();
    }

    /// The server's plaintext codec read the command before the upgrade together with the start
    /// of the ClientHello: `Rewind` hands those bytes to the handshake.
    #[tokio::test]
    async fn server_read_ahead_is_carried_by_rewind() {
        let (server_config, client_config) = configs("nsqd.local");
        let (mut c, mut s) = tokio::io::duplex(64 * 1024);
        let client = tokio::spawn(async move {
            c.write_all(b"IDENTIFY-BODY").await.unwrap();
            let mut tls = tls_connect(client_config, name("nsqd.local"), Rewind::new(c))
                .await
                .unwrap();
            tls.write_all(b"AUTH\n").await.unwrap();
            tls.flush().await.unwrap();
            let mut ok = [0u8; 2];
            tls.read_exact(&mut ok).await.unwrap();
            assert_eq!(&ok, b"OK");
        });
        let mut read_ahead = [0u8; 20];
        s.read_exact(&mut read_ahead).await.unwrap();
        assert_eq!(&read_ahead[..13], b"IDENTIFY-BODY");
        assert_eq!(read_ahead[13], 0x16, "a TLS handshake record follows");
        let io = Rewind::with_prefix(s, read_ahead[13..].to_vec());
        let mut tls = tls_accept(server_config, io).await.unwrap();
        let mut auth = [0u8; 5];
        tls.read_exact(&mut auth).await.unwrap();
        assert_eq!(&auth, b"AUTH\n");
        tls.write_all(b"OK").await.unwrap();
        tls.flush().await.unwrap();
        client.await.unwrap();
    }

    /// Without the read-ahead the handshake cannot work: the bytes are really needed.
    #[tokio::test]
    async fn dropping_the_read_ahead_breaks_the_handshake() {
        let (server_config, client_config) = configs("nsqd.local");
        let (c, mut s) = tokio::io::duplex(64 * 1024);
        let client = tokio::spawn(async move {
            tls_connect(client_config, name("nsqd.local"), c)
                .await
                .map(drop)
        });
        let mut lost = [0u8; 7];
        s.read_exact(&mut lost).await.unwrap();
        assert!(tls_accept(server_config, s).await.is_err());
        let _ = client.await.unwrap();
    }

    #[tokio::test]
    async fn wrong_server_name_fails_cleanly() {
        let (server_config, client_config) = configs("localhost");
        let (c, s) = tokio::io::duplex(4096);
        let server = tokio::spawn(async move { tls_accept(server_config, s).await.map(drop) });
        let err = tls_connect(client_config, name("other.host"), c)
            .await
            .unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidData, "{err}");
        assert!(server.await.unwrap().is_err());
    }

    #[tokio::test]
    async fn plaintext_to_a_tls_server_fails_cleanly() {
        let (server_config, _) = configs("localhost");
        let (mut c, s) = tokio::io::duplex(4096);
        c.write_all(b"  V2IDENTIFY\n").await.unwrap();
        let err = tls_accept(server_config, s).await.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidData, "{err}");
    }
}
