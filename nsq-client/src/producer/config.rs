//! [`ProducerConfig`]: how a producer behaves beyond its connection settings.

use std::time::Duration;

use crate::config::ConnectionConfig;
use crate::error::ConfigError;

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
    pub(crate) lookupd_poll_timeout: Duration,
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
            lookupd_poll_timeout: Duration::from_secs(5),
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
    /// Under load, many [`Producer::publish`](crate::Producer::publish) calls wait for the connection at once. Those
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

    /// How long a [`ProducerPool`](crate::ProducerPool) built with
    /// [`with_lookupd`](crate::ProducerPool::with_lookupd) waits for one nsqlookupd's
    /// answer to `/nodes`, connecting included (default 5 s; go-nsq's `lookupd_poll_timeout`,
    /// whose default is 60 s). A lookupd that does not answer within it is skipped for that
    /// poll; the first poll, which `with_lookupd` awaits, is bounded by it too. A plain
    /// [`Producer`](crate::Producer) never asks nsqlookupd.
    ///
    /// ```
    /// use std::time::Duration;
    /// let c = nsq_client::ProducerConfig::default().lookupd_poll_timeout(Duration::from_secs(2));
    /// # let _ = c;
    /// ```
    pub fn lookupd_poll_timeout(mut self, timeout: Duration) -> Self {
        self.lookupd_poll_timeout = timeout;
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
        if self.lookupd_poll_timeout.is_zero() {
            return Err(ConfigError::new("lookupd_poll_timeout must be above zero"));
        }
        if self.publish_timeout.is_some_and(|t| t.is_zero()) {
            return Err(ConfigError::new("publish_timeout must be above zero"));
        }
        Ok(())
    }
}
