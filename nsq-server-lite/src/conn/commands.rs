//! Running one command: nsqd's checks in nsqd's order (TLS policy, state, then the
//! command's own), then the command against the broker.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Buf, BytesMut};
use nsq_proto::{
    Command, Compression, ErrorCode, RejectedCommand, Response, ServerCodec, ServerError, Topic,
    Verb,
};
use tokio_util::codec::Decoder;

use super::writer::{Outbound, WriterConfig};
use super::{CommandLoop, Flow};
use crate::broker::TlsRequired;
use crate::channel::{Channel, Consumer};
use crate::client::State;

impl CommandLoop {
    /// nsqd's `E_INVALID`, the error of most refused commands.
    pub(super) fn invalid(text: impl Into<String>) -> ServerError {
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
    pub(super) async fn rejected(&mut self, rejected: RejectedCommand) -> Flow {
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
                && !self.auth.has_authorizations()
            {
                return self.fail(ServerError::new(
                    ErrorCode::AuthFirst,
                    "AUTH required before MPUB",
                ));
            }
        }
        self.fail(rejected.error)
    }

    /// Runs one decoded command.
    pub(super) async fn exec(&mut self, cmd: Command) -> Flow {
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

    /// IDENTIFY: nsqd's negotiation, the client's details, the writer's new settings, then
    /// the upgrades the reply announced.
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
            meta.topology_region = identify.topology_region.clone();
            meta.topology_zone = identify.topology_zone.clone();
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
        self.upgrade(writer, negotiated.tls, negotiated.compression)
            .await
    }
}
