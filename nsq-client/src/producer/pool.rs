//! Publishing to a set of nsqd with failover: a publish that fails in a way a retry can fix
//! (connection lost, no answer, nsqd exiting) or that could not connect at all (even for a
//! reason that will not pass by itself, such as a refused TLS handshake: the next node may
//! differ) goes to the next node with its bodies handed back, so one nsqd's death does not
//! fail publishes.
//!
//! A publish that was written before its connection died may have been taken by nsqd, so a
//! retry elsewhere can deliver it twice. NSQ is at-least-once; consumers already handle
//! duplicates (for example after a message timeout). What the pool never does is report a
//! publish `OK` that no nsqd answered `OK`.
//!
//! A node that failed is skipped for a cooldown (the producers' `backoff_min`, at least
//! 100 ms). When it ends, one publish goes there as a probe while the others still skip it:
//! its `OK` brings the node back, its failure doubles the cooldown, up to 64 times. So an
//! nsqd that hangs with its connections open costs the publishes that were waiting on it
//! (they time out after `publish_timeout`; nsqd may have taken them, so they are not
//! retried) and then one probe per cooldown, not one publish in every `N`.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use bytes::Bytes;
use nsq_proto::Topic;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::health::{Health, Route};
use super::{Producer, ProducerConfig, ProducerStats};
use crate::error::{ConfigError, PublishError, PublishErrorKind};

/// Which node a pool tries first.
///
/// ```
/// assert_eq!(nsq_client::Strategy::default(), nsq_client::Strategy::RoundRobin);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Strategy {
    /// Each publish starts at the next node in turn (default). When that node has more than
    /// twice the requests in flight of the node after it, plus 16, the publish starts at
    /// that one instead: a node that stops answering without closing its connections gets
    /// no more publishes once its own have piled up, long before they time out. Nodes of
    /// similar speed keep an even share; a much slower one gets what it answers.
    #[default]
    RoundRobin,
    /// Every publish starts at the first healthy node in the order given; the others are
    /// fallbacks. A node that stops answering gets every publish until one times out.
    PreferFirst,
}

/// Requests in flight by which a node must exceed twice the next one's before round robin
/// passes it over (see [`Strategy::RoundRobin`]).
const PILE_UP: u64 = 16;

/// A node, and its health (whether it is skipped after a failure).
#[derive(Debug)]
struct Node {
    producer: Producer,
    health: Health,
}

#[derive(Debug)]
struct PoolInner {
    config: ProducerConfig,
    strategy: Strategy,
    /// Nodes in order (lookupd discovery sorts them, so `PreferFirst` is stable).
    nodes: Mutex<Vec<(String, Node)>>,
    next: AtomicUsize,
    cooldown: Duration,
    cancel: CancellationToken,
    tasks: TaskTracker,
    messages_published: AtomicU64,
    publishes_failed: AtomicU64,
    failovers: AtomicU64,
    /// How many nodes failed and have not answered `OK` since: while none has, a success has
    /// nothing to clear and takes no lock, and no node waits for a probe.
    marked_down: AtomicUsize,
}

impl Drop for PoolInner {
    fn drop(&mut self) {
        self.cancel.cancel();
    }
}

/// A pool's counters at one moment (see [`ProducerPool::stats`]).
///
/// The pool counts its own calls: a publish that failed on one node and succeeded on the
/// next is one message published and one failover here, while the first node's
/// [`ProducerStats`] count it failed and the second's published.
///
/// ```
/// # fn show(pool: &nsq_client::ProducerPool) {
/// let stats = pool.stats();
/// println!("{} published, {} failed, {} failovers", stats.messages_published, stats.publishes_failed, stats.failovers);
/// for node in &stats.nodes {
///     println!("{}: connected {}, in flight {}", node.addr, node.producer.connected, node.producer.in_flight);
/// }
/// # }
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct PoolStats {
    /// Messages whose pool publish returned `Ok`; each message of an MPUB counts.
    pub messages_published: u64,
    /// Pool publishes that returned an error (after every node it tried); an MPUB counts once.
    pub publishes_failed: u64,
    /// Times a publish went on to the next node after a failure.
    pub failovers: u64,
    /// Requests in flight, over the current nodes.
    pub in_flight: u64,
    /// Reconnects, over the current nodes.
    pub reconnects: u64,
    /// How many of the current nodes are connected now.
    pub connected: usize,
    /// Each current node, in the pool's order.
    pub nodes: Vec<NodeStats>,
}

/// One node of a pool (see [`PoolStats`]).
///
/// ```
/// # fn show(pool: &nsq_client::ProducerPool) {
/// for node in pool.stats().nodes {
///     if node.cooling_down {
///         eprintln!("{} failed recently; tried last", node.addr);
///     }
/// }
/// # }
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct NodeStats {
    /// The nsqd address.
    pub addr: String,
    /// Its producer's counters.
    pub producer: ProducerStats,
    /// Whether it failed recently, so that publishes try it after the others.
    pub cooling_down: bool,
}

/// Producers for several nsqd, with failover between them. Cheap to clone.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// # let a = nsq_server_lite::Nsqd::start().await?;
/// # let b = nsq_server_lite::Nsqd::start().await?;
/// use nsq_client::{proto::Topic, ProducerConfig, ProducerPool, Strategy};
///
/// let pool = ProducerPool::new(
///     [a.tcp_addr().to_string(), b.tcp_addr().to_string()],
///     ProducerConfig::default(),
///     Strategy::RoundRobin,
/// )?;
/// let topic = Topic::new("orders")?;
/// pool.publish(&topic, "order 1").await?; // goes to a, or to b if a is down
/// pool.stop().await;
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct ProducerPool {
    inner: Arc<PoolInner>,
}

impl ProducerPool {
    /// A pool over a fixed list of nsqd TCP addresses.
    ///
    /// ```
    /// use nsq_client::{ProducerPool, Strategy};
    /// let pool = ProducerPool::new(["10.0.0.1:4150", "10.0.0.2:4150"], Default::default(), Strategy::RoundRobin)?;
    /// assert_eq!(pool.addrs().len(), 2);
    /// # Ok::<(), nsq_client::ConfigError>(())
    /// ```
    ///
    /// # Errors
    ///
    /// [`ConfigError`] when the list is empty or a setting is out of range.
    pub fn new(
        addrs: impl IntoIterator<Item = impl Into<String>>,
        config: ProducerConfig,
        strategy: Strategy,
    ) -> Result<Self, ConfigError> {
        let pool = Self::empty(config, strategy)?;
        let addrs: Vec<String> = addrs.into_iter().map(Into::into).collect();
        if addrs.is_empty() {
            return Err(ConfigError::new("a producer pool needs at least one nsqd"));
        }
        pool.set_nodes(addrs)?;
        Ok(pool)
    }

    /// A pool over every nsqd the given nsqlookupd know (their `/nodes`), asked again every
    /// `poll_interval`: new nodes are added, vanished ones closed. The first answer is awaited,
    /// so the pool has its nodes when this returns. Each request to a lookupd is bounded by
    /// [`ProducerConfig::lookupd_poll_timeout`].
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use nsq_server_lite::{lookupd::Lookupd, Nsqd};
    /// use nsq_client::{ProducerPool, Strategy};
    /// use std::time::Duration;
    ///
    /// let lookupd = Lookupd::builder().start().await?;
    /// let nsqd = Nsqd::builder()
    ///     .broadcast_address("127.0.0.1")
    ///     .lookupd_tcp_address(lookupd.tcp_addr().to_string())
    ///     .start()
    ///     .await?;
    /// // lookupd lists an nsqd once it has registered: wait for that.
    /// let pool = loop {
    ///     match ProducerPool::with_lookupd([lookupd.http_addr().to_string()], Default::default(), Strategy::RoundRobin, Duration::from_secs(60)).await {
    ///         Ok(pool) => break pool,
    ///         Err(_) => tokio::task::yield_now().await,
    ///     }
    /// };
    /// assert_eq!(pool.addrs(), [nsqd.tcp_addr().to_string()]);
    /// # Ok(())
    /// # }
    /// ```
    ///
    /// # Errors
    ///
    /// [`ConfigError`] when no lookupd is given, a setting is out of range, or no lookupd
    /// answered the first time.
    #[cfg(feature = "lookupd")]
    pub async fn with_lookupd(
        lookupd_http: impl IntoIterator<Item = impl Into<String>>,
        config: ProducerConfig,
        strategy: Strategy,
        poll_interval: Duration,
    ) -> Result<Self, ConfigError> {
        let lookupds: Vec<String> = lookupd_http.into_iter().map(Into::into).collect();
        if lookupds.is_empty() {
            return Err(ConfigError::new(
                "with_lookupd needs at least one nsqlookupd",
            ));
        }
        if poll_interval.is_zero() {
            return Err(ConfigError::new("poll_interval must be above zero"));
        }
        let http = crate::lookupd::http_client(config.lookupd_poll_timeout, &config.connection)
            .map_err(ConfigError::caused_by)?;
        let pool = Self::empty(config, strategy)?;

        let first = discover(&http, &lookupds).await;
        if first.is_empty() {
            return Err(ConfigError::new(format!(
                "no nsqd found through nsqlookupd {}",
                lookupds.join(", ")
            )));
        }
        pool.set_nodes(first)?;
        let weak = Arc::downgrade(&pool.inner);
        let cancel = pool.inner.cancel.clone();
        pool.inner.tasks.spawn(async move {
            let mut ticker =
                tokio::time::interval_at(Instant::now() + poll_interval, poll_interval);
            loop {
                tokio::select! {
                    _ = cancel.cancelled() => return,
                    _ = ticker.tick() => {}
                }
                let found = discover(&http, &lookupds).await;
                let Some(inner) = weak.upgrade() else { return };
                if !found.is_empty() {
                    let _ = (ProducerPool { inner }).set_nodes(found);
                }
            }
        });
        Ok(pool)
    }

    fn empty(config: ProducerConfig, strategy: Strategy) -> Result<Self, ConfigError> {
        config.validate()?;
        let cooldown = config.backoff_min.max(Duration::from_millis(100));
        Ok(Self {
            inner: Arc::new(PoolInner {
                config,
                strategy,
                nodes: Mutex::new(Vec::new()),
                next: AtomicUsize::new(0),
                cooldown,
                cancel: CancellationToken::new(),
                tasks: TaskTracker::new(),
                messages_published: AtomicU64::new(0),
                publishes_failed: AtomicU64::new(0),
                failovers: AtomicU64::new(0),
                marked_down: AtomicUsize::new(0),
            }),
        })
    }

    fn nodes(&self) -> MutexGuard<'_, Vec<(String, Node)>> {
        self.inner.nodes.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Replaces the node set, keeping the producers (and connections) of nodes that stay.
    fn set_nodes(&self, addrs: Vec<String>) -> Result<(), ConfigError> {
        let mut nodes = self.nodes();
        let mut old: BTreeMap<String, Node> = nodes.drain(..).collect();
        for addr in addrs {
            if nodes.iter().any(|(a, _)| *a == addr) {
                continue;
            }
            let node = match old.remove(&addr) {
                Some(node) => node,
                None => Node {
                    producer: Producer::new(addr.clone(), self.inner.config.clone())?,
                    health: Health::default(),
                },
            };
            nodes.push((addr, node));
        }
        let marked = nodes.iter().filter(|(_, n)| n.health.is_marked()).count();
        self.inner.marked_down.store(marked, Ordering::Relaxed);
        for (addr, node) in old {
            tracing::info!(%addr, "nsqd left the pool");
            let producer = node.producer;
            self.inner.tasks.spawn(async move { producer.stop().await });
        }
        Ok(())
    }

    /// The nsqd addresses in the pool, in order.
    ///
    /// ```
    /// let pool = nsq_client::ProducerPool::new(["h:4150"], Default::default(), Default::default())?;
    /// assert_eq!(pool.addrs(), ["h:4150"]);
    /// # Ok::<(), nsq_client::ConfigError>(())
    /// ```
    pub fn addrs(&self) -> Vec<String> {
        self.nodes().iter().map(|(a, _)| a.clone()).collect()
    }

    /// The node for one attempt of a publish, among those not `tried` yet, looking from
    /// node `start` on:
    ///
    /// 1. on a first attempt, a node whose cooldown ended and that has no probe out: this
    ///    publish is its probe;
    /// 2. a healthy node: the first in order ([`Strategy::PreferFirst`]); with
    ///    [`Strategy::RoundRobin`], the second when the first has piled up requests (more
    ///    than twice the second's in flight, plus [`PILE_UP`]): a node that stopped
    ///    answering so stops being given publishes long before they time out;
    /// 3. as a last resort, a node cooling down or probing.
    pub(crate) fn pick(&self, start: usize, tried: &[Producer]) -> Option<Producer> {
        let mut nodes = self.nodes();
        let n = nodes.len();
        let now = Instant::now();
        // `start` grows with every publish: reduced first, so that nothing overflows.
        let order = (0..n).map(|k| (start % n + k) % n);
        let untried = |addr: &String| tried.iter().all(|p| p.addr() != addr);
        if tried.is_empty() && self.inner.marked_down.load(Ordering::Relaxed) > 0 {
            let probe = order
                .clone()
                .find(|&i| nodes[i].1.health.route(now) == Route::Probe);
            if let Some(i) = probe {
                nodes[i].1.health.probe_sent();
                return Some(nodes[i].1.producer.clone());
            }
        }
        let mut healthy = order
            .clone()
            .filter(|&i| untried(&nodes[i].0) && nodes[i].1.health.route(now) == Route::Healthy);
        let first = healthy.next();
        let second = match self.inner.strategy {
            Strategy::RoundRobin => healthy.next(),
            Strategy::PreferFirst => None,
        };
        match (first, second) {
            (Some(a), Some(b)) => {
                let (pa, pb) = (&nodes[a].1.producer, &nodes[b].1.producer);
                let piled_up = pa.in_flight() > pb.in_flight().saturating_mul(2) + PILE_UP;
                return Some(if piled_up { pb } else { pa }.clone());
            }
            (Some(a), None) => return Some(nodes[a].1.producer.clone()),
            _ => {}
        }
        order
            .filter(|&i| untried(&nodes[i].0))
            .map(|i| nodes[i].1.producer.clone())
            .next()
    }

    /// Where a publish starts looking: the next node in turn (round robin) or the first.
    pub(crate) fn first_index(&self) -> usize {
        match self.inner.strategy {
            Strategy::RoundRobin => self.inner.next.fetch_add(1, Ordering::Relaxed),
            Strategy::PreferFirst => 0,
        }
    }

    /// How many nodes the pool has now.
    pub(crate) fn len(&self) -> usize {
        self.nodes().len()
    }

    /// Records that `addr` answered a publish `OK`.
    pub(crate) fn mark_ok(&self, addr: &str) {
        if self.inner.marked_down.load(Ordering::Relaxed) > 0 {
            self.mark(addr, Some(false));
        }
    }

    /// Records a publish's failure on `addr`: one that another node may not share (see
    /// [`PublishError::fails_over`]) counts against it; an error nsqd answered shows it
    /// alive; any other (refused before it was sent) says nothing about it.
    pub(crate) fn mark_error(&self, addr: &str, err: &PublishError) {
        if err.fails_over() {
            self.mark(addr, Some(true));
        } else if matches!(err.kind(), PublishErrorKind::Server(_)) {
            self.mark_ok(addr);
        } else {
            self.mark(addr, None);
        }
    }

    /// `Some(failed)`: one of `addr`'s publishes was answered; `None`: its probe, if it was
    /// one, came back without an answer and another may go.
    fn mark(&self, addr: &str, outcome: Option<bool>) {
        let mut nodes = self.nodes();
        if let Some((_, node)) = nodes.iter_mut().find(|(a, _)| a == addr) {
            let Some(failed) = outcome else {
                node.health.probe_returned();
                return;
            };
            let was_marked = node.health.is_marked();
            node.health
                .record(failed, Instant::now(), self.inner.cooldown);
            match (was_marked, failed) {
                (false, true) => self.inner.marked_down.fetch_add(1, Ordering::Relaxed),
                (true, false) => self.inner.marked_down.fetch_sub(1, Ordering::Relaxed),
                _ => 0,
            };
        }
    }

    /// Tries `op` on one node after another (see [`pick`](Self::pick)) until one succeeds or
    /// an error does not fail over (see [`PublishError::fails_over`]). The first node's
    /// attempt starts now (a producer queues its publish when called); the others when the
    /// one before failed.
    fn start<F, Fut>(
        &self,
        bodies: Vec<Bytes>,
        op: F,
    ) -> impl Future<Output = Result<(), PublishError>> + Send + 'static
    where
        F: Fn(&Producer, Vec<Bytes>) -> Fut + Send + 'static,
        Fut: Future<Output = Result<(), PublishError>> + Send + 'static,
    {
        let pool = self.clone();
        let messages = bodies.len() as u64;
        let from = self.first_index();
        let first = match self.pick(from, &[]) {
            // Each attempt on the heap: the pool's future stays a few words, however it is
            // moved (into a task, a `FuturesUnordered`, a join), instead of several copies of
            // a producer's.
            Some(producer) => {
                let attempt = Box::pin(op(&producer, bodies));
                Ok((producer, attempt))
            }
            None => Err(PublishError::new(PublishErrorKind::NoNodes, "", bodies)),
        };
        let attempts = async move {
            let (mut producer, mut attempt) = first?;
            let mut tried = Vec::new();
            loop {
                let err = match attempt.as_mut().await {
                    Ok(()) => {
                        pool.mark_ok(producer.addr());
                        return Ok(());
                    }
                    Err(err) => err,
                };
                pool.mark_error(producer.addr(), &err);
                if !err.fails_over() {
                    return Err(err);
                }
                tracing::warn!(addr = %producer.addr(), error = %err, "publish failed; trying the next nsqd");
                // A timeout keeps no bodies (the caller's future may still own them in
                // flight): nothing to retry with.
                if err.bodies().is_empty() {
                    return Err(err);
                }
                tried.push(producer);
                let Some(next) = pool.pick(from, &tried) else {
                    return Err(err);
                };
                pool.inner.failovers.fetch_add(1, Ordering::Relaxed);
                attempt = Box::pin(op(&next, err.into_bodies()));
                producer = next;
            }
        };
        let inner = self.inner.clone();
        async move {
            let result = attempts.await;
            match &result {
                Ok(()) => inner
                    .messages_published
                    .fetch_add(messages, Ordering::Relaxed),
                Err(_) => inner.publishes_failed.fetch_add(1, Ordering::Relaxed),
            };
            result
        }
    }

    /// What the pool has done so far, in total and per node.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let a = nsq_server_lite::Nsqd::start().await?;
    /// # let b = nsq_server_lite::Nsqd::start().await?;
    /// use nsq_client::{proto::Topic, ProducerPool, Strategy};
    /// let pool = ProducerPool::new([a.tcp_addr().to_string(), b.tcp_addr().to_string()], Default::default(), Strategy::PreferFirst)?;
    /// pool.publish(&Topic::new("t")?, "hello").await?;
    /// let stats = pool.stats();
    /// assert_eq!(stats.messages_published, 1);
    /// assert_eq!(stats.nodes[0].producer.messages_published, 1); // PreferFirst
    /// assert_eq!(stats.nodes[1].producer.messages_published, 0);
    /// # Ok(())
    /// # }
    /// ```
    pub fn stats(&self) -> PoolStats {
        let now = Instant::now();
        let nodes: Vec<NodeStats> = self
            .nodes()
            .iter()
            .map(|(addr, node)| NodeStats {
                addr: addr.clone(),
                producer: node.producer.stats(),
                cooling_down: node.health.is_cooling(now),
            })
            .collect();
        PoolStats {
            messages_published: self.inner.messages_published.load(Ordering::Relaxed),
            publishes_failed: self.inner.publishes_failed.load(Ordering::Relaxed),
            failovers: self.inner.failovers.load(Ordering::Relaxed),
            in_flight: nodes.iter().map(|n| n.producer.in_flight).sum(),
            reconnects: nodes.iter().map(|n| n.producer.reconnects).sum(),
            connected: nodes.iter().filter(|n| n.producer.connected).count(),
            nodes,
        }
    }

    /// Publishes one message to one of the nodes, failing over on retriable errors and on
    /// connection failures.
    ///
    /// The future borrows nothing (it can be spawned). The publish is queued on the first
    /// node when this is called, as [`Producer::publish`] does; a retry on another node
    /// starts when the attempt before it failed.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let a = nsq_server_lite::Nsqd::start().await?;
    /// # let b = nsq_server_lite::Nsqd::start().await?;
    /// use nsq_client::{proto::Topic, ProducerPool, Strategy};
    /// let pool = ProducerPool::new([a.tcp_addr().to_string(), b.tcp_addr().to_string()], Default::default(), Strategy::PreferFirst)?;
    /// let topic = Topic::new("t")?;
    /// pool.publish(&topic, "hello").await?;
    /// # Ok(())
    /// # }
    /// ```
    ///
    /// # Errors
    ///
    /// The last node's [`PublishError`], with the body handed back.
    pub fn publish(
        &self,
        topic: &Topic,
        body: impl Into<Bytes>,
    ) -> impl Future<Output = Result<(), PublishError>> + Send + 'static {
        let topic = topic.clone();
        self.start(vec![body.into()], move |p, mut b| {
            p.publish(&topic, b.pop().unwrap_or_default())
        })
    }

    /// Publishes several messages atomically to one node (MPUB), failing over as a whole.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let a = nsq_server_lite::Nsqd::start().await?;
    /// # let b = nsq_server_lite::Nsqd::start().await?;
    /// use nsq_client::{proto::Topic, ProducerPool, Strategy};
    /// let pool = ProducerPool::new([a.tcp_addr().to_string(), b.tcp_addr().to_string()], Default::default(), Strategy::PreferFirst)?;
    /// let topic = Topic::new("t")?;
    /// pool.multi_publish(&topic, vec!["a".into(), "b".into()]).await?;
    /// # Ok(())
    /// # }
    /// ```
    ///
    /// # Errors
    ///
    /// The last node's [`PublishError`], with the bodies handed back.
    pub fn multi_publish(
        &self,
        topic: &Topic,
        bodies: Vec<Bytes>,
    ) -> impl Future<Output = Result<(), PublishError>> + Send + 'static {
        let topic = topic.clone();
        self.start(bodies, move |p, b| p.multi_publish(&topic, b))
    }

    /// Publishes one deferred message (DPUB), failing over as [`publish`](Self::publish) does.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let a = nsq_server_lite::Nsqd::start().await?;
    /// # let b = nsq_server_lite::Nsqd::start().await?;
    /// use nsq_client::{proto::Topic, ProducerPool, Strategy};
    /// let pool = ProducerPool::new([a.tcp_addr().to_string(), b.tcp_addr().to_string()], Default::default(), Strategy::PreferFirst)?;
    /// let topic = Topic::new("t")?;
    /// pool.deferred_publish(&topic, std::time::Duration::from_secs(1), "soon").await?;
    /// # Ok(())
    /// # }
    /// ```
    ///
    /// # Errors
    ///
    /// The last node's [`PublishError`], with the body handed back.
    pub fn deferred_publish(
        &self,
        topic: &Topic,
        delay: Duration,
        body: impl Into<Bytes>,
    ) -> impl Future<Output = Result<(), PublishError>> + Send + 'static {
        let topic = topic.clone();
        self.start(vec![body.into()], move |p, mut b| {
            p.deferred_publish(&topic, delay, b.pop().unwrap_or_default())
        })
    }

    /// Stops every producer (each as [`Producer::stop`] does: queued publishes finish within
    /// their timeout) and the lookupd polling; returns when all is closed. A publish called
    /// after it fails with [`PublishErrorKind::Stopped`].
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let a = nsq_server_lite::Nsqd::start().await?;
    /// # let b = nsq_server_lite::Nsqd::start().await?;
    /// use nsq_client::{proto::Topic, ProducerPool, Strategy};
    /// let pool = ProducerPool::new([a.tcp_addr().to_string(), b.tcp_addr().to_string()], Default::default(), Strategy::PreferFirst)?;
    /// let topic = Topic::new("t")?;
    /// pool.publish(&topic, "last").await?;
    /// pool.stop().await;
    /// let err = pool.publish(&topic, "too late").await.unwrap_err();
    /// assert!(matches!(err.kind(), nsq_client::PublishErrorKind::Stopped));
    /// # Ok(())
    /// # }
    /// ```
    pub async fn stop(&self) {
        self.inner.cancel.cancel();
        let producers: Vec<Producer> = self
            .nodes()
            .iter()
            .map(|(_, n)| n.producer.clone())
            .collect();
        for p in producers {
            p.stop().await;
        }
        self.inner.tasks.close();
        self.inner.tasks.wait().await;
    }
}

/// The union of every lookupd's `/nodes`, as `host:port` TCP addresses, in a stable order.
#[cfg(feature = "lookupd")]
async fn discover(http: &reqwest::Client, lookupds: &[String]) -> Vec<String> {
    let mut found = std::collections::BTreeSet::new();
    for lookupd in lookupds {
        match crate::lookupd::nodes(http, lookupd).await {
            Ok(nodes) => found.extend(nodes.iter().map(crate::lookupd::tcp_addr)),
            Err(err) => tracing::warn!(%lookupd, %err, "nsqlookupd /nodes failed"),
        }
    }
    found.into_iter().collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A pool's publish future holds its attempt on the heap: moving it (into a task, a
    /// `FuturesUnordered`) copies a few words, not several producer futures.
    #[tokio::test]
    async fn a_publish_future_stays_small_to_move() {
        let pool = ProducerPool::new(
            ["127.0.0.1:1"],
            ProducerConfig::default(),
            Strategy::RoundRobin,
        )
        .unwrap();
        let topic = Topic::new("t").unwrap();
        let publish = pool.publish(&topic, "x");
        let multi = pool.multi_publish(&topic, vec![Bytes::from("x")]);
        for size in [
            std::mem::size_of_val(&publish),
            std::mem::size_of_val(&multi),
        ] {
            assert!(size <= 512, "a pool publish future of {size} bytes");
        }
    }

    /// The round-robin counter may reach any value (it wraps after 2^64 publishes): picking
    /// from it neither overflows nor leaves the node list.
    #[tokio::test]
    async fn picking_from_any_counter_value_stays_in_the_node_list() {
        let addrs = ["127.0.0.1:1", "127.0.0.1:2", "127.0.0.1:3"];
        let pool =
            ProducerPool::new(addrs, ProducerConfig::default(), Strategy::RoundRobin).unwrap();
        for start in [0, 1, 2, usize::MAX - 1, usize::MAX] {
            let picked = pool.pick(start, &[]).expect("a node");
            assert_eq!(picked.addr(), addrs[start % 3], "from {start}");
        }
    }
}
