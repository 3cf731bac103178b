//! One client connection: protocol V2 over TCP.
//!
//! Two tasks per connection, like nsqd's `IOLoop` and `messagePump`: the reader decodes commands
//! and runs them in order; the writer sends what the reader and the channel queue for it,
//! buffering message frames by the negotiated output buffer size and timeout and beating the
//! heartbeat. For the upgrades after IDENTIFY (TLS, snappy, deflate) the writer hands its half of
//! the stream back to the reader, which upgrades the whole stream and splits it again.

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Buf, BytesMut};
use nsq_proto::stream::{DeflateStream, Rewind, SnappyStream};
use nsq_proto::{
    AuthResponse, Command, Compression, ErrorCode, Frame, Magic, ProtocolError, RejectedCommand,
    Response, ServerCodec, ServerError, Topic, Verb,
};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadHalf, WriteHalf};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot};
use tokio::time::{timeout, Instant};
use tokio_util::codec::Decoder;
use tokio_util::sync::CancellationToken;

use crate::auth::{AuthRequest, AuthState};
use crate::broker::{unix_now, Broker, TlsRequired};
use crate::channel::{Channel, Consumer};
use crate::client::{ClientInfo, Handover, Outbound, State, WriterConfig};

/// Any stream a connection can run on, before or after its upgrades.
pub(crate) trait AsyncStream: AsyncRead + AsyncWrite + Send + Unpin {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin> AsyncStream for T {}
pub(crate) type BoxedIo = Box<dyn AsyncStream>;

/// Reads the magic, then serves the connection until it ends.
pub(crate) async fn serve(broker: Arc<Broker>, mut stream: TcpStream, remote: SocketAddr) {
    let _ = stream.set_nodelay(true);
    let mut magic = [0u8; 4];
    match timeout(broker.opts.client_timeout, stream.read_exact(&mut magic)).await {
        Ok(Ok(_)) => {}
        _ => return,
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
    Conn::run(broker.clone(), info, Box::new(stream)).await;
    broker.remove_client(id);
    tracing::debug!(%remote, client = id, "client gone");
}

/// The reader's side of a connection.
struct Conn {
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
    auth: Option<(AuthState, Instant)>,
    auth_secret: String,
}

/// How a command ended, beyond its reply.
enum Flow {
    Continue,
    Close,
}

impl Conn {
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
        let writer_task = tokio::spawn(write_loop(wr, rx, writer, writer_done.clone()));
        let mut conn = Conn {
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
            auth: None,
            auth_secret: String::new(),
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
                Ok(0) | Err(_) => return None,
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

    fn invalid(text: impl Into<String>) -> ServerError {
        ServerError::new(ErrorCode::Invalid, text)
    }

    /// nsqd's TLS policy, checked before every command but IDENTIFY.
    fn tls_policy(&self, name: &str) -> Result<(), ServerError> {
        if self.broker.opts.tls_required != TlsRequired::No && !self.tls {
            return Err(Self::invalid(format!(
                "cannot {name} in current state (TLS required)"
            )));
        }
        Ok(())
    }

    /// The state check nsqd makes before a command's parameters. `Ok(false)`: ignore the command.
    fn state_check(&self, verb: Verb) -> Result<bool, ServerError> {
        let state = self.state;
        let cannot = |name: &str| Err(Self::invalid(format!("cannot {name} in current state")));
        match verb {
            Verb::Identify | Verb::Auth | Verb::Sub if state != State::Init => {
                cannot(verb.as_str())
            }
            Verb::Sub if self.heartbeat.is_none() => {
                Err(Self::invalid("cannot SUB with heartbeats disabled"))
            }
            Verb::Rdy if state == State::Closing => Ok(false),
            Verb::Rdy | Verb::Cls if state != State::Subscribed => cannot(verb.as_str()),
            Verb::Fin | Verb::Req | Verb::Touch
                if state != State::Subscribed && state != State::Closing =>
            {
                cannot(verb.as_str())
            }
            _ => Ok(true),
        }
    }

    /// A command the codec refused for its form: nsqd's earlier checks go first.
    async fn rejected(&mut self, rejected: RejectedCommand) -> Flow {
        let name = String::from_utf8_lossy(&rejected.name).into_owned();
        if rejected.verb != Some(Verb::Identify) {
            if let Err(err) = self.tls_policy(&name) {
                return self.fail(err);
            }
        }
        if let Some(verb) = rejected.verb {
            match self.state_check(verb) {
                Err(err) => return self.fail(err),
                Ok(false) => {
                    // RDY after CLS is ignored whatever its count: drop the line and go on.
                    if let Some(nl) = memchr::memchr(b'\n', &self.buf) {
                        self.buf.advance(nl + 1);
                        self.codec = ServerCodec::with_limits(self.broker.opts.limits);
                        return Flow::Continue;
                    }
                    return Flow::Close;
                }
                Ok(true) => {}
            }
            // nsqd checks MPUB's authorization before it reads the body.
            let body_error = matches!(
                rejected.error.code,
                ErrorCode::BadBody | ErrorCode::BadMessage
            );
            if verb == Verb::Mpub
                && body_error
                && self.broker.opts.auth.is_some()
                && !self.has_authorizations()
            {
                return self.fail(ServerError::new(
                    ErrorCode::AuthFirst,
                    "AUTH required before MPUB",
                ));
            }
        }
        self.fail(rejected.error)
    }

    async fn exec(&mut self, cmd: Command) -> Flow {
        let verb = cmd.verb();
        if verb != Verb::Identify {
            if let Err(err) = self.tls_policy(verb.as_str()) {
                return self.fail(err);
            }
        }
        match self.state_check(verb) {
            Err(err) => return self.fail(err),
            Ok(false) => return Flow::Continue,
            Ok(true) => {}
        }
        match cmd {
            Command::Identify(identify) => match self.identify(&identify).await {
                Ok(()) => Flow::Continue,
                Err(err) => self.fail(err),
            },
            Command::Auth(secret) => {
                let result = self.authenticate(&secret).await;
                self.reply(result)
            }
            Command::Sub { topic, channel } => {
                let result = self.subscribe(&topic, &channel).await;
                self.reply(result)
            }
            Command::Rdy(count) => {
                if let Some(channel) = &self.channel {
                    channel.set_ready(self.info.id, count);
                }
                Flow::Continue
            }
            Command::Fin(id) => {
                // The FINs already read behind this one pass the same checks (a FIN changes no
                // state), so they are finished together under one channel lock.
                let mut ids = vec![id];
                while let Some(next) = self.codec.decode(&mut self.buf).transpose() {
                    match next {
                        Ok(Command::Fin(id)) => ids.push(id),
                        other => {
                            self.pending = Some(other);
                            break;
                        }
                    }
                }
                let channel = match self.subscribed(verb) {
                    Ok(channel) => channel,
                    Err(err) => return self.fail(err),
                };
                let failed = channel.finish_many(self.info.id, &ids);
                let done = (ids.len() - failed.len()) as u64;
                if done > 0 {
                    self.info.finish_count.fetch_add(done, Ordering::Relaxed);
                }
                for (id, e) in failed {
                    // E_FIN_FAILED is not fatal: every failure gets its own error, in order.
                    self.fail(ServerError::new(
                        ErrorCode::FinFailed,
                        format!("FIN {id} failed {}", e.as_str()),
                    ));
                }
                Flow::Continue
            }
            Command::Req { id, delay } => {
                let delay = delay.min(self.broker.opts.limits.max_req_timeout);
                let channel = match self.subscribed(verb) {
                    Ok(channel) => channel,
                    Err(err) => return self.fail(err),
                };
                match channel.requeue(self.info.id, id, delay) {
                    Ok(()) => {
                        self.info.requeue_count.fetch_add(1, Ordering::Relaxed);
                        Flow::Continue
                    }
                    Err(e) => self.fail(ServerError::new(
                        ErrorCode::ReqFailed,
                        format!("REQ {id} failed {}", e.as_str()),
                    )),
                }
            }
            Command::Touch(id) => match self.subscribed(verb).map(|c| c.touch(self.info.id, id)) {
                Err(err) => self.fail(err),
                Ok(Ok(())) => Flow::Continue,
                Ok(Err(e)) => self.fail(ServerError::new(
                    ErrorCode::TouchFailed,
                    format!("TOUCH {id} failed {}", e.as_str()),
                )),
            },
            Command::Cls => {
                let channel = match self.subscribed(verb) {
                    Ok(channel) => channel,
                    Err(err) => return self.fail(err),
                };
                self.state = State::Closing;
                self.info.meta().state = State::Closing;
                channel.set_ready(self.info.id, 0);
                self.reply(Ok(Some(Response::CloseWait)))
            }
            Command::Nop => Flow::Continue,
            Command::Pub { topic, body } => {
                let result = self
                    .publish(
                        "PUB",
                        ErrorCode::PubFailed,
                        &topic,
                        vec![body],
                        Duration::ZERO,
                    )
                    .await;
                self.reply(result)
            }
            Command::Mpub { topic, bodies } => {
                let result = self
                    .publish(
                        "MPUB",
                        ErrorCode::MpubFailed,
                        &topic,
                        bodies,
                        Duration::ZERO,
                    )
                    .await;
                self.reply(result)
            }
            Command::Dpub { topic, delay, body } => {
                let result = self
                    .publish("DPUB", ErrorCode::DpubFailed, &topic, vec![body], delay)
                    .await;
                self.reply(result)
            }
            other => {
                // `Command` may grow; a verb this broker does not run is refused like nsqd's
                // unknown commands.
                self.fail(Self::invalid(format!(
                    "invalid command {}",
                    other.verb().as_str()
                )))
            }
        }
    }

    /// The channel of a subscribed (or closing) connection. `state_check` admits FIN, REQ,
    /// TOUCH and CLS only after SUB, which sets it; without one they fail as before SUB.
    fn subscribed(&self, verb: Verb) -> Result<Arc<Channel>, ServerError> {
        self.channel
            .clone()
            .ok_or_else(|| Self::invalid(format!("cannot {} in current state", verb.as_str())))
    }

    async fn publish(
        &mut self,
        cmd: &str,
        failed: ErrorCode,
        topic: &Topic,
        bodies: Vec<bytes::Bytes>,
        delay: Duration,
    ) -> Result<Option<Response>, ServerError> {
        self.check_auth(cmd, topic.as_str(), "").await?;
        let n = bodies.len() as u64;
        self.broker
            .publish(topic, bodies, delay)
            .await
            .map_err(|e| ServerError::new(failed, format!("{cmd} failed {e}")))?;
        *self
            .info
            .meta()
            .pub_counts
            .entry(topic.to_string())
            .or_default() += n;
        Ok(Some(Response::Ok))
    }

    async fn subscribe(
        &mut self,
        topic: &Topic,
        channel: &nsq_proto::Channel,
    ) -> Result<Option<Response>, ServerError> {
        self.check_auth("SUB", topic.as_str(), channel.as_str())
            .await?;
        let sub_failed = |text: String| ServerError::new(ErrorCode::SubFailed, text);
        // An ephemeral channel or topic can be deleted between lookup and subscribe; then the
        // next lookup creates it afresh.
        for _ in 0..2 {
            let Some(ch) = self.broker.get_or_create_channel(topic, channel).await else {
                continue;
            };
            let consumer = Consumer {
                info: self.info.clone(),
                tx: self.tx.clone(),
                outbox: BytesMut::new(),
                outbox_count: 0,
                ready: 0,
                in_flight: 0,
                sample_rate: self.sample_rate,
                msg_timeout: self.msg_timeout,
            };
            match ch.add_consumer(self.info.id, consumer) {
                Ok(()) => {
                    self.channel = Some(ch);
                    self.state = State::Subscribed;
                    self.info.meta().state = State::Subscribed;
                    return Ok(Some(Response::Ok));
                }
                Err(e) if e == "exiting" => continue,
                Err(e) => return Err(sub_failed(format!("SUB failed {e}"))),
            }
        }
        Err(sub_failed("SUB failed to deleted topic/channel".to_owned()))
    }

    fn has_authorizations(&self) -> bool {
        self.auth
            .as_ref()
            .is_some_and(|(state, _)| !state.authorizations.is_empty())
    }

    /// Asks the authenticator about this connection's secret. Holds no borrow of `self`
    /// across the request, so the connection's future stays `Send`.
    fn query_auth(
        &self,
    ) -> impl std::future::Future<Output = Result<AuthState, crate::auth::AuthError>> + Send + 'static
    {
        let auth = self.broker.opts.auth.clone();
        let request = AuthRequest {
            remote_ip: self.info.remote_addr.ip(),
            tls: self.tls,
            secret: self.auth_secret.clone(),
            common_name: String::new(),
        };
        async move {
            match auth {
                Some(auth) => auth.authenticate(request).await,
                None => Err(crate::auth::AuthError::UnknownSecret),
            }
        }
    }

    async fn authenticate(&mut self, secret: &[u8]) -> Result<Option<Response>, ServerError> {
        if self.has_authorizations() {
            return Err(Self::invalid("AUTH already set"));
        }
        if self.broker.opts.auth.is_none() {
            return Err(ServerError::new(ErrorCode::AuthDisabled, "AUTH disabled"));
        }
        self.auth_secret = String::from_utf8_lossy(secret).into_owned();
        let state = self.query_auth().await.map_err(|err| {
            tracing::warn!(client = self.info.id, %err, "AUTH failed");
            ServerError::new(ErrorCode::AuthFailed, "AUTH failed")
        })?;
        let expires = Instant::now() + state.ttl;
        let response = AuthResponse::new(
            state.identity.clone(),
            state.identity_url.clone(),
            state.authorizations.len() as i64,
        );
        let empty = state.authorizations.is_empty();
        {
            let mut meta = self.info.meta();
            meta.auth_identity = Some(state.identity.clone());
            meta.auth_identity_url = state.identity_url.clone();
        }
        self.auth = Some((state, expires));
        if empty {
            return Err(ServerError::new(
                ErrorCode::Unauthorized,
                "AUTH no authorizations found",
            ));
        }
        let json = serde_json::to_vec(&response)
            .map_err(|e| ServerError::new(ErrorCode::AuthError, format!("AUTH error {e}")))?;
        Ok(Some(Response::Data(json.into())))
    }

    /// nsqd's `CheckAuth`: nothing when auth is off; otherwise AUTH first, re-asked after its TTL.
    async fn check_auth(
        &mut self,
        cmd: &str,
        topic: &str,
        channel: &str,
    ) -> Result<(), ServerError> {
        if self.broker.opts.auth.is_none() {
            return Ok(());
        }
        if !self.has_authorizations() {
            return Err(ServerError::new(
                ErrorCode::AuthFirst,
                format!("AUTH required before {cmd}"),
            ));
        }
        if self
            .auth
            .as_ref()
            .is_some_and(|(_, expires)| *expires <= Instant::now())
        {
            let state = self.query_auth().await.map_err(|err| {
                tracing::warn!(client = self.info.id, %err, "AUTH refresh failed");
                ServerError::new(ErrorCode::AuthFailed, "AUTH failed")
            })?;
            let expires = Instant::now() + state.ttl;
            self.auth = Some((state, expires));
        }
        let allowed = self
            .auth
            .as_ref()
            .is_some_and(|(state, _)| state.allows(topic, channel));
        if !allowed {
            return Err(ServerError::new(
                ErrorCode::Unauthorized,
                format!("AUTH failed for {cmd} on \"{topic}\" \"{channel}\""),
            ));
        }
        Ok(())
    }

    async fn identify(&mut self, identify: &nsq_proto::Identify) -> Result<(), ServerError> {
        let opts = &self.broker.opts;
        let mut server = opts.server.clone();
        server.tls_available = opts.tls.is_some();
        server.auth_required = opts.auth.is_some();
        let negotiated = server.negotiate(identify)?;

        self.heartbeat = negotiated.heartbeat_interval;
        self.msg_timeout = negotiated.msg_timeout;
        self.sample_rate = negotiated.sample_rate;
        {
            let mut meta = self.info.meta();
            meta.client_id = identify.client_id.clone();
            meta.hostname = identify.hostname.clone();
            meta.user_agent = identify.user_agent.clone();
            meta.sample_rate = negotiated.sample_rate;
        }
        let writer = WriterConfig {
            heartbeat_interval: negotiated.heartbeat_interval,
            output_buffer_size: negotiated.output_buffer_size as usize,
            output_buffer_timeout: negotiated.output_buffer_timeout,
        };
        let Some(response) = &negotiated.response else {
            self.send(Outbound::Reconfigure {
                writer,
                handover: None,
            });
            self.send(Outbound::Response(Response::Ok));
            return Ok(());
        };
        let json = serde_json::to_vec(response).map_err(|e| {
            ServerError::new(ErrorCode::IdentifyFailed, format!("IDENTIFY failed {e}"))
        })?;
        self.send(Outbound::Response(Response::Data(json.into())));
        if !negotiated.tls && negotiated.compression == Compression::None {
            self.send(Outbound::Reconfigure {
                writer,
                handover: None,
            });
            return Ok(());
        }

        // Take the writer's half back, upgrade the whole stream, and hand the new half over.
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
        let upgrade = self.upgrade(io, negotiated.tls, negotiated.compression);
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
    async fn upgrade(
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

/// Writes `buf` out and flushes, within the write deadline nsqd sets (the heartbeat interval).
async fn write_out(
    wr: &mut WriteHalf<BoxedIo>,
    buf: &mut BytesMut,
    deadline: Option<Duration>,
) -> std::io::Result<()> {
    let write = async {
        if !buf.is_empty() {
            wr.write_all(buf).await?;
            buf.clear();
        }
        wr.flush().await
    };
    match deadline {
        Some(d) => timeout(d, write)
            .await
            .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "write deadline"))?,
        None => write.await,
    }
}

/// The next heartbeat tick; never, without heartbeats.
async fn next_tick(timer: &mut Option<tokio::time::Interval>) {
    match timer {
        Some(timer) => {
            timer.tick().await;
        }
        None => std::future::pending().await,
    }
}

/// Sleeps until `at`; forever when there is nothing to flush.
async fn sleep_until_some(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

fn heartbeat_timer(interval: Option<Duration>) -> Option<tokio::time::Interval> {
    interval.map(|d| {
        let mut timer = tokio::time::interval_at(Instant::now() + d, d);
        timer.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        timer
    })
}

/// The writer: nsqd's `messagePump` minus the channel reads (the channel pushes instead).
async fn write_loop(
    wr: WriteHalf<BoxedIo>,
    rx: mpsc::UnboundedReceiver<Outbound>,
    cfg: WriterConfig,
    done: CancellationToken,
) {
    if let Err(err) = write_loop_inner(wr, rx, cfg).await {
        tracing::debug!(%err, "writer stopped");
    }
    done.cancel();
}

async fn write_loop_inner(
    mut wr: WriteHalf<BoxedIo>,
    mut rx: mpsc::UnboundedReceiver<Outbound>,
    mut cfg: WriterConfig,
) -> std::io::Result<()> {
    let mut buf = BytesMut::with_capacity(cfg.output_buffer_size.max(4096));
    let mut heartbeat = heartbeat_timer(cfg.heartbeat_interval);
    let mut flush_at: Option<Instant> = None;
    let encode =
        |buf: &mut BytesMut, frame: &Frame| frame.encode(buf).map_err(std::io::Error::other);
    loop {
        tokio::select! {
            item = rx.recv() => {
                let Some(mut item) = item else {
                    return write_out(&mut wr, &mut buf, cfg.heartbeat_interval).await;
                };
                let mut flush_now = false;
                let mut budget = 512;
                loop {
                    match item {
                        Outbound::Response(r) => {
                            encode(&mut buf, &Frame::Response(r))?;
                            flush_now = true;
                        }
                        Outbound::Error(e) => {
                            encode(&mut buf, &Frame::Error(e))?;
                            flush_now = true;
                        }
                        Outbound::Messages { frames, flush } => {
                            buf.extend_from_slice(&frames);
                            match cfg.output_buffer_timeout {
                                _ if flush => flush_now = true,
                                None => flush_now = true,
                                Some(t) => {
                                    flush_at.get_or_insert_with(|| Instant::now() + t);
                                }
                            }
                        }
                        Outbound::Reconfigure { writer, handover } => {
                            write_out(&mut wr, &mut buf, cfg.heartbeat_interval).await?;
                            cfg = writer;
                            heartbeat = heartbeat_timer(cfg.heartbeat_interval);
                            if let Some(Handover { give, take }) = handover {
                                if give.send(wr).is_err() {
                                    return Ok(());
                                }
                                wr = match take.await {
                                    Ok(wr) => wr,
                                    Err(_) => return Ok(()),
                                };
                            }
                        }
                        Outbound::Close => {
                            write_out(&mut wr, &mut buf, cfg.heartbeat_interval).await?;
                            return wr.shutdown().await;
                        }
                    }
                    if buf.len() >= cfg.output_buffer_size {
                        // The output buffer is full: nsqd's bufio writer flushes here.
                        write_out(&mut wr, &mut buf, cfg.heartbeat_interval).await?;
                        flush_at = None;
                    }
                    budget -= 1;
                    if budget == 0 {
                        break;
                    }
                    match rx.try_recv() {
                        Ok(next) => item = next,
                        Err(_) => break,
                    }
                }
                if flush_now {
                    write_out(&mut wr, &mut buf, cfg.heartbeat_interval).await?;
                    flush_at = None;
                }
            }
            _ = next_tick(&mut heartbeat) => {
                encode(&mut buf, &Frame::Response(Response::Heartbeat))?;
                write_out(&mut wr, &mut buf, cfg.heartbeat_interval).await?;
                flush_at = None;
            }
            _ = sleep_until_some(flush_at) => {
                write_out(&mut wr, &mut buf, cfg.heartbeat_interval).await?;
                flush_at = None;
            }
        }
    }
}
