//! `/stats?format=json` in nsqd 1.3.0's shape.
//!
//! The same types read real nsqd's answer, so a test can assert on either broker alike.
//! Fields nsqd fills from Go's runtime (`memory`) or its latency quantiles are accepted and
//! reported empty here.
//!
//! ```
//! use nsq_server_lite::stats::Stats;
//!
//! let json = r#"{"version":"1.3.0","health":"OK","start_time":1,"topics":[
//!   {"topic_name":"t","channels":[{"channel_name":"c","depth":0,"backend_depth":0,
//!    "in_flight_count":0,"deferred_count":0,"message_count":3,"requeue_count":0,
//!    "timeout_count":0,"client_count":0,"clients":[],"paused":false,
//!    "e2e_processing_latency":{"count":0,"percentiles":null}}],
//!   "depth":0,"backend_depth":0,"message_count":3,"message_bytes":9,"paused":false,
//!   "e2e_processing_latency":{"count":0,"percentiles":null}}],"producers":[]}"#;
//! let stats: Stats = serde_json::from_str(json)?;
//! assert_eq!(stats.channel("t", "c").map(|c| c.message_count), Some(3));
//! # Ok::<(), serde_json::Error>(())
//! ```

use std::sync::atomic::Ordering;

use serde::{Deserialize, Serialize};

use crate::client::ClientInfo;

/// The whole `/stats?format=json` answer.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Stats {
    /// The broker's version (`1.3.0`).
    pub version: String,
    /// `OK` while healthy.
    pub health: String,
    /// Unix seconds at start.
    pub start_time: i64,
    /// Topics, sorted by name.
    #[serde(deserialize_with = "null_as_empty")]
    pub topics: Vec<TopicStats>,
    /// Go runtime memory figures; absent here.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub memory: Option<serde_json::Value>,
    /// Connections that have published, with their per-topic counts.
    #[serde(deserialize_with = "null_as_empty")]
    pub producers: Vec<ClientStats>,
}

impl Stats {
    /// The topic named `topic`, if present.
    ///
    /// ```
    /// assert!(nsq_server_lite::stats::Stats::default().topic("t").is_none());
    /// ```
    pub fn topic(&self, topic: &str) -> Option<&TopicStats> {
        self.topics.iter().find(|t| t.topic_name == topic)
    }

    /// The channel `channel` of topic `topic`, if present.
    ///
    /// ```
    /// assert!(nsq_server_lite::stats::Stats::default().channel("t", "c").is_none());
    /// ```
    pub fn channel(&self, topic: &str, channel: &str) -> Option<&ChannelStats> {
        self.topic(topic)?
            .channels
            .iter()
            .find(|c| c.channel_name == channel)
    }
}

/// One topic.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct TopicStats {
    /// The topic's name.
    pub topic_name: String,
    /// Its channels, sorted by name.
    #[serde(deserialize_with = "null_as_empty")]
    pub channels: Vec<ChannelStats>,
    /// Messages waiting at the topic (no channel yet, or paused).
    pub depth: i64,
    /// Messages on disk; always 0 here.
    pub backend_depth: i64,
    /// Messages published to the topic.
    pub message_count: u64,
    /// Bytes of message bodies published to the topic.
    pub message_bytes: u64,
    /// Whether fan-out to channels is paused.
    pub paused: bool,
    /// Latency quantiles (not collected here).
    pub e2e_processing_latency: Latency,
}

/// One channel.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ChannelStats {
    /// The channel's name.
    pub channel_name: String,
    /// Messages queued for delivery (not in flight, not deferred).
    pub depth: i64,
    /// Messages on disk; always 0 here.
    pub backend_depth: i64,
    /// Messages delivered and not yet finished, requeued or timed out.
    pub in_flight_count: usize,
    /// Messages waiting for their defer or requeue delay.
    pub deferred_count: usize,
    /// Messages copied to the channel.
    pub message_count: u64,
    /// REQ commands accepted.
    pub requeue_count: u64,
    /// In-flight timeouts.
    pub timeout_count: u64,
    /// Subscribed connections.
    pub client_count: usize,
    /// The subscribed connections.
    #[serde(deserialize_with = "null_as_empty")]
    pub clients: Vec<ClientStats>,
    /// Whether delivery is paused.
    pub paused: bool,
    /// Latency quantiles (not collected here).
    pub e2e_processing_latency: Latency,
}

/// nsqd's latency quantiles; this broker reports `{"count":0,"percentiles":null}`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Latency {
    /// Samples seen.
    pub count: u64,
    /// Percentile values, when collected.
    pub percentiles: Option<Vec<serde_json::Value>>,
}

/// Messages a connection published to one topic.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct PubCount {
    /// The topic.
    pub topic: String,
    /// Messages published.
    pub count: u64,
}

/// One connection.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ClientStats {
    /// IDENTIFY `client_id`.
    pub client_id: String,
    /// IDENTIFY `hostname`.
    pub hostname: String,
    /// Protocol version, `V2`.
    pub version: String,
    /// The peer's `ip:port` (`@` for a unix socket peer, as Go shows it).
    pub remote_address: String,
    /// nsqd's state number: 0 init, 2 connected... 3 subscribed, 4 closing.
    pub state: i32,
    /// The client's current RDY.
    pub ready_count: i64,
    /// Messages in flight to this client.
    pub in_flight_count: i64,
    /// Messages delivered to this client.
    pub message_count: u64,
    /// FIN commands accepted.
    pub finish_count: u64,
    /// REQ commands accepted.
    pub requeue_count: u64,
    /// Unix seconds at connect.
    pub connect_ts: i64,
    /// Negotiated sample rate.
    pub sample_rate: i32,
    /// Deflate negotiated.
    pub deflate: bool,
    /// Snappy negotiated.
    pub snappy: bool,
    /// IDENTIFY `user_agent`.
    pub user_agent: String,
    /// IDENTIFY `topology_region` (nsq after 1.3.0); left out of the JSON when empty, as
    /// nsqd 1.3.0 has no such field.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub topology_region: String,
    /// IDENTIFY `topology_zone` (nsq after 1.3.0); left out of the JSON when empty.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub topology_zone: String,
    /// Whether AUTH succeeded.
    #[serde(skip_serializing_if = "is_false")]
    pub authed: bool,
    /// The identity the auth service named.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub auth_identity: String,
    /// The identity URL the auth service named.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub auth_identity_url: String,
    /// Per-topic publish counts.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    #[serde(deserialize_with = "null_as_empty")]
    pub pub_counts: Vec<PubCount>,
    /// TLS negotiated.
    pub tls: bool,
    /// TLS cipher suite name.
    pub tls_cipher_suite: String,
    /// TLS version name.
    pub tls_version: String,
    /// ALPN protocol.
    pub tls_negotiated_protocol: String,
    /// Whether ALPN was mutual.
    pub tls_negotiated_protocol_is_mutual: bool,
}

/// nsqd writes an empty list as `null` (a nil Go slice).
fn null_as_empty<'de, D, T>(de: D) -> Result<Vec<T>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de>,
{
    Ok(Option::<Vec<T>>::deserialize(de)?.unwrap_or_default())
}

fn is_false(b: &bool) -> bool {
    !*b
}

impl ClientStats {
    pub(crate) fn new(info: &ClientInfo, ready: u32, in_flight: u32) -> Self {
        let meta = info.meta();
        Self {
            client_id: meta.client_id.clone(),
            hostname: meta.hostname.clone(),
            version: "V2".to_owned(),
            remote_address: info.remote.to_string(),
            state: meta.state as i32,
            ready_count: i64::from(ready),
            in_flight_count: i64::from(in_flight),
            message_count: info.message_count.load(Ordering::Relaxed),
            finish_count: info.finish_count.load(Ordering::Relaxed),
            requeue_count: info.requeue_count.load(Ordering::Relaxed),
            connect_ts: info.connect_ts,
            sample_rate: i32::from(meta.sample_rate),
            deflate: meta.deflate,
            snappy: meta.snappy,
            user_agent: meta.user_agent.clone(),
            topology_region: meta.topology_region.clone(),
            topology_zone: meta.topology_zone.clone(),
            authed: meta.auth_identity.is_some(),
            auth_identity: meta.auth_identity.clone().unwrap_or_default(),
            auth_identity_url: meta.auth_identity_url.clone(),
            pub_counts: meta
                .pub_counts
                .iter()
                .map(|(topic, count)| PubCount {
                    topic: topic.clone(),
                    count: *count,
                })
                .collect(),
            tls: meta.tls_version.is_some(),
            tls_cipher_suite: meta.tls_cipher_suite.clone(),
            tls_version: meta.tls_version.clone().unwrap_or_default(),
            tls_negotiated_protocol: String::new(),
            tls_negotiated_protocol_is_mutual: false,
        }
    }
}
