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
mod merge;
mod pool;

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
pub use pool::{ProducerPool, Strategy};

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
        let _ = self.respond.send(answer.map_err(|kind| (kind, self.cmd)));
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
/// producer.close().await;
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

    fn sender(&self) -> &mpsc::Sender<Request> {
        self.shared.tx.get_or_init(|| {
            let (tx, rx) = mpsc::channel(self.shared.config.queue);
            let task = ProducerConnection {
                addr: self.shared.addr.clone(),
                config: self.shared.config.clone(),
                rx,
                cancel: self.shared.cancel.clone(),
            };
            let span = tracing::info_span!("nsq_producer", addr = %self.shared.addr);
            self.shared.tasks.spawn(task.run().instrument(span));
            self.shared.tasks.close();
            tx
        })
    }

    /// Publishes one message; resolves when nsqd answered.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let nsqd = nsq_server_lite::Nsqd::start().await?;
    /// # let producer = nsq_client::Producer::new(nsqd.tcp_addr().to_string(), Default::default())?;
    /// # let topic = nsq_client::proto::Topic::new("t")?;
    /// producer.publish(&topic, "hello").await?;
    /// # Ok(())
    /// # }
    /// ```
    ///
    /// # Errors
    ///
    /// [`PublishError`], with the body handed back.
    pub async fn publish(&self, topic: &Topic, body: impl Into<Bytes>) -> Result<(), PublishError> {
        let body = body.into();
        if body.is_empty() {
            return Err(self.invalid(InvalidPublish::EmptyBody, vec![body]));
        }
        self.request(Command::Pub {
            topic: topic.clone(),
            body,
        })
        .await
    }

    /// Publishes several messages atomically (MPUB): nsqd takes all or none.
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
    pub async fn multi_publish(
        &self,
        topic: &Topic,
        bodies: Vec<Bytes>,
    ) -> Result<(), PublishError> {
        if bodies.is_empty() {
            return Err(self.invalid(InvalidPublish::EmptyBatch, bodies));
        }
        if bodies.iter().any(Bytes::is_empty) {
            return Err(self.invalid(InvalidPublish::EmptyBody, bodies));
        }
        self.request(Command::Mpub {
            topic: topic.clone(),
            bodies,
        })
        .await
    }

    /// Publishes one message that nsqd delivers after `delay` (DPUB).
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
    pub async fn deferred_publish(
        &self,
        topic: &Topic,
        delay: Duration,
        body: impl Into<Bytes>,
    ) -> Result<(), PublishError> {
        let body = body.into();
        if body.is_empty() {
            return Err(self.invalid(InvalidPublish::EmptyBody, vec![body]));
        }
        self.request(Command::Dpub {
            topic: topic.clone(),
            delay,
            body,
        })
        .await
    }

    /// Connects if needed and checks the connection with a NOP.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let nsqd = nsq_server_lite::Nsqd::start().await?;
    /// # let producer = nsq_client::Producer::new(nsqd.tcp_addr().to_string(), Default::default())?;
    /// # let topic = nsq_client::proto::Topic::new("t")?;
    /// producer.ping().await?;
    /// # Ok(())
    /// # }
    /// ```
    ///
    /// # Errors
    ///
    /// [`PublishError`] (with no bodies) when nsqd cannot be reached.
    pub async fn ping(&self) -> Result<(), PublishError> {
        self.request(Command::Nop).await
    }

    /// Stops taking publishes, lets those already queued finish (each within its timeout),
    /// and closes the connection.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let nsqd = nsq_server_lite::Nsqd::start().await?;
    /// # let producer = nsq_client::Producer::new(nsqd.tcp_addr().to_string(), Default::default())?;
    /// # let topic = nsq_client::proto::Topic::new("t")?;
    /// producer.publish(&topic, "last").await?;
    /// producer.close().await;
    /// assert!(producer.publish(&topic, "too late").await.is_err());
    /// # Ok(())
    /// # }
    /// ```
    pub async fn close(&self) {
        self.shared.cancel.cancel();
        self.shared.tasks.close();
        self.shared.tasks.wait().await;
    }

    fn invalid(&self, why: InvalidPublish, bodies: Vec<Bytes>) -> PublishError {
        PublishError::new(PublishErrorKind::Invalid(why), &self.shared.addr, bodies)
    }

    async fn request(&self, cmd: Command) -> Result<(), PublishError> {
        let addr = &self.shared.addr;
        if self.shared.cancel.is_cancelled() {
            return Err(PublishError::new(
                PublishErrorKind::Stopped,
                addr,
                bodies_of(cmd),
            ));
        }
        let (respond, answer) = oneshot::channel();
        let timeout = self.shared.config.publish_timeout;
        let deadline = timeout.map(|t| Instant::now() + t);
        // A timeout hands no body back: a request already queued may still be written.
        let timed_out = || {
            let after = timeout.unwrap_or_default();
            PublishError::new(PublishErrorKind::Timeout(after), addr, Vec::new())
        };
        let tx = self.sender();
        // Queued at once when there is room; only a full queue makes the caller wait (and
        // arms a timer for it).
        let queued = match tx.try_send(Request { cmd, respond }) {
            Ok(()) => Ok(()),
            Err(mpsc::error::TrySendError::Closed(request)) => Err(mpsc::error::SendError(request)),
            Err(mpsc::error::TrySendError::Full(request)) => {
                let send = tx.send(request);
                match deadline {
                    Some(at) => match tokio::time::timeout_at(at, send).await {
                        Ok(queued) => queued,
                        // The queue stayed full until the deadline; nothing was sent.
                        Err(_) => return Err(timed_out()),
                    },
                    None => send.await,
                }
            }
        };
        if let Err(mpsc::error::SendError(request)) = queued {
            return Err(PublishError::new(
                PublishErrorKind::Stopped,
                addr,
                bodies_of(request.cmd),
            ));
        }
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
