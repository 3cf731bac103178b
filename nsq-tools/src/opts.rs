//! go-nsq's configuration options as nsq's tools take them: `--consumer-opt` and
//! `--producer-opt`, each `key,value` (split at the first comma; a key alone means `true`;
//! `-` in a key reads as `_`), turned into `nsq_client` configurations.
//!
//! Every option of go-nsq 1.1.0's `Config` is known, with go-nsq's value syntax (Go durations,
//! Go booleans) and ranges. Those the client has no counterpart for are accepted with a
//! warning; a key go-nsq does not know either is an error. One key is this crate's own:
//! `allow_plaintext_auth`, since nsq-client sends `auth_secret` over plain TCP only when told.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use nsq_client::{BackoffStrategy, Compression, ConnectionConfig, ConsumerConfig, ProducerConfig};

use crate::duration;
use crate::tls::{self, TlsSettings};

/// A bad `--consumer-opt` / `--producer-opt`, or a bad combination of them.
///
/// ```
/// let err = nsq_tools::opts::parse_opt("tls_v2,true").unwrap_err();
/// assert_eq!(err.to_string(), "unknown option tls_v2 (go-nsq's Config has no such option)");
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OptError {
    /// The key is not one of go-nsq's options.
    #[error("unknown option {0} (go-nsq's Config has no such option)")]
    Unknown(String),
    /// The value does not parse, or is out of go-nsq's range for the option.
    #[error("invalid {key} {value:?}: {why}")]
    Value {
        /// The option.
        key: &'static str,
        /// What was given.
        value: String,
        /// Why it was refused.
        why: String,
    },
    /// An option that cannot be given on a command line.
    #[error("option {0} cannot be set from the command line")]
    NotSettable(&'static str),
    /// Options that contradict each other.
    #[error("{0}")]
    Conflict(String),
    /// The TLS settings could not be turned into a configuration.
    #[error(transparent)]
    Tls(#[from] tls::TlsError),
    /// The client refused the configuration.
    #[error("invalid configuration: {0}")]
    Config(#[from] nsq_client::ConfigError),
}

/// One parsed option.
///
/// ```
/// use nsq_tools::opts::{parse_opt, GoOpt};
/// assert!(matches!(parse_opt("max_in_flight,50")?, GoOpt::MaxInFlight(50)));
/// assert!(matches!(parse_opt("snappy")?, GoOpt::Snappy(true)));
/// assert!(matches!(parse_opt("tls-v1,false")?, GoOpt::TlsV1(false)));
/// # Ok::<(), nsq_tools::opts::OptError>(())
/// ```
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
#[allow(missing_docs)] // each variant is the go-nsq option of the same name
pub enum GoOpt {
    DialTimeout(Duration),
    ReadTimeout(Duration),
    WriteTimeout(Duration),
    LocalAddr(SocketAddr),
    LookupdPollInterval(Duration),
    LookupdPollJitter(f64),
    LookupdPollTimeout(Duration),
    MaxRequeueDelay(Duration),
    DefaultRequeueDelay(Duration),
    BackoffStrategy(BackoffStrategy),
    MaxBackoffDuration(Duration),
    BackoffMultiplier(Duration),
    MaxAttempts(u16),
    LowRdyIdleTimeout(Duration),
    LowRdyTimeout(Duration),
    RdyRedistributeInterval(Duration),
    ClientId(String),
    Hostname(String),
    UserAgent(String),
    /// `None`: heartbeats disabled (a negative interval, go-nsq's `-1`).
    HeartbeatInterval(Option<Duration>),
    SampleRate(u8),
    TlsV1(bool),
    TlsRootCaFile(PathBuf),
    TlsInsecureSkipVerify(bool),
    TlsCert(PathBuf),
    TlsKey(PathBuf),
    TlsMinVersion(String),
    Deflate(bool),
    DeflateLevel(u8),
    Snappy(bool),
    OutputBufferSize(i64),
    /// `None`: a negative timeout, which disables output buffering.
    OutputBufferTimeout(Option<Duration>),
    MaxInFlight(u32),
    MsgTimeout(Duration),
    AuthSecret(String),
    SkipLookupdAuthorization(bool),
    /// This crate's own: let `auth_secret` go over plain TCP.
    AllowPlaintextAuth(bool),
}

/// Parses one `key,value` option as go-nsq's `ConfigFlag` does (for clap's `value_parser`).
///
/// ```
/// use std::time::Duration;
/// use nsq_tools::opts::{parse_opt, GoOpt};
/// assert_eq!(parse_opt("heartbeat_interval,10s")?, GoOpt::HeartbeatInterval(Some(Duration::from_secs(10))));
/// assert!(parse_opt("max_attempts,70000").is_err()); // go-nsq's range is 0..=65535
/// assert!(parse_opt("msg_timeout,30").is_err()); // a Go duration needs its unit
/// # Ok::<(), nsq_tools::opts::OptError>(())
/// ```
///
/// # Errors
///
/// [`OptError`] for an unknown key or a bad value.
pub fn parse_opt(opt: &str) -> Result<GoOpt, OptError> {
    let (key, value) = match opt.split_once(',') {
        Some((key, value)) => (key, Some(value)),
        None => (opt, None),
    };
    let key = key.replace('-', "_");
    let value_or_true = value.unwrap_or("true");
    let v = Value {
        given: value_or_true,
    };
    Ok(match key.as_str() {
        "dial_timeout" => GoOpt::DialTimeout(v.duration("dial_timeout", None)?),
        "read_timeout" => GoOpt::ReadTimeout(v.duration("read_timeout", Some(MS_100_TO_5_MIN))?),
        "write_timeout" => GoOpt::WriteTimeout(v.duration("write_timeout", Some(MS_100_TO_5_MIN))?),
        "local_addr" => GoOpt::LocalAddr(v.parsed("local_addr")?),
        "lookupd_poll_interval" => GoOpt::LookupdPollInterval(v.duration(
            "lookupd_poll_interval",
            Some((Duration::from_millis(10), Duration::from_secs(300))),
        )?),
        "lookupd_poll_jitter" => {
            let jitter: f64 = v.parsed("lookupd_poll_jitter")?;
            if !(0.0..=1.0).contains(&jitter) {
                return Err(v.bad("lookupd_poll_jitter", "must be between 0 and 1"));
            }
            GoOpt::LookupdPollJitter(jitter)
        }
        "lookupd_poll_timeout" => {
            GoOpt::LookupdPollTimeout(v.duration("lookupd_poll_timeout", None)?)
        }
        "max_requeue_delay" => {
            GoOpt::MaxRequeueDelay(v.duration("max_requeue_delay", Some(ZERO_TO_60_MIN))?)
        }
        "default_requeue_delay" => {
            GoOpt::DefaultRequeueDelay(v.duration("default_requeue_delay", Some(ZERO_TO_60_MIN))?)
        }
        "backoff_strategy" => GoOpt::BackoffStrategy(match value_or_true {
            "" | "exponential" => BackoffStrategy::Exponential,
            "full_jitter" => BackoffStrategy::FullJitter,
            _ => return Err(v.bad("backoff_strategy", "want exponential or full_jitter")),
        }),
        "max_backoff_duration" => {
            GoOpt::MaxBackoffDuration(v.duration("max_backoff_duration", Some(ZERO_TO_60_MIN))?)
        }
        "backoff_multiplier" => {
            GoOpt::BackoffMultiplier(v.duration("backoff_multiplier", Some(ZERO_TO_60_MIN))?)
        }
        "max_attempts" => GoOpt::MaxAttempts(v.parsed("max_attempts")?),
        "low_rdy_idle_timeout" => {
            GoOpt::LowRdyIdleTimeout(v.duration("low_rdy_idle_timeout", Some(SECOND_TO_5_MIN))?)
        }
        "low_rdy_timeout" => {
            GoOpt::LowRdyTimeout(v.duration("low_rdy_timeout", Some(SECOND_TO_5_MIN))?)
        }
        "rdy_redistribute_interval" => GoOpt::RdyRedistributeInterval(v.duration(
            "rdy_redistribute_interval",
            Some((Duration::from_millis(1), Duration::from_secs(5))),
        )?),
        "client_id" => GoOpt::ClientId(value_or_true.to_owned()),
        "hostname" => GoOpt::Hostname(value_or_true.to_owned()),
        "user_agent" => GoOpt::UserAgent(value_or_true.to_owned()),
        "heartbeat_interval" => {
            let d = duration::parse_signed(value_or_true)
                .map_err(|e| v.bad("heartbeat_interval", &e.to_string()))?;
            GoOpt::HeartbeatInterval((!d.negative).then_some(d.magnitude))
        }
        "sample_rate" => {
            let rate: u8 = v.parsed("sample_rate")?;
            if rate > 99 {
                return Err(v.bad("sample_rate", "must be between 0 and 99"));
            }
            GoOpt::SampleRate(rate)
        }
        "tls_v1" => GoOpt::TlsV1(v.boolean("tls_v1")?),
        "tls_root_ca_file" => GoOpt::TlsRootCaFile(PathBuf::from(value_or_true)),
        "tls_insecure_skip_verify" => {
            GoOpt::TlsInsecureSkipVerify(v.boolean("tls_insecure_skip_verify")?)
        }
        "tls_cert" => GoOpt::TlsCert(PathBuf::from(value_or_true)),
        "tls_key" => GoOpt::TlsKey(PathBuf::from(value_or_true)),
        "tls_min_version" => match value_or_true {
            "ssl3.0" | "tls1.0" | "tls1.1" | "tls1.2" => {
                GoOpt::TlsMinVersion(value_or_true.to_owned())
            }
            _ => return Err(v.bad("tls_min_version", "want ssl3.0, tls1.0, tls1.1 or tls1.2")),
        },
        "tls_config" => return Err(OptError::NotSettable("tls_config")),
        "deflate" => GoOpt::Deflate(v.boolean("deflate")?),
        "deflate_level" => {
            let level: u8 = v.parsed("deflate_level")?;
            if !(1..=9).contains(&level) {
                return Err(v.bad("deflate_level", "must be between 1 and 9"));
            }
            GoOpt::DeflateLevel(level)
        }
        "snappy" => GoOpt::Snappy(v.boolean("snappy")?),
        "output_buffer_size" => GoOpt::OutputBufferSize(v.parsed("output_buffer_size")?),
        "output_buffer_timeout" => {
            let d = duration::parse_signed(value_or_true)
                .map_err(|e| v.bad("output_buffer_timeout", &e.to_string()))?;
            GoOpt::OutputBufferTimeout((!d.negative).then_some(d.magnitude))
        }
        "max_in_flight" => GoOpt::MaxInFlight(v.parsed("max_in_flight")?),
        "msg_timeout" => GoOpt::MsgTimeout(v.duration("msg_timeout", None)?),
        "auth_secret" => GoOpt::AuthSecret(value_or_true.to_owned()),
        "skip_lookupd_authorization" => {
            GoOpt::SkipLookupdAuthorization(v.boolean("skip_lookupd_authorization")?)
        }
        "allow_plaintext_auth" => GoOpt::AllowPlaintextAuth(v.boolean("allow_plaintext_auth")?),
        _ => return Err(OptError::Unknown(key)),
    })
}

const MS_100_TO_5_MIN: (Duration, Duration) =
    (Duration::from_millis(100), Duration::from_secs(300));
const ZERO_TO_60_MIN: (Duration, Duration) = (Duration::ZERO, Duration::from_secs(3600));
const SECOND_TO_5_MIN: (Duration, Duration) = (Duration::from_secs(1), Duration::from_secs(300));

/// An option's value, with go-nsq's coercions.
struct Value<'a> {
    given: &'a str,
}

impl Value<'_> {
    fn bad(&self, key: &'static str, why: &str) -> OptError {
        OptError::Value {
            key,
            value: self.given.to_owned(),
            why: why.to_owned(),
        }
    }

    fn parsed<T: std::str::FromStr>(&self, key: &'static str) -> Result<T, OptError>
    where
        T::Err: std::fmt::Display,
    {
        self.given
            .parse()
            .map_err(|e: T::Err| self.bad(key, &e.to_string()))
    }

    fn boolean(&self, key: &'static str) -> Result<bool, OptError> {
        crate::args::go_bool(self.given).map_err(|e| self.bad(key, &e))
    }

    fn duration(
        &self,
        key: &'static str,
        range: Option<(Duration, Duration)>,
    ) -> Result<Duration, OptError> {
        let d = duration::parse(self.given).map_err(|e| self.bad(key, &e.to_string()))?;
        if let Some((min, max)) = range {
            if d < min || d > max {
                return Err(self.bad(key, &format!("must be between {min:?} and {max:?}")));
            }
        }
        Ok(d)
    }
}

/// The options of one tool, in the order given; later ones win, as in go-nsq.
///
/// ```
/// use nsq_tools::opts::{parse_opt, ClientOptions};
/// let opts = ClientOptions::new([parse_opt("max_in_flight,10")?, parse_opt("snappy")?]);
/// assert_eq!(opts.max_in_flight(), Some(10));
/// let config = opts.consumer("nsq_tail/0.1", 200)?;
/// # let _ = config;
/// # Ok::<(), nsq_tools::opts::OptError>(())
/// ```
#[derive(Debug, Clone, Default)]
pub struct ClientOptions {
    opts: Vec<GoOpt>,
}

impl ClientOptions {
    /// The options, in the order given.
    pub fn new(opts: impl IntoIterator<Item = GoOpt>) -> Self {
        Self {
            opts: opts.into_iter().collect(),
        }
    }

    /// The last `max_in_flight` given, if any.
    pub fn max_in_flight(&self) -> Option<u32> {
        self.opts.iter().rev().find_map(|o| match o {
            GoOpt::MaxInFlight(n) => Some(*n),
            _ => None,
        })
    }

    /// The connection settings, identifying as `user_agent` unless `user_agent` was given.
    ///
    /// # Errors
    ///
    /// [`OptError`] for contradicting options and TLS files that do not load.
    pub fn connection(&self, user_agent: &str) -> Result<ConnectionConfig, OptError> {
        let mut c = ConnectionConfig::default().user_agent(user_agent);
        let mut tls_v1 = false;
        let mut tls = TlsSettings::default();
        let (mut deflate, mut deflate_level, mut snappy) = (false, 6, false);
        let mut buffer_size: Option<i64> = None;
        let mut buffer_timeout: Option<Option<Duration>> = None;
        for opt in &self.opts {
            match opt {
                GoOpt::DialTimeout(d) => c = c.dial_timeout(*d),
                GoOpt::WriteTimeout(d) => c = c.write_timeout(*d),
                GoOpt::ReadTimeout(_) => tracing::warn!(
                    "read_timeout has no effect: nsq-client's read deadline is two heartbeat intervals"
                ),
                GoOpt::LocalAddr(addr) => c = c.local_addr(*addr),
                GoOpt::ClientId(id) => c = c.client_id(id),
                GoOpt::Hostname(name) => c = c.hostname(name),
                GoOpt::UserAgent(ua) => c = c.user_agent(ua),
                GoOpt::HeartbeatInterval(Some(d)) => c = c.heartbeat_interval(*d),
                GoOpt::HeartbeatInterval(None) => c = c.disable_heartbeats(),
                GoOpt::SampleRate(rate) => c = c.sample_rate(*rate),
                GoOpt::MsgTimeout(d) => c = c.msg_timeout(*d),
                GoOpt::AuthSecret(secret) => c = c.auth_secret(secret),
                GoOpt::AllowPlaintextAuth(allow) => c = c.allow_plaintext_auth(*allow),
                GoOpt::TlsV1(on) => tls_v1 = *on,
                GoOpt::TlsRootCaFile(path) => tls.root_ca_file = Some(path.clone()),
                GoOpt::TlsInsecureSkipVerify(on) => tls.insecure_skip_verify = *on,
                GoOpt::TlsCert(path) => tls.cert_file = Some(path.clone()),
                GoOpt::TlsKey(path) => tls.key_file = Some(path.clone()),
                GoOpt::TlsMinVersion(v) => tls.min_version = Some(v.clone()),
                GoOpt::Deflate(on) => deflate = *on,
                GoOpt::DeflateLevel(level) => deflate_level = *level,
                GoOpt::Snappy(on) => snappy = *on,
                GoOpt::OutputBufferSize(size) => buffer_size = Some(*size),
                GoOpt::OutputBufferTimeout(t) => buffer_timeout = Some(*t),
                _ => {}
            }
        }
        c = c.compression(match (deflate, snappy) {
            (true, true) => {
                return Err(OptError::Conflict(
                    "deflate and snappy cannot both be enabled".to_owned(),
                ))
            }
            (true, false) => Compression::Deflate {
                level: u32::from(deflate_level),
            },
            (false, true) => Compression::Snappy,
            (false, false) => Compression::None,
        });
        if buffer_size.is_some() || buffer_timeout.is_some() {
            let size = buffer_size.unwrap_or(16 * 1024);
            let timeout = buffer_timeout.unwrap_or(Some(Duration::from_millis(250)));
            c = c.output_buffer(match (u32::try_from(size), timeout) {
                (Ok(size), Some(timeout)) => Some((size, timeout)),
                // A negative size or timeout: nsqd flushes every message at once.
                _ => None,
            });
        }
        if tls_v1 {
            c = c.tls(tls::client_config(&tls)?);
        } else if tls != TlsSettings::default() {
            tracing::warn!("tls_* options have no effect without tls_v1,true");
        }
        Ok(c)
    }

    /// A consumer configuration: `max_in_flight` unless the options give one.
    ///
    /// # Errors
    ///
    /// As [`connection`](Self::connection), and for settings the client refuses.
    pub fn consumer(
        &self,
        user_agent: &str,
        max_in_flight: u32,
    ) -> Result<ConsumerConfig, OptError> {
        let mut c = ConsumerConfig::default()
            .connection(self.connection(user_agent)?)
            .max_in_flight(self.max_in_flight().unwrap_or(max_in_flight));
        for opt in &self.opts {
            c = match opt {
                GoOpt::LookupdPollInterval(d) => c.lookupd_poll_interval(*d),
                GoOpt::LookupdPollJitter(j) => c.lookupd_poll_jitter(*j),
                GoOpt::LookupdPollTimeout(d) => c.lookupd_poll_timeout(*d),
                GoOpt::MaxRequeueDelay(d) => c.max_requeue_delay(*d),
                GoOpt::DefaultRequeueDelay(d) => c.default_requeue_delay(*d),
                GoOpt::BackoffStrategy(s) => c.backoff_strategy(*s),
                GoOpt::MaxBackoffDuration(d) if d.is_zero() => {
                    c.backoff_strategy(BackoffStrategy::Disabled)
                }
                GoOpt::MaxBackoffDuration(d) => c.max_backoff(*d),
                GoOpt::BackoffMultiplier(d) => c.backoff_multiplier(*d),
                GoOpt::MaxAttempts(n) => c.max_attempts(*n),
                GoOpt::LowRdyIdleTimeout(d) => c.low_rdy_idle_timeout(*d),
                GoOpt::LowRdyTimeout(d) => c.low_rdy_timeout(*d),
                GoOpt::RdyRedistributeInterval(_) => {
                    tracing::warn!("rdy_redistribute_interval has no effect: nsq-client redistributes RDY as connections go idle");
                    c
                }
                GoOpt::SkipLookupdAuthorization(_) => {
                    tracing::warn!("skip_lookupd_authorization has no effect: nsq-client sends no authorization to nsqlookupd");
                    c
                }
                _ => c,
            };
        }
        Ok(c)
    }

    /// A producer configuration. Options that only concern consumers are warned about.
    ///
    /// # Errors
    ///
    /// As [`connection`](Self::connection), and for settings the client refuses.
    pub fn producer(&self, user_agent: &str) -> Result<ProducerConfig, OptError> {
        let mut c = ProducerConfig::default().connection(self.connection(user_agent)?);
        for opt in &self.opts {
            match opt {
                GoOpt::LookupdPollTimeout(d) => c = c.lookupd_poll_timeout(*d),
                GoOpt::LookupdPollInterval(_)
                | GoOpt::LookupdPollJitter(_)
                | GoOpt::MaxRequeueDelay(_)
                | GoOpt::DefaultRequeueDelay(_)
                | GoOpt::BackoffStrategy(_)
                | GoOpt::MaxBackoffDuration(_)
                | GoOpt::BackoffMultiplier(_)
                | GoOpt::MaxAttempts(_)
                | GoOpt::LowRdyIdleTimeout(_)
                | GoOpt::LowRdyTimeout(_)
                | GoOpt::RdyRedistributeInterval(_)
                | GoOpt::MaxInFlight(_)
                | GoOpt::SkipLookupdAuthorization(_) => {
                    tracing::warn!(option = ?opt, "a consumer option has no effect on a producer");
                }
                _ => {}
            }
        }
        Ok(c)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_go_nsq_option_is_known() {
        let all = [
            "dial_timeout,1s",
            "read_timeout,60s",
            "write_timeout,1s",
            "local_addr,127.0.0.1:0",
            "lookupd_poll_interval,60s",
            "lookupd_poll_jitter,0.3",
            "lookupd_poll_timeout,1m",
            "max_requeue_delay,15m",
            "default_requeue_delay,90s",
            "backoff_strategy,full_jitter",
            "max_backoff_duration,2m",
            "backoff_multiplier,1s",
            "max_attempts,5",
            "low_rdy_idle_timeout,10s",
            "low_rdy_timeout,30s",
            "rdy_redistribute_interval,5s",
            "client_id,c",
            "hostname,h",
            "user_agent,ua",
            "heartbeat_interval,30s",
            "sample_rate,0",
            "tls_v1,true",
            "tls_root_ca_file,/ca.pem",
            "tls_insecure_skip_verify,true",
            "tls_cert,/c.pem",
            "tls_key,/k.pem",
            "tls_min_version,tls1.2",
            "deflate,true",
            "deflate_level,6",
            "snappy,true",
            "output_buffer_size,16384",
            "output_buffer_timeout,250ms",
            "max_in_flight,1",
            "msg_timeout,60s",
            "auth_secret,s",
            "skip_lookupd_authorization,true",
        ];
        for opt in all {
            parse_opt(opt).unwrap_or_else(|e| panic!("{opt}: {e}"));
        }
    }

    #[test]
    fn unknown_and_bad_values_are_refused() {
        assert!(matches!(parse_opt("bogus,1"), Err(OptError::Unknown(k)) if k == "bogus"));
        assert!(matches!(
            parse_opt("tls_config,x"),
            Err(OptError::NotSettable(_))
        ));
        for bad in [
            "max_in_flight,-1",
            "deflate_level,10",
            "sample_rate,100",
            "read_timeout,10ms",
            "low_rdy_timeout,100ms",
            "lookupd_poll_jitter,2",
            "snappy,yes",
            "dial_timeout,5",
            "backoff_strategy,linear",
            "tls_min_version,tls1.3",
            "local_addr,nowhere",
        ] {
            assert!(
                matches!(parse_opt(bad), Err(OptError::Value { .. })),
                "{bad} accepted"
            );
        }
    }

    #[test]
    fn a_key_alone_is_true_and_dashes_read_as_underscores() {
        assert_eq!(
            parse_opt("tls-insecure-skip-verify").unwrap(),
            GoOpt::TlsInsecureSkipVerify(true)
        );
        assert_eq!(parse_opt("deflate").unwrap(), GoOpt::Deflate(true));
        // Only the first comma splits.
        assert_eq!(
            parse_opt("auth_secret,a,b").unwrap(),
            GoOpt::AuthSecret("a,b".into())
        );
    }

    #[test]
    fn negative_durations_disable_as_in_go_nsq() {
        assert_eq!(
            parse_opt("heartbeat_interval,-1ms").unwrap(),
            GoOpt::HeartbeatInterval(None)
        );
        assert_eq!(
            parse_opt("output_buffer_timeout,-1s").unwrap(),
            GoOpt::OutputBufferTimeout(None)
        );
    }

    #[test]
    fn snappy_and_deflate_conflict() {
        let opts = ClientOptions::new([GoOpt::Snappy(true), GoOpt::Deflate(true)]);
        assert!(matches!(opts.connection("ua"), Err(OptError::Conflict(_))));
        let later_off = ClientOptions::new([
            GoOpt::Snappy(true),
            GoOpt::Deflate(true),
            GoOpt::Snappy(false),
        ]);
        assert!(later_off.connection("ua").is_ok());
    }

    #[test]
    fn the_option_max_in_flight_wins_over_the_tool_default() {
        let opts = ClientOptions::new([GoOpt::MaxInFlight(3), GoOpt::MaxInFlight(7)]);
        assert_eq!(opts.max_in_flight(), Some(7));
        assert!(opts.consumer("ua", 200).is_ok());
    }

    #[test]
    fn tls_needs_both_halves_of_a_client_certificate() {
        let opts = ClientOptions::new([
            GoOpt::TlsV1(true),
            GoOpt::TlsCert("/nonexistent.pem".into()),
        ]);
        let err = opts.connection("ua").unwrap_err();
        assert!(err.to_string().contains("tls_key"), "{err}");
    }

    #[test]
    fn a_missing_ca_file_is_an_error_naming_it() {
        let opts = ClientOptions::new([
            GoOpt::TlsV1(true),
            GoOpt::TlsRootCaFile("/no/such/ca.pem".into()),
        ]);
        let err = opts.connection("ua").unwrap_err();
        assert!(err.to_string().contains("/no/such/ca.pem"), "{err}");
    }

    #[test]
    fn insecure_tls_builds() {
        let opts = ClientOptions::new([GoOpt::TlsV1(true), GoOpt::TlsInsecureSkipVerify(true)]);
        assert!(opts.connection("ua").is_ok());
    }
}
