//! Publishing to one nsqd: pipelined, every publish answered by nsqd's own reply.
//!
//! One task per producer owns the connection. Callers queue requests to it; it writes every
//! request it has at hand in one write (so one connection is not bound by round trips),
//! merging neighbouring publishes to one topic into one MPUB (see
//! [`ProducerConfig::merge_publishes`]), and remembers each in order. nsqd answers commands
//! in order, so a reader task matches each `OK` or `E_*` to the oldest request. A request
//! whose caller has gone (timed out or dropped) before it was written is never sent; one
//! already written has its answer read and dropped, so the connection stays in step.

use std::collections::VecDeque;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use futures::StreamExt;
use nsq_proto::{ClientCodec, Command, Frame, Response, Topic};
use tokio::io::{AsyncWriteExt, WriteHalf};
use tokio::sync::{mpsc, oneshot, Notify};
use tokio::time::Instant;
use tokio_util::codec::{Encoder, FramedRead};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::Instrument;

use crate::config::ConnectionConfig;
use crate::conn::{self, Transport};
use crate::error::{ConfigError, PublishError, PublishErrorKind};

/// The answer the connection task gives a request: `Ok`, or what went wrong and the command
/// back (so its bodies can be returned to the caller).
type Answer = Result<(), (PublishErrorKind, Command)>;

struct Request {
    cmd: Command,
    respond: oneshot::Sender<Answer>,
}

/// How a producer behaves beyond its connection settings.
///
/// ```
/// use std::time::Duration;
/// use nsq_client::{ConnectionConfig, ProducerConfig};
///
/// let config = ProducerConfig::default()
///     .publish_timeout(Some(Duration::from_secs(2)))
///     .connection(ConnectionConfig::default().client_id("orders-api"));
/// # let _ = config;
/// ```
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ProducerConfig {
    pub(crate) connection: ConnectionConfig,
    pub(crate) publish_timeout: Option<Duration>,
    pub(crate) queue: usize,
    pub(crate) backoff_min: Duration,
    pub(crate) backoff_max: Duration,
    pub(crate) merge_publishes: Option<usize>,
}

impl Default for ProducerConfig {
    fn default() -> Self {
        Self {
            connection: ConnectionConfig::default(),
            publish_timeout: Some(Duration::from_secs(10)),
            queue: 4096,
            backoff_min: Duration::from_millis(50),
            backoff_max: Duration::from_secs(5),
            merge_publishes: Some(DEFAULT_MERGE_BYTES),
        }
    }
}

/// The default bound of a merged MPUB's body (see [`ProducerConfig::merge_publishes`]): far
/// below nsqd's `--max-body-size` (5 MiB by default).
const DEFAULT_MERGE_BYTES: usize = 64 * 1024;

impl ProducerConfig {
    /// The connection's settings (identity, TLS, compression, AUTH...).
    ///
    /// ```
    /// use nsq_client::{ConnectionConfig, ProducerConfig};
    /// let c = ProducerConfig::default().connection(ConnectionConfig::default().client_id("api"));
    /// # let _ = c;
    /// ```
    pub fn connection(mut self, connection: ConnectionConfig) -> Self {
        self.connection = connection;
        self
    }

    /// How long a publish may wait for nsqd's answer, connecting included (default 10 s);
    /// `None` waits as long as the connection lives.
    ///
    /// ```
    /// let c = nsq_client::ProducerConfig::default().publish_timeout(None);
    /// # let _ = c;
    /// ```
    pub fn publish_timeout(mut self, timeout: Option<Duration>) -> Self {
        self.publish_timeout = timeout;
        self
    }

    /// How many publishes may wait for the connection task before callers wait to queue
    /// (default 4096).
    ///
    /// ```
    /// let c = nsq_client::ProducerConfig::default().queue(16_384);
    /// # let _ = c;
    /// ```
    pub fn queue(mut self, requests: usize) -> Self {
        self.queue = requests;
        self
    }

    /// The wait before reconnecting after a failed connection: from `min`, doubling per
    /// failure up to `max`, with jitter (default 50 ms to 5 s).
    ///
    /// ```
    /// use std::time::Duration;
    /// let c = nsq_client::ProducerConfig::default()
    ///     .reconnect_backoff(Duration::from_millis(100), Duration::from_secs(30));
    /// # let _ = c;
    /// ```
    pub fn reconnect_backoff(mut self, min: Duration, max: Duration) -> Self {
        self.backoff_min = min;
        self.backoff_max = max;
        self
    }

    /// Whether publishes to one topic that are queued together go out as one `MPUB`, and
    /// how large that MPUB's body may grow (default `Some(64 KiB)`); `None` sends one `PUB`
    /// per publish.
    ///
    /// Under load, many [`Producer::publish`] calls wait for the connection at once. Those
    /// that are next to each other in the queue and name the same topic are sent as one MPUB,
    /// in order, and every one of them is answered by its `OK`: each call still resolves
    /// `Ok` only once nsqd has taken its message. Nothing waits to fill a batch, so a lone
    /// publish goes out at once as `PUB`; bodies larger than the bound always go alone.
    /// nsqd takes one MPUB's messages all or none, so an error answers every publish of the
    /// batch with that error (code `E_MPUB_FAILED` rather than `E_PUB_FAILED`, for example),
    /// each with its own body handed back. Keep the bound at or below the nsqd's
    /// `--max-body-size`.
    ///
    /// ```
    /// let c = nsq_client::ProducerConfig::default().merge_publishes(Some(256 * 1024));
    /// let one_pub_each = nsq_client::ProducerConfig::default().merge_publishes(None);
    /// # let _ = (c, one_pub_each);
    /// ```
    pub fn merge_publishes(mut self, max_bytes: Option<usize>) -> Self {
        self.merge_publishes = max_bytes;
        self
    }

    pub(crate) fn validate(&self) -> Result<(), ConfigError> {
        self.connection.validate()?;
        if self.merge_publishes.is_some_and(|n| n < 64) {
            return Err(ConfigError::new(
                "merge_publishes needs room for at least 64 bytes",
            ));
        }
        if self.queue == 0 {
            return Err(ConfigError::new("queue must hold at least one request"));
        }
        if self.backoff_min.is_zero() || self.backoff_min > self.backoff_max {
            return Err(ConfigError::new("reconnect_backoff needs 0 < min <= max"));
        }
        if self.publish_timeout.is_some_and(|t| t.is_zero()) {
            return Err(ConfigError::new("publish_timeout must be above zero"));
        }
        Ok(())
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
            let task = ConnTask {
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
            return Err(self.invalid("empty message body", vec![body]));
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
        if bodies.is_empty() || bodies.iter().any(Bytes::is_empty) {
            return Err(self.invalid("MPUB needs at least one message and no empty body", bodies));
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
            return Err(self.invalid("empty message body", vec![body]));
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

    fn invalid(&self, why: &str, bodies: Vec<Bytes>) -> PublishError {
        PublishError::new(
            PublishErrorKind::Invalid(why.to_owned()),
            &self.shared.addr,
            bodies,
        )
    }

    async fn request(&self, cmd: Command) -> Result<(), PublishError> {
        let addr = &self.shared.addr;
        if self.shared.cancel.is_cancelled() {
            return Err(PublishError::new(
                PublishErrorKind::Closed,
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
                PublishErrorKind::Closed,
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
            Err(_) => Err(PublishError::new(
                PublishErrorKind::Disconnected,
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

/// The task that owns the connection.
struct ConnTask {
    addr: String,
    config: ProducerConfig,
    rx: mpsc::Receiver<Request>,
    cancel: CancellationToken,
}

impl Request {
    fn answer(self, answer: Result<(), PublishErrorKind>) {
        let _ = self.respond.send(answer.map_err(|kind| (kind, self.cmd)));
    }
}

/// A written command waiting for its answer: one request, or publishes merged into one MPUB,
/// which nsqd answers once for all of them.
enum Pending {
    One(Request),
    Merged(Vec<Request>),
}

impl Pending {
    fn answer(self, answer: Result<(), PublishErrorKind>) {
        match self {
            Pending::One(request) => request.answer(answer),
            Pending::Merged(requests) => {
                for request in requests {
                    request.answer(answer.clone());
                }
            }
        }
    }
}

/// Consecutive publishes to one topic, to be sent as one MPUB.
#[derive(Default)]
struct Run {
    requests: Vec<Request>,
    /// The MPUB body they make: the count, then each body with its length.
    body_bytes: usize,
}

impl Run {
    /// Whether a PUB of `body` to `topic` can join without the MPUB body outgrowing `limit`.
    fn admits(&self, topic: &Topic, body: &Bytes, limit: usize) -> bool {
        let joins_topic = match self.requests.first() {
            Some(Request {
                cmd: Command::Pub { topic: first, .. },
                ..
            }) => first == topic,
            Some(_) => false,
            None => true,
        };
        joins_topic && self.body_bytes.max(4) + 4 + body.len() <= limit
    }

    fn push(&mut self, request: Request) {
        if let Command::Pub { body, .. } = &request.cmd {
            self.body_bytes = self.body_bytes.max(4) + 4 + body.len();
        }
        self.requests.push(request);
    }

    /// Encodes what was gathered (one PUB alone, several as MPUB) and stages it.
    fn stage(&mut self, buf: &mut BytesMut, staged: &mut Vec<Pending>) {
        self.body_bytes = 0;
        match self.requests.len() {
            0 => {}
            1 => {
                if let Some(request) = self.requests.pop() {
                    stage_one(request, buf, staged, &mut Vec::new());
                }
            }
            _ => {
                let Some(Request {
                    cmd: Command::Pub { topic, .. },
                    ..
                }) = self.requests.first()
                else {
                    return;
                };
                let bodies = self.requests.iter().map(|r| match &r.cmd {
                    Command::Pub { body, .. } => &body[..],
                    // Only PUBs join a run; an empty body would fail the encoding.
                    _ => &[][..],
                });
                match Command::encode_mpub(topic, bodies, buf) {
                    Ok(()) => staged.push(Pending::Merged(std::mem::take(&mut self.requests))),
                    Err(e) => {
                        for request in self.requests.drain(..) {
                            request.answer(Err(PublishErrorKind::Invalid(e.to_string())));
                        }
                    }
                }
            }
        }
    }
}

/// Encodes one request and stages it for its answer; a NOP (a ping) has none, so it waits
/// in `pings` for its write instead.
fn stage_one(
    request: Request,
    buf: &mut BytesMut,
    staged: &mut Vec<Pending>,
    pings: &mut Vec<oneshot::Sender<Answer>>,
) {
    if let Err(e) = ClientCodec::new().encode(&request.cmd, buf) {
        request.answer(Err(PublishErrorKind::Invalid(e.to_string())));
    } else if matches!(request.cmd, Command::Nop) {
        pings.push(request.respond);
    } else {
        staged.push(Pending::One(request));
    }
}

/// The written requests, oldest first, shared by the writer (which appends before it writes)
/// and the reader (which takes the oldest for each answer). A plain locked queue rather than
/// a channel: the reader looks at it only when an answer arrives, so handing a request over
/// wakes nobody.
#[derive(Default)]
struct Written {
    queue: std::sync::Mutex<WrittenQueue>,
}

#[derive(Default)]
struct WrittenQueue {
    pending: VecDeque<Pending>,
    /// Set by the writer when it writes nothing more.
    writer_done: bool,
    /// Set by the reader when it stops: nothing more will be answered.
    reader_done: bool,
}

impl Written {
    fn lock(&self) -> std::sync::MutexGuard<'_, WrittenQueue> {
        // A panic while holding the lock leaves the queue consistent (push/pop only).
        self.queue.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl ConnTask {
    async fn run(mut self) {
        let mut failures = 0u32;
        loop {
            // Connect only when there is something to send.
            // Queued requests go first (`biased`), so closing lets them finish.
            let first = tokio::select! {
                biased;
                request = self.rx.recv() => match request {
                    Some(request) => request,
                    None => return,
                },
                _ = self.cancel.cancelled() => return,
            };
            if first.respond.is_closed() {
                continue;
            }
            match conn::connect(&self.addr, &self.config.connection).await {
                Ok(connected) => {
                    failures = 0;
                    tracing::info!(
                        max_rdy_count = connected.identify.max_rdy_count,
                        "connected"
                    );
                    let lost = self.serve(connected, first).await;
                    if let Err(why) = lost {
                        tracing::warn!(%why, "connection lost");
                    } else {
                        return;
                    }
                }
                Err(err) => {
                    failures += 1;
                    tracing::warn!(error = %err, failures, "cannot connect");
                    let why = err.to_string();
                    fail(first, PublishErrorKind::Connect(why.clone()));
                    // Everything already queued would wait for the same nsqd: fail it now,
                    // so callers can go elsewhere.
                    while let Ok(request) = self.rx.try_recv() {
                        fail(request, PublishErrorKind::Connect(why.clone()));
                    }
                    if self.backoff(failures, &why).await.is_err() {
                        return;
                    }
                }
            }
        }
    }

    /// Waits out the reconnect backoff; `Err` when the producer closes meanwhile.
    ///
    /// Requests that arrive meanwhile fail at once with the connect error `why` (bodies handed
    /// back), as a connect attempt would: waiting out the backoff could outlast their timeout,
    /// and a pool could have sent them to another nsqd instead.
    async fn backoff(&mut self, failures: u32, why: &str) -> Result<(), ()> {
        let wait =
            conn::reconnect_delay(failures, self.config.backoff_min, self.config.backoff_max);
        let until = tokio::time::sleep(wait);
        tokio::pin!(until);
        loop {
            tokio::select! {
                biased;
                _ = self.cancel.cancelled() => return Err(()),
                _ = &mut until => return Ok(()),
                request = self.rx.recv() => match request {
                    Some(request) => fail(request, PublishErrorKind::Connect(why.to_owned())),
                    None => return Err(()),
                },
            }
        }
    }

    /// Runs one connection. `Ok` when the producer closed cleanly, `Err` when the connection
    /// failed (every request it held has been answered with an error).
    async fn serve(&mut self, connected: conn::Connected, first: Request) -> Result<(), String> {
        let parts = connected.framed.into_parts();
        let codec = parts.codec;
        let (read_half, mut write_half) = tokio::io::split(parts.io);
        let mut reader = FramedRead::new(read_half, codec);
        *reader.read_buffer_mut() = parts.read_buf;

        let written = Arc::new(Written::default());
        let heartbeat = Arc::new(Notify::new());
        let reader_stop = CancellationToken::new();
        // Wakes the reader when the writer is done, so it can end once all is answered.
        let writer_done = Arc::new(Notify::new());
        let read_deadline = self.config.connection.read_deadline();
        let reader_task = tokio::spawn(
            read_answers(
                reader,
                written.clone(),
                heartbeat.clone(),
                writer_done.clone(),
                reader_stop.clone(),
                read_deadline,
            )
            .in_current_span(),
        );
        let mut reader_task = std::pin::pin!(reader_task);
        let mut reader_ended = false;
        let mut buf = BytesMut::with_capacity(64 * 1024);
        // Reused from batch to batch.
        let mut batch: Vec<Request> = Vec::with_capacity(64);
        let mut staged: Vec<Pending> = Vec::with_capacity(64);
        let mut next = Some(first);
        let mut closing = false;
        // Made once and polled again on every turn, not made anew per turn (each would
        // register with its notifier again).
        let cancel = self.cancel.clone();
        let mut cancelled = std::pin::pin!(cancel.cancelled());
        let mut heartbeat_due = std::pin::pin!(heartbeat.notified());
        let result: Result<(), String> = loop {
            if closing && next.is_none() {
                // No more waiting for requests, but those already queued still go out.
                next = self.rx.try_recv().ok();
            }
            if let Some(request) = next.take() {
                // Coalesce every request at hand into one write.
                batch.push(request);
                while batch.len() < 1024 {
                    match self.rx.try_recv() {
                        Ok(request) => batch.push(request),
                        Err(_) => break,
                    }
                }
                if let Err(why) = self
                    .write_batch(&mut batch, &mut staged, &mut buf, &mut write_half, &written)
                    .await
                {
                    break Err(why);
                }
                continue;
            }
            if closing && self.rx.is_empty() {
                break Ok(());
            }
            tokio::select! {
                biased;
                ended = &mut reader_task => {
                    reader_ended = true;
                    break Err(match ended {
                        Ok(why) => why,
                        Err(e) => format!("reader task failed: {e}"),
                    });
                }
                _ = heartbeat_due.as_mut() => {
                    heartbeat_due.set(heartbeat.notified());
                    buf.clear();
                    if let Err(why) = self.write_command(&Command::Nop, &mut buf, &mut write_half).await {
                        break Err(why);
                    }
                }
                request = self.rx.recv(), if !closing => match request {
                    Some(request) => next = Some(request),
                    None => closing = true,
                },
                _ = cancelled.as_mut(), if !closing => closing = true,
            }
        };
        // Requests taken from the queue but not written (the write failed): the reader's
        // final sweep answers what was written; these are answered here.
        for request in batch.drain(..) {
            fail(request, PublishErrorKind::Disconnected);
        }
        // Let the reader collect the answers to what was written (bounded by the timeout),
        // then stop it; whatever is left is answered `Disconnected` with its bodies.
        written.lock().writer_done = true;
        writer_done.notify_one();
        if !reader_ended && result.is_ok() {
            let wait = self
                .config
                .publish_timeout
                .unwrap_or(Duration::from_secs(10));
            reader_ended = tokio::time::timeout(wait, &mut reader_task).await.is_ok();
        }
        reader_stop.cancel();
        if !reader_ended {
            let _ = reader_task.await;
        }
        let _ = write_half.shutdown().await;
        result
    }

    async fn write_command(
        &self,
        cmd: &Command,
        buf: &mut BytesMut,
        write_half: &mut WriteHalf<Transport>,
    ) -> Result<(), String> {
        ClientCodec::new()
            .encode(cmd, buf)
            .map_err(|e| e.to_string())?;
        self.flush(buf, write_half).await
    }

    async fn flush(
        &self,
        buf: &mut BytesMut,
        write_half: &mut WriteHalf<Transport>,
    ) -> Result<(), String> {
        let write = async {
            write_half.write_all(buf).await?;
            write_half.flush().await
        };
        let mut write = std::pin::pin!(write);
        // Most writes complete at once: only one that has to wait for the socket arms the
        // timer (arming and clearing it costs more than the write's bookkeeping).
        let done = match futures::poll!(write.as_mut()) {
            std::task::Poll::Ready(done) => Ok(done),
            std::task::Poll::Pending => {
                tokio::time::timeout(self.config.connection.write_timeout, write).await
            }
        };
        match done {
            Ok(Ok(())) => {
                buf.clear();
                Ok(())
            }
            Ok(Err(e)) => Err(format!("write failed: {e}")),
            Err(_) => Err(format!(
                "write timed out after {:?}",
                self.config.connection.write_timeout
            )),
        }
    }

    /// Encodes the batch (skipping requests whose callers are gone; merging neighbouring
    /// publishes to one topic when configured), hands each to the reader in order, and
    /// writes it all at once.
    async fn write_batch(
        &self,
        batch: &mut Vec<Request>,
        staged: &mut Vec<Pending>,
        buf: &mut BytesMut,
        write_half: &mut WriteHalf<Transport>,
        written: &Written,
    ) -> Result<(), String> {
        buf.clear();
        let mut pings = Vec::new();
        staged.clear();
        let mut run = Run::default();
        for request in batch.drain(..) {
            if request.respond.is_closed() {
                // The caller timed out or dropped the publish before it was written.
                continue;
            }
            if let (Some(limit), Command::Pub { topic, body }) =
                (self.config.merge_publishes, &request.cmd)
            {
                if !run.admits(topic, body, limit) {
                    run.stage(buf, staged);
                }
                if run.admits(topic, body, limit) {
                    run.push(request);
                    continue;
                }
                // Too large to share an MPUB: it goes alone.
            } else {
                // Anything else keeps its place after the publishes before it.
                run.stage(buf, staged);
            }
            stage_one(request, buf, staged, &mut pings);
        }
        run.stage(buf, staged);
        // Encoded without the lock (the reader may be taking answers meanwhile); handed over
        // in one short lock, before the write.
        {
            let mut queue = written.lock();
            if queue.reader_done {
                for p in staged.drain(..) {
                    p.answer(Err(PublishErrorKind::Disconnected));
                }
            } else {
                queue.pending.extend(staged.drain(..));
            }
        }
        if buf.is_empty() {
            return Ok(());
        }
        self.flush(buf, write_half).await?;
        for respond in pings {
            let _ = respond.send(Ok(()));
        }
        Ok(())
    }
}

fn fail(request: Request, kind: PublishErrorKind) {
    request.answer(Err(kind));
}

/// Reads nsqd's answers and matches each to the oldest written request. Returns why the
/// connection ended; every request still waiting is answered `Disconnected`.
async fn read_answers(
    mut reader: FramedRead<tokio::io::ReadHalf<Transport>, ClientCodec>,
    written: Arc<Written>,
    heartbeat: Arc<Notify>,
    writer_done: Arc<Notify>,
    stop: CancellationToken,
    read_deadline: Duration,
) -> String {
    let mut last_read = Instant::now();
    // One timer for the read deadline, moved on only when it fires early: resetting it for
    // every answer would cost a timer update per publish.
    let mut deadline = std::pin::pin!(tokio::time::sleep_until(last_read + read_deadline));
    let mut stopped = std::pin::pin!(stop.cancelled());
    let mut writer_finished = std::pin::pin!(writer_done.notified());
    let why = loop {
        {
            let queue = written.lock();
            if queue.writer_done && queue.pending.is_empty() {
                // The writer is done and everything it wrote is answered.
                break "closed".to_owned();
            }
        }
        tokio::select! {
            biased;
            _ = stopped.as_mut() => break "closed".to_owned(),
            _ = writer_finished.as_mut() => {
                // Checked at the top of the loop; wait for the next notification meanwhile.
                writer_finished.set(writer_done.notified());
            }
            _ = deadline.as_mut() => {
                let due = last_read + read_deadline;
                if due > Instant::now() {
                    deadline.as_mut().reset(due);
                    continue;
                }
                break format!("nothing from nsqd for {read_deadline:?}");
            }
            frame = reader.next() => {
                last_read = Instant::now();
                let answer = match frame {
                    None => break "nsqd closed the connection".to_owned(),
                    Some(Err(e)) => break format!("read failed: {e}"),
                    Some(Ok(Frame::Response(Response::Heartbeat))) => {
                        heartbeat.notify_one();
                        continue;
                    }
                    Some(Ok(Frame::Response(_))) => Ok(()),
                    Some(Ok(Frame::Error(e))) => Err(e),
                    Some(Ok(Frame::Message(_))) => break "nsqd sent a message to a producer".to_owned(),
                };
                // The writer queues each request before writing it, so its entry is there
                // by the time its answer can arrive.
                let Some(p) = written.lock().pending.pop_front() else {
                    break "an answer with no publish waiting for it".to_owned();
                };
                let fatal = answer.as_ref().err().is_some_and(|e| e.code.is_fatal());
                p.answer(answer.map_err(PublishErrorKind::Server));
                if fatal {
                    // nsqd closes the connection after a fatal error; nothing after it is answered.
                    break "nsqd closed the connection after a fatal error".to_owned();
                }
            }
        }
    };
    let waiting = {
        let mut queue = written.lock();
        queue.reader_done = true;
        std::mem::take(&mut queue.pending)
    };
    for p in waiting {
        p.answer(Err(PublishErrorKind::Disconnected));
    }
    why
}
