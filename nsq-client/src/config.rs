//! What a connection to nsqd is configured with: identity, heartbeats, buffering, TLS,
//! compression and AUTH. Defaults are go-nsq's (`config.go`).

use std::fmt;
use std::time::Duration;

pub use nsq_proto::Compression;

#[cfg(feature = "tls")]
use crate::tls::TlsConfig;

/// The default largest message body accepted from nsqd.
const DEFAULT_MAX_MESSAGE_SIZE: usize = 5 * 1024 * 1024;

/// The read deadline without heartbeats: far enough to be never, near enough that adding it
/// to an `Instant` cannot overflow.
const NO_READ_DEADLINE: Duration = Duration::from_secs(100 * 365 * 24 * 3600);

/// What a message frame holds besides the body: size, frame type, timestamp, attempts, id.
const FRAME_OVERHEAD: usize = 4 + 4 + 8 + 2 + 16;

/// A connection's settings, sent to nsqd in IDENTIFY and used for the upgrades after it.
///
/// ```
/// use std::time::Duration;
/// use nsq_client::{Compression, ConnectionConfig};
///
/// let config = ConnectionConfig::default()
///     .client_id("billing-7")
///     .heartbeat_interval(Duration::from_secs(10))
///     .compression(Compression::Snappy);
/// assert_eq!(config.heartbeat_interval_value(), Some(Duration::from_secs(10)));
/// ```
#[derive(Clone)]
#[non_exhaustive]
pub struct ConnectionConfig {
    pub(crate) client_id: String,
    pub(crate) hostname: String,
    pub(crate) user_agent: String,
    pub(crate) heartbeat_interval: Option<Duration>,
    pub(crate) msg_timeout: Option<Duration>,
    pub(crate) output_buffer: Option<(u32, Duration)>,
    pub(crate) sample_rate: u8,
    #[cfg(feature = "tls")]
    pub(crate) tls: Option<TlsConfig>,
    pub(crate) compression: Compression,
    pub(crate) auth_secret: Option<String>,
    pub(crate) plaintext_auth: bool,
    pub(crate) dial_timeout: Duration,
    pub(crate) write_timeout: Duration,
    pub(crate) max_frame_size: usize,
    pub(crate) local_addr: Option<std::net::SocketAddr>,
    pub(crate) topology: Option<(String, String)>,
}

impl Default for ConnectionConfig {
    fn default() -> Self {
        let hostname = nsq_proto::identify::local_hostname();
        Self {
            client_id: hostname.split('.').next().unwrap_or_default().to_owned(),
            hostname,
            user_agent: format!("nsq-client/{}", env!("CARGO_PKG_VERSION")),
            heartbeat_interval: Some(Duration::from_secs(30)),
            msg_timeout: None,
            output_buffer: Some((16 * 1024, Duration::from_millis(250))),
            sample_rate: 0,
            #[cfg(feature = "tls")]
            tls: None,
            compression: Compression::None,
            auth_secret: None,
            plaintext_auth: false,
            dial_timeout: Duration::from_secs(1),
            write_timeout: Duration::from_secs(1),
            max_frame_size: DEFAULT_MAX_MESSAGE_SIZE + FRAME_OVERHEAD,
            local_addr: None,
            topology: None,
        }
    }
}

impl fmt::Debug for ConnectionConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut f = f.debug_struct("ConnectionConfig");
        f.field("client_id", &self.client_id)
            .field("hostname", &self.hostname)
            .field("user_agent", &self.user_agent)
            .field("heartbeat_interval", &self.heartbeat_interval)
            .field("msg_timeout", &self.msg_timeout)
            .field("output_buffer", &self.output_buffer)
            .field("sample_rate", &self.sample_rate);
        #[cfg(feature = "tls")]
        f.field("tls", &self.tls);
        f.field("compression", &self.compression)
            .field(
                "auth_secret",
                &self.auth_secret.as_ref().map(|_| "<secret>"),
            )
            .field("plaintext_auth", &self.plaintext_auth)
            .field("dial_timeout", &self.dial_timeout)
            .field("write_timeout", &self.write_timeout)
            .field("max_frame_size", &self.max_frame_size)
            .field("local_addr", &self.local_addr)
            .field("topology", &self.topology)
            .finish()
    }
}

impl ConnectionConfig {
    /// IDENTIFY `client_id` (default: the short host name).
    ///
    /// ```
    /// let c = nsq_client::ConnectionConfig::default().client_id("worker-1");
    /// # let _ = c;
    /// ```
    pub fn client_id(mut self, id: impl Into<String>) -> Self {
        self.client_id = id.into();
        self
    }

    /// IDENTIFY `hostname` (default: the host name).
    ///
    /// ```
    /// let c = nsq_client::ConnectionConfig::default().hostname("web-3.internal");
    /// # let _ = c;
    /// ```
    pub fn hostname(mut self, hostname: impl Into<String>) -> Self {
        self.hostname = hostname.into();
        self
    }

    /// IDENTIFY `user_agent` (default `nsq-client/<version>`).
    ///
    /// ```
    /// let c = nsq_client::ConnectionConfig::default().user_agent("billing/2.1");
    /// # let _ = c;
    /// ```
    pub fn user_agent(mut self, user_agent: impl Into<String>) -> Self {
        self.user_agent = user_agent.into();
        self
    }

    /// How often nsqd sends heartbeats (default 30 s, 1 s to 60 s); the connection is
    /// considered dead after two intervals without a byte from nsqd.
    ///
    /// ```
    /// let c = nsq_client::ConnectionConfig::default().heartbeat_interval(std::time::Duration::from_secs(10));
    /// # let _ = c;
    /// ```
    pub fn heartbeat_interval(mut self, interval: Duration) -> Self {
        self.heartbeat_interval = Some(interval);
        self
    }

    /// Asks nsqd for no heartbeats (IDENTIFY `heartbeat_interval: -1`, go-nsq's `-1`). For
    /// producers only: nsqd refuses SUB without heartbeats, so a consumer's `build()` refuses
    /// this. Without heartbeats there is no read deadline either: a dead peer is noticed only
    /// when a write fails or a publish times out.
    ///
    /// ```
    /// let c = nsq_client::ConnectionConfig::default().disable_heartbeats();
    /// assert_eq!(c.heartbeat_interval_value(), None);
    /// ```
    pub fn disable_heartbeats(mut self) -> Self {
        self.heartbeat_interval = None;
        self
    }

    /// The heartbeat interval in force; `None` when heartbeats are disabled.
    ///
    /// ```
    /// let c = nsq_client::ConnectionConfig::default();
    /// assert_eq!(c.heartbeat_interval_value(), Some(std::time::Duration::from_secs(30)));
    /// ```
    pub fn heartbeat_interval_value(&self) -> Option<Duration> {
        self.heartbeat_interval
    }

    /// How long a connection may go without a byte from nsqd before it is presumed dead:
    /// two heartbeat intervals, or (heartbeats disabled) a century, which is never.
    pub(crate) fn read_deadline(&self) -> Duration {
        self.heartbeat_interval
            .map_or(NO_READ_DEADLINE, |i| i.saturating_mul(2))
    }

    /// The in-flight timeout nsqd applies to this connection's messages (default: nsqd's).
    ///
    /// ```
    /// let c = nsq_client::ConnectionConfig::default().msg_timeout(std::time::Duration::from_secs(120));
    /// # let _ = c;
    /// ```
    pub fn msg_timeout(mut self, timeout: Duration) -> Self {
        self.msg_timeout = Some(timeout);
        self
    }

    /// nsqd's output buffering for this connection: `Some((bytes, timeout))`, or `None` to
    /// have every message flushed at once (default 16 KiB, 250 ms, as go-nsq).
    ///
    /// ```
    /// use std::time::Duration;
    /// let c = nsq_client::ConnectionConfig::default().output_buffer(Some((64 * 1024, Duration::from_millis(50))));
    /// # let _ = c;
    /// ```
    pub fn output_buffer(mut self, buffer: Option<(u32, Duration)>) -> Self {
        self.output_buffer = buffer;
        self
    }

    /// Deliver only this percentage (1–99) of the channel's messages; 0 is all (default).
    ///
    /// ```
    /// let c = nsq_client::ConnectionConfig::default().sample_rate(10);
    /// # let _ = c;
    /// ```
    pub fn sample_rate(mut self, percent: u8) -> Self {
        self.sample_rate = percent;
        self
    }

    /// Upgrade to TLS after IDENTIFY (go-nsq's `tls_v1`), verified as `tls` says.
    ///
    /// ```no_run
    /// use nsq_client::{ConnectionConfig, TlsConfig};
    /// let tls = TlsConfig::builder().ca_file("/etc/nsq/ca.pem").build()?;
    /// let c = ConnectionConfig::default().tls(tls);
    /// # let _ = c;
    /// # Ok::<(), nsq_client::TlsConfigError>(())
    /// ```
    #[cfg(feature = "tls")]
    pub fn tls(mut self, tls: TlsConfig) -> Self {
        self.tls = Some(tls);
        self
    }

    /// Compress the stream with snappy or deflate after IDENTIFY (default none). Each needs
    /// its cargo feature (`snappy`, `deflate`, both on by default); without it, building
    /// the consumer or producer fails with a [`ConfigError`](crate::ConfigError).
    ///
    /// ```
    /// use nsq_client::{Compression, ConnectionConfig};
    /// let c = ConnectionConfig::default().compression(Compression::Deflate { level: 6 });
    /// # let _ = c;
    /// ```
    pub fn compression(mut self, compression: Compression) -> Self {
        self.compression = compression;
        self
    }

    /// The secret sent with AUTH when nsqd requires it.
    ///
    /// The secret is sent only over TLS ([`tls`](Self::tls)) or a unix socket: over plain TCP
    /// the connection fails with the permanent [`ConnectError::AuthWithoutTls`] unless
    /// [`allow_plaintext_auth`](Self::allow_plaintext_auth) says otherwise. It is never logged
    /// (`Debug` shows `<secret>`), and it is not sent at all to an nsqd that does not ask for it.
    ///
    /// ```
    /// let c = nsq_client::ConnectionConfig::default().auth_secret("s3cret");
    /// # let _ = c;
    /// ```
    ///
    /// [`ConnectError::AuthWithoutTls`]: crate::ConnectError::AuthWithoutTls
    pub fn auth_secret(mut self, secret: impl Into<String>) -> Self {
        self.auth_secret = Some(secret.into());
        self
    }

    /// Lets the [auth secret](Self::auth_secret) go over plain TCP, readable by anyone on the
    /// path (default `false`: without TLS the connection is refused before AUTH is sent).
    ///
    /// Other NSQ clients send it whatever the transport; turn this on only where the network
    /// is trusted (loopback, a private link) or for a migration.
    ///
    /// ```
    /// let c = nsq_client::ConnectionConfig::default()
    ///     .auth_secret("s3cret")
    ///     .allow_plaintext_auth(true);
    /// # let _ = c;
    /// ```
    pub fn allow_plaintext_auth(mut self, allow: bool) -> Self {
        self.plaintext_auth = allow;
        self
    }

    /// How long connecting and the handshake may take (default 1 s, as go-nsq's DialTimeout).
    ///
    /// ```
    /// let c = nsq_client::ConnectionConfig::default().dial_timeout(std::time::Duration::from_secs(3));
    /// # let _ = c;
    /// ```
    pub fn dial_timeout(mut self, timeout: Duration) -> Self {
        self.dial_timeout = timeout;
        self
    }

    /// How long one write to nsqd may take before the connection is considered dead
    /// (default 1 s, as go-nsq).
    ///
    /// ```
    /// let c = nsq_client::ConnectionConfig::default().write_timeout(std::time::Duration::from_secs(2));
    /// # let _ = c;
    /// ```
    pub fn write_timeout(mut self, timeout: Duration) -> Self {
        self.write_timeout = timeout;
        self
    }

    /// The largest message body accepted from nsqd (default 5 MiB, nsqd's default
    /// `--max-msg-size` is 1 MiB); a larger frame ends the connection with a
    /// [`DisconnectReason::Protocol`](crate::DisconnectReason::Protocol) error before anything
    /// is allocated for it. go-nsq's `MaxMsgSize`.
    ///
    /// ```
    /// let c = nsq_client::ConnectionConfig::default().max_message_size(16 * 1024 * 1024);
    /// # let _ = c;
    /// ```
    pub fn max_message_size(mut self, bytes: usize) -> Self {
        self.max_frame_size = bytes.saturating_add(FRAME_OVERHEAD);
        self
    }

    /// The local address to connect from (go-nsq's `LocalAddr`); port 0 lets the system pick.
    ///
    /// ```
    /// let c = nsq_client::ConnectionConfig::default().local_addr("127.0.0.1:0".parse().unwrap());
    /// # let _ = c;
    /// ```
    pub fn local_addr(mut self, addr: std::net::SocketAddr) -> Self {
        self.local_addr = Some(addr);
        self
    }

    /// IDENTIFY `topology_region` and `topology_zone`: where this client runs, so that an nsqd
    /// with topology-aware consumption (nsq after 1.3.0) can prefer same-zone consumers. An nsqd
    /// that does not know these fields ignores them.
    ///
    /// ```
    /// let c = nsq_client::ConnectionConfig::default().topology("eu-west-1", "eu-west-1a");
    /// # let _ = c;
    /// ```
    pub fn topology(mut self, region: impl Into<String>, zone: impl Into<String>) -> Self {
        self.topology = Some((region.into(), zone.into()));
        self
    }

    /// Checks the values against the ranges nsqd accepts.
    pub(crate) fn validate(&self) -> Result<(), crate::ConfigError> {
        let bad = |what: &str, why: &str| Err(crate::ConfigError::new(format!("{what} {why}")));
        if let Some(interval) = self.heartbeat_interval {
            if !(Duration::from_secs(1)..=Duration::from_secs(60)).contains(&interval) {
                return bad("heartbeat_interval", "must be between 1 s and 60 s");
            }
        }
        if self.max_frame_size <= FRAME_OVERHEAD {
            return bad("max_message_size", "must be above zero");
        }
        if self.sample_rate > 99 {
            return bad("sample_rate", "must be between 0 and 99");
        }
        if let Some((size, timeout)) = self.output_buffer {
            if size < 64 || timeout < Duration::from_millis(25) {
                return bad("output_buffer", "needs at least 64 bytes and 25 ms");
            }
        }
        match self.compression {
            Compression::None => {}
            Compression::Snappy => {
                if !cfg!(feature = "snappy") {
                    return bad("snappy compression", "needs nsq-client's `snappy` feature");
                }
            }
            Compression::Deflate { level } => {
                if !cfg!(feature = "deflate") {
                    return bad(
                        "deflate compression",
                        "needs nsq-client's `deflate` feature",
                    );
                }
                if !(1..=9).contains(&level) {
                    return bad("deflate level", "must be between 1 and 9");
                }
            }
        }
        if self.dial_timeout.is_zero() || self.write_timeout.is_zero() {
            return bad("dial_timeout and write_timeout", "must be above zero");
        }
        Ok(())
    }

    /// Whether connections upgrade to TLS.
    pub(crate) fn uses_tls(&self) -> bool {
        #[cfg(feature = "tls")]
        return self.tls.is_some();
        #[cfg(not(feature = "tls"))]
        return false;
    }

    pub(crate) fn identify(&self) -> nsq_proto::Identify {
        let mut identify =
            nsq_proto::Identify::new(&self.client_id, &self.hostname, &self.user_agent)
                .with_heartbeat_interval(self.heartbeat_interval)
                .with_output_buffer(self.output_buffer);
        if let Some(timeout) = self.msg_timeout {
            identify = identify.with_msg_timeout(timeout);
        }
        identify.tls_v1 = self.uses_tls();
        match self.compression {
            Compression::None => {}
            Compression::Snappy => identify.snappy = true,
            Compression::Deflate { level } => {
                identify.deflate = true;
                identify.deflate_level = i64::from(level);
            }
        }
        identify.sample_rate = i64::from(self.sample_rate);
        if let Some((region, zone)) = &self.topology {
            identify = identify.with_topology(region.clone(), zone.clone());
        }
        identify
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Whether building with `compression` is refused, and for the feature named.
    fn refusal(compression: Compression) -> Option<String> {
        let config = ConnectionConfig::default().compression(compression);
        config.validate().err().map(|e| e.to_string())
    }

    #[test]
    fn snappy_is_accepted_exactly_when_its_feature_is_built() {
        let refused = refusal(Compression::Snappy);
        if cfg!(feature = "snappy") {
            assert_eq!(refused, None);
        } else {
            assert!(refused.is_some_and(|e| e.contains("`snappy` feature")));
        }
    }

    #[test]
    fn deflate_is_accepted_exactly_when_its_feature_is_built() {
        let refused = refusal(Compression::Deflate { level: 6 });
        if cfg!(feature = "deflate") {
            assert_eq!(refused, None);
        } else {
            assert!(refused.is_some_and(|e| e.contains("`deflate` feature")));
        }
    }

    #[test]
    fn identify_asks_for_tls_only_when_it_is_configured() {
        let plain = ConnectionConfig::default();
        assert!(!plain.identify().tls_v1);
        #[cfg(feature = "tls")]
        {
            let tls = crate::TlsConfig::builder()
                .danger_accept_invalid_certs()
                .build()
                .unwrap();
            assert!(plain.tls(tls).identify().tls_v1);
        }
    }
}
