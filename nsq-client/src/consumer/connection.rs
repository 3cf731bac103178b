//! The actor that owns one nsqd connection of a consumer: it connects and subscribes, sends
//! the RDY the supervisor decides, hands messages on in batches, writes the answers, touches
//! messages when auto-touch is on, and closes gracefully (CLS, CLOSE_WAIT, drain).

use std::collections::{HashSet, VecDeque};
use std::future::Future;
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;

use futures::{FutureExt, SinkExt, StreamExt};
use nsq_proto::{Channel, ClientCodec, Command, Frame, MessageId, ProtocolError, Response, Topic};
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::codec::Framed;

use crate::conn::{self, Transport};
use crate::consumer::config::ConsumerConfig;
use crate::consumer::message::{Ack, AckCommand, ConnLink, Message};
use crate::consumer::rdy::{ConnId, Outcome};
use crate::error::{ConnectError, DisconnectReason};
use crate::replication::window::Window;

/// What a connection tells the supervisor.
pub(crate) enum ConnEvent {
    /// Subscribed; nsqd's `max_rdy_count` caps this connection's RDY.
    Subscribed { id: ConnId, max_rdy_count: u32 },
    /// Messages arrived (one socket read's worth).
    Received(ConnId, u32),
    /// Messages were answered with the same outcome, in a row.
    Done(ConnId, Outcome, u32),
    /// The connection task ended.
    Ended { id: ConnId, how: Ended },
}

/// How a connection task ended.
pub(crate) enum Ended {
    /// It never subscribed.
    Failed(ConnectError),
    /// It was subscribed, and then closed.
    Lost(DisconnectReason),
}

/// What the supervisor tells a connection.
pub(crate) enum ConnCommand {
    Rdy(u32),
    /// Close gracefully.
    Close,
}

/// How long a closing connection keeps reading after CLOSE_WAIT for late messages.
const CLOSE_GRACE: Duration = Duration::from_millis(100);

/// The most frames a connection handles in one turn before it hands the messages on; what
/// one socket read brings is usually far fewer.
const FRAMES_PER_TURN: usize = 1024;

type Conn = Framed<Transport, ClientCodec>;

/// The user's answers on their way to the connection. Those still queued when the
/// connection ends never reach nsqd (which redelivers the messages), but they still resolve
/// their de-duplication window entries: a held copy waiting on one is not left waiting.
struct Answers {
    rx: mpsc::UnboundedReceiver<AckCommand>,
    window: Option<Arc<Window>>,
}

impl Drop for Answers {
    fn drop(&mut self) {
        self.rx.close();
        while let Ok(cmd) = self.rx.try_recv() {
            cmd.resolve(self.window.as_deref());
        }
    }
}

/// One nsqd connection of a consumer.
pub(crate) struct NsqdConnection {
    pub(crate) id: ConnId,
    pub(crate) addr: Arc<str>,
    pub(crate) topic: Topic,
    pub(crate) channel: Channel,
    pub(crate) config: ConsumerConfig,
    pub(crate) events: mpsc::UnboundedSender<ConnEvent>,
    pub(crate) messages: mpsc::UnboundedSender<Vec<Message>>,
    pub(crate) commands: mpsc::UnboundedReceiver<ConnCommand>,
    /// The consumer's de-duplication window, when it has one.
    pub(crate) window: Option<Arc<Window>>,
}

impl NsqdConnection {
    pub(crate) async fn run(mut self) {
        let how = match self.subscribe().await {
            Err(error) => {
                tracing::warn!(%error, permanent = error.is_permanent(), "cannot subscribe");
                Ended::Failed(error)
            }
            Ok((framed, max_rdy_count)) => {
                let _ = self.events.send(ConnEvent::Subscribed {
                    id: self.id,
                    max_rdy_count,
                });
                tracing::info!("subscribed");
                let reason = match self.serve(framed).await {
                    Ok(()) => DisconnectReason::Closed,
                    Err(reason) => reason,
                };
                Ended::Lost(reason)
            }
        };
        let _ = self.events.send(ConnEvent::Ended { id: self.id, how });
    }

    /// Connects, identifies, upgrades, authenticates and subscribes, within the dial timeout
    /// for the handshake; waits for SUB's answer, so that a refusal is reported as such.
    async fn subscribe(&self) -> Result<(Conn, u32), ConnectError> {
        let connected = conn::connect(&self.addr, &self.config.connection).await?;
        let mut framed = connected.framed;
        let addr = &*self.addr;
        let protocol = |e: ProtocolError| ConnectError::protocol(addr, e);
        let sub = Command::Sub {
            topic: self.topic.clone(),
            channel: self.channel.clone(),
        };
        framed.send(sub).await.map_err(protocol)?;
        // Wait for SUB's answer, so that a refusal is reported as such.
        let answer = async {
            conn::expect_ok(&mut framed, addr)
                .await
                .map_err(|e| match e {
                    ConnectError::Refused { addr, error } => {
                        ConnectError::Subscribe { addr, error }
                    }
                    other => other,
                })
        };
        let dial_timeout = self.config.connection.dial_timeout;
        match tokio::time::timeout(dial_timeout, answer).await {
            Ok(answered) => answered?,
            Err(_) => {
                return Err(ConnectError::Timeout {
                    addr: addr.to_owned(),
                    after: dial_timeout,
                })
            }
        }
        let max_rdy_count = u32::try_from(connected.identify.max_rdy_count.max(0)).unwrap_or(2500);
        Ok((framed, max_rdy_count))
    }

    /// Runs the subscribed connection until it closes: `Ok` for a graceful close.
    async fn serve(&mut self, mut framed: Conn) -> Result<(), DisconnectReason> {
        let (acks_tx, acks_rx) = mpsc::unbounded_channel::<AckCommand>();
        let mut acks_rx = Answers {
            rx: acks_rx,
            window: self.window.clone(),
        };
        let link = Arc::new(ConnLink {
            nsqd: self.addr.clone(),
            acks: acks_tx,
            default_requeue_delay: self.config.default_requeue_delay,
            max_requeue_delay: self.config.max_requeue_delay,
            window: self.window.clone(),
        });
        let writes = Writes {
            timeout: self.config.connection.write_timeout,
        };
        let read_deadline = self.config.connection.read_deadline();
        let mut last_read = Instant::now();
        // One timer for the read deadline, moved on only when it fires early.
        let read_timer = tokio::time::sleep_until(last_read + read_deadline);
        tokio::pin!(read_timer);
        let mut touch = self.config.auto_touch.map(AutoTouch::new);
        let mut closing = false;
        // nsqd answers CLS only after the commands before it, so CLOSE_WAIT means every FIN
        // and REQ written before it was processed.
        let mut close_wait: Option<Instant> = None;
        let mut in_flight: u32 = 0;
        let mut close_deadline: Option<Instant> = None;
        let mut acks = Vec::new();
        loop {
            // A message nsqd took from the channel just as CLS arrived can follow CLOSE_WAIT
            // by a moment: wait a short grace period for it, so it is requeued, not stranded.
            let grace_over = close_wait.is_some_and(|at| Instant::now() >= at + CLOSE_GRACE);
            if closing && grace_over && in_flight == 0 {
                // Half-close and wait for nsqd to close its side: it does so only after
                // processing everything written before, so no FIN is lost in the close.
                let _ = SinkExt::<Command>::close(&mut framed).await;
                let until = close_deadline.unwrap_or_else(Instant::now);
                let drain = async { while let Some(Ok(_)) = framed.next().await {} };
                let _ = tokio::time::timeout_at(until, drain).await;
                return Ok(());
            }
            let touch_due = touch.as_ref().and_then(AutoTouch::next_due);
            tokio::select! {
                biased;
                Some(cmd) = self.commands.recv() => match cmd {
                    ConnCommand::Rdy(count) => {
                        if !closing {
                            writes.send(&mut framed, Command::Rdy(count)).await?;
                        }
                    }
                    ConnCommand::Close => {
                        if !closing {
                            closing = true;
                            close_deadline = Some(Instant::now() + self.config.shutdown_timeout);
                            writes.send(&mut framed, Command::Cls).await?;
                        }
                    }
                },
                n = acks_rx.rx.recv_many(&mut acks, FRAMES_PER_TURN) => {
                    if n == 0 {
                        // Unreachable while `link` holds a sender; kept total.
                        continue;
                    }
                    let answered = self.write_acks(&writes, &mut framed, &mut acks, touch.as_mut()).await?;
                    in_flight = in_flight.saturating_sub(answered);
                }
                () = &mut read_timer => {
                    let due = last_read + read_deadline;
                    if Instant::now() >= due {
                        return Err(DisconnectReason::ReadTimeout(read_deadline));
                    }
                    read_timer.as_mut().reset(due);
                }
                _ = sleep_until(touch_due) => {
                    if let Some(touch) = touch.as_mut() {
                        for id in touch.due(Instant::now()) {
                            framed.feed(Command::Touch(id)).await?;
                        }
                        writes.flush(&mut framed).await?;
                    }
                }
                _ = sleep_until(close_wait.map(|at| at + CLOSE_GRACE)), if in_flight == 0 => {}
                _ = sleep_until(close_deadline) => {
                    return Err(DisconnectReason::ShutdownTimeout(in_flight));
                }
                frame = framed.next() => {
                    last_read = Instant::now();
                    // Handle every frame already read, then hand their messages on at once.
                    let mut batch = Vec::new();
                    let mut read = 0;
                    let mut next = frame;
                    let mut handled = 0;
                    loop {
                        let frame = match next {
                            None => return Err(DisconnectReason::ClosedByPeer),
                            Some(Err(e)) => return Err(e.into()),
                            Some(Ok(frame)) => frame,
                        };
                        match frame {
                            Frame::Message(msg) => {
                                if let Some(touch) = touch.as_mut() {
                                    touch.delivered(msg.id, last_read);
                                }
                                read += 1;
                                let msg = Message::new(msg, link.clone());
                                match &self.window {
                                    // Copies of messages already seen are finished or held
                                    // here as they are read, off the user's task.
                                    Some(window) if !closing => {
                                        batch.extend(window.admit(msg, last_read));
                                    }
                                    _ => batch.push(msg),
                                }
                            }
                            other => {
                                if let Next::CloseWait = on_control_frame(&writes, &mut framed, other).await? {
                                    tracing::debug!(in_flight, "CLOSE_WAIT");
                                    close_wait = Some(Instant::now());
                                }
                            }
                        }
                        handled += 1;
                        if handled == FRAMES_PER_TURN {
                            break;
                        }
                        match framed.next().now_or_never() {
                            Some(more) => next = more,
                            None => break,
                        }
                    }
                    if read > 0 {
                        let count = u32::try_from(read).unwrap_or(u32::MAX);
                        in_flight = in_flight.saturating_add(count);
                        // Counted before they can be answered, so the supervisor never sees
                        // an answer for a message it does not know of.
                        let _ = self.events.send(ConnEvent::Received(self.id, count));
                        if closing {
                            // Arrived after CLS: dropping gives them straight back.
                            drop(batch);
                        } else if !batch.is_empty() {
                            if let Err(mpsc::error::SendError(batch)) = self.messages.send(batch) {
                                drop(batch);
                            }
                        }
                    }
                }
            }
        }
    }

    /// Writes the answers in `acks` (and empties it), flushes once, and tells the supervisor
    /// how each run of equal outcomes went. Returns how many messages were answered.
    async fn write_acks(
        &self,
        writes: &Writes,
        framed: &mut Conn,
        acks: &mut Vec<AckCommand>,
        mut touch: Option<&mut AutoTouch>,
    ) -> Result<u32, DisconnectReason> {
        let mut answered = 0;
        // The outcome of the current run and its length.
        let mut run: Option<(Outcome, u32)> = None;
        // The window first: the answers count for it even if writing them fails.
        if let Some(window) = &self.window {
            window.resolve(acks.iter().filter_map(AckCommand::resolution));
        }
        for AckCommand { id, ack, .. } in acks.drain(..) {
            let (cmd, outcome) = match ack {
                Ack::Finish => (Command::Fin(id), Some(Outcome::Finished)),
                Ack::FinishDuplicate => (Command::Fin(id), Some(Outcome::Duplicate)),
                Ack::Requeue { delay, backoff } => (
                    Command::Req { id, delay },
                    Some(Outcome::Requeued { backoff }),
                ),
                Ack::Touch => (Command::Touch(id), None),
            };
            framed.feed(cmd).await?;
            let Some(outcome) = outcome else { continue };
            if let Some(touch) = touch.as_deref_mut() {
                touch.answered(id);
            }
            answered += 1;
            run = match run {
                Some((current, n)) if current == outcome => Some((current, n + 1)),
                Some((current, n)) => {
                    let _ = self.events.send(ConnEvent::Done(self.id, current, n));
                    Some((outcome, 1))
                }
                None => Some((outcome, 1)),
            };
        }
        if let Some((outcome, n)) = run {
            let _ = self.events.send(ConnEvent::Done(self.id, outcome, n));
        }
        writes.flush(framed).await?;
        Ok(answered)
    }
}

/// Writes bounded by the write timeout. A write that completes at once (the usual case)
/// arms no timer.
struct Writes {
    timeout: Duration,
}

impl Writes {
    async fn send(&self, framed: &mut Conn, cmd: Command) -> Result<(), DisconnectReason> {
        self.bounded(framed.send(cmd)).await
    }

    async fn flush(&self, framed: &mut Conn) -> Result<(), DisconnectReason> {
        self.bounded(SinkExt::<Command>::flush(framed)).await
    }

    async fn bounded(
        &self,
        write: impl Future<Output = Result<(), ProtocolError>>,
    ) -> Result<(), DisconnectReason> {
        let mut write = std::pin::pin!(write);
        let done = match futures::poll!(write.as_mut()) {
            Poll::Ready(done) => done,
            Poll::Pending => match tokio::time::timeout(self.timeout, write).await {
                Ok(done) => done,
                Err(_) => return Err(DisconnectReason::WriteTimeout(self.timeout)),
            },
        };
        done.map_err(Into::into)
    }
}

/// What a connection does after reading a frame.
enum Next {
    Continue,
    /// Every frame before CLOSE_WAIT has been read.
    CloseWait,
}

/// Handles a frame that is not a message: answers heartbeats, logs non-fatal errors and
/// reports CLOSE_WAIT; a fatal error ends the connection.
async fn on_control_frame(
    writes: &Writes,
    framed: &mut Conn,
    frame: Frame,
) -> Result<Next, DisconnectReason> {
    match frame {
        Frame::Response(Response::Heartbeat) => writes.send(framed, Command::Nop).await?,
        Frame::Response(Response::CloseWait) => return Ok(Next::CloseWait),
        Frame::Error(e) if !e.code.is_fatal() => {
            // E_FIN_FAILED and the like: the message timed out and went elsewhere.
            tracing::warn!(error = %e, "nsqd refused an answer");
        }
        Frame::Error(e) => return Err(DisconnectReason::Server(e)),
        Frame::Response(_) | Frame::Message(_) => {}
    }
    Ok(Next::Continue)
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// Auto-touch: every message delivered on the connection is touched each `every` until it
/// is answered. Messages come due in delivery order (the interval is the same for all), so a
/// queue ordered by due time serves: answered messages leave the live set, and their queue
/// entries are skipped when they come up.
#[derive(Debug)]
struct AutoTouch {
    every: Duration,
    queue: VecDeque<(Instant, MessageId)>,
    live: HashSet<MessageId>,
}

impl AutoTouch {
    fn new(every: Duration) -> Self {
        Self {
            every,
            queue: VecDeque::new(),
            live: HashSet::new(),
        }
    }

    fn delivered(&mut self, id: MessageId, now: Instant) {
        if self.live.insert(id) {
            self.queue.push_back((now + self.every, id));
        }
    }

    fn answered(&mut self, id: MessageId) {
        self.live.remove(&id);
    }

    /// When the oldest unanswered message is due, if any.
    fn next_due(&self) -> Option<Instant> {
        self.queue.front().map(|(at, _)| *at)
    }

    /// The messages to touch now; each is due again `every` from now.
    fn due(&mut self, now: Instant) -> Vec<MessageId> {
        let mut touched = Vec::new();
        while let Some(&(at, id)) = self.queue.front() {
            if at > now {
                break;
            }
            self.queue.pop_front();
            if self.live.contains(&id) {
                touched.push(id);
            }
        }
        for &id in &touched {
            self.queue.push_back((now + self.every, id));
        }
        touched
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auto_touch_touches_each_unanswered_message_every_interval() {
        let t0 = Instant::now();
        let every = Duration::from_secs(10);
        let mut touch = AutoTouch::new(every);
        let (a, b) = (MessageId::from_u64(1), MessageId::from_u64(2));
        touch.delivered(a, t0);
        touch.delivered(b, t0 + Duration::from_secs(4));
        assert_eq!(touch.next_due(), Some(t0 + every));
        assert!(touch.due(t0 + Duration::from_secs(9)).is_empty());
        assert_eq!(touch.due(t0 + every), vec![a]);
        touch.answered(b);
        assert!(
            touch.due(t0 + Duration::from_secs(14)).is_empty(),
            "answered: no touch"
        );
        assert_eq!(touch.next_due(), Some(t0 + every + every));
        assert_eq!(touch.due(t0 + Duration::from_secs(20)), vec![a]);
        touch.answered(a);
        assert!(touch.due(t0 + Duration::from_secs(60)).is_empty());
        assert_eq!(touch.next_due(), None);
    }
}
