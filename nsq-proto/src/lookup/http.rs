//! nsqlookupd's HTTP API responses (`nsqlookupd/http.go`, `internal/http_api/api_response.go`).
//!
//! Since 1.0 a successful answer is the bare JSON object, sent with the header
//! [`V1_HEADER`]`: `[`V1_HEADER_VALUE`]; an error is its status code with
//! `{"message":"<TEXT>"}` ([`ErrorBody`]). Servers up to 0.3.8 wrapped answers as
//! `{"status_code":200,"status_txt":"OK","data":{...}}` unless the request carried
//! `Accept: `[`ACCEPT_V1`]. [`decode_response`] reads both.
//!
//! The types serialise to nsqlookupd 1.3.0's exact bytes: struct fields in Go's
//! declaration order, map keys sorted (Go's `json.Marshal` of a map), empty lists as
//! `[]`. (Go also escapes `<`, `>` and `&` as `\u003c`..., which serde_json does not;
//! no valid topic, channel, port or version contains them.)
//!
//! ```
//! use nsq_proto::lookup::{decode_response, LookupResponse};
//!
//! let body = br#"{"channels":["archive"],"producers":[{"remote_address":"10.0.0.5:51996","hostname":"nsqd-1","broadcast_address":"nsqd-1.example","tcp_port":4150,"http_port":4151,"version":"1.3.0"}]}"#;
//! let lookup: LookupResponse = decode_response(200, true, body)?;
//! assert_eq!(lookup.producers[0].connect_address(), "nsqd-1.example:4150");
//! assert_eq!(serde_json::to_vec(&lookup)?, body); // byte for byte
//!
//! let err = decode_response::<LookupResponse>(404, true, br#"{"message":"TOPIC_NOT_FOUND"}"#)
//!     .unwrap_err();
//! assert!(err.is_topic_not_found()); // no producer has registered the topic yet
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::null_default;

/// The `Accept` header value that asks 0.2.29–0.3.8 servers for the v1 format (it must
/// match exactly, semicolon included). Newer servers ignore it.
///
/// ```
/// assert_eq!(nsq_proto::lookup::ACCEPT_V1, "application/vnd.nsq; version=1.0");
/// ```
pub const ACCEPT_V1: &str = "application/vnd.nsq; version=1.0";

/// The response header that marks a v1 (unwrapped) body.
///
/// ```
/// assert_eq!(nsq_proto::lookup::V1_HEADER, "X-NSQ-Content-Type");
/// ```
pub const V1_HEADER: &str = "X-NSQ-Content-Type";

/// The value of [`V1_HEADER`] on a v1 body.
///
/// ```
/// assert_eq!(nsq_proto::lookup::V1_HEADER_VALUE, "nsq; version=1.0");
/// ```
pub const V1_HEADER_VALUE: &str = "nsq; version=1.0";

/// The `message` of a 404 from `/lookup` for a topic no nsqd has registered (or that was
/// deleted): "no producers yet", not a failure.
///
/// ```
/// assert_eq!(nsq_proto::lookup::http::TOPIC_NOT_FOUND, "TOPIC_NOT_FOUND");
/// ```
pub const TOPIC_NOT_FOUND: &str = "TOPIC_NOT_FOUND";

/// The 400 `message` when the `topic` parameter is missing.
///
/// ```
/// assert_eq!(nsq_proto::lookup::http::MISSING_ARG_TOPIC, "MISSING_ARG_TOPIC");
/// ```
pub const MISSING_ARG_TOPIC: &str = "MISSING_ARG_TOPIC";

/// The 400 `message` when the query string cannot be parsed.
///
/// ```
/// assert_eq!(nsq_proto::lookup::http::INVALID_REQUEST, "INVALID_REQUEST");
/// ```
pub const INVALID_REQUEST: &str = "INVALID_REQUEST";

/// Whether a [`V1_HEADER`] value marks a v1 body (surrounding white space ignored).
///
/// ```
/// use nsq_proto::lookup::is_v1_header;
/// assert!(is_v1_header(b"nsq; version=1.0"));
/// assert!(!is_v1_header(b"application/json"));
/// ```
pub fn is_v1_header(value: &[u8]) -> bool {
    value.trim_ascii() == V1_HEADER_VALUE.as_bytes()
}

/// `host:port`, with an IPv6 host in brackets, as Go's `net.JoinHostPort` gives it (a
/// host already in brackets is left as it is).
///
/// ```
/// use nsq_proto::lookup::join_host_port;
/// assert_eq!(join_host_port("nsqd-1", 4150), "nsqd-1:4150");
/// assert_eq!(join_host_port("fd00::5", 4150), "[fd00::5]:4150");
/// assert_eq!(join_host_port("[fd00::5]", 4150), "[fd00::5]:4150");
/// ```
pub fn join_host_port(host: &str, port: u16) -> String {
    if host.contains(':') && !host.starts_with('[') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

/// One nsqd as nsqlookupd lists it (Go's `PeerInfo` in `registration_db.go`).
///
/// Serialises in lookupd's field order. 1.3.0 has no topology fields; later versions add
/// `topology_zone` and `topology_region`, which are read when present and written only
/// when set. Pre-0.2.2x servers named the broadcast address `address`: it is used when
/// `broadcast_address` is missing or empty. Missing fields and `null` read as empty.
///
/// ```
/// use nsq_proto::lookup::Producer;
///
/// let old: Producer = serde_json::from_str(r#"{"address":"nsqd-1","tcp_port":4150,"http_port":4151}"#)?;
/// assert_eq!(old.broadcast_address, "nsqd-1");
/// assert_eq!(old.connect_address(), "nsqd-1:4150");
/// assert_eq!(old.http_address(), "nsqd-1:4151");
/// # Ok::<(), serde_json::Error>(())
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(from = "ProducerRepr")]
pub struct Producer {
    /// The `ip:port` lookupd saw the nsqd connect from. Not for connecting to.
    pub remote_address: String,
    /// The nsqd host's name.
    pub hostname: String,
    /// The address consumers connect to.
    pub broadcast_address: String,
    /// nsqd's TCP port.
    pub tcp_port: u16,
    /// nsqd's HTTP port.
    pub http_port: u16,
    /// nsqd's version.
    pub version: String,
    /// The zone (lookupd after 1.3.0; omitted when `None`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub topology_zone: Option<String>,
    /// The region (lookupd after 1.3.0; omitted when `None`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub topology_region: Option<String>,
}

impl Producer {
    /// `broadcast_address:tcp_port`: where consumers connect, and the key that merges
    /// the answers of several lookupds.
    ///
    /// ```
    /// use nsq_proto::lookup::Producer;
    /// let p = Producer { broadcast_address: "::1".into(), tcp_port: 4150, ..Producer::default() };
    /// assert_eq!(p.connect_address(), "[::1]:4150");
    /// ```
    pub fn connect_address(&self) -> String {
        join_host_port(&self.broadcast_address, self.tcp_port)
    }

    /// `broadcast_address:http_port`: nsqd's HTTP API, and the `node` that
    /// `/topic/tombstone` expects.
    ///
    /// ```
    /// use nsq_proto::lookup::Producer;
    /// let p = Producer { broadcast_address: "nsqd-1".into(), http_port: 4151, ..Producer::default() };
    /// assert_eq!(p.http_address(), "nsqd-1:4151");
    /// ```
    pub fn http_address(&self) -> String {
        join_host_port(&self.broadcast_address, self.http_port)
    }
}

/// What [`Producer`] reads, before the `address` fallback.
#[derive(Deserialize)]
struct ProducerRepr {
    #[serde(default, deserialize_with = "null_default")]
    remote_address: String,
    #[serde(default, deserialize_with = "null_default")]
    hostname: String,
    #[serde(default, deserialize_with = "null_default")]
    broadcast_address: String,
    #[serde(default, deserialize_with = "null_default")]
    address: String,
    #[serde(default, deserialize_with = "null_default")]
    tcp_port: u16,
    #[serde(default, deserialize_with = "null_default")]
    http_port: u16,
    #[serde(default, deserialize_with = "null_default")]
    version: String,
    #[serde(default)]
    topology_zone: Option<String>,
    #[serde(default)]
    topology_region: Option<String>,
}

impl From<ProducerRepr> for Producer {
    fn from(repr: ProducerRepr) -> Self {
        let broadcast_address = if repr.broadcast_address.is_empty() {
            repr.address
        } else {
            repr.broadcast_address
        };
        Producer {
            remote_address: repr.remote_address,
            hostname: repr.hostname,
            broadcast_address,
            tcp_port: repr.tcp_port,
            http_port: repr.http_port,
            version: repr.version,
            topology_zone: repr.topology_zone,
            topology_region: repr.topology_region,
        }
    }
}

/// `GET /lookup?topic=<topic>`: the topic's channels and the nsqds that have it.
///
/// A 404 with [`TOPIC_NOT_FOUND`] means no nsqd ever registered the topic; a topic
/// whose nsqds all left answers 200 with no producers.
///
/// ```
/// use nsq_proto::lookup::{decode_body, LookupResponse};
/// let empty: LookupResponse = decode_body(b"", true)?; // an empty body counts as {}
/// assert!(empty.producers.is_empty());
/// # Ok::<(), nsq_proto::lookup::ApiError>(())
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LookupResponse {
    /// The topic's channels, as registered by nsqds or `/channel/create`.
    #[serde(default, deserialize_with = "null_default")]
    pub channels: Vec<String>,
    /// The active nsqds that have the topic.
    #[serde(default, deserialize_with = "null_default")]
    pub producers: Vec<Producer>,
}

/// `GET /topics`: every topic lookupd knows.
///
/// ```
/// use nsq_proto::lookup::{decode_body, TopicsResponse};
/// let topics: TopicsResponse = decode_body(br#"{"topics":["a","b"]}"#, true)?;
/// assert_eq!(topics.topics, ["a", "b"]);
/// # Ok::<(), nsq_proto::lookup::ApiError>(())
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TopicsResponse {
    /// The topic names.
    #[serde(default, deserialize_with = "null_default")]
    pub topics: Vec<String>,
}

/// `GET /channels?topic=<topic>`: the topic's channels.
///
/// ```
/// use nsq_proto::lookup::{decode_body, ChannelsResponse};
/// let channels: ChannelsResponse = decode_body(br#"{"channels":[]}"#, true)?;
/// assert!(channels.channels.is_empty());
/// # Ok::<(), nsq_proto::lookup::ApiError>(())
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChannelsResponse {
    /// The channel names.
    #[serde(default, deserialize_with = "null_default")]
    pub channels: Vec<String>,
}

/// `GET /info`: lookupd's version.
///
/// ```
/// use nsq_proto::lookup::{decode_body, InfoResponse};
/// let info: InfoResponse = decode_body(br#"{"version":"1.3.0"}"#, true)?;
/// assert_eq!(info.version, "1.3.0");
/// # Ok::<(), nsq_proto::lookup::ApiError>(())
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct InfoResponse {
    /// The version, e.g. `1.3.0`.
    #[serde(default, deserialize_with = "null_default")]
    pub version: String,
}

/// `GET /nodes`: every active nsqd, tombstoned or not.
///
/// ```
/// use nsq_proto::lookup::{decode_body, NodesResponse};
/// let nodes: NodesResponse = decode_body(
///     br#"{"producers":[{"broadcast_address":"n1","tcp_port":4150,"tombstones":[true],"topics":["t"]}]}"#,
///     true,
/// )?;
/// assert_eq!(nodes.producers[0].producer.connect_address(), "n1:4150");
/// assert!(nodes.producers[0].is_tombstoned("t"));
/// # Ok::<(), nsq_proto::lookup::ApiError>(())
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodesResponse {
    /// The nsqds.
    #[serde(default, deserialize_with = "null_default")]
    pub producers: Vec<Node>,
}

/// One nsqd in `/nodes`: the [`Producer`] fields, then per-topic tombstones.
///
/// ```
/// use nsq_proto::lookup::{Node, Producer};
/// let node = Node {
///     producer: Producer { broadcast_address: "n1".into(), ..Producer::default() },
///     tombstones: vec![false],
///     topics: vec!["t".into()],
/// };
/// let json = serde_json::to_string(&node)?;
/// assert!(json.ends_with(r#""version":"","tombstones":[false],"topics":["t"]}"#));
/// # Ok::<(), serde_json::Error>(())
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Node {
    /// The nsqd's address fields, flattened into the same JSON object.
    #[serde(flatten)]
    pub producer: Producer,
    /// For each of `topics`, whether this nsqd is tombstoned for it.
    #[serde(default, deserialize_with = "null_default")]
    pub tombstones: Vec<bool>,
    /// The topics this nsqd has registered.
    #[serde(default, deserialize_with = "null_default")]
    pub topics: Vec<String>,
}

impl Node {
    /// Whether this nsqd is tombstoned for `topic` (false for a topic it does not have).
    ///
    /// ```
    /// use nsq_proto::lookup::Node;
    /// let node = Node { tombstones: vec![true], topics: vec!["t".into()], ..Node::default() };
    /// assert!(node.is_tombstoned("t"));
    /// assert!(!node.is_tombstoned("u"));
    /// ```
    pub fn is_tombstoned(&self, topic: &str) -> bool {
        self.topics
            .iter()
            .zip(&self.tombstones)
            .any(|(t, &tombstoned)| tombstoned && t == topic)
    }
}

/// The body of an error answer: `{"message":"<TEXT>"}`.
///
/// [`ErrorBody::parse`] also reads a legacy wrapper's `status_txt` and, failing both, the
/// body as plain text, so there is always a message.
///
/// ```
/// use nsq_proto::lookup::ErrorBody;
/// let err = ErrorBody::parse(br#"{"message":"TOPIC_NOT_FOUND"}"#);
/// assert!(err.is_topic_not_found());
/// assert_eq!(serde_json::to_string(&err)?, r#"{"message":"TOPIC_NOT_FOUND"}"#);
/// # Ok::<(), serde_json::Error>(())
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    /// The error text, e.g. `TOPIC_NOT_FOUND` or `MISSING_ARG_TOPIC`.
    #[serde(default, deserialize_with = "null_default")]
    pub message: String,
}

impl ErrorBody {
    /// An error body with this message.
    ///
    /// ```
    /// use nsq_proto::lookup::ErrorBody;
    /// assert_eq!(ErrorBody::new("NOT_FOUND").message, "NOT_FOUND");
    /// ```
    pub fn new(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
        }
    }

    /// Reads an error answer's body: `{"message"}`, a legacy `{"status_txt"}`, or text.
    ///
    /// ```
    /// use nsq_proto::lookup::ErrorBody;
    /// assert_eq!(ErrorBody::parse(br#"{"status_code":500,"status_txt":"TOPIC_NOT_FOUND","data":null}"#).message, "TOPIC_NOT_FOUND");
    /// assert_eq!(ErrorBody::parse(b"502 Bad Gateway\n").message, "502 Bad Gateway");
    /// ```
    pub fn parse(body: &[u8]) -> Self {
        if let Ok(Value::Object(map)) = serde_json::from_slice::<Value>(body) {
            for key in ["message", "status_txt"] {
                if let Some(Value::String(text)) = map.get(key) {
                    return Self::new(text.clone());
                }
            }
        }
        Self::new(String::from_utf8_lossy(body.trim_ascii()))
    }

    /// Whether this is `/lookup`'s 404 for a topic that no nsqd has registered: "no
    /// producers yet".
    ///
    /// ```
    /// use nsq_proto::lookup::ErrorBody;
    /// assert!(ErrorBody::new("TOPIC_NOT_FOUND").is_topic_not_found());
    /// assert!(!ErrorBody::new("MISSING_ARG_TOPIC").is_topic_not_found());
    /// ```
    pub fn is_topic_not_found(&self) -> bool {
        self.message == TOPIC_NOT_FOUND
    }
}

/// A failure to read an nsqlookupd HTTP answer.
///
/// ```
/// use nsq_proto::lookup::{decode_response, ApiError, InfoResponse};
/// let err = decode_response::<InfoResponse>(400, true, br#"{"message":"INVALID_REQUEST"}"#).unwrap_err();
/// assert_eq!(err.status(), Some(400));
/// assert_eq!(err.to_string(), "nsqlookupd answered 400: INVALID_REQUEST");
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ApiError {
    /// lookupd answered with an error: a non-200 status, or a legacy wrapper whose
    /// `status_code` is not 200.
    #[error("nsqlookupd answered {status}: {}", .body.message)]
    Status {
        /// The HTTP status (or the legacy `status_code`).
        status: u16,
        /// The error's message.
        body: ErrorBody,
    },
    /// The body is not the JSON expected.
    #[error("malformed nsqlookupd response: {0}")]
    Json(#[from] serde_json::Error),
}

impl ApiError {
    /// Whether this is `/lookup`'s [`TOPIC_NOT_FOUND`]: the topic has no producers yet.
    ///
    /// ```
    /// use nsq_proto::lookup::{decode_response, LookupResponse};
    /// let err = decode_response::<LookupResponse>(404, true, br#"{"message":"TOPIC_NOT_FOUND"}"#).unwrap_err();
    /// assert!(err.is_topic_not_found());
    /// ```
    pub fn is_topic_not_found(&self) -> bool {
        matches!(self, ApiError::Status { body, .. } if body.is_topic_not_found())
    }

    /// The status lookupd answered with, when this is an error answer.
    ///
    /// ```
    /// use nsq_proto::lookup::{decode_body, InfoResponse};
    /// let err = decode_body::<InfoResponse>(b"[", true).unwrap_err();
    /// assert_eq!(err.status(), None);
    /// ```
    pub fn status(&self) -> Option<u16> {
        match self {
            ApiError::Status { status, .. } => Some(*status),
            ApiError::Json(_) => None,
        }
    }
}

/// Decodes a 200 answer's body into `T`.
///
/// With `v1_header` (the answer carried [`V1_HEADER`]`: `[`V1_HEADER_VALUE`], see
/// [`is_v1_header`]) the body is `T` itself. Without it, a legacy wrapper (an object
/// with `status_code` and `data` or `status_txt`) is unwrapped, and anything else is
/// read as `T`, so a v1 body that lost its header still decodes. An empty body, or a
/// legacy `data` that is missing or `null`, counts as `{}`.
///
/// # Errors
///
/// [`ApiError::Status`] for a legacy wrapper whose `status_code` is not 200;
/// [`ApiError::Json`] when the body is not the JSON of `T`.
///
/// ```
/// use nsq_proto::lookup::{decode_body, TopicsResponse};
///
/// let legacy = br#"{"status_code":200,"status_txt":"OK","data":{"topics":["t"]}}"#;
/// let topics: TopicsResponse = decode_body(legacy, false)?;
/// assert_eq!(topics.topics, ["t"]);
///
/// let err = decode_body::<TopicsResponse>(br#"{"status_code":500,"status_txt":"INVALID_REQUEST","data":null}"#, false)
///     .unwrap_err();
/// assert_eq!(err.status(), Some(500));
/// # Ok::<(), nsq_proto::lookup::ApiError>(())
/// ```
pub fn decode_body<T: DeserializeOwned>(body: &[u8], v1_header: bool) -> Result<T, ApiError> {
    let body = body.trim_ascii();
    let body: &[u8] = if body.is_empty() { b"{}" } else { body };
    if v1_header {
        return Ok(serde_json::from_slice(body)?);
    }
    let value: Value = serde_json::from_slice(body)?;
    let value = match value {
        Value::Object(map) if is_legacy_wrapper(&map) => unwrap_legacy(map)?,
        other => other,
    };
    Ok(serde_json::from_value(value)?)
}

/// Decodes a whole answer: a 200 through [`decode_body`], anything else as an
/// [`ApiError::Status`] carrying the [`ErrorBody`].
///
/// # Errors
///
/// As [`decode_body`], plus [`ApiError::Status`] for a status other than 200; check
/// [`ApiError::is_topic_not_found`] on `/lookup`.
///
/// ```
/// use nsq_proto::lookup::{decode_response, ChannelsResponse};
/// let channels: ChannelsResponse = decode_response(200, true, br#"{"channels":["c"]}"#)?;
/// assert_eq!(channels.channels, ["c"]);
/// let err = decode_response::<ChannelsResponse>(400, true, br#"{"message":"MISSING_ARG_TOPIC"}"#).unwrap_err();
/// assert_eq!(err.status(), Some(400));
/// # Ok::<(), nsq_proto::lookup::ApiError>(())
/// ```
pub fn decode_response<T: DeserializeOwned>(
    status: u16,
    v1_header: bool,
    body: &[u8],
) -> Result<T, ApiError> {
    if status != 200 {
        return Err(ApiError::Status {
            status,
            body: ErrorBody::parse(body),
        });
    }
    decode_body(body, v1_header)
}

fn is_legacy_wrapper(map: &Map<String, Value>) -> bool {
    map.contains_key("status_code") && (map.contains_key("data") || map.contains_key("status_txt"))
}

fn unwrap_legacy(mut map: Map<String, Value>) -> Result<Value, ApiError> {
    let status = map.get("status_code").and_then(Value::as_u64).unwrap_or(0);
    if status != 200 {
        let message = match map.get("status_txt") {
            Some(Value::String(text)) => text.clone(),
            _ => String::new(),
        };
        return Err(ApiError::Status {
            status: u16::try_from(status).unwrap_or(u16::MAX),
            body: ErrorBody::new(message),
        });
    }
    Ok(match map.remove("data") {
        None | Some(Value::Null) => Value::Object(Map::new()),
        Some(data) => data,
    })
}

#[cfg(test)]
mod tests;
