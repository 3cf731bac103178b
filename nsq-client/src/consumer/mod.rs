//! Consuming a channel from every nsqd that holds its topic.
//!
//! One supervisor task ([`supervisor`]) owns the RDY controller ([`rdy`]), the connections
//! and nsqlookupd discovery; one task per nsqd connection ([`connection`]) owns its socket.
//! Messages reach the user by one path ([`delivery`]), read as a [`futures::Stream`] or run
//! through a [`Handler`] ([`Consumer::run`]), so every option means the same in both.
//!
//! The consumer logs with `tracing`: a span `nsq_consumer{topic, channel}` around the
//! supervisor, and `nsqd{addr, conn}` around each connection, with events at `info` for
//! connections made and lost, `warn` for failures (with `error` and `permanent` fields) and
//! `debug` for the protocol's details. [`Consumer::events`] gives the same facts as values.

mod builder;
mod config;
mod connection;
mod delivery;
mod discovery;
mod events;
mod handler;
pub(crate) mod message;
pub(crate) mod rdy;
pub(crate) mod stats;
mod supervisor;

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, OnceLock};
use std::task::{Context, Poll};
use std::time::Duration;

use futures::Stream;
use nsq_proto::{Channel, Topic};
use tokio::sync::{broadcast, mpsc, watch};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::Instrument;

pub use builder::ConsumerBuilder;
pub use config::{BackoffStrategy, ConsumerConfig};
pub use events::{ConnectedError, ConsumerEvent, ConsumerFailure, Events};
pub use handler::{Handler, HandlerError};
pub use message::{AckError, Message};
pub use stats::ConsumerStats;

use crate::error::ConfigError;
use crate::replication::window::Window;
use delivery::{DeliveryPolicy, Inbox};
use events::Health;
use stats::Counters;
use supervisor::{Control, Supervisor, SupervisorParts};

/// Consumes one channel of one topic from every nsqd that holds it.
///
/// Read it as a [`Stream`] of [`Message`]s (or with [`recv`](Self::recv)), or give it a
/// [`Handler`] with [`run`](Self::run). Either way a message delivered more than
/// `max_attempts` times goes to the give-up hook instead ([`ConsumerBuilder::give_up`]), and
/// auto-touch ([`ConsumerConfig::auto_touch`]) keeps unanswered messages alive.
/// [`handle`](Self::handle) gives a cheap, cloneable [`ConsumerHandle`] for stats, pausing,
/// events and stopping from other tasks.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// # let nsqd = nsq_server_lite::Nsqd::start().await?;
/// # let producer = nsq_client::Producer::new(nsqd.tcp_addr().to_string(), Default::default())?;
/// use futures::StreamExt;
/// use nsq_client::{Channel, Consumer, ConsumerConfig, Topic};
/// use std::time::Duration;
///
/// let topic = Topic::new("orders")?;
/// # producer.publish(&topic, "order 1").await?;
/// let mut consumer = Consumer::builder(topic, Channel::new("billing")?)
///     .nsqd(nsqd.tcp_addr().to_string())
///     .config(ConsumerConfig::default().max_in_flight(100))
///     .build()?;
/// consumer.connected(Duration::from_secs(5)).await?; // a typed error if nsqd refuses
/// let msg = consumer.next().await.expect("a message");
/// assert_eq!(&msg.body()[..], b"order 1");
/// msg.finish()?;
/// consumer.stop().await;
/// # Ok(())
/// # }
/// ```
#[derive(Debug)]
pub struct Consumer {
    handle: ConsumerHandle,
    inbox: Mutex<Option<Inbox>>,
}

/// A cheap, cloneable handle to a [`Consumer`]: stats, max_in_flight, events, the nsqd and
/// nsqlookupd it uses, and stopping, from any task, also while [`Consumer::run`] runs. The
/// consumer keeps running while a handle lives.
///
/// ```
/// # async fn show(consumer: nsq_client::Consumer, handler: impl nsq_client::Handler) {
/// let handle = consumer.handle();
/// tokio::spawn(async move {
///     tokio::signal::ctrl_c().await.ok();
///     handle.stop().await; // returns once the consumer has stopped
/// });
/// consumer.run(4, handler).await;
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct ConsumerHandle {
    shared: Arc<Shared>,
}

#[derive(Debug)]
struct Shared {
    topic: Topic,
    channel: Channel,
    max_in_flight: u32,
    counters: Arc<Counters>,
    control: mpsc::UnboundedSender<Control>,
    health: watch::Receiver<Health>,
    events: broadcast::Sender<ConsumerEvent>,
    stop: CancellationToken,
    done: CancellationToken,
    tasks: TaskTracker,
    started: OnceLock<()>,
    pending: Mutex<Option<SupervisorParts>>,
}

impl Drop for Shared {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

/// Dropping the consumer starts its stop, as [`ConsumerHandle::stop`] does: with nobody left
/// to take messages, it would otherwise keep taking and requeueing them.
impl Drop for Consumer {
    fn drop(&mut self) {
        self.handle.shared.stop.cancel();
    }
}

impl std::fmt::Debug for SupervisorParts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SupervisorParts").finish_non_exhaustive()
    }
}

impl Consumer {
    /// A builder for a consumer of `channel` on `topic`.
    ///
    /// ```
    /// use nsq_client::{Channel, Consumer, Topic};
    /// let b = Consumer::builder(Topic::new("orders")?, Channel::new("billing")?);
    /// # drop(b);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn builder(topic: Topic, channel: Channel) -> ConsumerBuilder {
        ConsumerBuilder::new(topic, channel)
    }

    /// A consumer of `channel` on `topic` from the given nsqd and/or nsqlookupd; the same as
    /// the [builder](Self::builder) with no hooks.
    ///
    /// # Errors
    ///
    /// [`ConfigError`] when a setting is out of range or no address is given.
    ///
    /// ```
    /// use nsq_client::{Channel, Consumer, ConsumerConfig, Topic};
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
        let mut builder = Self::builder(topic, channel).config(config);
        builder.nsqd = nsqd;
        builder.lookupd = lookupd;
        builder.build()
    }

    pub(crate) fn from_builder(b: ConsumerBuilder) -> Self {
        let (messages_tx, messages_rx) = mpsc::unbounded_channel();
        let (control_tx, control_rx) = mpsc::unbounded_channel();
        let (health_tx, health_rx) = watch::channel(Health::default());
        let (events_tx, _) = broadcast::channel(events::EVENT_BUFFER);
        let counters = Arc::new(Counters::default());
        let stop = CancellationToken::new();
        let tasks = TaskTracker::new();
        let window = b
            .dedup
            .map(|dedup| Window::new(dedup, messages_tx.downgrade(), counters.clone()));
        let policy = DeliveryPolicy {
            max_attempts: b.config.max_attempts,
            give_up: b.give_up,
            counters: counters.clone(),
            window: window.clone(),
        };
        let max_in_flight = b.config.max_in_flight;
        let parts = SupervisorParts {
            topic: b.topic.clone(),
            channel: b.channel.clone(),
            config: b.config,
            nsqd: b.nsqd,
            lookupd: b.lookupd,
            filter: b.discovery_filter,
            window,
            messages: messages_tx,
            control: control_rx,
            counters: counters.clone(),
            health: health_tx,
            events: events_tx.clone(),
            stop: stop.clone(),
            tasks: tasks.clone(),
        };
        Self {
            handle: ConsumerHandle {
                shared: Arc::new(Shared {
                    topic: b.topic,
                    channel: b.channel,
                    max_in_flight,
                    counters,
                    control: control_tx,
                    health: health_rx,
                    events: events_tx,
                    stop,
                    done: CancellationToken::new(),
                    tasks,
                    started: OnceLock::new(),
                    pending: Mutex::new(Some(parts)),
                }),
            },
            inbox: Mutex::new(Some(Inbox::new(messages_rx, policy))),
        }
    }

    /// A handle for other tasks: stats, max_in_flight, events, addresses, stopping.
    ///
    /// ```
    /// # fn show(consumer: &nsq_client::Consumer) {
    /// let handle = consumer.handle();
    /// std::thread::spawn(move || println!("{:?}", handle.stats()));
    /// # }
    /// ```
    pub fn handle(&self) -> ConsumerHandle {
        self.handle.clone()
    }

    /// The next message; `None` once the consumer has stopped and every delivered message
    /// was handed out (or when [`run`](Self::run) took the messages).
    ///
    /// ```
    /// # async fn show(mut consumer: nsq_client::Consumer) {
    /// while let Some(msg) = consumer.recv().await {
    ///     let _ = msg.finish();
    /// }
    /// # }
    /// ```
    pub async fn recv(&mut self) -> Option<Message> {
        self.handle.start();
        let inbox = self.inbox.get_mut().unwrap_or_else(|e| e.into_inner());
        inbox.as_mut()?.recv().await
    }

    /// Runs `handler` on every message with up to `concurrency` at once, until the consumer
    /// stops (through [`ConsumerHandle::stop`]); then returns once every connection closed.
    /// A handler's result answers the message it did not answer itself: `Ok` finishes it,
    /// an error requeues it (see [`Handler`] and [`HandlerError`]). Messages past
    /// `max_attempts` go to the give-up hook instead, as for the stream. [`stats`](Self::stats),
    /// [`set_max_in_flight`](Self::set_max_in_flight) and the handle keep working meanwhile.
    ///
    /// **`concurrency` does not raise max_in_flight.** At most `max_in_flight` messages are
    /// in flight (default 1), so a concurrency above it leaves handlers idle: set
    /// [`ConsumerConfig::max_in_flight`] to at least `concurrency` (go-nsq has the same two
    /// knobs, a frequent surprise there). The consumer logs a warning when it is below.
    ///
    /// ```
    /// # async fn show() -> Result<(), Box<dyn std::error::Error>> {
    /// use nsq_client::{Channel, Consumer, ConsumerConfig, HandlerError, Message, Topic};
    ///
    /// let consumer = Consumer::builder(Topic::new("orders")?, Channel::new("billing")?)
    ///     .lookupd("127.0.0.1:4161")
    ///     .config(ConsumerConfig::default().max_in_flight(32)) // >= concurrency
    ///     .build()?;
    /// consumer
    ///     .run(8, |msg: Message| async move {
    ///         if msg.body().is_empty() {
    ///             return Err(HandlerError::new("empty body")); // requeued, with backoff
    ///         }
    ///         Ok(()) // finished
    ///     })
    ///     .await;
    /// # Ok(())
    /// # }
    /// ```
    pub async fn run<H: Handler>(&self, concurrency: usize, handler: H) {
        self.handle.start();
        let concurrency = concurrency.max(1);
        let max_in_flight = self.handle.shared.max_in_flight;
        if u32::try_from(concurrency).unwrap_or(u32::MAX) > max_in_flight {
            tracing::warn!(
                concurrency,
                max_in_flight,
                "concurrency is above max_in_flight: at most max_in_flight handlers can be busy; raise max_in_flight"
            );
        }
        let taken = self.inbox.lock().unwrap_or_else(|e| e.into_inner()).take();
        let Some(inbox) = taken else {
            tracing::warn!("run: the messages were already taken by another run");
            return;
        };
        handler::run_handlers(inbox, concurrency, &handler).await;
        self.handle.wait_stopped().await;
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
    pub async fn stop(self) {
        let shared = self.handle.shared.clone();
        shared.stop.cancel();
        if shared.started.get().is_none() {
            return;
        }
        // Requeue what was delivered but not taken, while the connections are still open.
        let inbox = self.inbox.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(mut inbox) = inbox {
            loop {
                tokio::select! {
                    msg = inbox.recv() => match msg {
                        Some(msg) => drop(msg),
                        None => break,
                    },
                    _ = shared.done.cancelled() => {
                        inbox.drop_queued();
                        break;
                    }
                }
            }
        }
        self.handle.wait_stopped().await;
    }

    /// The counters and each connection's RDY and in-flight count. Reading them does not
    /// start the consumer: it starts on first use (the stream polled, [`Consumer::run`], or
    /// [`Consumer::connected`]), so a consumer never used shows no connections.
    ///
    /// ```
    /// # fn show(consumer: &nsq_client::Consumer) {
    /// assert_eq!(consumer.stats().connections, consumer.stats().per_connection.len());
    /// # }
    /// ```
    pub fn stats(&self) -> ConsumerStats {
        self.handle.stats()
    }

    /// Changes max_in_flight while running; 0 pauses delivery, a later change resumes it.
    ///
    /// ```
    /// # fn pause(consumer: &nsq_client::Consumer) {
    /// consumer.set_max_in_flight(0);
    /// # }
    /// ```
    pub fn set_max_in_flight(&self, max_in_flight: u32) {
        self.handle.set_max_in_flight(max_in_flight);
    }

    /// The consumer's events from now on; see [`ConsumerEvent`].
    ///
    /// ```
    /// # async fn show(consumer: &nsq_client::Consumer) {
    /// use futures::StreamExt;
    /// let mut events = consumer.events();
    /// # drop(events.next());
    /// # }
    /// ```
    pub fn events(&self) -> Events {
        self.handle.events()
    }

    /// Starts the consumer if it has not started, and waits until at least one nsqd is
    /// subscribed, for at most `within`. See [`ConsumerHandle::connected`].
    ///
    /// # Errors
    ///
    /// [`ConnectedError`]: a timeout with the last failure, a refusal that retrying cannot
    /// fix, or the consumer stopped.
    ///
    /// ```
    /// # async fn show(consumer: &nsq_client::Consumer) {
    /// if let Err(err) = consumer.connected(std::time::Duration::from_secs(10)).await {
    ///     eprintln!("not consuming: {err}");
    /// }
    /// # }
    /// ```
    pub async fn connected(&self, within: Duration) -> Result<(), ConnectedError> {
        self.handle.connected(within).await
    }
}

impl ConsumerHandle {
    /// Starts the supervisor on first use.
    fn start(&self) {
        self.shared.started.get_or_init(|| {
            let parts = self
                .shared
                .pending
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .take();
            let Some(parts) = parts else {
                return;
            };
            let done = self.shared.done.clone();
            let span = tracing::info_span!("nsq_consumer", topic = %self.shared.topic, channel = %self.shared.channel);
            let supervisor = Supervisor::new(parts);
            self.shared.tasks.spawn(
                async move {
                    supervisor.run().await;
                    done.cancel();
                }
                .instrument(span),
            );
        });
    }

    async fn wait_stopped(&self) {
        self.shared.tasks.close();
        self.shared.tasks.wait().await;
    }

    /// Starts the graceful stop at once (as [`Consumer::stop`], without requeueing what the
    /// stream has not handed out yet: it still is, until the connections close) and returns a
    /// future that resolves when the consumer has stopped: every connection closed and
    /// [`Consumer::run`] returned. The future need not be awaited for the stop to happen.
    ///
    /// ```
    /// # async fn show(handle: nsq_client::ConsumerHandle) {
    /// handle.stop().await;
    /// assert_eq!(handle.stats().connections, 0);
    /// # }
    /// ```
    pub fn stop(&self) -> impl Future<Output = ()> + Send + 'static {
        self.shared.stop.cancel();
        let this = self.clone();
        async move {
            if this.shared.started.get().is_some() {
                this.wait_stopped().await;
            }
        }
    }

    /// Whether the stop has begun.
    ///
    /// ```
    /// # fn show(handle: &nsq_client::ConsumerHandle) {
    /// if handle.is_stopping() { return; }
    /// # }
    /// ```
    pub fn is_stopping(&self) -> bool {
        self.shared.stop.is_cancelled()
    }

    /// The counters and each connection's RDY and in-flight count.
    ///
    /// ```
    /// # fn show(handle: &nsq_client::ConsumerHandle) {
    /// println!("{} received", handle.stats().received);
    /// # }
    /// ```
    pub fn stats(&self) -> ConsumerStats {
        self.shared.counters.stats()
    }

    /// Changes max_in_flight while running; 0 pauses delivery, a later change resumes it.
    ///
    /// ```
    /// # fn show(handle: &nsq_client::ConsumerHandle) {
    /// handle.set_max_in_flight(0); // pause
    /// handle.set_max_in_flight(100); // resume
    /// # }
    /// ```
    pub fn set_max_in_flight(&self, max_in_flight: u32) {
        let _ = self
            .shared
            .control
            .send(Control::SetMaxInFlight(max_in_flight));
    }

    /// The consumer's events from now on; see [`ConsumerEvent`]. After the stop, the stream
    /// yields [`ConsumerEvent::Stopped`] and ends.
    ///
    /// ```
    /// # async fn show(handle: nsq_client::ConsumerHandle) {
    /// use futures::StreamExt;
    /// let mut events = handle.events();
    /// while let Some(event) = events.next().await {
    ///     println!("{event}");
    /// }
    /// # }
    /// ```
    pub fn events(&self) -> Events {
        let events = Events::new(self.shared.events.subscribe());
        if self.shared.done.is_cancelled() {
            events.already_stopped()
        } else {
            events
        }
    }

    /// Starts the consumer if it has not started, and waits until at least one nsqd is
    /// subscribed, for at most `within`. Returns early with
    /// [`ConnectedError::Refused`] when the last attempt failed in a way retrying cannot fix
    /// ([`ConnectError::is_permanent`](crate::ConnectError::is_permanent): AUTH refused, TLS
    /// required, a bad topic...) and no other attempt is under way; the consumer keeps
    /// retrying in the background all the same.
    ///
    /// # Errors
    ///
    /// [`ConnectedError`].
    ///
    /// ```
    /// # async fn show(handle: nsq_client::ConsumerHandle) -> Result<(), nsq_client::ConnectedError> {
    /// handle.connected(std::time::Duration::from_secs(10)).await?;
    /// # Ok(())
    /// # }
    /// ```
    pub async fn connected(&self, within: Duration) -> Result<(), ConnectedError> {
        // Read before the start: a subscription made (and lost) from here on counts.
        let health = self.shared.health.clone();
        let since = health.borrow().subscriptions;
        self.start();
        events::wait_connected(health, since, within).await
    }

    /// Connects to this nsqd too (go-nsq's `ConnectToNSQD`), and reconnects to it with backoff
    /// as to one given to the builder. Undoes [`disconnect_nsqd`](Self::disconnect_nsqd).
    ///
    /// ```
    /// # fn show(handle: &nsq_client::ConsumerHandle) {
    /// handle.connect_nsqd("10.0.0.3:4150");
    /// # }
    /// ```
    pub fn connect_nsqd(&self, addr: impl Into<String>) {
        let _ = self.shared.control.send(Control::ConnectNsqd(addr.into()));
    }

    /// Closes the connections to this nsqd gracefully and does not connect to it again, even
    /// when an nsqlookupd lists it, until [`connect_nsqd`](Self::connect_nsqd) (go-nsq's
    /// `DisconnectFromNSQD`, without its reconnects from lookupd).
    ///
    /// ```
    /// # fn show(handle: &nsq_client::ConsumerHandle) {
    /// handle.disconnect_nsqd("10.0.0.3:4150");
    /// # }
    /// ```
    pub fn disconnect_nsqd(&self, addr: impl Into<String>) {
        let _ = self
            .shared
            .control
            .send(Control::DisconnectNsqd(addr.into()));
    }

    /// Discovers nsqd through this nsqlookupd too, asking it at once (go-nsq's
    /// `ConnectToNSQLookupd`).
    ///
    /// # Errors
    ///
    /// [`ConfigError`] when the address is neither `host:port` nor an http(s) URL.
    ///
    /// ```
    /// # fn show(handle: &nsq_client::ConsumerHandle) -> Result<(), nsq_client::ConfigError> {
    /// handle.add_lookupd("10.0.0.9:4161")?;
    /// # Ok(())
    /// # }
    /// ```
    #[cfg(feature = "lookupd")]
    pub fn add_lookupd(&self, addr: impl Into<String>) -> Result<(), ConfigError> {
        let addr = addr.into();
        crate::lookupd::endpoint_url(&addr, crate::lookupd::Endpoint::Lookup)
            .map_err(ConfigError::caused_by)?;
        let _ = self.shared.control.send(Control::AddLookupd(addr));
        Ok(())
    }

    /// Stops asking this nsqlookupd (go-nsq's `DisconnectFromNSQLookupd`); the connections it
    /// led to stay until the remaining lookupd stop listing them.
    ///
    /// ```
    /// # fn show(handle: &nsq_client::ConsumerHandle) {
    /// handle.remove_lookupd("10.0.0.9:4161");
    /// # }
    /// ```
    #[cfg(feature = "lookupd")]
    pub fn remove_lookupd(&self, addr: impl Into<String>) {
        let _ = self
            .shared
            .control
            .send(Control::RemoveLookupd(addr.into()));
    }
}

impl Stream for Consumer {
    type Item = Message;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Message>> {
        self.handle.start();
        match self
            .inbox
            .get_mut()
            .unwrap_or_else(|e| e.into_inner())
            .as_mut()
        {
            Some(inbox) => inbox.poll_recv(cx),
            None => Poll::Ready(None),
        }
    }
}
