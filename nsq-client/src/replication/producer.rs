//! Publishing each message to several nsqd, with a key that lets consumers recognise the
//! copies.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::Poll;

use bytes::Bytes;
use nsq_proto::Topic;

use crate::error::{ConfigError, PublishError};
use crate::producer::{Producer, ProducerPool};
use crate::replication::envelope::{envelope, MessageKey};

/// How many nsqd get a copy of each message, and how many must answer `OK` before a
/// publish succeeds.
///
/// ```
/// use nsq_client::Replication;
/// let two_of_three = Replication::copies(3).quorum(2);
/// assert_eq!(Replication::default(), Replication::copies(2));
/// # let _ = two_of_three;
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Replication {
    copies: usize,
    quorum: usize,
}

impl Replication {
    /// `copies` copies, all of them required (the quorum is `copies` until set).
    ///
    /// ```
    /// let r = nsq_client::Replication::copies(3);
    /// # let _ = r;
    /// ```
    pub fn copies(copies: usize) -> Self {
        Self {
            copies,
            quorum: copies,
        }
    }

    /// How many `OK`s a publish waits for. The other copies are still made (in the
    /// background, with failover) but not waited for.
    ///
    /// ```
    /// let r = nsq_client::Replication::copies(3).quorum(2);
    /// # let _ = r;
    /// ```
    pub fn quorum(mut self, quorum: usize) -> Self {
        self.quorum = quorum;
        self
    }
}

impl Default for Replication {
    /// Two copies, both required.
    fn default() -> Self {
        Self::copies(2)
    }
}

/// Where the copies of a published message went.
///
/// ```
/// # fn show(receipt: nsq_client::Receipt) {
/// println!("{} held by {}", receipt.key(), receipt.acked().join(", "));
/// for (nsqd, error) in receipt.failed() {
///     eprintln!("copy on {nsqd} failed: {error}");
/// }
/// # }
/// ```
#[derive(Debug)]
pub struct Receipt {
    key: MessageKey,
    acked: Vec<Producer>,
    failed: Vec<(String, PublishError)>,
}

impl Receipt {
    /// The message's key, as its envelope carries it.
    ///
    /// ```
    /// # fn show(receipt: nsq_client::Receipt) {
    /// println!("{}", receipt.key());
    /// # }
    /// ```
    pub fn key(&self) -> MessageKey {
        self.key
    }

    /// The nsqd that answered `OK` before the publish returned.
    ///
    /// ```
    /// # fn show(receipt: nsq_client::Receipt) {
    /// assert!(!receipt.acked().is_empty());
    /// # }
    /// ```
    pub fn acked(&self) -> Vec<&str> {
        self.acked.iter().map(Producer::addr).collect()
    }

    /// The copies that failed on the way (each then tried on another nsqd).
    ///
    /// ```
    /// # fn show(receipt: nsq_client::Receipt) {
    /// let retried = receipt.failed().len();
    /// # let _ = retried;
    /// # }
    /// ```
    pub fn failed(&self) -> &[(String, PublishError)] {
        &self.failed
    }
}

/// A replicated publish that did not reach its quorum. The message may still be held by
/// the nsqd in [`acked`](Self::acked): publishing it again makes a new message (a new key),
/// so a consumer may then see it twice.
///
/// ```
/// # fn show(err: nsq_client::ReplicationError) {
/// eprintln!("{err}");
/// for (nsqd, cause) in err.failed() {
///     eprintln!("  {nsqd}: {cause}");
/// }
/// let body = err.into_body(); // to try again later
/// # let _ = body;
/// # }
/// ```
#[derive(Debug, thiserror::Error)]
#[error(
    "message {key} reached {} of the {needed} nsqd it needs{}",
    acked.len(),
    last_cause(failed)
)]
pub struct ReplicationError {
    key: MessageKey,
    needed: usize,
    acked: Vec<Producer>,
    failed: Vec<(String, PublishError)>,
    body: Bytes,
}

fn last_cause(failed: &[(String, PublishError)]) -> String {
    failed
        .last()
        .map(|(nsqd, e)| format!(" (last failure, {nsqd}: {e})"))
        .unwrap_or_default()
}

impl ReplicationError {
    /// The key the message was published with.
    ///
    /// ```
    /// # fn show(err: &nsq_client::ReplicationError) {
    /// println!("{}", err.key());
    /// # }
    /// ```
    pub fn key(&self) -> MessageKey {
        self.key
    }

    /// The nsqd that did answer `OK`.
    ///
    /// ```
    /// # fn show(err: &nsq_client::ReplicationError) {
    /// println!("held by {:?}", err.acked());
    /// # }
    /// ```
    pub fn acked(&self) -> Vec<&str> {
        self.acked.iter().map(Producer::addr).collect()
    }

    /// Every copy that failed, and why.
    ///
    /// ```
    /// # fn show(err: &nsq_client::ReplicationError) {
    /// println!("{} failures", err.failed().len());
    /// # }
    /// ```
    pub fn failed(&self) -> &[(String, PublishError)] {
        &self.failed
    }

    /// The application's body (without the envelope), handed back.
    ///
    /// ```
    /// # fn show(err: nsq_client::ReplicationError) {
    /// let body: bytes::Bytes = err.into_body();
    /// # let _ = body;
    /// # }
    /// ```
    pub fn into_body(self) -> Bytes {
        self.body
    }
}

/// Publishes every message to several distinct nsqd of a [`ProducerPool`], each copy in an
/// [envelope](crate::replication::envelope()) that carries the message's key, so that a
/// consumer with [`Dedup::envelope`](crate::Dedup::envelope) hands it to the user once.
/// See the [`replication`](crate::replication) module for what this guarantees.
/// Cheap to clone.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// # let (a, b) = (nsq_server_lite::Nsqd::start().await?, nsq_server_lite::Nsqd::start().await?);
/// use nsq_client::{proto::Topic, ProducerPool, ReplicatedProducer, Replication, Strategy};
///
/// let pool = ProducerPool::new(
///     [a.tcp_addr().to_string(), b.tcp_addr().to_string()],
///     Default::default(),
///     Strategy::RoundRobin,
/// )?;
/// let producer = ReplicatedProducer::new(pool, Replication::copies(2))?;
/// let receipt = producer.publish(&Topic::new("invoices")?, "INV-7").await?;
/// assert_eq!(receipt.acked().len(), 2); // both nsqd hold it
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct ReplicatedProducer {
    pool: ProducerPool,
    replication: Replication,
    producer_id: u64,
    sequence: Arc<AtomicU64>,
}

impl ReplicatedProducer {
    /// Replicated publishing over `pool`'s nsqd, with a fresh random producer id.
    ///
    /// # Errors
    ///
    /// [`ConfigError`] unless `1 <= quorum <= copies`.
    ///
    /// ```
    /// use nsq_client::{ProducerPool, ReplicatedProducer, Replication, Strategy};
    /// let pool = ProducerPool::new(["10.0.0.1:4150", "10.0.0.2:4150"], Default::default(), Strategy::RoundRobin)?;
    /// assert!(ReplicatedProducer::new(pool.clone(), Replication::copies(2).quorum(3)).is_err());
    /// let producer = ReplicatedProducer::new(pool, Replication::default())?;
    /// # let _ = producer;
    /// # Ok::<(), nsq_client::ConfigError>(())
    /// ```
    pub fn new(pool: ProducerPool, replication: Replication) -> Result<Self, ConfigError> {
        if replication.quorum == 0 || replication.quorum > replication.copies {
            return Err(ConfigError::new(format!(
                "replication needs 1 <= quorum <= copies, got quorum {} of {} copies",
                replication.quorum, replication.copies
            )));
        }
        Ok(Self {
            pool,
            replication,
            producer_id: fastrand::u64(..),
            sequence: Arc::new(AtomicU64::new(0)),
        })
    }

    /// The pool the copies go through (its stats count every copy).
    ///
    /// ```
    /// # fn show(producer: &nsq_client::ReplicatedProducer) {
    /// println!("{} nsqd", producer.pool().addrs().len());
    /// # }
    /// ```
    pub fn pool(&self) -> &ProducerPool {
        &self.pool
    }

    /// Publishes `body` to `copies` distinct nsqd (healthy ones first, in the pool's order),
    /// moving a failed copy on to an nsqd that has none; resolves once `quorum` answered
    /// `OK`. The future borrows nothing (it can be spawned); the first copies are queued
    /// when this is called.
    ///
    /// # Errors
    ///
    /// [`ReplicationError`] when fewer than `quorum` nsqd took the message, with every
    /// failure and the body.
    ///
    /// ```
    /// # async fn send(producer: nsq_client::ReplicatedProducer) -> Result<(), Box<dyn std::error::Error>> {
    /// let receipt = producer.publish(&nsq_client::Topic::new("t")?, "body").await?;
    /// println!("{} on {:?}", receipt.key(), receipt.acked());
    /// # Ok(())
    /// # }
    /// ```
    pub fn publish(
        &self,
        topic: &Topic,
        body: impl Into<Bytes>,
    ) -> impl Future<Output = Result<Receipt, ReplicationError>> + Send + 'static {
        let body = body.into();
        let sequence = self.sequence.fetch_add(1, Ordering::Relaxed) + 1;
        let key = MessageKey::new(self.producer_id, sequence);
        let wrapped = envelope(key, &body);
        let topic = topic.clone();
        // No more copies than nsqd to put them on, however many were asked for.
        let room = self.replication.copies.min(self.pool.len());
        let mut copies = Copies {
            pool: self.pool.clone(),
            start: move |producer: &Producer| producer.publish(&topic, wrapped.clone()),
            from: self.pool.first_index(),
            tried: Vec::with_capacity(room),
            running: Vec::with_capacity(room),
            acked: Vec::with_capacity(room),
            failed: Vec::new(),
            wanted: self.replication.copies,
            stopped: false,
        };
        for _ in 0..room {
            copies.start_next();
        }
        let quorum = self.replication.quorum;
        async move {
            while copies.acked.len() < quorum {
                if !copies.step().await {
                    return Err(ReplicationError {
                        key,
                        needed: quorum,
                        acked: copies.acked,
                        failed: copies.failed,
                        body,
                    });
                }
            }
            let acked = std::mem::take(&mut copies.acked);
            let failed = std::mem::take(&mut copies.failed);
            let made = acked.len();
            if made < copies.wanted && !copies.running.is_empty() {
                // The copies beyond the quorum: made in the background, with failover.
                tokio::spawn(async move {
                    while made + copies.acked.len() < copies.wanted && copies.step().await {}
                });
            }
            Ok(Receipt { key, acked, failed })
        }
    }
}

/// The copies of one message under way: `F` is a copy's publish, as `start` makes it.
struct Copies<S, F> {
    pool: ProducerPool,
    start: S,
    /// Where the pool starts looking for nsqd ([`ProducerPool::pick`]).
    from: usize,
    /// The nsqd a copy was started on: no other goes there.
    tried: Vec<Producer>,
    /// The copies in flight (a few: polled in turn, no task of their own).
    running: Vec<(Producer, Pin<Box<F>>)>,
    acked: Vec<Producer>,
    failed: Vec<(String, PublishError)>,
    wanted: usize,
    /// Set by an error that another nsqd would answer the same way (a bad topic, a body
    /// too large): no more copies are started.
    stopped: bool,
}

impl<S, F> Copies<S, F>
where
    S: Fn(&Producer) -> F,
    F: Future<Output = Result<(), PublishError>>,
{
    /// Starts a copy on an nsqd that has none; false when there is none left.
    fn start_next(&mut self) -> bool {
        if self.stopped {
            return false;
        }
        let Some(producer) = self.pool.pick(self.from, &self.tried) else {
            return false;
        };
        self.tried.push(producer.clone());
        let publish = Box::pin((self.start)(&producer));
        self.running.push((producer, publish));
        true
    }

    /// Waits for the next copy's answer and records it, starting a replacement for a failed
    /// one. False when nothing is running any more.
    async fn step(&mut self) -> bool {
        let next = std::future::poll_fn(|cx| {
            let done = self
                .running
                .iter_mut()
                .enumerate()
                .find_map(|(i, (_, copy))| match copy.as_mut().poll(cx) {
                    Poll::Ready(result) => Some((i, result)),
                    Poll::Pending => None,
                });
            match done {
                Some((i, result)) => Poll::Ready(Some((self.running.swap_remove(i).0, result))),
                None if self.running.is_empty() => Poll::Ready(None),
                None => Poll::Pending,
            }
        });
        let Some((producer, result)) = next.await else {
            return false;
        };
        match result {
            Ok(()) => {
                self.pool.mark_ok(producer.addr());
                self.acked.push(producer);
            }
            Err(err) => {
                tracing::warn!(nsqd = %producer.addr(), error = %err, "a replicated copy failed");
                self.pool.mark_error(producer.addr(), &err);
                if !err.fails_over() {
                    self.stopped = true;
                }
                self.failed.push((producer.addr().to_owned(), err));
                self.start_next();
            }
        }
        true
    }
}
