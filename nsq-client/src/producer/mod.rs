//! Publishing to one nsqd: pipelined, every publish answered by nsqd's own reply.
//!
//! One task per producer owns the connection ([`connection`]). Callers queue requests to
//! it; it writes every request it has at hand in one write (so one connection is not bound
//! by round trips), merging neighbouring publishes to one topic into one MPUB ([`merge`],
//! see [`ProducerConfig::merge_publishes`]), and remembers each in order. nsqd answers
//! commands in order, so a reader task ([`answers`]) matches each `OK` or `E_*` to the
//! oldest request. A request whose caller has gone (timed out or dropped) before it was
//! written is never sent; one already written has its answer read and dropped, so the
//! connection stays in step.

mod answers;
mod config;
mod connection;
mod health;
mod merge;
mod pool;
mod stats;

use std::future::Future;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use bytes::Bytes;
use nsq_proto::{Command, Topic};
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::Instrument;

use crate::error::{ConfigError, DisconnectReason, InvalidPublish, PublishError, PublishErrorKind};
use connection::ProducerConnection;

pub use config::ProducerConfig;
pub use pool::{NodeStats, PoolStats, ProducerPool, Strategy};
use stats::Counters;
pub use stats::ProducerStats;

/// The answer the connection task gives a request: `Ok`, or what went wrong and the command
/// back (so its bodies can be returned to the caller).
type Answer = Result<(), (PublishErrorKind, Command)>;

/// A command queued for the connection task, and where its answer goes.
struct Request {
    cmd: Command,
    respond: oneshot::Sender<Answer>,
}

impl Request {
    fn answer(self, answer: Result<(), PublishErrorKind>) {
        let Request { cmd, respond } = self;
        let _ = respond.send(answer.map_err(|kind| (kind, cmd)));
    }

    fn fail(self, kind: PublishErrorKind) {
        self.answer(Err(kind));
    }
}

/// Publishes to one nsqd. Cheap to clone; every clone shares one connection.
///
/// The connection is opened by the first call that needs it and reopened (with backoff)
/// after a failure. A publish resolves when nsqd answered it: `Ok` means nsqd said `OK` to
/// the command that carried that message (its own PUB, or the MPUB it was merged into). A publish in flight when the connection fails gets an error and is
/// never reported `OK`.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// # let nsqd = nsq_server_lite::Nsqd::start().await?;
/// # let addr = nsqd.tcp_addr().to_string();
/// use nsq_client::{Producer, ProducerConfig};
/// use nsq_client::proto::Topic;
///
/// let producer = Producer::new(addr, ProducerConfig::default())?;
/// let topic = Topic::new("orders")?;
/// producer.publish(&topic, "order 1").await?;
/// producer.multi_publish(&topic, vec!["order 2".into(), "order 3".into()]).await?;
/// producer.deferred_publish(&topic, std::time::Duration::from_secs(5), "later").await?;
/// producer.stop().await;
/// # Ok(())
/// # }
/// ```
#[derive(Clone, Debug)]
pub struct Producer {
    shared: Arc<Shared>,
}

struct Shared {
    addr: String,
    config: ProducerConfig,
    tx: OnceLock<mpsc::Sender<Request>>,
    cancel: CancellationToken,
    tasks: TaskTracker,
    counters: Arc<Counters>,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Producer")
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
}

impl Drop for Shared {
    fn drop(&mut self) {
        // The last handle is gone: the connection task finishes what it holds and stops.
        self.cancel.cancel();
    }
}

impl Producer {
    /// A producer for the nsqd at `addr` (`host:port`, its TCP port). Nothing connects until
    /// the first publish or [`ping`](Self::ping); a tokio runtime must be running then.
    ///
    /// ```
    /// use nsq_client::{Producer, ProducerConfig};
    /// let producer = Producer::new("127.0.0.1:4150", ProducerConfig::default())?;
    /// assert_eq!(producer.addr(), "127.0.0.1:4150");
    /// # Ok::<(), nsq_client::ConfigError>(())
    /// ```
    ///
    /// # Errors
    ///
    /// [`ConfigError`] when a setting is out of nsqd's ranges.
    pub fn new(addr: impl Into<String>, config: ProducerConfig) -> Result<Self, ConfigError> {
        config.validate()?;
        Ok(Self {
            shared: Arc::new(Shared {
                addr: addr.into(),
                config,
                tx: OnceLock::new(),
                cancel: CancellationToken::new(),
                tasks: TaskTracker::new(),
                counters: Arc::default(),
            }),
        })
    }

    /// The nsqd address this producer publishes to.
    ///
    /// ```
    /// let producer = nsq_client::Producer::new("nsqd-1:4150", Default::default())?;
    /// assert_eq!(producer.addr(), "nsqd-1:4150");
    /// # Ok::<(), nsq_client::ConfigError>(())
    /// ```
    pub fn addr(&self) -> &str {
        &self.shared.addr
    }

    /// Publishes one message; resolves when nsqd answered.
    ///
    /// The returned future borrows nothing, so it can be spawned or kept while the producer
    /// is used elsewhere. The publish is queued for the connection when this is called (so
    /// publishes go out in the order of the calls), unless the queue is full: then the
    /// future waits for room when polled. The [`publish_timeout`] runs from the call.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let nsqd = nsq_server_lite::Nsqd::start().await?;
    /// # let producer = nsq_client::Producer::new(nsqd.tcp_addr().to_string(), Default::default())?;
    /// # let topic = nsq_client::proto::Topic::new("t")?;
    /// producer.publish(&topic, "hello").await?;
    ///
    /// // Or let a task wait for nsqd's answer.
    /// let answered = tokio::spawn(producer.publish(&topic, "from a task"));
    /// answered.await??;
    /// # Ok(())
    /// # }
    /// ```
    ///
    /// # Cancel safety
    ///
    /// Dropping the future withdraws the publish if it was not written yet; once written,
    /// nsqd may take it all the same (its answer is read and dropped).
    ///
    /// # Errors
    ///
    /// [`PublishError`], with the body handed back.
    ///
    /// [`publish_timeout`]: ProducerConfig::publish_timeout
    pub fn publish(
        &self,
        topic: &Topic,
        body: impl Into<Bytes>,
    ) -> impl Future<Output = Result<(), PublishError>> + Send + 'static {
        let cmd = self.one_body(body.into(), |body| Command::Pub {
            topic: topic.clone(),
            body,
        });
        self.request(cmd)
    }

    /// Publishes several messages atomically (MPUB): nsqd takes all or none. Queued as
    /// [`publish`](Self::publish) is.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let nsqd = nsq_server_lite::Nsqd::start().await?;
    /// # let producer = nsq_client::Producer::new(nsqd.tcp_addr().to_string(), Default::default())?;
    /// # let topic = nsq_client::proto::Topic::new("t")?;
    /// producer.multi_publish(&topic, vec!["a".into(), "b".into()]).await?;
    /// # Ok(())
    /// # }
    /// ```
    ///
    /// # Errors
    ///
    /// [`PublishError`], with the bodies handed back.
    pub fn multi_publish(
        &self,
        topic: &Topic,
        bodies: Vec<Bytes>,
    ) -> impl Future<Output = Result<(), PublishError>> + Send + 'static {
        let cmd = if bodies.is_empty() {
            Err(self.invalid(InvalidPublish::EmptyBatch, bodies))
        } else if bodies.iter().any(Bytes::is_empty) {
            Err(self.invalid(InvalidPublish::EmptyBody, bodies))
        } else {
            Ok(Command::Mpub {
                topic: topic.clone(),
                bodies,
            })
        };
        self.request(cmd)
    }

    /// Publishes one message that nsqd delivers after `delay` (DPUB). Queued as
    /// [`publish`](Self::publish) is.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let nsqd = nsq_server_lite::Nsqd::start().await?;
    /// # let producer = nsq_client::Producer::new(nsqd.tcp_addr().to_string(), Default::default())?;
    /// # let topic = nsq_client::proto::Topic::new("t")?;
    /// producer.deferred_publish(&topic, std::time::Duration::from_secs(10), "soon").await?;
    /// # Ok(())
    /// # }
    /// ```
    ///
    /// # Errors
    ///
    /// [`PublishError`], with the body handed back.
    pub fn deferred_publish(
        &self,
        topic: &Topic,
        delay: Duration,
        body: impl Into<Bytes>,
    ) -> impl Future<Output = Result<(), PublishError>> + Send + 'static {
        let cmd = self.one_body(body.into(), |body| Command::Dpub {
            topic: topic.clone(),
            delay,
            body,
        });
        self.request(cmd)
    }

    /// Connects if needed and checks the connection with a NOP; resolves once the NOP is
    /// written (nsqd does not answer NOP). Queued as [`publish`](Self::publish) is.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let nsqd = nsq_server_lite::Nsqd::start().await?;
    /// # let producer = nsq_client::Producer::new(nsqd.tcp_addr().to_string(), Default::default())?;
    /// producer.ping().await?;
    /// # Ok(())
    /// # }
    /// ```
    ///
    /// # Errors
    ///
    /// [`PublishError`] (with no bodies) when nsqd cannot be reached.
    pub fn ping(&self) -> impl Future<Output = Result<(), PublishError>> + Send + 'static {
        self.request(Ok(Command::Nop))
    }

    /// Stops taking publishes, lets those already queued finish (each within its timeout),
    /// and closes the connection; returns when it is closed. A publish called after it
    /// fails with [`PublishErrorKind::Stopped`]. The same name and meaning as
    /// [`Consumer::stop`](crate::Consumer::stop).
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let nsqd = nsq_server_lite::Nsqd::start().await?;
    /// # let producer = nsq_client::Producer::new(nsqd.tcp_addr().to_string(), Default::default())?;
    /// # let topic = nsq_client::proto::Topic::new("t")?;
    /// producer.publish(&topic, "last").await?;
    /// producer.stop().await;
    /// let err = producer.publish(&topic, "too late").await.unwrap_err();
    /// assert!(matches!(err.kind(), nsq_client::PublishErrorKind::Stopped));
    /// # Ok(())
    /// # }
    /// ```
    pub async fn stop(&self) {
        self.shared.cancel.cancel();
        self.shared.tasks.close();
        self.shared.tasks.wait().await;
    }

    /// What this producer has done so far: messages published, publishes failed, requests
    /// in flight, reconnects, and whether it is connected now.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let nsqd = nsq_server_lite::Nsqd::start().await?;
    /// let producer = nsq_client::Producer::new(nsqd.tcp_addr().to_string(), Default::default())?;
    /// assert!(!producer.stats().connected); // nothing connects before the first call
    /// producer.ping().await?;
    /// assert!(producer.stats().connected);
    /// # Ok(())
    /// # }
    /// ```
    pub fn stats(&self) -> ProducerStats {
        let queued = self
            .shared
            .tx
            .get()
            .map_or(0, |tx| tx.max_capacity() - tx.capacity());
        self.shared.counters.snapshot(queued)
    }

    /// Requests queued or written and not yet answered (what [`stats`](Self::stats) reports
    /// as `in_flight`).
    pub(crate) fn in_flight(&self) -> u64 {
        self.stats().in_flight
    }

    /// The command `make` builds around `body`, or the refusal of an empty body.
    fn one_body(
        &self,
        body: Bytes,
        make: impl FnOnce(Bytes) -> Command,
    ) -> Result<Command, PublishError> {
        if body.is_empty() {
            Err(self.invalid(InvalidPublish::EmptyBody, vec![body]))
        } else {
            Ok(make(body))
        }
    }

    fn invalid(&self, why: InvalidPublish, bodies: Vec<Bytes>) -> PublishError {
        PublishError::new(PublishErrorKind::Invalid(why), &self.shared.addr, bodies)
    }

    /// Queues `cmd` now when there is room, and returns the future of its answer.
    fn request(
        &self,
        cmd: Result<Command, PublishError>,
    ) -> impl Future<Output = Result<(), PublishError>> + Send + 'static {
        let shared = self.shared.clone();
        let deadline = shared.config.publish_timeout.map(|t| Instant::now() + t);
        // A ping's failure is not a failed publish.
        let counted = !matches!(cmd, Ok(Command::Nop));
        let start = match cmd {
            Err(invalid) => Start::Refused(invalid),
            Ok(cmd) => shared.queue(cmd),
        };
        async move {
            let result = shared.answer(start, deadline).await;
            if result.is_err() && counted {
                shared.counters.failed();
            }
            result
        }
    }
}

/// Where a request's future starts from.
enum Start {
    /// Refused before it was queued.
    Refused(PublishError),
    /// Queued; its answer comes here.
    Queued(oneshot::Receiver<Answer>),
    /// The queue was full: it waits for room when the future is polled.
    Full(Request, oneshot::Receiver<Answer>),
}

impl Shared {
    fn sender(&self) -> &mpsc::Sender<Request> {
        self.tx.get_or_init(|| {
            let (tx, rx) = mpsc::channel(self.config.queue);
            let task = ProducerConnection {
                addr: self.addr.clone(),
                config: self.config.clone(),
                rx,
                carried: std::collections::VecDeque::new(),
                cancel: self.cancel.clone(),
                counters: self.counters.clone(),
            };
            let span = tracing::info_span!("nsq_producer", addr = %self.addr);
            self.tasks.spawn(task.run().instrument(span));
            self.tasks.close();
            tx
        })
    }

    fn stopped(&self, cmd: Command) -> PublishError {
        PublishError::new(PublishErrorKind::Stopped, &self.addr, bodies_of(cmd))
    }

    /// Queues `cmd` at once if the queue has room.
    fn queue(&self, cmd: Command) -> Start {
        if self.cancel.is_cancelled() {
            return Start::Refused(self.stopped(cmd));
        }
        let (respond, answer) = oneshot::channel();
        match self.sender().try_send(Request { cmd, respond }) {
            Ok(()) => Start::Queued(answer),
            Err(mpsc::error::TrySendError::Closed(request)) => {
                Start::Refused(self.stopped(request.cmd))
            }
            Err(mpsc::error::TrySendError::Full(request)) => Start::Full(request, answer),
        }
    }

    /// Waits for room in the queue if it was full, then for the answer, until `deadline`.
    async fn answer(&self, start: Start, deadline: Option<Instant>) -> Result<(), PublishError> {
        let addr = &self.addr;
        // A timeout hands no body back: a request already queued may still be written.
        let timed_out = || {
            let after = self.config.publish_timeout.unwrap_or_default();
            PublishError::new(PublishErrorKind::Timeout(after), addr, Vec::new())
        };
        let answer = match start {
            Start::Refused(err) => return Err(err),
            Start::Queued(answer) => answer,
            Start::Full(request, answer) => {
                let send = self.sender().send(request);
                let queued = match deadline {
                    Some(at) => match tokio::time::timeout_at(at, send).await {
                        Ok(queued) => queued,
                        // The queue stayed full until the deadline; nothing was sent.
                        Err(_) => return Err(timed_out()),
                    },
                    None => send.await,
                };
                if let Err(mpsc::error::SendError(request)) = queued {
                    return Err(self.stopped(request.cmd));
                }
                answer
            }
        };
        let answer = match deadline {
            Some(at) => match tokio::time::timeout_at(at, answer).await {
                Ok(answer) => answer,
                Err(_) => return Err(timed_out()),
            },
            None => answer.await,
        };
        match answer {
            Ok(Ok(())) => Ok(()),
            Ok(Err((kind, cmd))) => Err(PublishError::new(kind, addr, bodies_of(cmd))),
            // The connection task is gone without answering: the runtime is shutting down.
            Err(_) => Err(PublishError::new(
                PublishErrorKind::Disconnected(DisconnectReason::Closed),
                addr,
                Vec::new(),
            )),
        }
    }
}

fn bodies_of(cmd: Command) -> Vec<Bytes> {
    match cmd {
        Command::Pub { body, .. } | Command::Dpub { body, .. } => vec![body],
        Command::Mpub { bodies, .. } => bodies,
        _ => Vec::new(),
    }
}
