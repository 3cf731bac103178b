//! How a consumer behaves: in-flight budget, discovery, attempts, requeue delays, backoff,
//! RDY rotation, reconnects and stopping.

use std::time::Duration;

use crate::config::ConnectionConfig;
use crate::consumer::rdy::RdyConfig;
use crate::error::ConfigError;

/// How the backoff wait grows with the backoff level (go-nsq's `BackoffStrategy`).
///
/// ```
/// use nsq_client::{BackoffStrategy, ConsumerConfig};
/// let config = ConsumerConfig::default().backoff_strategy(BackoffStrategy::FullJitter);
/// # let _ = config;
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum BackoffStrategy {
    /// Wait `backoff_multiplier × 2^level`, capped at `max_backoff` (default).
    #[default]
    Exponential,
    /// Wait a random time below the exponential wait (AWS's "full jitter"), so that many
    /// consumers backing off together do not probe together.
    FullJitter,
    /// Never back off: a requeue does not slow the consumer down (go-nsq's
    /// `max_backoff_duration = 0`). Requeues still wait their requeue delay in nsqd.
    Disabled,
}

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
    pub(crate) backoff_strategy: BackoffStrategy,
    pub(crate) low_rdy_idle_timeout: Duration,
    pub(crate) low_rdy_timeout: Duration,
    pub(crate) lookupd_poll_timeout: Duration,
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
            backoff_strategy: BackoffStrategy::Exponential,
            low_rdy_idle_timeout: Duration::from_millis(50),
            low_rdy_timeout: Duration::from_secs(1),
            lookupd_poll_timeout: Duration::from_secs(5),
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
        /// Messages delivered more often than this are given up on before they reach the
        /// stream or the handler: the give-up hook runs and the message is finished (default 5,
        /// as go-nsq; 0 never gives up).
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

    /// TOUCH every delivered message this often until it is answered, so that nsqd's in-flight
    /// timeout does not expire while it waits or is worked on (default off: nsq's guide says
    /// clients should not touch on their own; turn it on for work that can outlast
    /// msg_timeout). It applies alike to messages taken from the stream and to messages under
    /// [`Consumer::run`](crate::Consumer::run), from delivery to answer. Keep it below the
    /// connection's msg_timeout (nsqd's `--msg-timeout`, 60 s by default). nsqd stops honouring
    /// TOUCH once a message has been in flight for `--max-msg-timeout` (15 min by default).
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

    /// How backoff waits grow (default [`BackoffStrategy::Exponential`]);
    /// [`BackoffStrategy::Disabled`] turns backoff off.
    ///
    /// ```
    /// use nsq_client::{BackoffStrategy, ConsumerConfig};
    /// let config = ConsumerConfig::default().backoff_strategy(BackoffStrategy::Disabled);
    /// # let _ = config;
    /// ```
    pub fn backoff_strategy(mut self, strategy: BackoffStrategy) -> Self {
        self.backoff_strategy = strategy;
        self
    }

    /// When max_in_flight is below the number of nsqd, connections take turns holding RDY. A
    /// holder that had nothing to do for this long passes RDY on (default 50 ms; go-nsq's
    /// `LowRdyIdleTimeout`, 10 s there, with a 5 s redistribution tick on top).
    ///
    /// ```
    /// let config = nsq_client::ConsumerConfig::default()
    ///     .low_rdy_idle_timeout(std::time::Duration::from_millis(200));
    /// # let _ = config;
    /// ```
    pub fn low_rdy_idle_timeout(mut self, timeout: Duration) -> Self {
        self.low_rdy_idle_timeout = timeout;
        self
    }

    /// When max_in_flight is below the number of nsqd, a busy holder gives RDY up after
    /// holding it this long, so that every nsqd is served (default 1 s; go-nsq's
    /// `LowRdyTimeout`, 30 s there).
    ///
    /// ```
    /// let config = nsq_client::ConsumerConfig::default()
    ///     .low_rdy_timeout(std::time::Duration::from_secs(5));
    /// # let _ = config;
    /// ```
    pub fn low_rdy_timeout(mut self, timeout: Duration) -> Self {
        self.low_rdy_timeout = timeout;
        self
    }

    /// How long one nsqlookupd query may take (default 5 s; go-nsq's `LookupdPollTimeout`).
    /// Queries run beside the consumer's work: a slow lookupd delays discovery only.
    ///
    /// ```
    /// let config = nsq_client::ConsumerConfig::default()
    ///     .lookupd_poll_timeout(std::time::Duration::from_secs(2));
    /// # let _ = config;
    /// ```
    pub fn lookupd_poll_timeout(mut self, timeout: Duration) -> Self {
        self.lookupd_poll_timeout = timeout;
        self
    }

    /// The connection settings in force.
    ///
    /// ```
    /// let config = nsq_client::ConsumerConfig::default();
    /// assert!(config.connection_config().heartbeat_interval_value().is_some());
    /// ```
    pub fn connection_config(&self) -> &ConnectionConfig {
        &self.connection
    }

    pub(crate) fn validate(&self) -> Result<(), ConfigError> {
        self.connection.validate()?;
        if self.connection.heartbeat_interval.is_none() {
            return Err(ConfigError::new(
                "a consumer needs heartbeats: nsqd refuses SUB with heartbeats disabled",
            ));
        }
        if self.low_rdy_idle_timeout.is_zero() || self.low_rdy_timeout.is_zero() {
            return Err(ConfigError::new(
                "low_rdy_idle_timeout and low_rdy_timeout must be above zero",
            ));
        }
        if self.lookupd_poll_timeout.is_zero() {
            return Err(ConfigError::new("lookupd_poll_timeout must be above zero"));
        }
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

    /// The RDY controller's settings.
    pub(crate) fn rdy(&self) -> RdyConfig {
        RdyConfig {
            max_in_flight: self.max_in_flight,
            idle_rotate: self.low_rdy_idle_timeout,
            max_hold: self.low_rdy_timeout,
            backoff_multiplier: self.backoff_multiplier,
            max_backoff: self.max_backoff,
            backoff_jitter: self.backoff_strategy == BackoffStrategy::FullJitter,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_consumer_refuses_disabled_heartbeats_which_nsqd_refuses_for_sub() {
        let config =
            ConsumerConfig::default().connection(ConnectionConfig::default().disable_heartbeats());
        let err = config.validate().unwrap_err();
        assert!(err.to_string().contains("heartbeats"), "{err}");
    }

    #[test]
    fn the_rdy_controller_gets_the_low_rdy_timings_and_the_strategy() {
        let config = ConsumerConfig::default()
            .max_in_flight(7)
            .low_rdy_idle_timeout(Duration::from_millis(300))
            .low_rdy_timeout(Duration::from_secs(4))
            .backoff_strategy(BackoffStrategy::FullJitter);
        let rdy = config.rdy();
        assert_eq!(rdy.max_in_flight, 7);
        assert_eq!(rdy.idle_rotate, Duration::from_millis(300));
        assert_eq!(rdy.max_hold, Duration::from_secs(4));
        assert!(rdy.backoff_jitter);
        assert!(!ConsumerConfig::default().rdy().backoff_jitter);
    }

    #[test]
    fn zero_timings_are_refused() {
        for config in [
            ConsumerConfig::default().low_rdy_idle_timeout(Duration::ZERO),
            ConsumerConfig::default().low_rdy_timeout(Duration::ZERO),
            ConsumerConfig::default().lookupd_poll_timeout(Duration::ZERO),
        ] {
            assert!(config.validate().is_err());
        }
    }
}
