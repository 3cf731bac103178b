//! Handlers for [`Consumer::run`](crate::Consumer::run): what a handler is, how its result
//! answers the message, and the loop that runs handlers concurrently.

use std::future::Future;
use std::time::Duration;

use futures::StreamExt;

use crate::consumer::delivery::Inbox;
use crate::consumer::message::Message;

/// Works on messages for [`Consumer::run`](crate::Consumer::run).
///
/// The handler owns the [`Message`] it is given: it can keep it across `.await`s,
/// [`touch`](Message::touch) it during long work, answer it itself (say,
/// [`requeue_without_backoff`](Message::requeue_without_backoff)), or
/// [`disable_auto_response`](Message::disable_auto_response) and answer it later, even after
/// returning. When the handler returns without having answered (and without disabling auto
/// response), its result answers for it: `Ok(())` finishes the message; an error requeues it
/// with backoff after the default delay, or as [`HandlerError`] says.
///
/// Any `Fn(Message) -> impl Future<Output = Result<(), HandlerError>>` closure is a handler:
///
/// ```
/// use nsq_client::{HandlerError, Message};
/// # async fn show(consumer: nsq_client::Consumer) {
/// consumer
///     .run(8, |msg: Message| async move {
///         let text = std::str::from_utf8(msg.body())?; // an error: requeued, with backoff
///         if text.is_empty() {
///             // An answer of its own: a requeue that does not slow the consumer down.
///             let _ = msg.requeue_without_backoff(Some(std::time::Duration::from_secs(5)));
///             return Ok(());
///         }
///         msg.touch()?; // keep it alive while working
///         Ok::<_, HandlerError>(()) // finished
///     })
///     .await;
/// # }
/// ```
///
/// A type can implement it too, to hold state:
///
/// ```
/// use nsq_client::{Handler, HandlerError, Message};
/// use std::sync::atomic::{AtomicU64, Ordering};
///
/// struct Count(AtomicU64);
///
/// impl Handler for Count {
///     async fn handle(&self, msg: Message) -> Result<(), HandlerError> {
///         self.0.fetch_add(msg.body().len() as u64, Ordering::Relaxed);
///         Ok(())
///     }
/// }
/// # async fn show(consumer: nsq_client::Consumer) {
/// consumer.run(4, Count(AtomicU64::new(0))).await;
/// # }
/// ```
pub trait Handler: Send + Sync {
    /// Works on one message; see the trait's documentation for how the result answers it.
    fn handle(&self, msg: Message) -> impl Future<Output = Result<(), HandlerError>> + Send;
}

impl<F, Fut> Handler for F
where
    F: Fn(Message) -> Fut + Send + Sync,
    Fut: Future<Output = Result<(), HandlerError>> + Send,
{
    fn handle(&self, msg: Message) -> impl Future<Output = Result<(), HandlerError>> + Send {
        self(msg)
    }
}

/// A handler's failure: the message is requeued, by default after the consumer's default
/// requeue delay and counting as a failure for backoff (go-nsq's handler error). Any error
/// type converts into it, so `?` works in handlers.
///
/// ```
/// use nsq_client::HandlerError;
/// use std::time::Duration;
///
/// let err = HandlerError::new("database down")
///     .requeue_after(Duration::from_secs(30))
///     .without_backoff();
/// assert_eq!(err.to_string(), "database down");
/// ```
pub struct HandlerError {
    error: Box<dyn std::error::Error + Send + Sync>,
    delay: Option<Duration>,
    backoff: bool,
}

impl HandlerError {
    /// A failure with this cause.
    ///
    /// ```
    /// let err = nsq_client::HandlerError::new("bad payload");
    /// # let _ = err;
    /// ```
    pub fn new(error: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> Self {
        Self {
            error: error.into(),
            delay: None,
            backoff: true,
        }
    }

    /// Requeue after `delay` rather than the default delay.
    ///
    /// ```
    /// let err = nsq_client::HandlerError::new("later").requeue_after(std::time::Duration::ZERO);
    /// # let _ = err;
    /// ```
    pub fn requeue_after(mut self, delay: Duration) -> Self {
        self.delay = Some(delay);
        self
    }

    /// Do not count this failure for backoff (go-nsq's `RequeueWithoutBackoff`).
    ///
    /// ```
    /// let err = nsq_client::HandlerError::new("not mine").without_backoff();
    /// # let _ = err;
    /// ```
    pub fn without_backoff(mut self) -> Self {
        self.backoff = false;
        self
    }

    /// The cause.
    ///
    /// ```
    /// let err = nsq_client::HandlerError::new("bad payload");
    /// assert_eq!(err.cause().to_string(), "bad payload");
    /// ```
    pub fn cause(&self) -> &(dyn std::error::Error + Send + Sync + 'static) {
        &*self.error
    }

    /// Answers `msg` as this failure says.
    fn requeue(self, msg: Message) {
        tracing::debug!(id = %msg.id(), error = %self.error, "handler failed; requeue");
        let answered = if self.backoff {
            msg.requeue(self.delay)
        } else {
            msg.requeue_without_backoff(self.delay)
        };
        if let Err(err) = answered {
            tracing::debug!(%err, "requeue after a handler failure");
        }
    }
}

impl<E: Into<Box<dyn std::error::Error + Send + Sync>>> From<E> for HandlerError {
    fn from(error: E) -> Self {
        Self::new(error)
    }
}

impl std::fmt::Debug for HandlerError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HandlerError")
            .field("error", &self.error)
            .field("delay", &self.delay)
            .field("backoff", &self.backoff)
            .finish()
    }
}

impl std::fmt::Display for HandlerError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.error.fmt(f)
    }
}

/// Runs `handler` on every message of `inbox`, up to `concurrency` at once, until the inbox
/// ends (every connection closed).
pub(crate) async fn run_handlers<H: Handler>(inbox: Inbox, concurrency: usize, handler: &H) {
    futures::stream::unfold(inbox, |mut inbox| async move {
        let msg = inbox.recv().await?;
        Some((msg, inbox))
    })
    .for_each_concurrent(concurrency.max(1), |msg| handle_one(handler, msg))
    .await;
}

/// Runs the handler on one message and answers for it unless it answered itself.
pub(crate) async fn handle_one<H: Handler>(handler: &H, msg: Message) {
    let twin = msg.share();
    let result = handler.handle(msg).await;
    if twin.is_answered() || twin.is_auto_response_disabled() {
        // Dropping the twin: requeues it only if the handler dropped its handle unanswered
        // with auto response disabled.
        return;
    }
    match result {
        Ok(()) => {
            if let Err(err) = twin.finish() {
                tracing::debug!(%err, "finish after the handler");
            }
        }
        Err(err) => err.requeue(twin),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::consumer::message::tests::message;
    use crate::consumer::message::Ack;

    #[tokio::test]
    async fn ok_finishes_and_an_error_requeues_with_backoff_after_the_default_delay() {
        let (msg, mut acks) = message(2);
        handle_one(&|_msg: Message| async { Ok(()) }, msg).await;
        assert_eq!(acks.try_recv().unwrap().ack, Ack::Finish);
        assert!(acks.try_recv().is_err());

        let (msg, mut acks) = message(2);
        handle_one(&|_msg: Message| async { Err("no".into()) }, msg).await;
        assert_eq!(
            acks.try_recv().unwrap().ack,
            Ack::Requeue {
                delay: Duration::from_secs(180),
                backoff: true
            }
        );
        assert!(acks.try_recv().is_err());
    }

    #[tokio::test]
    async fn a_handler_error_chooses_its_delay_and_backoff() {
        let (msg, mut acks) = message(1);
        let handler = |_msg: Message| async {
            Err(HandlerError::new("later")
                .requeue_after(Duration::from_millis(1500))
                .without_backoff())
        };
        handle_one(&handler, msg).await;
        assert_eq!(
            acks.try_recv().unwrap().ack,
            Ack::Requeue {
                delay: Duration::from_millis(1500),
                backoff: false
            }
        );
    }

    #[tokio::test]
    async fn a_handler_that_answers_itself_is_not_answered_again() {
        let (msg, mut acks) = message(1);
        let handler = |msg: Message| async move {
            msg.touch()?;
            msg.requeue_without_backoff(Some(Duration::from_secs(1)))?;
            Err("ignored: the message was answered".into())
        };
        handle_one(&handler, msg).await;
        assert_eq!(acks.try_recv().unwrap().ack, Ack::Touch);
        assert_eq!(
            acks.try_recv().unwrap().ack,
            Ack::Requeue {
                delay: Duration::from_secs(1),
                backoff: false
            }
        );
        assert!(acks.try_recv().is_err());
    }

    #[tokio::test]
    async fn manual_answers_may_come_after_the_handler_returned() {
        let (msg, mut acks) = message(1);
        let (keep_tx, keep_rx) = std::sync::mpsc::channel();
        let handler = move |msg: Message| {
            let keep_tx = keep_tx.clone();
            async move {
                msg.disable_auto_response();
                keep_tx.send(msg).unwrap();
                Ok(())
            }
        };
        handle_one(&handler, msg).await;
        assert!(acks.try_recv().is_err(), "nothing answered yet");
        keep_rx.recv().unwrap().finish().unwrap();
        assert_eq!(acks.try_recv().unwrap().ack, Ack::Finish);
        assert!(acks.try_recv().is_err());
    }

    #[tokio::test]
    async fn a_manual_message_dropped_unanswered_is_requeued_once() {
        let (msg, mut acks) = message(1);
        let handler = |msg: Message| async move {
            msg.disable_auto_response();
            drop(msg);
            Ok(())
        };
        handle_one(&handler, msg).await;
        assert_eq!(
            acks.try_recv().unwrap().ack,
            Ack::Requeue {
                delay: Duration::ZERO,
                backoff: false
            }
        );
        assert!(acks.try_recv().is_err());
    }
}
