//! IDENTIFY and AUTH bodies, and nsqd's feature negotiation.
//!
//! [`Identify`] is the JSON a client sends after the magic. Its integer fields keep
//! nsqd's wire meaning (`-1` disables, `0` asks for the server's default), so that
//! every request nsqd would accept or refuse can be represented; the `with_*`
//! setters take [`Duration`]s. [`ServerOptions::negotiate`] is nsqd 1.3.0's
//! validation and reply (`nsqd/client_v2.go` `Identify`, `protocol_v2.go` `IDENTIFY`)
//! as a pure function, and [`IdentifyResponse`] is the reply a client reads.
//!
//! Both also carry nsq master's topology hints (`topology_region`, `topology_zone`; unreleased
//! after 1.3.0), left out of the JSON when unset so that a conversation with nsqd 1.3.0 is
//! byte for byte what it was.

use std::time::Duration;

use serde::{Deserialize, Deserializer, Serialize};

use crate::error::{ErrorCode, ServerError};

/// The protocol version nsqd 1.3.0 reports, and the one the broker speaks.
pub const NSQD_VERSION: &str = "1.3.0";

fn null_as_default<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Default + Deserialize<'de>,
{
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

fn millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// The IDENTIFY body: who the client is and what it asks of the server.
///
/// Unknown fields are ignored when decoding, and a missing field or `null` reads
/// as Go's zero value, as `encoding/json` does for nsqd: [`Identify::default`] is
/// that all-zero request (no feature negotiation), [`Identify::new`] asks for it.
///
/// ```
/// use std::time::Duration;
/// use nsq_proto::Identify;
///
/// let identify = Identify::new("worker-1", "host-a", "my-app/1.0")
///     .with_heartbeat_interval(Some(Duration::from_secs(10)))
///     .with_msg_timeout(Duration::from_secs(30));
/// let json = serde_json::to_value(&identify)?;
/// assert_eq!(json["heartbeat_interval"], 10_000);
/// assert_eq!(json["feature_negotiation"], true);
/// # Ok::<(), serde_json::Error>(())
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
#[non_exhaustive]
pub struct Identify {
    /// Free text shown in nsqd's stats.
    #[serde(deserialize_with = "null_as_default")]
    pub client_id: String,
    /// Free text shown in nsqd's stats.
    #[serde(deserialize_with = "null_as_default")]
    pub hostname: String,
    /// The client library and version, e.g. `nsq-rs/0.1.0`.
    #[serde(deserialize_with = "null_as_default")]
    pub user_agent: String,
    /// Ask for the JSON reply and the upgrades; without it nsqd answers `OK` and upgrades nothing.
    #[serde(deserialize_with = "null_as_default")]
    pub feature_negotiation: bool,
    /// Milliseconds between heartbeats: `-1` disables them, `0` keeps the server's default.
    #[serde(deserialize_with = "null_as_default")]
    pub heartbeat_interval: i64,
    /// Bytes nsqd buffers before writing to this client: `-1` disables buffering, `0` keeps the default.
    #[serde(deserialize_with = "null_as_default")]
    pub output_buffer_size: i64,
    /// Milliseconds nsqd may hold buffered messages: `-1` disables the timer, `0` keeps the default.
    #[serde(deserialize_with = "null_as_default")]
    pub output_buffer_timeout: i64,
    /// Ask for TLS.
    #[serde(deserialize_with = "null_as_default")]
    pub tls_v1: bool,
    /// Ask for snappy compression.
    #[serde(deserialize_with = "null_as_default")]
    pub snappy: bool,
    /// Ask for deflate compression.
    #[serde(deserialize_with = "null_as_default")]
    pub deflate: bool,
    /// Deflate level; nsqd clamps it to its `--max-deflate-level`. `0` means 6.
    #[serde(deserialize_with = "null_as_default")]
    pub deflate_level: i64,
    /// Percentage of the channel's messages to deliver (`0` means all, `1..=99` samples).
    #[serde(deserialize_with = "null_as_default")]
    pub sample_rate: i64,
    /// Milliseconds before nsqd requeues an unanswered message: `0` keeps the server's default.
    #[serde(deserialize_with = "null_as_default")]
    pub msg_timeout: i64,
    /// The client's region, for topology-aware consumption (nsq after 1.3.0: an nsqd started
    /// with `--enable-experiment=topology-aware-consumption` prefers same-region consumers).
    /// Omitted from the JSON when empty, so requests to nsqd 1.3.0 stay as they were.
    #[serde(
        deserialize_with = "null_as_default",
        skip_serializing_if = "String::is_empty"
    )]
    pub topology_region: String,
    /// The client's zone within its region (see [`Identify::topology_region`]); omitted when
    /// empty.
    #[serde(
        deserialize_with = "null_as_default",
        skip_serializing_if = "String::is_empty"
    )]
    pub topology_zone: String,
}

impl Identify {
    /// A request with feature negotiation on and every setting at the server's default.
    ///
    /// ```
    /// use nsq_proto::Identify;
    /// let id = Identify::new("worker-1", "host-a", "my-app/1.0");
    /// assert!(id.feature_negotiation);
    /// assert!(!nsq_proto::Identify::default().feature_negotiation);
    /// ```
    pub fn new(
        client_id: impl Into<String>,
        hostname: impl Into<String>,
        user_agent: impl Into<String>,
    ) -> Self {
        Self {
            client_id: client_id.into(),
            hostname: hostname.into(),
            user_agent: user_agent.into(),
            feature_negotiation: true,
            ..Self::default()
        }
    }

    /// Sets the heartbeat interval; `None` disables heartbeats (nsqd then refuses SUB).
    ///
    /// ```
    /// # use std::time::Duration;
    /// # use nsq_proto::Identify;
    /// assert_eq!(Identify::default().with_heartbeat_interval(None).heartbeat_interval, -1);
    /// ```
    pub fn with_heartbeat_interval(mut self, interval: Option<Duration>) -> Self {
        self.heartbeat_interval = interval.map_or(-1, millis);
        self
    }

    /// Sets nsqd's output buffer for this client; `None` disables buffering.
    ///
    /// ```
    /// # use std::time::Duration;
    /// # use nsq_proto::Identify;
    /// let id = Identify::default().with_output_buffer(Some((16384, Duration::from_millis(250))));
    /// assert_eq!((id.output_buffer_size, id.output_buffer_timeout), (16384, 250));
    /// ```
    pub fn with_output_buffer(mut self, buffer: Option<(u32, Duration)>) -> Self {
        match buffer {
            Some((size, timeout)) => {
                self.output_buffer_size = i64::from(size);
                self.output_buffer_timeout = millis(timeout);
            }
            None => {
                self.output_buffer_size = -1;
                self.output_buffer_timeout = -1;
            }
        }
        self
    }

    /// Sets the in-flight timeout nsqd applies to this client's messages.
    ///
    /// ```
    /// # use std::time::Duration;
    /// # use nsq_proto::Identify;
    /// assert_eq!(Identify::default().with_msg_timeout(Duration::from_secs(5)).msg_timeout, 5000);
    /// ```
    pub fn with_msg_timeout(mut self, timeout: Duration) -> Self {
        self.msg_timeout = millis(timeout);
        self
    }

    /// Sets where the client runs, for nsqd's topology-aware consumption (nsq after 1.3.0):
    /// such an nsqd sends its in-memory messages to consumers in its own zone first, then its
    /// own region, then anyone. nsqd 1.3.0 ignores both. An empty string leaves a field out
    /// of the request.
    ///
    /// ```
    /// use nsq_proto::Identify;
    ///
    /// let id = Identify::new("worker-1", "host-a", "my-app/1.0").with_topology("eu-west-1", "eu-west-1b");
    /// let json = serde_json::to_value(&id)?;
    /// assert_eq!(json["topology_region"], "eu-west-1");
    /// assert_eq!(json["topology_zone"], "eu-west-1b");
    /// // Without it, the request carries neither field.
    /// let plain = serde_json::to_value(Identify::new("worker-1", "host-a", "my-app/1.0"))?;
    /// assert!(plain.get("topology_region").is_none() && plain.get("topology_zone").is_none());
    /// # Ok::<(), serde_json::Error>(())
    /// ```
    pub fn with_topology(mut self, region: impl Into<String>, zone: impl Into<String>) -> Self {
        self.topology_region = region.into();
        self.topology_zone = zone.into();
        self
    }
}

/// The JSON reply to IDENTIFY when `feature_negotiation` was asked for, in nsqd
/// 1.3.0's field order.
///
/// ```
/// use nsq_proto::IdentifyResponse;
///
/// let reply = IdentifyResponse::parse(br#"{"max_rdy_count":2500,"version":"1.3.0","snappy":true}"#)?;
/// let reply = reply.expect("a JSON reply");
/// assert_eq!(reply.max_rdy_count, 2500);
/// assert!(reply.snappy);
/// // Servers without feature negotiation answer OK.
/// assert!(IdentifyResponse::parse(b"OK")?.is_none());
/// # Ok::<(), serde_json::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
#[non_exhaustive]
pub struct IdentifyResponse {
    /// The largest RDY count the server accepts.
    pub max_rdy_count: i64,
    /// The server's version.
    pub version: String,
    /// The largest msg_timeout (and TOUCH extension) in milliseconds.
    pub max_msg_timeout: i64,
    /// The in-flight timeout in force for this client, in milliseconds.
    pub msg_timeout: i64,
    /// Whether the connection upgrades to TLS next.
    pub tls_v1: bool,
    /// Whether the connection upgrades to deflate.
    pub deflate: bool,
    /// The deflate level in force.
    pub deflate_level: i64,
    /// The server's largest deflate level.
    pub max_deflate_level: i64,
    /// Whether the connection upgrades to snappy.
    pub snappy: bool,
    /// The sample rate in force.
    pub sample_rate: i64,
    /// Whether AUTH is required before SUB and PUB.
    pub auth_required: bool,
    /// The output buffer size in force, in bytes.
    pub output_buffer_size: i64,
    /// The output buffer timeout in force, in milliseconds.
    pub output_buffer_timeout: i64,
    /// The server's own region (nsqd's `--topology-region`). `None` from servers that do
    /// not report it (nsqd 1.3.0); nsq master reports it, empty when unset. Left out of the
    /// JSON when `None`.
    #[serde(
        deserialize_with = "null_as_default",
        skip_serializing_if = "Option::is_none"
    )]
    pub topology_region: Option<String>,
    /// The server's own zone (nsqd's `--topology-zone`), as [`IdentifyResponse::topology_region`].
    #[serde(
        deserialize_with = "null_as_default",
        skip_serializing_if = "Option::is_none"
    )]
    pub topology_zone: Option<String>,
}

impl Default for IdentifyResponse {
    fn default() -> Self {
        Self {
            max_rdy_count: 2500,
            version: String::new(),
            max_msg_timeout: 0,
            msg_timeout: 0,
            tls_v1: false,
            deflate: false,
            deflate_level: 6,
            max_deflate_level: 6,
            snappy: false,
            sample_rate: 0,
            auth_required: false,
            output_buffer_size: 0,
            output_buffer_timeout: 0,
            topology_region: None,
            topology_zone: None,
        }
    }
}

impl IdentifyResponse {
    /// Parses the data of the response frame that answers IDENTIFY.
    ///
    /// Returns `None` for a plain `OK` (a server, or a request, without feature
    /// negotiation: then nothing upgrades and `max_rdy_count` is 2500).
    ///
    /// # Errors
    ///
    /// A JSON error when the data is neither `OK` nor an IDENTIFY reply.
    pub fn parse(data: &[u8]) -> Result<Option<Self>, serde_json::Error> {
        if data == b"OK" {
            return Ok(None);
        }
        serde_json::from_slice(data).map(Some)
    }

    /// The in-flight timeout in force for this client.
    pub fn msg_timeout(&self) -> Duration {
        Duration::from_millis(u64::try_from(self.msg_timeout).unwrap_or(0))
    }

    /// The largest timeout a TOUCH can extend a message to.
    pub fn max_msg_timeout(&self) -> Duration {
        Duration::from_millis(u64::try_from(self.max_msg_timeout).unwrap_or(0))
    }
}

/// The JSON reply to a successful AUTH.
///
/// ```
/// use nsq_proto::AuthResponse;
///
/// let reply: AuthResponse = serde_json::from_slice(br#"{"identity":"svc","identity_url":"","permission_count":2}"#)?;
/// assert_eq!(reply.permission_count, 2);
/// # Ok::<(), serde_json::Error>(())
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
#[non_exhaustive]
pub struct AuthResponse {
    /// The identity the auth server gave the secret.
    pub identity: String,
    /// A URL describing the identity.
    pub identity_url: String,
    /// How many authorizations the identity holds.
    pub permission_count: i64,
}

impl AuthResponse {
    /// Builds a reply.
    ///
    /// ```
    /// use nsq_proto::AuthResponse;
    /// let reply = AuthResponse::new("svc", "https://auth.example/svc", 1);
    /// assert_eq!(reply.identity, "svc");
    /// ```
    pub fn new(
        identity: impl Into<String>,
        identity_url: impl Into<String>,
        permission_count: i64,
    ) -> Self {
        Self {
            identity: identity.into(),
            identity_url: identity_url.into(),
            permission_count,
        }
    }
}

/// The compression a connection upgrades to after IDENTIFY.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    /// No compression.
    None,
    /// Snappy, in the framing format.
    Snappy,
    /// Raw DEFLATE at the given level.
    Deflate {
        /// The level in force, 1..=9.
        level: u32,
    },
}

/// The server-side options that IDENTIFY is checked against (nsqd's flags and
/// their defaults).
///
/// ```
/// use nsq_proto::{Identify, ServerOptions};
///
/// let options = ServerOptions::default();
/// let negotiated = options.negotiate(&Identify::new("id", "host", "app/1"))?;
/// assert_eq!(negotiated.msg_timeout, options.msg_timeout);
/// let reply = negotiated.response.expect("feature negotiation was asked for");
/// assert_eq!(reply.max_rdy_count, 2500);
/// # Ok::<(), nsq_proto::ServerError>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ServerOptions {
    /// The version reported in the reply.
    pub version: String,
    /// `--max-rdy-count`.
    pub max_rdy_count: u32,
    /// `--msg-timeout`.
    pub msg_timeout: Duration,
    /// `--max-msg-timeout`.
    pub max_msg_timeout: Duration,
    /// The default heartbeat interval (half of nsqd's client timeout).
    pub heartbeat_interval: Duration,
    /// `--max-heartbeat-interval`.
    pub max_heartbeat_interval: Duration,
    /// The default output buffer size.
    pub output_buffer_size: u32,
    /// `--max-output-buffer-size`.
    pub max_output_buffer_size: u32,
    /// `--output-buffer-timeout`.
    pub output_buffer_timeout: Duration,
    /// `--min-output-buffer-timeout`.
    pub min_output_buffer_timeout: Duration,
    /// `--max-output-buffer-timeout`.
    pub max_output_buffer_timeout: Duration,
    /// Whether the server has a TLS configuration.
    pub tls_available: bool,
    /// `--snappy`.
    pub snappy: bool,
    /// `--deflate`.
    pub deflate: bool,
    /// `--max-deflate-level`.
    pub max_deflate_level: u32,
    /// Whether AUTH is required (`--auth-http-address` given).
    pub auth_required: bool,
    /// `--topology-region` (nsq after 1.3.0). When it and [`ServerOptions::topology_zone`]
    /// are both empty (the default) the reply is nsqd 1.3.0's, without topology fields;
    /// otherwise it carries both, as nsq master's does.
    pub topology_region: String,
    /// `--topology-zone` (nsq after 1.3.0); see [`ServerOptions::topology_region`].
    pub topology_zone: String,
}

impl Default for ServerOptions {
    fn default() -> Self {
        Self {
            version: NSQD_VERSION.to_owned(),
            max_rdy_count: 2500,
            msg_timeout: Duration::from_secs(60),
            max_msg_timeout: Duration::from_secs(15 * 60),
            heartbeat_interval: Duration::from_secs(30),
            max_heartbeat_interval: Duration::from_secs(60),
            output_buffer_size: 16 * 1024,
            max_output_buffer_size: 64 * 1024,
            output_buffer_timeout: Duration::from_millis(250),
            min_output_buffer_timeout: Duration::from_millis(25),
            max_output_buffer_timeout: Duration::from_secs(30),
            tls_available: false,
            snappy: true,
            deflate: true,
            max_deflate_level: 6,
            auth_required: false,
            topology_region: String::new(),
            topology_zone: String::new(),
        }
    }
}

/// What IDENTIFY settled for one connection.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Negotiated {
    /// The heartbeat interval; `None` when the client disabled heartbeats.
    pub heartbeat_interval: Option<Duration>,
    /// Bytes of messages to buffer before writing (1 means unbuffered).
    pub output_buffer_size: u32,
    /// How long buffered messages may wait; `None` when the timer is off.
    pub output_buffer_timeout: Option<Duration>,
    /// The sample rate, 0..=99.
    pub sample_rate: u8,
    /// The in-flight timeout for this client's messages.
    pub msg_timeout: Duration,
    /// Whether to upgrade to TLS after the reply.
    pub tls: bool,
    /// The compression to upgrade to after TLS.
    pub compression: Compression,
    /// The JSON reply to send, or `None` to send `OK` (no feature negotiation).
    pub response: Option<IdentifyResponse>,
}

impl ServerOptions {
    /// Checks an IDENTIFY request the way nsqd 1.3.0 does and builds the reply.
    ///
    /// # Errors
    ///
    /// nsqd's fatal error for the first setting out of range (checked in nsqd's
    /// order: heartbeat, output buffer timeout, output buffer size, sample rate,
    /// msg timeout), or `E_IDENTIFY_FAILED` when both snappy and deflate would be
    /// enabled.
    pub fn negotiate(&self, identify: &Identify) -> Result<Negotiated, ServerError> {
        let invalid = |what: &str, value: i64| {
            ServerError::new(
                ErrorCode::BadBody,
                format!("IDENTIFY {what} ({value}) is invalid"),
            )
        };
        let ms = |d: Duration| millis(d);

        let heartbeat_interval = match identify.heartbeat_interval {
            -1 => None,
            0 => Some(self.heartbeat_interval),
            v if (1000..=ms(self.max_heartbeat_interval)).contains(&v) => {
                Some(Duration::from_millis(v.unsigned_abs()))
            }
            v => return Err(invalid("heartbeat interval", v)),
        };

        let mut output_buffer_timeout = match identify.output_buffer_timeout {
            -1 => None,
            0 => Some(self.output_buffer_timeout),
            v if (ms(self.min_output_buffer_timeout)..=ms(self.max_output_buffer_timeout))
                .contains(&v) =>
            {
                Some(Duration::from_millis(v.unsigned_abs()))
            }
            v => return Err(invalid("output buffer timeout", v)),
        };
        let output_buffer_size = match identify.output_buffer_size {
            -1 => {
                output_buffer_timeout = None;
                1
            }
            0 => self.output_buffer_size,
            v if (64..=i64::from(self.max_output_buffer_size)).contains(&v) => {
                u32::try_from(v).unwrap_or(self.max_output_buffer_size)
            }
            v => return Err(invalid("output buffer size", v)),
        };

        let sample_rate = match u8::try_from(identify.sample_rate) {
            Ok(rate) if rate <= 99 => rate,
            _ => return Err(invalid("sample rate", identify.sample_rate)),
        };

        let msg_timeout = match identify.msg_timeout {
            0 => self.msg_timeout,
            v if (1000..=ms(self.max_msg_timeout)).contains(&v) => {
                Duration::from_millis(v.unsigned_abs())
            }
            v => return Err(invalid("msg timeout", v)),
        };

        let mut negotiated = Negotiated {
            heartbeat_interval,
            output_buffer_size,
            output_buffer_timeout,
            sample_rate,
            msg_timeout,
            tls: false,
            compression: Compression::None,
            response: None,
        };
        if !identify.feature_negotiation {
            return Ok(negotiated);
        }

        let tls = self.tls_available && identify.tls_v1;
        let deflate = self.deflate && identify.deflate;
        let snappy = self.snappy && identify.snappy;
        let mut deflate_level = 6;
        if deflate && identify.deflate_level > 0 {
            deflate_level = identify.deflate_level;
        }
        deflate_level = deflate_level.min(i64::from(self.max_deflate_level));
        if deflate && snappy {
            return Err(ServerError::new(
                ErrorCode::IdentifyFailed,
                "cannot enable both deflate and snappy compression",
            ));
        }

        let topology = !self.topology_region.is_empty() || !self.topology_zone.is_empty();
        negotiated.tls = tls;
        negotiated.compression = if snappy {
            Compression::Snappy
        } else if deflate {
            Compression::Deflate {
                level: u32::try_from(deflate_level.clamp(1, 9)).unwrap_or(6),
            }
        } else {
            Compression::None
        };
        negotiated.response = Some(IdentifyResponse {
            max_rdy_count: i64::from(self.max_rdy_count),
            version: self.version.clone(),
            max_msg_timeout: ms(self.max_msg_timeout),
            msg_timeout: ms(msg_timeout),
            tls_v1: tls,
            deflate,
            deflate_level,
            max_deflate_level: i64::from(self.max_deflate_level),
            snappy,
            sample_rate: i64::from(sample_rate),
            auth_required: self.auth_required,
            output_buffer_size: i64::from(output_buffer_size),
            output_buffer_timeout: output_buffer_timeout.map_or(0, ms),
            topology_region: topology.then(|| self.topology_region.clone()),
            topology_zone: topology.then(|| self.topology_zone.clone()),
        });
        Ok(negotiated)
    }
}

/// This machine's host name, the default for IDENTIFY's `hostname` and for nsqd's and
/// nsqlookupd's `--broadcast-address`: `/proc/sys/kernel/hostname`, else `$HOSTNAME`, else
/// `localhost`.
///
/// ```
/// assert!(!nsq_proto::identify::local_hostname().is_empty());
/// ```
pub fn local_hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|name| name.trim().to_owned())
        .filter(|name| !name.is_empty())
        .or_else(|| {
            std::env::var("HOSTNAME")
                .ok()
                .filter(|name| !name.is_empty())
        })
        .unwrap_or_else(|| "localhost".to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serialises_every_field_nsqd_reads() {
        let json = serde_json::to_value(Identify::new("c", "h", "ua/1")).unwrap();
        for field in [
            "client_id",
            "hostname",
            "user_agent",
            "feature_negotiation",
            "heartbeat_interval",
            "output_buffer_size",
            "output_buffer_timeout",
            "tls_v1",
            "snappy",
            "deflate",
            "deflate_level",
            "sample_rate",
            "msg_timeout",
        ] {
            assert!(json.get(field).is_some(), "missing {field}");
        }
    }

    #[test]
    fn decodes_like_go_json() {
        // Unknown fields (go-nsq still sends short_id/long_id) are ignored; null is the default.
        let id: Identify = serde_json::from_str(
            r#"{"client_id":null,"short_id":"x","long_id":"y","heartbeat_interval":5000,"sample_rate":null}"#,
        )
        .unwrap();
        assert_eq!(id.client_id, "");
        assert_eq!(id.heartbeat_interval, 5000);
        // A missing feature_negotiation is false, as in Go.
        let bare: Identify = serde_json::from_str("{}").unwrap();
        assert!(!bare.feature_negotiation);
        assert_eq!(bare, Identify::default());
        assert!(serde_json::from_str::<Identify>(r#"{"heartbeat_interval":1.5}"#).is_err());
    }

    #[test]
    fn topology_fields_are_sent_only_when_set() {
        let keys = |id: &Identify| {
            let json = serde_json::to_value(id).unwrap();
            (
                json.get("topology_region").cloned(),
                json.get("topology_zone").cloned(),
            )
        };
        let plain = Identify::new("c", "h", "ua/1");
        assert_eq!(
            keys(&plain),
            (None, None),
            "a 1.3.0 request stays as it was"
        );
        let both = plain.clone().with_topology("eu", "eu-1b");
        assert_eq!(keys(&both), (Some("eu".into()), Some("eu-1b".into())));
        let region_only = plain.with_topology("eu", "");
        assert_eq!(keys(&region_only), (Some("eu".into()), None));

        // The server reads them (and null or absent as empty), as nsq master's nsqd does.
        let read: Identify =
            serde_json::from_str(r#"{"topology_region":"eu","topology_zone":null}"#).unwrap();
        assert_eq!(
            (read.topology_region.as_str(), read.topology_zone.as_str()),
            ("eu", "")
        );
        let sent: Identify = serde_json::from_value(serde_json::to_value(&both).unwrap()).unwrap();
        assert_eq!(sent, both);
    }

    #[test]
    fn a_server_with_a_topology_reports_it_after_nsqd_1_3_0_fields() {
        let opts = ServerOptions {
            topology_region: "eu".to_owned(),
            ..ServerOptions::default()
        };
        let reply = opts
            .negotiate(&Identify::new("", "", ""))
            .unwrap()
            .response
            .unwrap();
        assert_eq!(reply.topology_region.as_deref(), Some("eu"));
        assert_eq!(reply.topology_zone.as_deref(), Some(""));
        let json = serde_json::to_string(&reply).unwrap();
        assert!(
            json.ends_with(
                r#""output_buffer_timeout":250,"topology_region":"eu","topology_zone":""}"#
            ),
            "{json}"
        );

        // nsqd 1.3.0's reply has neither; nsq master's has both.
        let old = IdentifyResponse::parse(br#"{"max_rdy_count":2500}"#)
            .unwrap()
            .unwrap();
        assert_eq!((old.topology_region, old.topology_zone), (None, None));
        let master =
            IdentifyResponse::parse(br#"{"topology_region":"us","topology_zone":"us-2a"}"#)
                .unwrap()
                .unwrap();
        assert_eq!(master.topology_region.as_deref(), Some("us"));
        assert_eq!(master.topology_zone.as_deref(), Some("us-2a"));
    }

    #[test]
    fn reply_has_nsqd_1_3_0_field_order() {
        let reply = ServerOptions::default()
            .negotiate(&Identify::new("", "", ""))
            .unwrap()
            .response
            .unwrap();
        assert_eq!(
            serde_json::to_string(&reply).unwrap(),
            r#"{"max_rdy_count":2500,"version":"1.3.0","max_msg_timeout":900000,"msg_timeout":60000,"tls_v1":false,"deflate":false,"deflate_level":6,"max_deflate_level":6,"snappy":false,"sample_rate":0,"auth_required":false,"output_buffer_size":16384,"output_buffer_timeout":250}"#
        );
    }

    fn refused(identify: Identify) -> String {
        ServerOptions::default()
            .negotiate(&identify)
            .unwrap_err()
            .to_string()
    }

    #[test]
    fn bounds_match_nsqd() {
        let base = || Identify::new("", "", "");
        assert_eq!(
            refused(Identify {
                heartbeat_interval: 999,
                ..base()
            }),
            "E_BAD_BODY IDENTIFY heartbeat interval (999) is invalid"
        );
        assert_eq!(
            refused(Identify {
                heartbeat_interval: 60_001,
                ..base()
            }),
            "E_BAD_BODY IDENTIFY heartbeat interval (60001) is invalid"
        );
        assert_eq!(
            refused(Identify {
                output_buffer_timeout: 24,
                ..base()
            }),
            "E_BAD_BODY IDENTIFY output buffer timeout (24) is invalid"
        );
        assert_eq!(
            refused(Identify {
                output_buffer_size: 63,
                ..base()
            }),
            "E_BAD_BODY IDENTIFY output buffer size (63) is invalid"
        );
        assert_eq!(
            refused(Identify {
                sample_rate: 100,
                ..base()
            }),
            "E_BAD_BODY IDENTIFY sample rate (100) is invalid"
        );
        assert_eq!(
            refused(Identify {
                sample_rate: -1,
                ..base()
            }),
            "E_BAD_BODY IDENTIFY sample rate (-1) is invalid"
        );
        assert_eq!(
            refused(Identify {
                msg_timeout: 999,
                ..base()
            }),
            "E_BAD_BODY IDENTIFY msg timeout (999) is invalid"
        );
        assert_eq!(
            refused(Identify {
                snappy: true,
                deflate: true,
                ..base()
            }),
            "E_IDENTIFY_FAILED cannot enable both deflate and snappy compression"
        );
        // The timeout is checked before the size, as in nsqd.
        assert_eq!(
            refused(Identify {
                output_buffer_size: 1,
                output_buffer_timeout: 1,
                ..base()
            }),
            "E_BAD_BODY IDENTIFY output buffer timeout (1) is invalid"
        );
    }

    #[test]
    fn resolves_special_values() {
        let opts = ServerOptions::default();
        let n = opts
            .negotiate(&Identify {
                heartbeat_interval: -1,
                output_buffer_size: -1,
                output_buffer_timeout: 1000,
                msg_timeout: 1000,
                sample_rate: 42,
                ..Identify::default()
            })
            .unwrap();
        assert_eq!(n.heartbeat_interval, None);
        assert_eq!(n.output_buffer_size, 1);
        assert_eq!(n.output_buffer_timeout, None, "size -1 turns the timer off");
        assert_eq!(n.msg_timeout, Duration::from_secs(1));
        assert_eq!(n.sample_rate, 42);
    }

    #[test]
    fn negotiates_features_like_nsqd() {
        let opts = ServerOptions {
            tls_available: true,
            ..ServerOptions::default()
        };
        let asked = Identify {
            tls_v1: true,
            deflate: true,
            deflate_level: 9,
            ..Identify::new("", "", "")
        };
        let n = opts.negotiate(&asked).unwrap();
        assert!(n.tls);
        assert_eq!(n.compression, Compression::Deflate { level: 6 }, "clamped");
        let reply = n.response.unwrap();
        assert!(reply.tls_v1 && reply.deflate && !reply.snappy);
        assert_eq!(reply.deflate_level, 6);

        // Without feature negotiation nothing upgrades and the reply is OK.
        let plain = opts
            .negotiate(&Identify {
                feature_negotiation: false,
                ..asked
            })
            .unwrap();
        assert!(!plain.tls && plain.compression == Compression::None && plain.response.is_none());

        // A server without TLS or with snappy disabled says so.
        let no_features = ServerOptions {
            snappy: false,
            ..ServerOptions::default()
        };
        let n = no_features
            .negotiate(&Identify {
                tls_v1: true,
                snappy: true,
                ..Identify::new("", "", "")
            })
            .unwrap();
        assert!(!n.tls && n.compression == Compression::None);
    }

    #[test]
    fn client_reads_nsqd_reply() {
        let raw = br#"{"max_rdy_count":100,"version":"1.3.0","max_msg_timeout":900000,"msg_timeout":60000,"tls_v1":true,"deflate":false,"deflate_level":6,"max_deflate_level":6,"snappy":true,"sample_rate":0,"auth_required":true,"output_buffer_size":16384,"output_buffer_timeout":250,"topology_zone":""}"#;
        let reply = IdentifyResponse::parse(raw).unwrap().unwrap();
        assert_eq!(reply.max_rdy_count, 100);
        assert!(reply.tls_v1 && reply.snappy && reply.auth_required);
        assert_eq!(reply.msg_timeout(), Duration::from_secs(60));
        assert!(IdentifyResponse::parse(b"garbage").is_err());
    }
}
