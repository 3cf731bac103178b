//! Stream layers for the mid-stream upgrades: TLS, snappy and deflate.
//!
//! After IDENTIFY, nsqd upgrades the connection in place (nsqd `protocol_v2.go`, `IDENTIFY`):
//!
//! 1. the IDENTIFY response goes out in plaintext;
//! 2. if `tls_v1` was negotiated, a TLS handshake runs on the raw socket (the client is the
//!    TLS client, nsqd the TLS server) and nsqd sends a framed `OK` over TLS;
//! 3. if `snappy` *or* `deflate` was negotiated (never both), the (TLS or raw) stream is wrapped
//!    in the compressor and nsqd sends a framed `OK` through it.
//!
//! Every layer here is generic over [`tokio::io::AsyncRead`] + [`tokio::io::AsyncWrite`], so the
//! client and the broker stack them the same way:
//!
//! | layer | type | feature |
//! | --- | --- | --- |
//! | bytes already read by the old layer | [`Rewind`] | always |
//! | TLS | `ClientTlsStream` / `ServerTlsStream` from `tls_connect` / `tls_accept` | `tls` |
//! | snappy framing format (golang/snappy `NewReader` / `NewBufferedWriter`) | `SnappyStream` | `snappy` |
//! | raw DEFLATE, RFC 1951 (Go `compress/flate`) | `DeflateStream` | `deflate` |
//!
//! A `tokio_util::codec::Framed` reads ahead. When it is taken apart for an upgrade with
//! [`Framed::into_parts`](tokio_util::codec::Framed::into_parts), the bytes in
//! `FramedParts::read_buf` were sent *through the new layer* (TLS records or compressed data), so
//! they must be put back in front of the stream with [`Rewind`]. Otherwise they are lost.
//!
//! # Examples
//!
//! A server sends a line, switches to snappy and sends another line in the same write. The
//! client's `Framed` has read the start of the compressed stream together with the first line;
//! `Rewind` hands those bytes to the snappy layer.
//!
//! ```
//! # #[cfg(feature = "snappy")]
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use futures::{SinkExt, StreamExt};
//! use nsq_proto::stream::{Rewind, SnappyStream};
//! use tokio::io::AsyncWriteExt;
//! use tokio_util::codec::{Framed, LinesCodec};
//!
//! let (client, mut server) = tokio::io::duplex(64 * 1024);
//!
//! // The server: "OK" in plaintext, then "compressed hello" through snappy, in one write.
//! let mut wire = b"OK\n".to_vec();
//! let mut snappy = SnappyStream::new(Vec::new());
//! snappy.write_all(b"compressed hello\n").await?;
//! snappy.flush().await?;
//! wire.extend_from_slice(snappy.get_ref());
//! server.write_all(&wire).await?;
//!
//! // The client reads "OK"; its read buffer already holds compressed bytes.
//! let mut framed = Framed::new(client, LinesCodec::new());
//! assert_eq!(framed.next().await.transpose()?.as_deref(), Some("OK"));
//! let parts = framed.into_parts();
//! assert!(!parts.read_buf.is_empty());
//!
//! // Upgrade: the compressed read-ahead goes in front of the socket.
//! let upgraded = SnappyStream::new(Rewind::with_prefix(parts.io, parts.read_buf));
//! let mut framed = Framed::new(upgraded, LinesCodec::new());
//! assert_eq!(framed.next().await.transpose()?.as_deref(), Some("compressed hello"));
//! framed.send("and back").await?;
//! # Ok(())
//! # }
//! # #[cfg(not(feature = "snappy"))]
//! # fn main() {}
//! ```

mod rewind;
pub use rewind::Rewind;

#[cfg(any(feature = "snappy", feature = "deflate"))]
mod engine;

#[cfg(feature = "snappy")]
mod snappy;
#[cfg(feature = "snappy")]
pub use snappy::SnappyStream;

#[cfg(feature = "deflate")]
mod deflate;
#[cfg(feature = "deflate")]
pub use deflate::DeflateStream;

#[cfg(feature = "tls")]
mod tls;
#[cfg(feature = "tls")]
pub use tls::{tls_accept, tls_connect, ClientTlsStream, ServerTlsStream};

#[cfg(test)]
mod test_util;

/// The whole upgrade sequence, client and broker, with read-ahead at every step.
#[cfg(all(test, feature = "tls", feature = "snappy", feature = "deflate"))]
mod tests {
    use std::sync::Arc;

    use futures::{SinkExt, StreamExt};
    use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
    use tokio_util::codec::{Framed, LinesCodec};

    use super::*;

    trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
    impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

    #[derive(Clone, Copy, Debug)]
    enum Compression {
        Snappy,
        Deflate,
    }

    impl Compression {
        fn wrap(self, io: impl Io + 'static) -> Box<dyn Io> {
            match self {
                Self::Snappy => Box::new(SnappyStream::new(io)),
                Self::Deflate => Box::new(DeflateStream::new(io)),
            }
        }
    }

    fn configs() -> (Arc<rustls::ServerConfig>, Arc<rustls::ClientConfig>) {
        test_util::tls_configs("nsqd.local")
    }

    async fn next_line<T: AsyncRead + AsyncWrite + Unpin>(f: &mut Framed<T, LinesCodec>) -> String {
        f.next().await.unwrap().unwrap()
    }

    async fn upgrade_sequence(kind: Compression) {
        let (server_config, client_config) = configs();
        let (client_io, server_io) = tokio::io::duplex(64 * 1024);

        let broker = tokio::spawn(async move {
            // Plaintext. This client does not wait for an answer, so its ClientHello arrives
            // right behind its command and the codec reads into it.
            let mut framed = Framed::new(server_io, LinesCodec::new());
            assert_eq!(next_line(&mut framed).await, "IDENTIFY");
            let parts = framed.into_parts();
            assert!(
                !parts.read_buf.is_empty(),
                "the codec read into the ClientHello"
            );
            let io = Rewind::with_prefix(parts.io, parts.read_buf);
            let mut tls = tls_accept(server_config, io).await.unwrap();

            // As nsqd: "OK" over TLS, then "OK" through the compressor, without waiting between.
            tls.write_all(b"OK\n").await.unwrap();
            let mut framed = Framed::new(kind.wrap(tls), LinesCodec::new());
            framed.send("OK").await.unwrap();
            assert_eq!(next_line(&mut framed).await, "hello compressed");
            for i in 0..100 {
                assert_eq!(next_line(&mut framed).await, format!("message {i}"));
            }
            framed.send("bye").await.unwrap();
        });

        let mut client_io = client_io;
        client_io.write_all(b"IDENTIFY\n").await.unwrap();
        let name = rustls::pki_types::ServerName::try_from("nsqd.local").unwrap();
        let tls = tls_connect(client_config, name, Rewind::new(client_io))
            .await
            .unwrap();
        let mut framed = Framed::new(tls, LinesCodec::new());
        assert_eq!(next_line(&mut framed).await, "OK");
        // The compressed "OK" came in the same TLS read.
        let parts = framed.into_parts();
        assert!(
            !parts.read_buf.is_empty(),
            "the codec read compressed bytes"
        );
        let io = kind.wrap(Rewind::with_prefix(parts.io, parts.read_buf));
        let mut framed = Framed::new(io, LinesCodec::new());
        assert_eq!(next_line(&mut framed).await, "OK");
        framed.send("hello compressed").await.unwrap();
        for i in 0..100 {
            framed.feed(format!("message {i}")).await.unwrap();
        }
        SinkExt::<String>::flush(&mut framed).await.unwrap();
        assert_eq!(next_line(&mut framed).await, "bye");
        broker.await.unwrap();
    }

    #[tokio::test]
    async fn upgrade_sequence_snappy() {
        upgrade_sequence(Compression::Snappy).await;
    }

    #[tokio::test]
    async fn upgrade_sequence_deflate() {
        upgrade_sequence(Compression::Deflate).await;
    }
}
