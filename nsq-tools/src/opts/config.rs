//! go-nsq's options turned into nsq-client's configurations: connection, consumer, producer.

use std::time::Duration;

use nsq_client::{BackoffStrategy, Compression, ConnectionConfig, ConsumerConfig, ProducerConfig};

use super::{GoOpt, OptError};
use crate::tls::{self, TlsSettings};

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
