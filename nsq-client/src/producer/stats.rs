//! What a producer has done so far: [`ProducerStats`], read from counters the handle and
//! the connection task keep up to date.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

/// A producer's counters at one moment (see [`Producer::stats`](crate::Producer::stats)).
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// # let nsqd = nsq_server_lite::Nsqd::start().await?;
/// use nsq_client::{proto::Topic, Producer};
///
/// let producer = Producer::new(nsqd.tcp_addr().to_string(), Default::default())?;
/// let topic = Topic::new("events")?;
/// producer.publish(&topic, "one").await?;
/// producer.multi_publish(&topic, vec!["two".into(), "three".into()]).await?;
/// let stats = producer.stats();
/// assert_eq!(stats.messages_published, 3);
/// assert_eq!(stats.publishes_failed, 0);
/// assert_eq!(stats.in_flight, 0);
/// assert!(stats.connected);
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ProducerStats {
    /// Messages whose publish returned `Ok` (nsqd said `OK`); each message of an MPUB counts.
    pub messages_published: u64,
    /// Publishes (`publish`, `multi_publish`, `deferred_publish` calls) that returned an
    /// error, whatever the error; an MPUB counts once. Pings and dropped futures count in
    /// neither field.
    pub publishes_failed: u64,
    /// Requests (publishes and pings) handed to the producer and not answered yet: waiting
    /// for room in the queue, queued, or written and waiting for nsqd's answer.
    pub in_flight: u64,
    /// Connections made after the first one.
    pub reconnects: u64,
    /// Heartbeats received from nsqd (each answered with `NOP`).
    pub heartbeats: u64,
    /// Whether a connection to nsqd is open now.
    pub connected: bool,
}

/// The live counters behind [`ProducerStats`].
#[derive(Debug, Default)]
pub(crate) struct Counters {
    messages_published: AtomicU64,
    publishes_failed: AtomicU64,
    in_flight: AtomicU64,
    reconnects: AtomicU64,
    heartbeats: AtomicU64,
    connected: AtomicBool,
}

impl Counters {
    pub(crate) fn snapshot(&self) -> ProducerStats {
        ProducerStats {
            messages_published: self.messages_published.load(Ordering::Relaxed),
            publishes_failed: self.publishes_failed.load(Ordering::Relaxed),
            in_flight: self.in_flight.load(Ordering::Relaxed),
            reconnects: self.reconnects.load(Ordering::Relaxed),
            heartbeats: self.heartbeats.load(Ordering::Relaxed),
            connected: self.connected.load(Ordering::Relaxed),
        }
    }

    pub(super) fn published(&self, messages: usize) {
        self.messages_published
            .fetch_add(messages as u64, Ordering::Relaxed);
    }

    pub(super) fn failed(&self) {
        self.publishes_failed.fetch_add(1, Ordering::Relaxed);
    }

    pub(super) fn heartbeat(&self) {
        self.heartbeats.fetch_add(1, Ordering::Relaxed);
    }

    /// A connection opened (`reconnect`: not the producer's first) or closed.
    pub(super) fn connected(&self, open: bool, reconnect: bool) {
        if reconnect {
            self.reconnects.fetch_add(1, Ordering::Relaxed);
        }
        self.connected.store(open, Ordering::Relaxed);
    }
}

/// Counts one request in flight for as long as it lives.
#[derive(Debug)]
pub(super) struct InFlight(Arc<Counters>);

impl InFlight {
    pub(super) fn new(counters: &Arc<Counters>) -> Self {
        counters.in_flight.fetch_add(1, Ordering::Relaxed);
        Self(counters.clone())
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}
