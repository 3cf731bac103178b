//! What a producer has done so far: [`ProducerStats`], read from counters the connection
//! task keeps up to date. Callers touch no shared counter on the way to a successful publish
//! (with many callers on several threads, one contended counter per publish was a fifth of a
//! pipelined publish's cost): answers are counted by the task that reads them, per command
//! (a merged MPUB once), and what is in flight is worked out when the stats are read.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

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
    /// Messages nsqd answered `OK` for; each message of an MPUB counts. (A publish whose
    /// caller gave up waiting, by a timeout or by dropping its future, counts here when nsqd
    /// took it all the same.)
    pub messages_published: u64,
    /// Publishes (`publish`, `multi_publish`, `deferred_publish` calls) that returned an
    /// error, whatever the error; an MPUB counts once. Pings and dropped futures count in
    /// neither field.
    pub publishes_failed: u64,
    /// Requests (publishes and pings) queued for the connection, or written and waiting for
    /// nsqd's answer. A call still waiting for room in a full queue is not counted, nor,
    /// for the instant the connection task takes it out of the queue, a request on its way.
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
    /// Requests the connection task holds: written and not answered, or the first one while
    /// it connects.
    held: AtomicU64,
    reconnects: AtomicU64,
    heartbeats: AtomicU64,
    connected: AtomicBool,
}

impl Counters {
    /// The counters, with `queued` requests still in the queue.
    pub(crate) fn snapshot(&self, queued: usize) -> ProducerStats {
        ProducerStats {
            messages_published: self.messages_published.load(Ordering::Relaxed),
            publishes_failed: self.publishes_failed.load(Ordering::Relaxed),
            in_flight: self.held.load(Ordering::Relaxed) + queued as u64,
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

impl Counters {
    /// The connection task took `n` requests on (wrote them, or holds one while connecting).
    pub(super) fn hold(&self, n: usize) {
        self.held.fetch_add(n as u64, Ordering::Relaxed);
    }

    /// `n` requests the task held were answered (or failed).
    pub(super) fn release(&self, n: usize) {
        self.held.fetch_sub(n as u64, Ordering::Relaxed);
    }
}
