//! A delivered message and how it is answered.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use nsq_proto::MessageId;
use tokio::sync::mpsc;

use crate::replication::window::{Key, Window};

/// What a connection is asked to send for a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Ack {
    Finish,
    /// `FIN` of a copy the de-duplication window recognised: neither success nor failure.
    FinishDuplicate,
    Requeue {
        delay: Duration,
        backoff: bool,
    },
    Touch,
}

/// An answer on its way to the connection that delivered the message.
#[derive(Debug)]
pub(crate) struct AckCommand {
    pub(crate) id: MessageId,
    pub(crate) ack: Ack,
    /// Under de-duplication: the window entry the answer resolves. The connection resolves
    /// it as it takes the answer (or, when it is gone, whoever finds the answer undelivered).
    pub(crate) key: Option<Key>,
}

impl AckCommand {
    /// The window entry this answer resolves, and whether it finishes it (else the copy was
    /// requeued or dropped); `None` when it resolves none.
    pub(crate) fn resolution(&self) -> Option<(&Key, bool)> {
        let key = self.key.as_ref()?;
        match self.ack {
            Ack::Finish | Ack::FinishDuplicate => Some((key, true)),
            Ack::Requeue { .. } => Some((key, false)),
            Ack::Touch => None,
        }
    }

    /// Tells `window` what became of the copy this answers, if it answers for one.
    pub(crate) fn resolve(&self, window: Option<&Window>) {
        if let (Some(resolution), Some(window)) = (self.resolution(), window) {
            window.resolve([resolution]);
        }
    }
}

/// What every message of one connection shares: where answers go and the requeue delays.
/// One reference per message, so a delivery costs one reference-count increment.
#[derive(Debug)]
pub(crate) struct ConnLink {
    pub(crate) nsqd: Arc<str>,
    pub(crate) acks: mpsc::UnboundedSender<AckCommand>,
    pub(crate) default_requeue_delay: Duration,
    pub(crate) max_requeue_delay: Duration,
    /// The consumer's de-duplication window, when it has one.
    pub(crate) window: Option<Arc<Window>>,
}

/// Why a message could not be answered.
///
/// ```
/// use nsq_client::AckError;
/// # fn show(result: Result<(), AckError>) {
/// if let Err(AckError::ConnectionClosed(id)) = result {
///     eprintln!("{id} will be redelivered after nsqd's timeout");
/// }
/// # }
/// ```
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AckError {
    /// The message was already finished or requeued.
    #[error("message {0} was already answered")]
    AlreadyAnswered(MessageId),
    /// The connection that delivered the message is gone; nsqd redelivers the message after
    /// its timeout.
    #[error("the connection that delivered message {0} is closed; nsqd will redeliver it")]
    ConnectionClosed(MessageId),
}

/// A message from nsqd, to be finished, requeued or (for long work) touched.
///
/// Every message must be answered: [`finish`](Self::finish) when done,
/// [`requeue`](Self::requeue) to have it delivered again. A message dropped without an
/// answer is requeued at once (without backoff), so nothing waits out nsqd's in-flight
/// timeout by accident.
///
/// ```
/// # async fn handle(msg: nsq_client::Message) -> Result<(), nsq_client::AckError> {
/// if msg.attempts() > 3 {
///     return msg.finish(); // give up on it
/// }
/// match std::str::from_utf8(msg.body()) {
///     Ok(text) => {
///         println!("{text}");
///         msg.finish()
///     }
///     Err(_) => msg.requeue(None), // the default delay, with backoff
/// }
/// # }
/// ```
#[must_use = "a Message must be finished or requeued (dropping it requeues it)"]
pub struct Message {
    delivery: Arc<Delivery>,
}

/// One delivery of a message. [`Consumer::run`](crate::Consumer::run) keeps a second handle to
/// it while the handler works, to answer for the handler by its result; the delivery is
/// requeued when the last handle goes without an answer.
struct Delivery {
    inner: nsq_proto::Message,
    link: Arc<ConnLink>,
    answered: AtomicBool,
    auto_response_disabled: AtomicBool,
    /// Under de-duplication: the key of the window entry this copy answers for.
    key: Option<Key>,
}

impl Message {
    pub(crate) fn new(inner: nsq_proto::Message, link: Arc<ConnLink>) -> Self {
        Self {
            delivery: Arc::new(Delivery {
                inner,
                link,
                answered: AtomicBool::new(false),
                auto_response_disabled: AtomicBool::new(false),
                key: None,
            }),
        }
    }

    /// Shows the user the body without its first `header` bytes (a replication envelope).
    /// Only before the message is handed out, while this is its one handle.
    pub(crate) fn strip_header(&mut self, header: usize) {
        match Arc::get_mut(&mut self.delivery) {
            Some(delivery) => bytes::Buf::advance(&mut delivery.inner.body, header),
            None => tracing::warn!(id = %self.id(), "a shared message keeps its envelope"),
        }
    }

    /// Ties this copy's answer to its de-duplication window entry. Only while this is its
    /// one handle (the window decides before a message is handed out).
    pub(crate) fn claim(&mut self, key: Key) {
        match Arc::get_mut(&mut self.delivery) {
            Some(delivery) => delivery.key = Some(key),
            None => tracing::warn!(id = %self.id(), "a shared message cannot be claimed"),
        }
    }

    /// Finishes a copy recognised as a duplicate (not counted as a success for backoff).
    pub(crate) fn finish_duplicate(self) -> Result<(), AckError> {
        self.send(Ack::FinishDuplicate)
    }

    /// A second handle to this delivery, for the handler runner.
    pub(crate) fn share(&self) -> Message {
        Message {
            delivery: self.delivery.clone(),
        }
    }

    /// The message's ID.
    ///
    /// ```
    /// # fn show(msg: &nsq_client::Message) {
    /// println!("{}", msg.id());
    /// # }
    /// ```
    pub fn id(&self) -> MessageId {
        self.delivery.inner.id
    }

    /// How many times nsqd has delivered it, this delivery included.
    ///
    /// ```
    /// # fn show(msg: &nsq_client::Message) {
    /// assert!(msg.attempts() >= 1);
    /// # }
    /// ```
    pub fn attempts(&self) -> u16 {
        self.delivery.inner.attempts
    }

    /// When it was published, in nanoseconds since the Unix epoch.
    ///
    /// ```
    /// # fn show(msg: &nsq_client::Message) {
    /// let published = std::time::UNIX_EPOCH + std::time::Duration::from_nanos(msg.timestamp() as u64);
    /// # let _ = published;
    /// # }
    /// ```
    pub fn timestamp(&self) -> i64 {
        self.delivery.inner.timestamp
    }

    /// The body, a view of the connection's read buffer (no copy).
    ///
    /// ```
    /// # fn show(msg: &nsq_client::Message) {
    /// let len = msg.body().len();
    /// # let _ = len;
    /// # }
    /// ```
    pub fn body(&self) -> &Bytes {
        &self.delivery.inner.body
    }

    /// The nsqd that delivered it (`host:port`).
    ///
    /// ```
    /// # fn show(msg: &nsq_client::Message) {
    /// println!("from {}", msg.nsqd_addr());
    /// # }
    /// ```
    pub fn nsqd_addr(&self) -> &str {
        &self.delivery.link.nsqd
    }

    /// Whether the message was finished or requeued.
    ///
    /// ```
    /// # fn show(msg: nsq_client::Message) {
    /// assert!(!msg.is_answered());
    /// # let _ = msg.finish();
    /// # }
    /// ```
    pub fn is_answered(&self) -> bool {
        self.delivery.answered.load(Ordering::Acquire)
    }

    /// Under [`Consumer::run`](crate::Consumer::run): the handler answers this message itself,
    /// now or later (go-nsq's `DisableAutoResponse`), so its result does not finish or requeue
    /// it. The handler may keep the message past its return (to answer it in a batch, say);
    /// once every handle to it is dropped unanswered, it is requeued. Has no effect on messages
    /// taken from the stream, which are always answered by hand.
    ///
    /// ```
    /// # async fn handle(msg: nsq_client::Message, batch: &mut Vec<nsq_client::Message>) {
    /// msg.disable_auto_response();
    /// batch.push(msg); // finished later, with the rest of the batch
    /// # }
    /// ```
    pub fn disable_auto_response(&self) {
        self.delivery
            .auto_response_disabled
            .store(true, Ordering::Release);
    }

    /// Whether [`disable_auto_response`](Self::disable_auto_response) was called.
    ///
    /// ```
    /// # fn show(msg: &nsq_client::Message) {
    /// msg.disable_auto_response();
    /// assert!(msg.is_auto_response_disabled());
    /// # }
    /// ```
    pub fn is_auto_response_disabled(&self) -> bool {
        self.delivery.auto_response_disabled.load(Ordering::Acquire)
    }

    fn send(&self, ack: Ack) -> Result<(), AckError> {
        let id = self.delivery.inner.id;
        if ack != Ack::Touch && self.delivery.answered.swap(true, Ordering::AcqRel) {
            return Err(AckError::AlreadyAnswered(id));
        }
        if ack == Ack::Touch && self.delivery.answered.load(Ordering::Acquire) {
            return Err(AckError::AlreadyAnswered(id));
        }
        let key = match ack {
            Ack::Touch => None,
            _ => self.delivery.key.clone(),
        };
        let link = &self.delivery.link;
        link.acks.send(AckCommand { id, ack, key }).map_err(
            |mpsc::error::SendError(undelivered)| {
                // The connection is gone: its window entry is resolved here instead.
                undelivered.resolve(link.window.as_deref());
                AckError::ConnectionClosed(id)
            },
        )
    }

    /// The default requeue delay for this delivery: go-nsq's `min(delay × attempts, max)`.
    fn default_delay(&self) -> Duration {
        self.delivery
            .link
            .default_requeue_delay
            .saturating_mul(u32::from(self.delivery.inner.attempts.max(1)))
            .min(self.delivery.link.max_requeue_delay)
    }

    /// Tells nsqd the message is done (FIN).
    ///
    /// # Errors
    ///
    /// [`AckError`] when it was already answered or its connection is gone.
    ///
    /// ```
    /// # fn done(msg: nsq_client::Message) -> Result<(), nsq_client::AckError> {
    /// msg.finish()
    /// # }
    /// ```
    pub fn finish(self) -> Result<(), AckError> {
        self.send(Ack::Finish)
    }

    /// Has nsqd deliver the message again after `delay` (REQ), and counts as a failure for
    /// the consumer's backoff. `None` is the default delay: the configured requeue delay
    /// times the attempts, capped at the maximum (go-nsq's rule).
    ///
    /// # Errors
    ///
    /// [`AckError`] when it was already answered or its connection is gone.
    ///
    /// ```
    /// # fn later(msg: nsq_client::Message) -> Result<(), nsq_client::AckError> {
    /// msg.requeue(Some(std::time::Duration::from_secs(30)))
    /// # }
    /// ```
    pub fn requeue(self, delay: Option<Duration>) -> Result<(), AckError> {
        let delay = delay.unwrap_or_else(|| self.default_delay());
        self.send(Ack::Requeue {
            delay,
            backoff: true,
        })
    }

    /// As [`requeue`](Self::requeue), without counting as a failure (no backoff).
    ///
    /// # Errors
    ///
    /// [`AckError`] when it was already answered or its connection is gone.
    ///
    /// ```
    /// # fn later(msg: nsq_client::Message) -> Result<(), nsq_client::AckError> {
    /// msg.requeue_without_backoff(None)
    /// # }
    /// ```
    pub fn requeue_without_backoff(self, delay: Option<Duration>) -> Result<(), AckError> {
        let delay = delay.unwrap_or_else(|| self.default_delay());
        self.send(Ack::Requeue {
            delay,
            backoff: false,
        })
    }

    /// Resets nsqd's in-flight timeout for the message (TOUCH), for handlers that run long.
    ///
    /// # Errors
    ///
    /// [`AckError`] when it was already answered or its connection is gone.
    ///
    /// ```
    /// # fn still_working(msg: &nsq_client::Message) -> Result<(), nsq_client::AckError> {
    /// msg.touch()
    /// # }
    /// ```
    pub fn touch(&self) -> Result<(), AckError> {
        self.send(Ack::Touch)
    }
}

impl std::fmt::Debug for Message {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Message")
            .field("id", &self.delivery.inner.id)
            .field("attempts", &self.delivery.inner.attempts)
            .field("timestamp", &self.delivery.inner.timestamp)
            .field("body_len", &self.delivery.inner.body.len())
            .field("nsqd", &self.delivery.link.nsqd)
            .field("answered", &self.is_answered())
            .finish()
    }
}

impl Drop for Delivery {
    fn drop(&mut self) {
        if !self.answered.swap(true, Ordering::AcqRel) {
            // Unanswered: requeue now rather than wait out nsqd's timeout. Not a failure.
            let requeue = AckCommand {
                id: self.inner.id,
                ack: Ack::Requeue {
                    delay: Duration::ZERO,
                    backoff: false,
                },
                key: self.key.take(),
            };
            if let Err(mpsc::error::SendError(undelivered)) = self.link.acks.send(requeue) {
                undelivered.resolve(self.link.window.as_deref());
            }
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) fn message(attempts: u16) -> (Message, mpsc::UnboundedReceiver<AckCommand>) {
        message_with(attempts, 7, Bytes::from_static(b"x"))
    }

    /// A message with this ID and body, and the receiver of its answers.
    pub(crate) fn message_with(
        attempts: u16,
        id: u64,
        body: Bytes,
    ) -> (Message, mpsc::UnboundedReceiver<AckCommand>) {
        message_in(None, attempts, id, body)
    }

    /// As [`message_with`], from a connection of a consumer with this window.
    pub(crate) fn message_in(
        window: Option<Arc<Window>>,
        attempts: u16,
        id: u64,
        body: Bytes,
    ) -> (Message, mpsc::UnboundedReceiver<AckCommand>) {
        let (tx, rx) = mpsc::unbounded_channel();
        let inner = nsq_proto::Message {
            timestamp: 0,
            attempts,
            id: MessageId::from_u64(id),
            body,
        };
        let link = ConnLink {
            nsqd: Arc::from("h:4150"),
            acks: tx,
            default_requeue_delay: Duration::from_secs(90),
            max_requeue_delay: Duration::from_secs(15 * 60),
            window,
        };
        let msg = Message::new(inner, Arc::new(link));
        (msg, rx)
    }

    #[test]
    fn dropping_an_unanswered_message_requeues_it_at_once_without_backoff() {
        let (msg, mut rx) = message(1);
        drop(msg);
        let ack = rx.try_recv().unwrap();
        assert_eq!(
            ack.ack,
            Ack::Requeue {
                delay: Duration::ZERO,
                backoff: false
            }
        );
        assert!(rx.try_recv().is_err(), "exactly one answer");
    }

    #[test]
    fn an_answered_message_sends_one_answer_and_touch_before_it() {
        let (msg, mut rx) = message(1);
        msg.touch().unwrap();
        msg.finish().unwrap();
        assert_eq!(rx.try_recv().unwrap().ack, Ack::Touch);
        assert_eq!(rx.try_recv().unwrap().ack, Ack::Finish);
        assert!(
            rx.try_recv().is_err(),
            "no requeue from the drop after finish"
        );
    }

    #[test]
    fn the_default_requeue_delay_grows_with_attempts_up_to_the_maximum() {
        let (msg, mut rx) = message(3);
        msg.requeue(None).unwrap();
        assert_eq!(
            rx.try_recv().unwrap().ack,
            Ack::Requeue {
                delay: Duration::from_secs(270),
                backoff: true
            }
        );
        let (msg, mut rx) = message(100);
        msg.requeue_without_backoff(None).unwrap();
        assert_eq!(
            rx.try_recv().unwrap().ack,
            Ack::Requeue {
                delay: Duration::from_secs(15 * 60),
                backoff: false
            }
        );
    }

    #[test]
    fn answering_after_the_connection_closed_is_an_error_not_a_panic() {
        let (msg, rx) = message(1);
        drop(rx);
        assert_eq!(
            msg.finish(),
            Err(AckError::ConnectionClosed(MessageId::from_u64(7)))
        );
    }
}
