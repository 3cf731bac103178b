//! The HTTP APIs the tools read: nsqlookupd's `/lookup` and `/topics`, nsqd's `/stats`, with
//! the connect and request timeouts of nsq's `--http-client-*-timeout` flags.

use std::time::Duration;

use nsq_proto::lookup::{decode_response, LookupResponse, Producer, TopicsResponse};
use serde::de::DeserializeOwned;
use serde::Deserialize;

/// nsq's HTTP client asks for the v1 answers (no `{"status_code":..,"data":..}` wrapper).
const ACCEPT_V1: &str = "application/vnd.nsq; version=1.0";

/// A failed request to nsqd or nsqlookupd.
///
/// ```
/// # fn show(e: &nsq_tools::http::HttpError) { eprintln!("{e}"); }
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum HttpError {
    /// No answer: connection refused, timeout, broken response.
    #[error("GET {url}: {source}")]
    Request {
        /// What was asked.
        url: String,
        /// Why it failed.
        source: reqwest::Error,
    },
    /// An answer that is an error or does not decode.
    #[error("GET {url}: {source}")]
    Api {
        /// What was asked.
        url: String,
        /// The status or decoding failure.
        source: nsq_proto::lookup::ApiError,
    },
    /// The client could not be built.
    #[error("HTTP client: {0}")]
    Client(reqwest::Error),
}

/// A client for nsqd's and nsqlookupd's HTTP APIs.
///
/// ```
/// use std::time::Duration;
/// let api = nsq_tools::http::ApiClient::new(Duration::from_secs(2), Duration::from_secs(5))?;
/// # let _ = api;
/// # Ok::<(), nsq_tools::http::HttpError>(())
/// ```
#[derive(Debug, Clone)]
pub struct ApiClient {
    client: reqwest::Client,
}

impl ApiClient {
    /// A client whose connections must open within `connect_timeout` and whose requests must
    /// be answered within `request_timeout`.
    ///
    /// # Errors
    ///
    /// [`HttpError::Client`] when the client cannot be built.
    pub fn new(connect_timeout: Duration, request_timeout: Duration) -> Result<Self, HttpError> {
        let client = reqwest::Client::builder()
            .connect_timeout(connect_timeout)
            .timeout(request_timeout)
            .build()
            .map_err(HttpError::Client)?;
        Ok(Self { client })
    }

    /// `GET {addr}{path}` and the JSON answer, `addr` being `host:port` or a `http(s)://` URL.
    ///
    /// # Errors
    ///
    /// [`HttpError`] when there is no answer, the answer is an error or does not decode.
    pub async fn get<T: DeserializeOwned>(&self, addr: &str, path: &str) -> Result<T, HttpError> {
        let url = url(addr, path);
        let request = async {
            let response = self
                .client
                .get(&url)
                .header(reqwest::header::ACCEPT, ACCEPT_V1)
                .send()
                .await?;
            let status = response.status().as_u16();
            let body = response.bytes().await?;
            Ok::<_, reqwest::Error>((status, body))
        };
        let (status, body) = request.await.map_err(|source| HttpError::Request {
            url: url.clone(),
            source,
        })?;
        decode_response(status, true, &body).map_err(|source| HttpError::Api { url, source })
    }

    /// The nsqd that nsqlookupd at `lookupd` lists for `topic` (none when it does not know
    /// the topic).
    ///
    /// # Errors
    ///
    /// [`HttpError`] when lookupd cannot be asked.
    pub async fn lookup(&self, lookupd: &str, topic: &str) -> Result<Vec<Producer>, HttpError> {
        let path = format!("/lookup?topic={}", query_escape(topic));
        match self.get::<LookupResponse>(lookupd, &path).await {
            Ok(answer) => Ok(answer.producers),
            Err(HttpError::Api { source, .. }) if source.is_topic_not_found() => Ok(Vec::new()),
            Err(e) => Err(e),
        }
    }

    /// Every topic nsqlookupd at `lookupd` knows.
    ///
    /// # Errors
    ///
    /// [`HttpError`] when lookupd cannot be asked.
    pub async fn topics(&self, lookupd: &str) -> Result<Vec<String>, HttpError> {
        Ok(self.get::<TopicsResponse>(lookupd, "/topics").await?.topics)
    }

    /// nsqd's `/stats` for `topic` (and `channel`, when given), without the clients.
    ///
    /// # Errors
    ///
    /// [`HttpError`] when nsqd cannot be asked.
    pub async fn stats(
        &self,
        nsqd: &str,
        topic: &str,
        channel: Option<&str>,
    ) -> Result<NsqdStats, HttpError> {
        let mut path = format!("/stats?format=json&topic={}", query_escape(topic));
        if let Some(channel) = channel {
            path.push_str("&channel=");
            path.push_str(&query_escape(channel));
        }
        path.push_str("&include_clients=false");
        self.get(nsqd, &path).await
    }
}

/// What nsqd's `/stats?format=json` says, as far as the tools read it.
///
/// ```
/// let stats: nsq_tools::http::NsqdStats = serde_json::from_str(
///     r#"{"topics":[{"topic_name":"t","channels":[{"channel_name":"c","depth":3}]}]}"#,
/// )?;
/// assert_eq!(stats.topics[0].channels[0].depth, 3);
/// # Ok::<(), serde_json::Error>(())
/// ```
#[derive(Debug, Clone, Default, Deserialize)]
#[non_exhaustive]
pub struct NsqdStats {
    /// The topics.
    #[serde(default)]
    pub topics: Vec<TopicStats>,
}

/// One topic of [`NsqdStats`].
#[derive(Debug, Clone, Default, Deserialize)]
#[non_exhaustive]
pub struct TopicStats {
    /// Its name.
    pub topic_name: String,
    /// Its channels.
    #[serde(default)]
    pub channels: Vec<ChannelStats>,
}

/// One channel of [`TopicStats`]; nsqd's counters.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default)]
pub struct ChannelStats {
    /// Its name.
    pub channel_name: String,
    /// Messages waiting, in memory and on disk.
    pub depth: i64,
    /// Messages waiting on disk.
    pub backend_depth: i64,
    /// Messages delivered and not yet answered.
    pub in_flight_count: i64,
    /// Messages deferred (requeued with a delay, or DPUB).
    pub deferred_count: i64,
    /// Messages requeued.
    pub requeue_count: i64,
    /// Messages whose in-flight time ran out.
    pub timeout_count: i64,
    /// Messages the channel has received.
    pub message_count: i64,
    /// Consumers connected.
    pub client_count: i64,
    /// Whether it is paused.
    pub paused: bool,
}

/// `addr` with `path`, `http://` added when `addr` names no scheme.
fn url(addr: &str, path: &str) -> String {
    let base = addr.trim_end_matches('/');
    if base.starts_with("http://") || base.starts_with("https://") {
        format!("{base}{path}")
    } else {
        format!("http://{base}{path}")
    }
}

/// Percent-encodes what is not unreserved in a query value. Topic and channel names are
/// `[.a-zA-Z0-9_-]` and `#ephemeral`, so only `#` needs it in practice.
fn query_escape(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for b in value.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_and_escapes() {
        assert_eq!(
            url("127.0.0.1:4161", "/topics"),
            "http://127.0.0.1:4161/topics"
        );
        assert_eq!(url("https://l:1/", "/topics"), "https://l:1/topics");
        assert_eq!(query_escape("tail1#ephemeral"), "tail1%23ephemeral");
    }
}
