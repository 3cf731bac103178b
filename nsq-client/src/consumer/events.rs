//! What a consumer tells its user about its connections: a stream of [`ConsumerEvent`]s, and
//! the health that [`Consumer::connected`](crate::Consumer::connected) waits on.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use futures::Stream;
use tokio::sync::{broadcast, watch};
use tokio_stream::wrappers::errors::BroadcastStreamRecvError;
use tokio_stream::wrappers::BroadcastStream;

use crate::error::{ConnectError, DisconnectReason, LookupdError};

/// How many events a slow [`Events`] reader may fall behind before it misses some.
pub(crate) const EVENT_BUFFER: usize = 1024;

/// Something that happened to a consumer's connections or discovery.
///
/// ```
/// use nsq_client::ConsumerEvent;
/// # fn show(event: ConsumerEvent) {
/// match event {
///     ConsumerEvent::Connected { nsqd } => println!("consuming from {nsqd}"),
///     ConsumerEvent::ConnectFailed { nsqd, error } if error.is_permanent() => {
///         eprintln!("{nsqd} will keep refusing: {error}")
///     }
///     other => println!("{other}"),
/// }
/// # }
/// ```
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum ConsumerEvent {
    /// Subscribed to an nsqd: messages can flow from it.
    Connected {
        /// The nsqd address.
        nsqd: String,
    },
    /// Connecting or subscribing to an nsqd failed; the consumer tries again (with backoff
    /// for an nsqd given directly, at the next lookupd answer for one that lookupd lists).
    ConnectFailed {
        /// The nsqd address.
        nsqd: String,
        /// Why; [`ConnectError::is_permanent`] says whether a retry can succeed.
        error: Arc<ConnectError>,
    },
    /// A subscribed connection ended.
    Disconnected {
        /// The nsqd address.
        nsqd: String,
        /// Why.
        reason: DisconnectReason,
    },
    /// The consumer backs off (after a requeue with backoff), or backs off further.
    BackoffEntered {
        /// The backoff level now, at least 1.
        level: u32,
    },
    /// The backoff level is back to 0: full max_in_flight again.
    BackoffLeft,
    /// A query to an nsqlookupd failed; the connections there are kept.
    LookupdFailed {
        /// The lookupd address as configured.
        lookupd: String,
        /// Why.
        error: Arc<LookupdError>,
    },
    /// An nsqd newly listed for the topic by nsqlookupd; the consumer connects to it.
    NsqdListed {
        /// The nsqd address (after the discovery filter).
        nsqd: String,
    },
    /// An nsqd that no nsqlookupd lists any more; its connection is closed gracefully.
    NsqdUnlisted {
        /// The nsqd address.
        nsqd: String,
    },
    /// This reader fell more than its buffer behind and missed this many events.
    Lagged {
        /// How many were missed.
        missed: u64,
    },
    /// The consumer has stopped; no event follows.
    Stopped,
}

impl std::fmt::Display for ConsumerEvent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ConsumerEvent::Connected { nsqd } => write!(f, "subscribed at {nsqd}"),
            ConsumerEvent::ConnectFailed { error, .. } => write!(f, "{error}"),
            ConsumerEvent::Disconnected { nsqd, reason } => {
                write!(f, "connection to {nsqd} ended: {reason}")
            }
            ConsumerEvent::BackoffEntered { level } => write!(f, "backing off at level {level}"),
            ConsumerEvent::BackoffLeft => f.write_str("backoff over"),
            ConsumerEvent::LookupdFailed { error, .. } => write!(f, "nsqlookupd: {error}"),
            ConsumerEvent::NsqdListed { nsqd } => write!(f, "nsqlookupd lists {nsqd}"),
            ConsumerEvent::NsqdUnlisted { nsqd } => write!(f, "nsqlookupd no longer lists {nsqd}"),
            ConsumerEvent::Lagged { missed } => write!(f, "{missed} events missed"),
            ConsumerEvent::Stopped => f.write_str("stopped"),
        }
    }
}

/// The events of one consumer, from the moment [`Consumer::events`](crate::Consumer::events)
/// was called. Ends after [`ConsumerEvent::Stopped`]. Each reader has its own buffer: one that
/// falls behind gets [`ConsumerEvent::Lagged`] and goes on with the newest events; the consumer
/// never waits for a reader.
///
/// ```
/// # async fn show(consumer: &nsq_client::Consumer) {
/// use futures::StreamExt;
/// let mut events = consumer.events();
/// tokio::spawn(async move {
///     while let Some(event) = events.next().await {
///         tracing::info!(%event, "nsq consumer");
///     }
/// });
/// # }
/// ```
#[derive(Debug)]
pub struct Events {
    inner: BroadcastStream<ConsumerEvent>,
    ended: bool,
}

impl Events {
    pub(crate) fn new(rx: broadcast::Receiver<ConsumerEvent>) -> Self {
        Self {
            inner: BroadcastStream::new(rx),
            ended: false,
        }
    }

    /// For a reader that came after the stop: only [`ConsumerEvent::Stopped`].
    pub(crate) fn already_stopped(self) -> Self {
        let (tx, rx) = broadcast::channel(1);
        let _ = tx.send(ConsumerEvent::Stopped);
        Self::new(rx)
    }
}

impl Stream for Events {
    type Item = ConsumerEvent;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<ConsumerEvent>> {
        if self.ended {
            return Poll::Ready(None);
        }
        match Pin::new(&mut self.inner).poll_next(cx) {
            Poll::Ready(Some(Ok(event))) => {
                if matches!(event, ConsumerEvent::Stopped) {
                    self.ended = true;
                }
                Poll::Ready(Some(event))
            }
            Poll::Ready(Some(Err(BroadcastStreamRecvError::Lagged(missed)))) => {
                Poll::Ready(Some(ConsumerEvent::Lagged { missed }))
            }
            Poll::Ready(None) => {
                self.ended = true;
                Poll::Ready(None)
            }
            Poll::Pending => Poll::Pending,
        }
    }
}

/// The last failure a consumer met on its way to a subscription.
///
/// ```
/// use nsq_client::ConsumerFailure;
/// # fn show(failure: &ConsumerFailure) {
/// if failure.is_permanent() {
///     eprintln!("fix the configuration: {failure}");
/// }
/// # }
/// ```
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum ConsumerFailure {
    /// Connecting or subscribing to an nsqd failed.
    #[error(transparent)]
    Nsqd(Arc<ConnectError>),
    /// Asking an nsqlookupd failed.
    #[error(transparent)]
    Lookupd(Arc<LookupdError>),
    /// Every nsqlookupd answered, and none lists an nsqd for the topic (yet).
    #[error("no nsqlookupd lists an nsqd for the topic")]
    NoNsqd,
}

impl ConsumerFailure {
    /// Whether a retry cannot succeed without a change of configuration
    /// ([`ConnectError::is_permanent`]); lookupd failures and an unlisted topic are transient.
    ///
    /// ```
    /// assert!(!nsq_client::ConsumerFailure::NoNsqd.is_permanent());
    /// ```
    pub fn is_permanent(&self) -> bool {
        matches!(self, ConsumerFailure::Nsqd(e) if e.is_permanent())
    }
}

/// Why [`Consumer::connected`](crate::Consumer::connected) returned without a subscription.
///
/// ```
/// use nsq_client::ConnectedError;
/// # fn show(err: ConnectedError) {
/// match err {
///     ConnectedError::Refused(failure) => eprintln!("will not work: {failure}"),
///     ConnectedError::Timeout { last: Some(failure), .. } => eprintln!("still trying: {failure}"),
///     other => eprintln!("{other}"),
/// }
/// # }
/// ```
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum ConnectedError {
    /// No nsqd was subscribed within the time given.
    #[error("no nsqd subscribed within {after:?}{}", last.as_ref().map(|l| format!("; last failure: {l}")).unwrap_or_default())]
    Timeout {
        /// The time given.
        after: Duration,
        /// The last failure seen, if any.
        last: Option<ConsumerFailure>,
    },
    /// Every nsqd tried so far refused in a way that a retry cannot fix, and no attempt is
    /// still under way.
    #[error("no nsqd can be subscribed: {0}")]
    Refused(#[source] ConsumerFailure),
    /// The consumer stopped.
    #[error("the consumer stopped")]
    Stopped,
}

/// What `connected()` waits on, kept by the supervisor.
#[derive(Debug, Clone, Default)]
pub(crate) struct Health {
    /// Connections subscribed now.
    pub(crate) subscribed: usize,
    /// Subscriptions made since the start, so that a waiter that missed a short-lived one
    /// (a watch shows only the latest state) still sees that it happened.
    pub(crate) subscriptions: u64,
    /// Connections opening (handshake or SUB under way).
    pub(crate) opening: usize,
    /// The last failure on the way to a subscription.
    pub(crate) last_failure: Option<ConsumerFailure>,
    /// Whether the consumer stopped.
    pub(crate) stopped: bool,
}

impl Health {
    /// What `connected()` answers now, or `None` to keep waiting; `since` is the
    /// subscription count when the wait began.
    pub(crate) fn verdict(&self, since: u64) -> Option<Result<(), ConnectedError>> {
        if self.subscribed > 0 || self.subscriptions > since {
            return Some(Ok(()));
        }
        if self.stopped {
            return Some(Err(ConnectedError::Stopped));
        }
        match &self.last_failure {
            Some(failure) if failure.is_permanent() && self.opening == 0 => {
                Some(Err(ConnectedError::Refused(failure.clone())))
            }
            _ => None,
        }
    }
}

/// Waits until `health` has a verdict, for at most `within`; `since` is the subscription
/// count when the wait began.
pub(crate) async fn wait_connected(
    mut health: watch::Receiver<Health>,
    since: u64,
    within: Duration,
) -> Result<(), ConnectedError> {
    let wait = async {
        loop {
            if let Some(verdict) = health.borrow_and_update().verdict(since) {
                return verdict;
            }
            if health.changed().await.is_err() {
                return Err(ConnectedError::Stopped);
            }
        }
    };
    match tokio::time::timeout(within, wait).await {
        Ok(verdict) => verdict,
        Err(_) => Err(ConnectedError::Timeout {
            after: within,
            last: health.borrow().last_failure.clone(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refused() -> ConsumerFailure {
        ConsumerFailure::Nsqd(Arc::new(ConnectError::AuthRequired {
            addr: "h:4150".into(),
        }))
    }

    #[test]
    fn a_permanent_failure_is_final_only_when_no_attempt_is_under_way() {
        let mut health = Health {
            last_failure: Some(refused()),
            opening: 1,
            ..Health::default()
        };
        assert!(health.verdict(0).is_none(), "another nsqd may still answer");
        health.opening = 0;
        assert!(matches!(
            health.verdict(0),
            Some(Err(ConnectedError::Refused(_)))
        ));
        health.subscriptions = 1;
        assert!(
            matches!(health.verdict(0), Some(Ok(()))),
            "a subscription made and lost since the wait began counts"
        );
        assert!(
            matches!(health.verdict(1), Some(Err(ConnectedError::Refused(_)))),
            "one made before it does not"
        );
        health.subscribed = 1;
        assert!(matches!(health.verdict(1), Some(Ok(()))));
    }

    #[test]
    fn a_transient_failure_keeps_waiting() {
        let health = Health {
            last_failure: Some(ConsumerFailure::NoNsqd),
            ..Health::default()
        };
        assert!(health.verdict(0).is_none());
    }

    #[tokio::test(start_paused = true)]
    async fn waiting_times_out_with_the_last_failure() {
        let (tx, rx) = watch::channel(Health::default());
        tx.send_modify(|h| h.last_failure = Some(ConsumerFailure::NoNsqd));
        let err = wait_connected(rx, 0, Duration::from_secs(3))
            .await
            .unwrap_err();
        assert!(matches!(
            err,
            ConnectedError::Timeout {
                last: Some(ConsumerFailure::NoNsqd),
                ..
            }
        ));
    }
}
