//! Consuming a channel from every nsqd that holds its topic.
//!
//! One supervisor task owns the RDY controller ([`crate::rdy`]), the connections and the
//! nsqlookupd polling; one task per nsqd connection owns its socket. Messages reach the user
//! through one queue, as a [`futures::Stream`] or through [`Consumer::run`] with a handler.

use std::collections::{BTreeSet, HashMap};
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use futures::{FutureExt, SinkExt, Stream, StreamExt};
use nsq_proto::{Channel, ClientCodec, Command, Frame, Response, Topic};
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::codec::Framed;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::Instrument;

use crate::config::ConnectionConfig;
use crate::conn::{self, Transport};
use crate::error::ConfigError;
use crate::message::{Ack, AckCommand, ConnLink, Message};
use crate::rdy::{ConnId, Outcome, Rdy, RdyConfig, SendRdy};

/// How a consumer behaves; defaults are go-nsq's where go-nsq has the setting.
///
/// ```
/// use std::time::Duration;
/// use nsq_client::ConsumerConfig;
///
/// let config = ConsumerConfig::default()
///     .max_in_flight(200)
///     .lookupd_poll_interval(Duration::from_secs(15))
///     .max_attempts(10);
/// # let _ = config;
/// ```
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ConsumerConfig {
    pub(crate) connection: ConnectionConfig,
    pub(crate) max_in_flight: u32,
    pub(crate) lookupd_poll_interval: Duration,
    pub(crate) lookupd_poll_jitter: f64,
    pub(crate) max_attempts: u16,
    pub(crate) default_requeue_delay: Duration,
    pub(crate) max_requeue_delay: Duration,
    pub(crate) backoff_multiplier: Duration,
    pub(crate) max_backoff: Duration,
    pub(crate) reconnect_min: Duration,
    pub(crate) reconnect_max: Duration,
    pub(crate) shutdown_timeout: Duration,
    pub(crate) auto_touch: Option<Duration>,
}

impl Default for ConsumerConfig {
    fn default() -> Self {
        Self {
            connection: ConnectionConfig::default(),
            max_in_flight: 1,
            lookupd_poll_interval: Duration::from_secs(60),
            lookupd_poll_jitter: 0.3,
            max_attempts: 5,
            default_requeue_delay: Duration::from_secs(90),
            max_requeue_delay: Duration::from_secs(15 * 60),
            backoff_multiplier: Duration::from_secs(1),
            max_backoff: Duration::from_secs(120),
            reconnect_min: Duration::from_millis(100),
            reconnect_max: Duration::from_secs(30),
            shutdown_timeout: Duration::from_secs(30),
            auto_touch: None,
        }
    }
}

macro_rules! setter {
    ($(#[$doc:meta])* $name:ident: $ty:ty, $example:literal) => {
        $(#[$doc])*
        ///
        /// ```
        #[doc = concat!("let config = nsq_client::ConsumerConfig::default().", stringify!($name), "(", $example, ");")]
        /// # let _ = config;
        /// ```
        pub fn $name(mut self, value: $ty) -> Self {
            self.$name = value;
            self
        }
    };
}

impl ConsumerConfig {
    setter!(
        /// The connection settings (identity, heartbeat, TLS, compression, AUTH...).
        connection: ConnectionConfig, "nsq_client::ConnectionConfig::default()"
    );
    setter!(
        /// The most messages in flight across every nsqd together (default 1, as go-nsq).
        max_in_flight: u32, "100"
    );
    setter!(
        /// How often nsqlookupd is asked which nsqd hold the topic (default 60 s).
        lookupd_poll_interval: Duration, "std::time::Duration::from_secs(10)"
    );
    setter!(
        /// The first poll waits a random part of this fraction of the interval (default 0.3),
        /// so that many consumers started together do not poll together.
        lookupd_poll_jitter: f64, "0.1"
    );
    setter!(
        /// Messages delivered more often than this are given up on: the give-up hook runs and
        /// the message is finished (default 5; 0 never gives up).
        max_attempts: u16, "10"
    );
    setter!(
        /// The requeue delay for a failed message, multiplied by its attempts (default 90 s).
        default_requeue_delay: Duration, "std::time::Duration::from_secs(10)"
    );
    setter!(
        /// The longest default requeue delay (default 15 min).
        max_requeue_delay: Duration, "std::time::Duration::from_secs(60)"
    );
    setter!(
        /// Backoff after a failure waits this times 2^level (default 1 s).
        backoff_multiplier: Duration, "std::time::Duration::from_millis(500)"
    );
    setter!(
        /// The longest backoff wait (default 2 min).
        max_backoff: Duration, "std::time::Duration::from_secs(30)"
    );
    setter!(
        /// How long a graceful stop may take before remaining messages are left to nsqd's
        /// timeout (default 30 s, as go-nsq).
        shutdown_timeout: Duration, "std::time::Duration::from_secs(5)"
    );

    /// While a [`Consumer::run`] handler works on a message, TOUCH it this often so nsqd's
    /// in-flight timeout does not expire (default off: nsq's guide says clients should not
    /// touch on their own; turn it on for handlers that can outlast msg_timeout).
    ///
    /// ```
    /// let config = nsq_client::ConsumerConfig::default()
    ///     .auto_touch(Some(std::time::Duration::from_secs(20)));
    /// # let _ = config;
    /// ```
    pub fn auto_touch(mut self, every: Option<Duration>) -> Self {
        self.auto_touch = every;
        self
    }

    /// Reconnecting to an nsqd given directly waits from `min`, doubling up to `max`, with
    /// jitter (default 100 ms to 30 s).
    ///
    /// ```
    /// use std::time::Duration;
    /// let config = nsq_client::ConsumerConfig::default()
    ///     .reconnect_backoff(Duration::from_millis(50), Duration::from_secs(5));
    /// # let _ = config;
    /// ```
    pub fn reconnect_backoff(mut self, min: Duration, max: Duration) -> Self {
        self.reconnect_min = min;
        self.reconnect_max = max;
        self
    }

    fn validate(&self) -> Result<(), ConfigError> {
        self.connection.validate()?;
        if self.lookupd_poll_interval.is_zero() {
            return Err(ConfigError::new("lookupd_poll_interval must be above zero"));
        }
        if !(0.0..=1.0).contains(&self.lookupd_poll_jitter) {
            return Err(ConfigError::new(
                "lookupd_poll_jitter must be between 0 and 1",
            ));
        }
        if self.backoff_multiplier.is_zero() || self.max_backoff < self.backoff_multiplier {
            return Err(ConfigError::new(
                "backoff needs 0 < multiplier <= max_backoff",
            ));
        }
        if self.auto_touch.is_some_and(|d| d.is_zero()) {
            return Err(ConfigError::new("auto_touch must be above zero"));
        }
        if self.reconnect_min.is_zero() || self.reconnect_min > self.reconnect_max {
            return Err(ConfigError::new("reconnect_backoff needs 0 < min <= max"));
        }
        Ok(())
    }
}

/// What the consumer's counters say.
///
/// ```
/// # fn show(consumer: &nsq_client::Consumer) {
/// let stats = consumer.stats();
/// println!("{} received, {} finished", stats.received, stats.finished);
/// # }
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ConsumerStats {
    /// Messages delivered.
    pub received: u64,
    /// Messages finished.
    pub finished: u64,
    /// Messages requeued.
    pub requeued: u64,
    /// Open nsqd connections.
    pub connections: usize,
    /// Per connection: nsqd address, RDY and messages in flight.
    pub per_connection: Vec<(String, u32, u32)>,
    /// The sum of every connection's RDY (never above max_in_flight).
    pub total_rdy: u32,
    /// The backoff level; 0 when not backing off.
    pub backoff_level: u32,
    /// Whether some connection is close to its RDY (go-nsq's `IsStarved`).
    pub starved: bool,
}

#[derive(Debug, Default)]
struct Counters {
    received: AtomicU64,
    finished: AtomicU64,
    requeued: AtomicU64,
    snapshot: Mutex<Snapshot>,
}

impl Counters {
    fn count_done(&self, outcome: Outcome, count: u32) {
        let counter = match outcome {
            Outcome::Finished => &self.finished,
            Outcome::Requeued { .. } => &self.requeued,
        };
        counter.fetch_add(u64::from(count), Ordering::Relaxed);
    }
}

#[derive(Debug, Default, Clone)]
struct Snapshot {
    per_connection: Vec<(String, u32, u32)>,
    total_rdy: u32,
    backoff_level: u32,
    starved: bool,
}

/// What the supervisor is told.
enum Event {
    Connected {
        id: ConnId,
        max_rdy_count: u32,
    },
    /// Messages arrived on a connection (one socket read's worth).
    Received(ConnId, u32),
    /// Messages of a connection were answered with the same outcome, in a row.
    Done(ConnId, Outcome, u32),
    Closed {
        id: ConnId,
        addr: String,
        why: String,
    },
    SetMaxInFlight(u32),
}

/// What a connection task is told.
enum ConnCommand {
    Rdy(u32),
    Close,
}

/// Consumes one channel of one topic from every nsqd that holds it.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// # let nsqd = nsq_server_lite::Nsqd::start().await?;
/// # let producer = nsq_client::Producer::new(nsqd.tcp_addr().to_string(), Default::default())?;
/// use futures::StreamExt;
/// use nsq_client::{proto::{Channel, Topic}, Consumer, ConsumerConfig};
///
/// let topic = Topic::new("orders")?;
/// # producer.publish(&topic, "order 1").await?;
/// let mut consumer = Consumer::builder(topic, Channel::new("billing")?)
///     .nsqd(nsqd.tcp_addr().to_string())
///     .config(ConsumerConfig::default().max_in_flight(100))
///     .build()?;
/// let msg = consumer.next().await.expect("a message");
/// assert_eq!(&msg.body()[..], b"order 1");
/// msg.finish()?;
/// consumer.stop().await;
/// # Ok(())
/// # }
/// ```
#[derive(Debug)]
pub struct Consumer {
    shared: Arc<ConsumerShared>,
    messages: Option<Inbox>,
}

/// The consumer's end of the message queue. Connections send what one socket read brought as
/// one batch, so a busy consumer is woken once per batch rather than once per message; the
/// messages are handed out one by one, in order.
#[derive(Debug)]
struct Inbox {
    rx: mpsc::UnboundedReceiver<Vec<Message>>,
    batch: std::vec::IntoIter<Message>,
}

impl Inbox {
    fn new(rx: mpsc::UnboundedReceiver<Vec<Message>>) -> Self {
        Self {
            rx,
            batch: Vec::new().into_iter(),
        }
    }

    fn poll_recv(&mut self, cx: &mut Context<'_>) -> Poll<Option<Message>> {
        loop {
            if let Some(msg) = self.batch.next() {
                return Poll::Ready(Some(msg));
            }
            match self.rx.poll_recv(cx) {
                Poll::Ready(Some(batch)) => self.batch = batch.into_iter(),
                Poll::Ready(None) => return Poll::Ready(None),
                Poll::Pending => return Poll::Pending,
            }
        }
    }

    async fn recv(&mut self) -> Option<Message> {
        std::future::poll_fn(|cx| self.poll_recv(cx)).await
    }

    /// Drops (so requeues) every message queued now.
    fn drop_queued(&mut self) {
        self.batch = Vec::new().into_iter();
        while let Ok(batch) = self.rx.try_recv() {
            drop(batch);
        }
    }
}

impl Stream for Inbox {
    type Item = Message;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Message>> {
        self.poll_recv(cx)
    }
}

#[derive(Debug)]
struct ConsumerShared {
    topic: Topic,
    channel: Channel,
    config: ConsumerConfig,
    nsqd: Vec<String>,
    lookupd: Vec<String>,
    counters: Arc<Counters>,
    events: Mutex<Option<mpsc::UnboundedSender<Event>>>,
    max_in_flight: AtomicU32,
    stop: CancellationToken,
    done: CancellationToken,
    tasks: TaskTracker,
    started: std::sync::OnceLock<()>,
    pending_start: Mutex<Option<StartParts>>,
    give_up: Option<GiveUp>,
}

/// The hook for messages past `max_attempts`.
#[derive(Clone)]
struct GiveUp(Arc<dyn Fn(&Message) + Send + Sync>);

impl std::fmt::Debug for GiveUp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("GiveUp")
    }
}

/// What the supervisor starts with: the message queue's sender and the event channel.
type StartParts = (
    mpsc::UnboundedSender<Vec<Message>>,
    mpsc::UnboundedReceiver<Event>,
    mpsc::UnboundedSender<Event>,
);

impl Drop for ConsumerShared {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

/// Builds a [`Consumer`].
///
/// ```
/// use nsq_client::{proto::{Channel, Topic}, Consumer};
/// let consumer = Consumer::builder(Topic::new("orders")?, Channel::new("billing")?)
///     .lookupd("127.0.0.1:4161")
///     .build()?;
/// # drop(consumer);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug)]
#[must_use]
pub struct ConsumerBuilder {
    topic: Topic,
    channel: Channel,
    config: ConsumerConfig,
    nsqd: Vec<String>,
    lookupd: Vec<String>,
    give_up: Option<GiveUp>,
}

impl ConsumerBuilder {
    /// Connects to this nsqd directly (`host:port`, its TCP port); may be given several times.
    ///
    /// ```
    /// # use nsq_client::{proto::{Channel, Topic}, Consumer};
    /// let b = Consumer::builder(Topic::new("t")?, Channel::new("c")?).nsqd("10.0.0.1:4150");
    /// # drop(b);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn nsqd(mut self, addr: impl Into<String>) -> Self {
        self.nsqd.push(addr.into());
        self
    }

    /// Discovers nsqd through this nsqlookupd (`host:port` of its HTTP port, or a URL); may
    /// be given several times: the union of their answers is used.
    ///
    /// ```
    /// # use nsq_client::{proto::{Channel, Topic}, Consumer};
    /// let b = Consumer::builder(Topic::new("t")?, Channel::new("c")?).lookupd("10.0.0.9:4161");
    /// # drop(b);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn lookupd(mut self, addr: impl Into<String>) -> Self {
        self.lookupd.push(addr.into());
        self
    }

    /// The configuration (default [`ConsumerConfig::default`]).
    ///
    /// ```
    /// # use nsq_client::{proto::{Channel, Topic}, Consumer, ConsumerConfig};
    /// let b = Consumer::builder(Topic::new("t")?, Channel::new("c")?)
    ///     .config(ConsumerConfig::default().max_in_flight(50));
    /// # drop(b);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn config(mut self, config: ConsumerConfig) -> Self {
        self.config = config;
        self
    }

    /// Validates and creates the consumer. Nothing connects until it is first polled (or
    /// [`Consumer::run`] is called); a tokio runtime must be running then.
    ///
    /// # Errors
    ///
    /// [`ConfigError`] when a setting is out of range or no nsqd and no lookupd is given.
    ///
    /// ```
    /// # use nsq_client::{proto::{Channel, Topic}, Consumer};
    /// let err = Consumer::builder(Topic::new("t")?, Channel::new("c")?).build().unwrap_err();
    /// assert!(err.to_string().contains("nsqd"));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn build(self) -> Result<Consumer, ConfigError> {
        let mut consumer = Consumer::new(
            self.topic,
            self.channel,
            self.config,
            self.nsqd,
            self.lookupd,
        )?;
        if let Some(shared) = Arc::get_mut(&mut consumer.shared) {
            shared.give_up = self.give_up;
        }
        Ok(consumer)
    }

    /// Called by [`Consumer::run`] for each message delivered more than `max_attempts`
    /// times, before it is finished: the place to dead-letter it.
    ///
    /// ```
    /// # use nsq_client::{proto::{Channel, Topic}, Consumer};
    /// let b = Consumer::builder(Topic::new("t")?, Channel::new("c")?)
    ///     .give_up(|msg| eprintln!("dead letter {} after {} attempts", msg.id(), msg.attempts()));
    /// # drop(b);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn give_up(mut self, hook: impl Fn(&Message) + Send + Sync + 'static) -> Self {
        self.give_up = Some(GiveUp(Arc::new(hook)));
        self
    }
}

impl Consumer {
    /// A builder for a consumer of `channel` on `topic`.
    ///
    /// ```
    /// use nsq_client::{proto::{Channel, Topic}, Consumer};
    /// let b = Consumer::builder(Topic::new("orders")?, Channel::new("billing")?);
    /// # drop(b);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn builder(topic: Topic, channel: Channel) -> ConsumerBuilder {
        ConsumerBuilder {
            topic,
            channel,
            config: ConsumerConfig::default(),
            nsqd: Vec::new(),
            lookupd: Vec::new(),
            give_up: None,
        }
    }

    /// A consumer of `channel` on `topic` from the given nsqd and/or nsqlookupd.
    ///
    /// # Errors
    ///
    /// [`ConfigError`] when a setting is out of range or no address is given.
    ///
    /// ```
    /// use nsq_client::{proto::{Channel, Topic}, Consumer, ConsumerConfig};
    /// let consumer = Consumer::new(
    ///     Topic::new("orders")?,
    ///     Channel::new("billing")?,
    ///     ConsumerConfig::default(),
    ///     vec!["127.0.0.1:4150".into()],
    ///     vec![],
    /// )?;
    /// # drop(consumer);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn new(
        topic: Topic,
        channel: Channel,
        config: ConsumerConfig,
        nsqd: Vec<String>,
        lookupd: Vec<String>,
    ) -> Result<Self, ConfigError> {
        config.validate()?;
        if nsqd.is_empty() && lookupd.is_empty() {
            return Err(ConfigError::new(
                "a consumer needs at least one nsqd or nsqlookupd address",
            ));
        }
        let (messages_tx, messages_rx) = mpsc::unbounded_channel();
        let (events_tx, events_rx) = mpsc::unbounded_channel();
        let max_in_flight = config.max_in_flight;
        Ok(Self {
            shared: Arc::new(ConsumerShared {
                topic,
                channel,
                config,
                nsqd,
                lookupd,
                counters: Arc::default(),
                events: Mutex::new(Some(events_tx.clone())),
                max_in_flight: AtomicU32::new(max_in_flight),
                stop: CancellationToken::new(),
                done: CancellationToken::new(),
                tasks: TaskTracker::new(),
                started: std::sync::OnceLock::new(),
                pending_start: Mutex::new(Some((messages_tx, events_rx, events_tx))),
                give_up: None,
            }),
            messages: Some(Inbox::new(messages_rx)),
        })
    }

    /// Starts the supervisor on first use.
    fn start(&self) {
        self.shared.started.get_or_init(|| {
            let Some((messages, events_rx, events_tx)) = self
                .shared
                .pending_start
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .take()
            else {
                return;
            };
            let shared = &self.shared;
            let supervisor = Supervisor {
                topic: shared.topic.clone(),
                channel: shared.channel.clone(),
                config: shared.config.clone(),
                nsqd: shared.nsqd.clone(),
                lookupd: shared.lookupd.clone(),
                rdy: Rdy::new(rdy_config(&shared.config), fastrand::u64(..)),
                conns: HashMap::new(),
                next_id: 1,
                events_rx,
                events_tx,
                messages,
                counters: shared.counters.clone(),
                stop: shared.stop.clone(),
                tasks: shared.tasks.clone(),
                http: reqwest::Client::builder()
                    .timeout(Duration::from_secs(5))
                    .build()
                    .unwrap_or_default(),
                direct_failures: HashMap::new(),
                next_poll: None,
            };
            let done = shared.done.clone();
            let span = tracing::info_span!("nsq_consumer", topic = %shared.topic, channel = %shared.channel);
            shared.tasks.spawn(
                async move {
                    supervisor.run().await;
                    done.cancel();
                }
                .instrument(span),
            );
        });
    }

    /// The next message; `None` once the consumer has stopped and every delivered message
    /// was handed out.
    ///
    /// ```
    /// # async fn show(mut consumer: nsq_client::Consumer) {
    /// while let Some(msg) = consumer.recv().await {
    ///     let _ = msg.finish();
    /// }
    /// # }
    /// ```
    pub async fn recv(&mut self) -> Option<Message> {
        self.start();
        self.messages.as_mut()?.recv().await
    }

    /// Changes max_in_flight while running; 0 pauses delivery, a later change resumes it.
    ///
    /// ```
    /// # fn pause(consumer: &nsq_client::Consumer) {
    /// consumer.set_max_in_flight(0);
    /// # }
    /// ```
    pub fn set_max_in_flight(&self, max_in_flight: u32) {
        self.shared
            .max_in_flight
            .store(max_in_flight, Ordering::Relaxed);
        if let Some(events) = self
            .shared
            .events
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .as_ref()
        {
            let _ = events.send(Event::SetMaxInFlight(max_in_flight));
        }
    }

    /// The counters and each connection's RDY and in-flight count.
    ///
    /// ```
    /// # fn show(consumer: &nsq_client::Consumer) {
    /// assert_eq!(consumer.stats().connections, consumer.stats().per_connection.len());
    /// # }
    /// ```
    pub fn stats(&self) -> ConsumerStats {
        let c = &self.shared.counters;
        let snapshot = c.snapshot.lock().unwrap_or_else(|e| e.into_inner()).clone();
        ConsumerStats {
            received: c.received.load(Ordering::Relaxed),
            finished: c.finished.load(Ordering::Relaxed),
            requeued: c.requeued.load(Ordering::Relaxed),
            connections: snapshot.per_connection.len(),
            per_connection: snapshot.per_connection,
            total_rdy: snapshot.total_rdy,
            backoff_level: snapshot.backoff_level,
            starved: snapshot.starved,
        }
    }

    /// Stops gracefully: CLS to every nsqd, waits for in-flight messages to be answered (up
    /// to the shutdown timeout), requeues what arrives after CLS, then closes. Messages still
    /// queued for the caller are requeued.
    ///
    /// ```
    /// # async fn show(consumer: nsq_client::Consumer) {
    /// consumer.stop().await;
    /// # }
    /// ```
    pub async fn stop(mut self) {
        self.shared.stop.cancel();
        if self.shared.started.get().is_none() {
            return;
        }
        // Requeue what was delivered but not taken, while the connections are still open.
        if let Some(mut rx) = self.messages.take() {
            let done = self.shared.done.clone();
            loop {
                tokio::select! {
                    msg = rx.recv() => match msg {
                        Some(msg) => drop(msg),
                        None => break,
                    },
                    _ = done.cancelled() => {
                        rx.drop_queued();
                        break;
                    }
                }
            }
        }
        self.shared.tasks.close();
        self.shared.tasks.wait().await;
    }

    /// Runs `handler` on every message with up to `concurrency` at once, finishing each
    /// message whose handler succeeds and requeueing (with backoff) each that fails. A message
    /// delivered more than `max_attempts` times is not handled: it goes to the give-up hook
    /// (see [`ConsumerBuilder::give_up`]) and is finished. Returns when the consumer stops
    /// (through a [`StopHandle`]).
    ///
    /// ```
    /// # async fn show(consumer: nsq_client::Consumer) {
    /// consumer
    ///     .run(4, |msg: &nsq_client::Message| {
    ///         let ok = !msg.body().is_empty();
    ///         async move { if ok { Ok(()) } else { Err("empty body".into()) } }
    ///     })
    ///     .await;
    /// # }
    /// ```
    pub async fn run<H, F>(mut self, concurrency: usize, handler: H)
    where
        H: Fn(&Message) -> F,
        F: Future<Output = Result<(), Box<dyn std::error::Error + Send + Sync>>>,
    {
        self.start();
        let max_attempts = self.shared.config.max_attempts;
        let auto_touch = self.shared.config.auto_touch;
        let give_up = self.shared.give_up.clone();
        let Some(rx) = self.messages.take() else {
            return;
        };
        rx.for_each_concurrent(concurrency.max(1), |msg| {
                let handler = &handler;
                let give_up = give_up.clone();
                async move {
                    if max_attempts > 0 && msg.attempts() > max_attempts {
                        tracing::warn!(id = %msg.id(), attempts = msg.attempts(), "giving up on message");
                        if let Some(GiveUp(hook)) = &give_up {
                            hook(&msg);
                        }
                        let _ = msg.finish();
                        return;
                    }
                    let work = handler(&msg);
                    let result = match auto_touch {
                        None => work.await,
                        Some(every) => {
                            let mut work = std::pin::pin!(work);
                            let mut ticks = tokio::time::interval_at(Instant::now() + every, every);
                            loop {
                                tokio::select! {
                                    result = &mut work => break result,
                                    _ = ticks.tick() => { let _ = msg.touch(); }
                                }
                            }
                        }
                    };
                    let _ = match result {
                        Ok(()) => msg.finish(),
                        Err(err) => {
                            tracing::debug!(id = %msg.id(), %err, "handler failed; requeue");
                            msg.requeue(None)
                        }
                    };
                }
            })
            .await;
        self.shared.tasks.close();
        self.shared.tasks.wait().await;
    }

    /// A handle that stops the consumer from elsewhere (for [`run`](Self::run)).
    ///
    /// ```
    /// # async fn show(consumer: nsq_client::Consumer) {
    /// let stop = consumer.stop_handle();
    /// tokio::spawn(async move { stop.stop() });
    /// # }
    /// ```
    pub fn stop_handle(&self) -> StopHandle {
        StopHandle {
            stop: self.shared.stop.clone(),
        }
    }
}

/// Stops a consumer gracefully from another task.
///
/// ```
/// # fn show(consumer: &nsq_client::Consumer) {
/// consumer.stop_handle().stop();
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct StopHandle {
    stop: CancellationToken,
}

impl StopHandle {
    /// Starts the graceful stop; the consumer's stream ends when it is done.
    ///
    /// ```
    /// # fn show(handle: nsq_client::StopHandle) {
    /// handle.stop();
    /// # }
    /// ```
    pub fn stop(&self) {
        self.stop.cancel();
    }
}

impl Stream for Consumer {
    type Item = Message;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Message>> {
        self.start();
        match self.messages.as_mut() {
            Some(inbox) => inbox.poll_recv(cx),
            None => Poll::Ready(None),
        }
    }
}

fn rdy_config(config: &ConsumerConfig) -> RdyConfig {
    RdyConfig {
        max_in_flight: config.max_in_flight,
        idle_rotate: Duration::from_millis(50),
        max_hold: Duration::from_secs(1),
        backoff_multiplier: config.backoff_multiplier,
        max_backoff: config.max_backoff,
        backoff_jitter: false,
    }
}

/// A connection as the supervisor sees it.
struct ConnHandle {
    addr: String,
    commands: mpsc::UnboundedSender<ConnCommand>,
}

struct Supervisor {
    topic: Topic,
    channel: Channel,
    config: ConsumerConfig,
    nsqd: Vec<String>,
    lookupd: Vec<String>,
    rdy: Rdy,
    conns: HashMap<ConnId, ConnHandle>,
    next_id: ConnId,
    events_rx: mpsc::UnboundedReceiver<Event>,
    events_tx: mpsc::UnboundedSender<Event>,
    messages: mpsc::UnboundedSender<Vec<Message>>,
    counters: Arc<Counters>,
    stop: CancellationToken,
    tasks: TaskTracker,
    http: reqwest::Client,
    /// Direct nsqd addresses waiting to reconnect: failures so far and when to try.
    direct_failures: HashMap<String, (u32, Instant)>,
    /// When nsqlookupd is asked next.
    next_poll: Option<Instant>,
}

impl Supervisor {
    async fn run(mut self) {
        for addr in self.nsqd.clone() {
            self.open(addr);
        }
        let interval = self.config.lookupd_poll_interval;
        let jitter = interval.mul_f64(fastrand::f64() * self.config.lookupd_poll_jitter);
        // The first lookupd query is immediate; the next one waits the jitter plus the interval.
        self.next_poll = (!self.lookupd.is_empty()).then(Instant::now);
        let mut first_poll = true;
        loop {
            let rdy_deadline = self.rdy.next_deadline();
            let retry_deadline = self.direct_failures.values().map(|(_, at)| *at).min();
            tokio::select! {
                biased;
                _ = self.stop.cancelled() => break,
                event = self.events_rx.recv() => match event {
                    Some(event) => {
                        self.on_event(event);
                        // Take what else is waiting before the stats snapshot is rebuilt.
                        for _ in 0..1024 {
                            match self.events_rx.try_recv() {
                                Ok(event) => self.on_event(event),
                                Err(_) => break,
                            }
                        }
                    }
                    None => break,
                },
                _ = sleep_until(rdy_deadline) => {
                    let sends = self.rdy.tick(Instant::now());
                    self.apply(sends);
                }
                _ = sleep_until(retry_deadline) => self.retry_direct(),
                _ = sleep_until(self.next_poll) => {
                    self.poll_lookupd().await;
                    let wait = if first_poll { interval + jitter } else { interval };
                    first_poll = false;
                    self.next_poll = Some(Instant::now() + wait);
                }
            }
            self.publish_snapshot();
        }
        self.shutdown().await;
    }

    fn publish_snapshot(&self) {
        let mut per_connection: Vec<_> = self
            .conns
            .iter()
            .map(|(id, c)| {
                let rdy = self.rdy.rdy(*id).unwrap_or(0);
                let in_flight = self.rdy.in_flight(*id).unwrap_or(0);
                (c.addr.clone(), rdy, in_flight)
            })
            .collect();
        per_connection.sort();
        *self
            .counters
            .snapshot
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = Snapshot {
            per_connection,
            total_rdy: self.rdy.total_rdy(),
            backoff_level: self.rdy.backoff_level(),
            starved: self.rdy.is_starved(),
        };
    }

    fn on_event(&mut self, event: Event) {
        let now = Instant::now();
        match event {
            Event::Connected { id, max_rdy_count } => {
                if let Some(c) = self.conns.get(&id) {
                    self.direct_failures.remove(&c.addr);
                }
                let sends = self.rdy.connected(id, max_rdy_count, now);
                self.apply(sends);
            }
            Event::Received(id, count) => {
                self.counters
                    .received
                    .fetch_add(u64::from(count), Ordering::Relaxed);
                let sends = self.rdy.message_received(id, count, now);
                self.apply(sends);
            }
            Event::Done(id, outcome, count) => {
                self.counters.count_done(outcome, count);
                let sends = self.rdy.message_done(id, outcome, count, now);
                self.apply(sends);
            }
            Event::Closed { id, addr, why } => {
                tracing::info!(%addr, %why, "nsqd connection closed");
                self.conns.remove(&id);
                let sends = self.rdy.closed(id, now);
                self.apply(sends);
                if !self.lookupd.is_empty() && !self.nsqd.contains(&addr) {
                    // Ask lookupd again soon: if it still lists this nsqd, it is reconnected.
                    let soon = now + self.config.reconnect_min;
                    self.next_poll = Some(self.next_poll.map_or(soon, |at| at.min(soon)));
                }
                if self.nsqd.contains(&addr) && !self.stop.is_cancelled() {
                    let failures = self.direct_failures.get(&addr).map_or(0, |(n, _)| *n) + 1;
                    let wait = conn::reconnect_delay(
                        failures,
                        self.config.reconnect_min,
                        self.config.reconnect_max,
                    );
                    self.direct_failures.insert(addr, (failures, now + wait));
                }
            }
            Event::SetMaxInFlight(n) => {
                let sends = self.rdy.set_max_in_flight(n, now);
                self.apply(sends);
            }
        }
    }

    fn apply(&mut self, sends: Vec<SendRdy>) {
        for SendRdy { conn, count } in sends {
            if let Some(c) = self.conns.get(&conn) {
                let _ = c.commands.send(ConnCommand::Rdy(count));
            }
        }
    }

    fn retry_direct(&mut self) {
        let now = Instant::now();
        let due: Vec<String> = self
            .direct_failures
            .iter()
            .filter(|(_, (_, at))| *at <= now)
            .map(|(addr, _)| addr.clone())
            .collect();
        for addr in due {
            if let Some(entry) = self.direct_failures.get_mut(&addr) {
                // Pushed out until this attempt reports back (Connected clears it).
                entry.1 = now + self.config.reconnect_max;
            }
            if !self.conns.values().any(|c| c.addr == addr) {
                self.open(addr);
            }
        }
    }

    /// Opens a connection task to `addr`.
    fn open(&mut self, addr: String) {
        let id = self.next_id;
        self.next_id += 1;
        let (commands, commands_rx) = mpsc::unbounded_channel();
        self.conns.insert(
            id,
            ConnHandle {
                addr: addr.clone(),
                commands,
            },
        );
        let task = ConnTask {
            id,
            addr: Arc::from(addr.as_str()),
            topic: self.topic.clone(),
            channel: self.channel.clone(),
            config: self.config.clone(),
            events: self.events_tx.clone(),
            messages: self.messages.clone(),
            commands: commands_rx,
        };
        let span = tracing::info_span!("nsqd", %addr, conn = id);
        self.tasks.spawn(task.run().instrument(span));
    }

    /// Asks every lookupd which nsqd hold the topic; connects to new ones and closes (after
    /// their messages drain) those no lookupd lists any more.
    async fn poll_lookupd(&mut self) {
        let mut listed = BTreeSet::new();
        let mut answered = false;
        for lookupd in &self.lookupd {
            match lookup(&self.http, lookupd, &self.topic).await {
                Ok(producers) => {
                    answered = true;
                    listed.extend(producers);
                }
                Err(err) => tracing::warn!(%lookupd, %err, "nsqlookupd query failed"),
            }
        }
        if !answered {
            // Keep the connections we have while no lookupd answers.
            return;
        }
        let connected: BTreeSet<String> = self.conns.values().map(|c| c.addr.clone()).collect();
        for addr in listed.difference(&connected) {
            tracing::info!(%addr, "nsqd found through nsqlookupd");
            self.open(addr.clone());
        }
        for c in self.conns.values() {
            if !listed.contains(&c.addr) && !self.nsqd.contains(&c.addr) {
                tracing::info!(addr = %c.addr, "nsqd no longer listed by any nsqlookupd; closing");
                let _ = c.commands.send(ConnCommand::Close);
            }
        }
    }

    async fn shutdown(&mut self) {
        for c in self.conns.values() {
            let _ = c.commands.send(ConnCommand::Close);
        }
        let deadline = Instant::now() + self.config.shutdown_timeout;
        while !self.conns.is_empty() {
            tokio::select! {
                event = self.events_rx.recv() => match event {
                    Some(Event::Closed { id, .. }) => { self.conns.remove(&id); }
                    Some(Event::Done(id, outcome, count)) => {
                        self.counters.count_done(outcome, count);
                        let _ = self.rdy.message_done(id, outcome, count, Instant::now());
                    }
                    Some(_) => {}
                    None => break,
                },
                _ = tokio::time::sleep_until(deadline) => {
                    tracing::warn!(left = self.conns.len(), "shutdown timeout; closing connections with messages in flight");
                    break;
                }
            }
        }
        self.publish_snapshot();
    }
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

async fn lookup(
    http: &reqwest::Client,
    lookupd: &str,
    topic: &Topic,
) -> Result<Vec<String>, crate::LookupdError> {
    let producers = crate::lookupd::lookup(http, lookupd, topic).await?;
    Ok(producers.iter().map(crate::lookupd::tcp_addr).collect())
}

/// How long a closing connection keeps reading after CLOSE_WAIT for late messages.
const CLOSE_GRACE: Duration = Duration::from_millis(100);

/// The most frames a connection handles in one turn before it hands the messages on; what
/// one socket read brings is usually far fewer.
const FRAMES_PER_TURN: usize = 1024;

/// The task that owns one nsqd connection.
struct ConnTask {
    id: ConnId,
    addr: Arc<str>,
    topic: Topic,
    channel: Channel,
    config: ConsumerConfig,
    events: mpsc::UnboundedSender<Event>,
    messages: mpsc::UnboundedSender<Vec<Message>>,
    commands: mpsc::UnboundedReceiver<ConnCommand>,
}

/// What a connection does after reading a frame.
enum Next {
    Continue,
    /// Every frame before CLOSE_WAIT has been read.
    CloseWait,
}

impl ConnTask {
    async fn run(mut self) {
        let why = match self.serve().await {
            Ok(()) => "closed".to_owned(),
            Err(why) => why,
        };
        let _ = self.events.send(Event::Closed {
            id: self.id,
            addr: self.addr.to_string(),
            why,
        });
    }

    async fn serve(&mut self) -> Result<(), String> {
        let connected = conn::connect(&self.addr, &self.config.connection)
            .await
            .map_err(|e| e.to_string())?;
        let mut framed = connected.framed;
        framed
            .send(Command::Sub {
                topic: self.topic.clone(),
                channel: self.channel.clone(),
            })
            .await
            .map_err(|e| e.to_string())?;
        // Wait for SUB's answer, so that a refusal is reported as such.
        loop {
            match framed.next().await {
                Some(Ok(Frame::Response(Response::Ok))) => break,
                Some(Ok(Frame::Response(Response::Heartbeat))) => {
                    framed.send(Command::Nop).await.map_err(|e| e.to_string())?
                }
                Some(Ok(Frame::Error(e))) => return Err(format!("SUB refused: {e}")),
                Some(Ok(other)) => {
                    return Err(format!("unexpected frame before SUB's answer: {other:?}"))
                }
                Some(Err(e)) => return Err(e.to_string()),
                None => return Err("nsqd closed the connection during SUB".to_owned()),
            }
        }
        let max_rdy_count = u32::try_from(connected.identify.max_rdy_count).unwrap_or(2500);
        let _ = self.events.send(Event::Connected {
            id: self.id,
            max_rdy_count,
        });
        tracing::info!("subscribed");

        let (acks_tx, mut acks_rx) = mpsc::unbounded_channel::<AckCommand>();
        let link = Arc::new(ConnLink {
            nsqd: self.addr.clone(),
            acks: acks_tx,
            default_requeue_delay: self.config.default_requeue_delay,
            max_requeue_delay: self.config.max_requeue_delay,
        });
        let read_deadline = self.config.connection.read_deadline();
        let mut last_read = Instant::now();
        // One timer for the read deadline, moved on only when it fires early.
        let read_timer = tokio::time::sleep_until(last_read + read_deadline);
        tokio::pin!(read_timer);
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
            tokio::select! {
                biased;
                Some(cmd) = self.commands.recv() => match cmd {
                    ConnCommand::Rdy(count) => {
                        if !closing {
                            framed.send(Command::Rdy(count)).await.map_err(|e| e.to_string())?;
                        }
                    }
                    ConnCommand::Close => {
                        if !closing {
                            closing = true;
                            close_deadline = Some(Instant::now() + self.config.shutdown_timeout);
                            framed.send(Command::Cls).await.map_err(|e| e.to_string())?;
                        }
                    }
                },
                n = acks_rx.recv_many(&mut acks, FRAMES_PER_TURN) => {
                    if n == 0 {
                        // Unreachable while `link` holds a sender; kept total.
                        continue;
                    }
                    let answered = self.write_acks(&mut framed, &mut acks).await?;
                    in_flight = in_flight.saturating_sub(answered);
                }
                () = &mut read_timer => {
                    let due = last_read + read_deadline;
                    if Instant::now() >= due {
                        return Err(format!("nothing from nsqd for {read_deadline:?}"));
                    }
                    read_timer.as_mut().reset(due);
                }
                _ = sleep_until(close_wait.map(|at| at + CLOSE_GRACE)), if in_flight == 0 => {}
                _ = sleep_until(close_deadline) => {
                    return Err(format!("{in_flight} messages still in flight at the shutdown timeout"));
                }
                frame = framed.next() => {
                    last_read = Instant::now();
                    // Handle every frame already read, then hand their messages on at once.
                    let mut batch = Vec::new();
                    let mut next = frame;
                    let mut handled = 0;
                    loop {
                        let frame = match next {
                            None => return Err("nsqd closed the connection".to_owned()),
                            Some(Err(e)) => return Err(e.to_string()),
                            Some(Ok(frame)) => frame,
                        };
                        match frame {
                            Frame::Message(msg) => batch.push(Message::new(msg, link.clone())),
                            other => {
                                if let Next::CloseWait = on_control_frame(&mut framed, other).await? {
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
                    if !batch.is_empty() {
                        let count = u32::try_from(batch.len()).unwrap_or(u32::MAX);
                        in_flight = in_flight.saturating_add(count);
                        // Counted before they can be answered, so the supervisor never sees
                        // an answer for a message it does not know of.
                        let _ = self.events.send(Event::Received(self.id, count));
                        if closing {
                            // Arrived after CLS: dropping gives them straight back.
                            drop(batch);
                        } else if let Err(mpsc::error::SendError(batch)) = self.messages.send(batch) {
                            drop(batch);
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
        framed: &mut Framed<Transport, ClientCodec>,
        acks: &mut Vec<AckCommand>,
    ) -> Result<u32, String> {
        let mut answered = 0;
        // The outcome of the current run and its length.
        let mut run: Option<(Outcome, u32)> = None;
        for AckCommand { id, ack } in acks.drain(..) {
            let (cmd, outcome) = match ack {
                Ack::Finish => (Command::Fin(id), Some(Outcome::Finished)),
                Ack::Requeue { delay, backoff } => (
                    Command::Req { id, delay },
                    Some(Outcome::Requeued { backoff }),
                ),
                Ack::Touch => (Command::Touch(id), None),
            };
            framed.feed(cmd).await.map_err(|e| e.to_string())?;
            let Some(outcome) = outcome else { continue };
            answered += 1;
            run = match run {
                Some((current, n)) if current == outcome => Some((current, n + 1)),
                Some((current, n)) => {
                    let _ = self.events.send(Event::Done(self.id, current, n));
                    Some((outcome, 1))
                }
                None => Some((outcome, 1)),
            };
        }
        if let Some((outcome, n)) = run {
            let _ = self.events.send(Event::Done(self.id, outcome, n));
        }
        SinkExt::<Command>::flush(framed)
            .await
            .map_err(|e| e.to_string())?;
        Ok(answered)
    }
}

/// Handles a frame that is not a message: answers heartbeats, logs non-fatal errors and
/// reports CLOSE_WAIT; a fatal error ends the connection.
async fn on_control_frame(
    framed: &mut Framed<Transport, ClientCodec>,
    frame: Frame,
) -> Result<Next, String> {
    match frame {
        Frame::Response(Response::Heartbeat) => {
            framed.send(Command::Nop).await.map_err(|e| e.to_string())?;
        }
        Frame::Response(Response::CloseWait) => return Ok(Next::CloseWait),
        Frame::Error(e) if !e.code.is_fatal() => {
            // E_FIN_FAILED and the like: the message timed out and went elsewhere.
            tracing::warn!(error = %e, "nsqd refused an answer");
        }
        Frame::Error(e) => return Err(format!("nsqd error: {e}")),
        Frame::Response(_) | Frame::Message(_) => {}
    }
    Ok(Next::Continue)
}
