//! The upgrades IDENTIFY can announce: TLS, then snappy or deflate, in nsqd's order.
//!
//! The stream is split between the two tasks, so the command loop first takes the writer's
//! half back (the writer flushes what it holds, then waits), upgrades the whole stream, and
//! hands the writer its new half.

use bytes::BytesMut;
use nsq_proto::stream::{DeflateStream, Rewind, SnappyStream};
use nsq_proto::{Compression, ErrorCode, Frame, Response, ServerError};
use tokio::io::AsyncWriteExt;
use tokio::sync::oneshot;
use tokio::time::timeout;

use super::writer::{Handover, Outbound, WriterConfig};
use super::{BoxedIo, CommandLoop};

impl CommandLoop {
    /// Gives the writer its new settings, then upgrades the stream as negotiated.
    pub(super) async fn upgrade(
        &mut self,
        writer: WriterConfig,
        tls: bool,
        compression: Compression,
    ) -> Result<(), ServerError> {
        let (give, got) = oneshot::channel();
        let (hand_back, take) = oneshot::channel();
        self.send(Outbound::Reconfigure {
            writer,
            handover: Some(Handover { give, take }),
        });
        let closed = || {
            ServerError::new(
                ErrorCode::IdentifyFailed,
                "IDENTIFY failed connection closed",
            )
        };
        let wr = got.await.map_err(|_| closed())?;
        let rd = self.rd.take().ok_or_else(closed)?;
        let mut io: BoxedIo = Box::new(rd.unsplit(wr));
        if !self.buf.is_empty() {
            io = Box::new(Rewind::with_prefix(io, self.buf.split().freeze()));
        }
        let limit = self.broker.opts.client_timeout;
        let upgrade = self.upgrade_layers(io, tls, compression);
        let io = match timeout(limit, upgrade).await {
            Ok(Ok(io)) => io,
            Ok(Err(e)) => {
                tracing::info!(client = self.info.id, %e, "upgrade failed");
                return Err(closed());
            }
            Err(_) => return Err(closed()),
        };
        let (rd, wr) = tokio::io::split(io);
        self.rd = Some(rd);
        hand_back.send(wr).map_err(|_| closed())?;
        Ok(())
    }

    /// nsqd's upgrade order: TLS, then compression, each confirmed with a framed `OK`.
    async fn upgrade_layers(
        &mut self,
        io: BoxedIo,
        tls: bool,
        compression: Compression,
    ) -> std::io::Result<BoxedIo> {
        let mut io = io;
        if tls {
            let config = self
                .broker
                .opts
                .tls
                .clone()
                .ok_or_else(|| std::io::Error::other("TLS is not configured"))?;
            let stream = nsq_proto::stream::tls_accept(config, io).await?;
            {
                let (_, session) = stream.get_ref();
                let mut meta = self.info.meta();
                meta.tls_version = session
                    .protocol_version()
                    .and_then(|v| v.as_str())
                    .map(|s| s.replace('_', ".").replace("TLSv1.", "TLS1."));
                meta.tls_cipher_suite = session
                    .negotiated_cipher_suite()
                    .and_then(|s| s.suite().as_str())
                    .unwrap_or_default()
                    .to_owned();
            }
            self.tls = true;
            io = Box::new(stream);
            write_ok(&mut io).await?;
        }
        match compression {
            Compression::None => {}
            Compression::Snappy => {
                io = Box::new(SnappyStream::new(io));
                self.info.meta().snappy = true;
                write_ok(&mut io).await?;
            }
            Compression::Deflate { level } => {
                io = Box::new(DeflateStream::with_level(io, level)?);
                self.info.meta().deflate = true;
                write_ok(&mut io).await?;
            }
        }
        Ok(io)
    }
}

async fn write_ok(io: &mut BoxedIo) -> std::io::Result<()> {
    let mut buf = BytesMut::new();
    Frame::Response(Response::Ok)
        .encode(&mut buf)
        .map_err(std::io::Error::other)?;
    io.write_all(&buf).await?;
    io.flush().await
}
