//! One client connection: protocol V2 over TCP (or a unix socket).
//!
//! Two tasks per connection, like nsqd's `IOLoop` and `messagePump`: the [`CommandLoop`] reads
//! commands and runs them in order ([`commands`], [`auth`]); the [`OutputWriter`] sends what the
//! command loop and the channel queue for it, buffering message frames by the negotiated output
//! buffer size and timeout and beating the heartbeat ([`writer`]). For the upgrades after
//! IDENTIFY (TLS, snappy, deflate) the writer hands its half of the stream back to the command
//! loop, which upgrades the whole stream and splits it again ([`upgrade`]).

mod auth;
mod commands;
mod upgrade;
mod writer;

use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use nsq_proto::{
    Command, ErrorCode, Frame, Magic, ProtocolError, Response, ServerCodec, ServerError,
};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadHalf};
use tokio::sync::mpsc;
use tokio::time::timeout;
use tokio_util::codec::Decoder;
use tokio_util::sync::CancellationToken;

use crate::broker::{unix_now, Broker};
use crate::channel::Channel;
use crate::client::{ClientInfo, Peer, State};

use self::auth::AuthSession;
pub(crate) use self::writer::Outbound;
use self::writer::{OutputWriter, WriterConfig};

/// Any stream a connection can run on, before or after its upgrades.
pub(crate) trait AsyncStream: AsyncRead + AsyncWrite + Send + Unpin {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin> AsyncStream for T {}
pub(crate) type BoxedIo = Box<dyn AsyncStream>;

/// Reads the magic, then serves the connection until it ends.
pub(crate) async fn serve<S>(broker: Arc<Broker>, mut stream: S, remote: Peer)
where
    S: AsyncStream + 'static,
{
    // nsqd 1.3.0 reads the magic with no deadline (`io.ReadFull` on the bare connection, in
    // nsqd/tcp.go): a client that says nothing is kept until it goes, or the broker stops.
    // The read deadline starts with the command loop.
    let mut magic = [0u8; 4];
    let read = tokio::select! {
        read = stream.read_exact(&mut magic) => read,
        () = broker.shutdown.cancelled() => return,
    };
    if read.is_err() {
        return;
    }
    if Magic::parse(magic).ok() != Some(Magic::V2) {
        tracing::info!(%remote, ?magic, "bad protocol magic");
        let mut buf = BytesMut::new();
        let frame = Frame::Error(ServerError::new(ErrorCode::BadProtocol, ""));
        if frame.encode(&mut buf).is_ok() {
            let _ = stream.write_all(&buf).await;
        }
        return;
    }
    let id = broker.next_client_id();
    let info = Arc::new(ClientInfo::new(id, remote, unix_now().as_secs() as i64));
    broker.add_client(info.clone());
    tracing::debug!(%remote, client = id, "client connected");
    CommandLoop::run(broker.clone(), info, Box::new(stream)).await;
    broker.remove_client(id);
    tracing::debug!(%remote, client = id, "client gone");
}

/// The reading side of a connection (nsqd's `IOLoop`): decodes commands and runs them in
/// order, queueing their replies for the [`OutputWriter`].
struct CommandLoop {
    broker: Arc<Broker>,
    info: Arc<ClientInfo>,
    tx: mpsc::UnboundedSender<Outbound>,
    rd: Option<ReadHalf<BoxedIo>>,
    buf: BytesMut,
    codec: ServerCodec,
    /// A command decoded ahead while gathering FINs, to run next.
    pending: Option<Result<Command, ProtocolError>>,
    state: State,
    heartbeat: Option<Duration>,
    msg_timeout: Duration,
    sample_rate: u8,
    tls: bool,
    channel: Option<Arc<Channel>>,
    auth: AuthSession,
}

/// How a command ended, beyond its reply.
enum Flow {
    Continue,
    Close,
}

impl CommandLoop {
    async fn run(broker: Arc<Broker>, info: Arc<ClientInfo>, io: BoxedIo) {
        let server = &broker.opts.server;
        let heartbeat = broker.opts.client_timeout / 2;
        let writer = WriterConfig {
            heartbeat_interval: Some(heartbeat),
            output_buffer_size: server.output_buffer_size as usize,
            output_buffer_timeout: Some(server.output_buffer_timeout),
        };
        let (rd, wr) = tokio::io::split(io);
        let (tx, rx) = mpsc::unbounded_channel();
        let writer_done = CancellationToken::new();
        let writer_task = tokio::spawn(OutputWriter::new(wr, rx, writer).run(writer_done.clone()));
        let mut conn = CommandLoop {
            codec: ServerCodec::with_limits(broker.opts.limits),
            msg_timeout: server.msg_timeout,
            broker,
            info,
            tx,
            rd: Some(rd),
            buf: BytesMut::with_capacity(16 * 1024),
            pending: None,
            state: State::Init,
            heartbeat: Some(heartbeat),
            sample_rate: 0,
            tls: false,
            channel: None,
            auth: AuthSession::default(),
        };
        let shutdown = conn.broker.shutdown.clone();
        tokio::select! {
            _ = conn.read_loop() => {}
            _ = writer_done.cancelled() => {}
            _ = shutdown.cancelled() => {}
        }
        if let Some(channel) = conn.channel.take() {
            conn.broker.unsubscribe(&channel, conn.info.id);
        }
        let _ = conn.tx.send(Outbound::Close);
        drop(conn);
        let _ = writer_task.await;
    }

    async fn read_loop(&mut self) {
        loop {
            let next = match self.heartbeat {
                Some(hb) => match timeout(hb * 2, self.next_command()).await {
                    Ok(next) => next,
                    Err(_) => {
                        tracing::info!(client = self.info.id, "read deadline passed, closing");
                        return;
                    }
                },
                None => self.next_command().await,
            };
            let flow = match next {
                None => return,
                Some(Ok(cmd)) => self.exec(cmd).await,
                Some(Err(ProtocolError::Rejected(rejected))) => self.rejected(*rejected).await,
                Some(Err(err)) => {
                    tracing::info!(client = self.info.id, %err, "failed to read command");
                    return;
                }
            };
            if let Flow::Close = flow {
                return;
            }
        }
    }

    /// The next command; `None` at end of stream or on a read error.
    async fn next_command(&mut self) -> Option<Result<Command, ProtocolError>> {
        if let Some(next) = self.pending.take() {
            return Some(next);
        }
        loop {
            match self.codec.decode(&mut self.buf) {
                Ok(Some(cmd)) => return Some(Ok(cmd)),
                Err(err) => return Some(Err(err)),
                Ok(None) => {}
            }
            self.buf.reserve(8 * 1024);
            let rd = self.rd.as_mut()?;
            match rd.read_buf(&mut self.buf).await {
                // The client closed its side: a command cut short is refused as nsqd refuses
                // it (`E_BAD_MESSAGE PUB failed to read message body`, ...), and a command
                // line cut short ends the connection quietly.
                Ok(0) => return self.codec.decode_eof(&mut self.buf).transpose(),
                Err(_) => return None,
                Ok(_) => {}
            }
        }
    }

    fn send(&self, out: Outbound) {
        // The writer only stops when the connection is over; then nothing is left to say.
        let _ = self.tx.send(out);
    }

    /// Sends an error; fatal ones end the connection.
    fn fail(&self, err: ServerError) -> Flow {
        let fatal = err.code.is_fatal();
        tracing::debug!(client = self.info.id, %err, "command failed");
        self.send(Outbound::Error(err));
        if fatal {
            Flow::Close
        } else {
            Flow::Continue
        }
    }

    fn reply(&self, result: Result<Option<Response>, ServerError>) -> Flow {
        match result {
            Ok(Some(response)) => {
                self.send(Outbound::Response(response));
                Flow::Continue
            }
            Ok(None) => Flow::Continue,
            Err(err) => self.fail(err),
        }
    }
}
