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

use nsq_client::BackoffStrategy;

use crate::duration;
use crate::tls;

mod config;
pub use config::ClientOptions;

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
        _ if key.contains('=') => {
            return Err(OptError::Unknown(format!(
                "{key} (options are key,value: a comma, not =)"
            )))
        }
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
}
