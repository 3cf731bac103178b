//! The one path every delivered message takes to the user, whether it is read from the
//! stream or handed to a [`Handler`](crate::Handler): connections queue what one socket read
//! brought as a batch; the [`Inbox`] hands the messages out one by one, in order, after the
//! [`DeliveryPolicy`] has taken out those past `max_attempts`.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::task::{Context, Poll};

use tokio::sync::mpsc;

use crate::consumer::message::Message;
use crate::consumer::stats::Counters;
use crate::replication::window::Window;

/// The hook for messages past `max_attempts`.
#[derive(Clone)]
pub(crate) struct GiveUp(pub(crate) Arc<dyn Fn(&Message) + Send + Sync>);

impl std::fmt::Debug for GiveUp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("GiveUp")
    }
}

/// What happens to a message before it reaches the user.
#[derive(Debug, Clone)]
pub(crate) struct DeliveryPolicy {
    /// Deliveries beyond this many are given up on; 0 never gives up.
    pub(crate) max_attempts: u16,
    pub(crate) give_up: Option<GiveUp>,
    pub(crate) counters: Arc<Counters>,
    /// De-duplication, when configured. Its connections decide on each copy before it is
    /// queued here (so a duplicate of a finished message is finished quietly rather than
    /// given up on); the inbox only lets its held copies go when the consumer stops.
    pub(crate) window: Option<Arc<Window>>,
}

impl DeliveryPolicy {
    /// `Some(msg)` when it goes to the user; `None` when it was given up on: the hook saw it
    /// and it was finished (go-nsq: `LogFailedMessage`, then FIN).
    pub(crate) fn admit(&self, msg: Message) -> Option<Message> {
        if self.max_attempts == 0 || msg.attempts() <= self.max_attempts {
            return Some(msg);
        }
        tracing::warn!(id = %msg.id(), attempts = msg.attempts(), max_attempts = self.max_attempts, "giving up on message");
        if let Some(GiveUp(hook)) = &self.give_up {
            hook(&msg);
        }
        self.counters.given_up.fetch_add(1, Ordering::Relaxed);
        if let Err(err) = msg.finish() {
            tracing::debug!(%err, "finishing a message given up on");
        }
        None
    }
}

/// The consumer's end of the message queue.
#[derive(Debug)]
pub(crate) struct Inbox {
    rx: mpsc::UnboundedReceiver<Vec<Message>>,
    batch: std::vec::IntoIter<Message>,
    policy: DeliveryPolicy,
}

impl Inbox {
    pub(crate) fn new(rx: mpsc::UnboundedReceiver<Vec<Message>>, policy: DeliveryPolicy) -> Self {
        Self {
            rx,
            batch: Vec::new().into_iter(),
            policy,
        }
    }

    /// The next message for the user; `None` once every connection has closed.
    pub(crate) fn poll_recv(&mut self, cx: &mut Context<'_>) -> Poll<Option<Message>> {
        loop {
            for msg in self.batch.by_ref() {
                if let Some(msg) = self.policy.admit(msg) {
                    return Poll::Ready(Some(msg));
                }
            }
            match self.rx.poll_recv(cx) {
                Poll::Ready(Some(batch)) => self.batch = batch.into_iter(),
                Poll::Ready(None) => return Poll::Ready(None),
                Poll::Pending => return Poll::Pending,
            }
        }
    }

    pub(crate) async fn recv(&mut self) -> Option<Message> {
        std::future::poll_fn(|cx| self.poll_recv(cx)).await
    }

    /// Drops (so requeues) every message queued now, and those the de-duplication window
    /// holds.
    pub(crate) fn drop_queued(&mut self) {
        if let Some(window) = &self.policy.window {
            window.release_held();
        }
        self.batch = Vec::new().into_iter();
        while let Ok(batch) = self.rx.try_recv() {
            drop(batch);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::consumer::message::tests::message;
    use crate::consumer::message::Ack;
    use std::sync::atomic::AtomicUsize;

    fn policy(max_attempts: u16, calls: Arc<AtomicUsize>) -> DeliveryPolicy {
        DeliveryPolicy {
            max_attempts,
            give_up: Some(GiveUp(Arc::new(move |_| {
                calls.fetch_add(1, Ordering::Relaxed);
            }))),
            counters: Arc::default(),
            window: None,
        }
    }

    #[test]
    fn a_message_past_max_attempts_is_given_up_once_and_finished() {
        let calls = Arc::new(AtomicUsize::new(0));
        let policy = policy(5, calls.clone());
        let (msg, mut acks) = message(6);
        assert!(policy.admit(msg).is_none());
        assert_eq!(calls.load(Ordering::Relaxed), 1);
        assert_eq!(acks.try_recv().unwrap().ack, Ack::Finish);
        assert!(acks.try_recv().is_err(), "one answer only");
        assert_eq!(policy.counters.given_up.load(Ordering::Relaxed), 1);
    }

    #[test]
    fn the_last_allowed_attempt_and_unlimited_attempts_reach_the_user() {
        let calls = Arc::new(AtomicUsize::new(0));
        let (msg, _acks) = message(5);
        assert!(policy(5, calls.clone()).admit(msg).is_some());
        let (msg, _acks) = message(u16::MAX);
        assert!(policy(0, calls.clone()).admit(msg).is_some());
        assert_eq!(calls.load(Ordering::Relaxed), 0);
    }

    #[tokio::test]
    async fn the_inbox_skips_given_up_messages_and_keeps_order() {
        let calls = Arc::new(AtomicUsize::new(0));
        let (tx, rx) = mpsc::unbounded_channel();
        let mut inbox = Inbox::new(rx, policy(2, calls.clone()));
        let (a, _ka) = message(1);
        let (b, _kb) = message(3);
        let (c, _kc) = message(2);
        tx.send(vec![a, b]).unwrap();
        tx.send(vec![c]).unwrap();
        drop(tx);
        assert_eq!(inbox.recv().await.unwrap().attempts(), 1);
        assert_eq!(inbox.recv().await.unwrap().attempts(), 2);
        assert!(inbox.recv().await.is_none());
        assert_eq!(calls.load(Ordering::Relaxed), 1);
    }
}
