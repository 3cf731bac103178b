//! The HTTP API, answered as nsqlookupd 1.3.0's `internal/http_api` does.

use std::sync::Arc;

use axum::extract::{RawQuery, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use nsq_proto::lookup::{ChannelsResponse, InfoResponse, TopicsResponse, ACCEPT_V1};
use nsq_proto::lookup::{V1_HEADER, V1_HEADER_VALUE};
use nsq_proto::{Channel, Topic};
use serde::Serialize;
use tokio::time::Instant;

use super::db::Key;
use super::{ResponseFormat, Shared, VERSION};

/// The content type `RespondV1` sets on JSON.
const JSON: &str = "application/json; charset=utf-8";

/// The router with every nsqlookupd route.
pub(super) fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/ping", get(ping))
        .route("/info", get(info))
        .route("/lookup", get(lookup))
        .route("/topics", get(topics))
        .route("/channels", get(channels))
        .route("/nodes", get(nodes))
        .route("/topic/create", post(create_topic))
        .route("/topic/delete", post(delete_topic))
        .route("/channel/create", post(create_channel))
        .route("/channel/delete", post(delete_channel))
        .route("/topic/tombstone", post(tombstone_topic_producer))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .with_state(shared)
}

/// What a handler produced before it is put in a response shape.
enum Outcome {
    /// 200 with a JSON body (fields in the order nsqlookupd writes them).
    Json(String),
    /// 200 with an empty body.
    Empty,
    /// An error: the status and its text (`TOPIC_NOT_FOUND`, ...).
    Error(StatusCode, &'static str),
}

impl Outcome {
    fn json(value: impl Serialize) -> Self {
        match serde_json::to_string(&value) {
            Ok(value) => Outcome::Json(value),
            Err(_) => Outcome::Error(StatusCode::INTERNAL_SERVER_ERROR, "INTERNAL_ERROR"),
        }
    }

    /// nsqlookupd's `RespondV1`: bare JSON (or empty) on 200, `{"message":..}` otherwise,
    /// always with `X-NSQ-Content-Type`.
    fn v1(self) -> Response {
        let (status, body) = match self {
            Outcome::Json(json) => (StatusCode::OK, Some(json)),
            Outcome::Empty => (StatusCode::OK, None),
            Outcome::Error(status, text) => (
                status,
                Some(serde_json::json!({ "message": text }).to_string()),
            ),
        };
        let mut response = match body {
            Some(body) => (status, [(header::CONTENT_TYPE, JSON)], body).into_response(),
            None => status.into_response(),
        };
        response
            .headers_mut()
            .insert(V1_HEADER, HeaderValue::from_static(V1_HEADER_VALUE));
        response
    }

    /// The pre-1.0 wrapper: `{"status_code","status_txt","data"}`, and every error as 500.
    fn legacy(self) -> Response {
        let (status, text, data) = match self {
            Outcome::Json(json) => (StatusCode::OK, "OK", json),
            Outcome::Empty => (StatusCode::OK, "OK", "null".to_owned()),
            Outcome::Error(_, text) => (StatusCode::INTERNAL_SERVER_ERROR, text, "null".to_owned()),
        };
        let body = format!(
            r#"{{"status_code":{},"status_txt":{},"data":{data}}}"#,
            status.as_u16(),
            serde_json::Value::from(text),
        );
        (status, [(header::CONTENT_TYPE, JSON)], body).into_response()
    }

    /// The shape a negotiating route answers in: v1 when asked for it (or when the
    /// lookupd never negotiates), legacy otherwise.
    fn negotiated(self, shared: &Shared, headers: &HeaderMap) -> Response {
        let wants_v1 = headers
            .get(header::ACCEPT)
            .is_some_and(|accept| accept.as_bytes() == ACCEPT_V1.as_bytes());
        match shared.format {
            ResponseFormat::Negotiate if !wants_v1 => self.legacy(),
            _ => self.v1(),
        }
    }
}

/// The query string as Go's `url.ParseQuery` reads it: the first value of each key.
#[derive(Debug, Default)]
pub(crate) struct Params(Vec<(String, String)>);

impl Params {
    /// `None` when Go would fail to parse it (a `;`, or a bad `%` escape).
    pub(crate) fn parse(query: Option<&str>) -> Option<Self> {
        let mut params = Vec::new();
        for pair in query.unwrap_or_default().split('&') {
            if pair.is_empty() {
                continue;
            }
            if pair.contains(';') {
                return None;
            }
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            params.push((unescape(key)?, unescape(value)?));
        }
        Some(Params(params))
    }

    /// Every pair, in the query's order.
    #[cfg(feature = "fuzzing")]
    pub(crate) fn into_pairs(self) -> Vec<(String, String)> {
        self.0
    }

    pub(crate) fn get(&self, key: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, value)| value.as_str())
    }
}

/// Go's `url.QueryUnescape`: `+` is a space, `%XX` a byte.
fn unescape(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        match b {
            b'%' => {
                // Two hex digits, nothing else: `u8::from_str_radix` would also take a sign
                // (`%+4`), which Go refuses.
                let (hi, lo) = (
                    hex_digit(*bytes.get(i + 1)?)?,
                    hex_digit(*bytes.get(i + 2)?)?,
                );
                out.push(hi << 4 | lo);
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            _ => {
                out.push(b);
                i += 1;
            }
        }
    }
    Some(String::from_utf8_lossy(&out).into_owned())
}

/// The value of one hex digit (either case), as Go's `unhex`; `None` for anything else.
fn hex_digit(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

/// The parsed query, or the outcome for an unparseable one.
fn params(query: Option<String>) -> Result<Params, Outcome> {
    Params::parse(query.as_deref())
        .ok_or(Outcome::Error(StatusCode::BAD_REQUEST, "INVALID_REQUEST"))
}

/// The `topic` parameter, present but not validated (as `/lookup` and `/channels` do).
fn topic_param(params: &Params) -> Result<&str, Outcome> {
    params
        .get("topic")
        .ok_or(Outcome::Error(StatusCode::BAD_REQUEST, "MISSING_ARG_TOPIC"))
}

/// `http_api.GetTopicChannelArgs`: a valid topic and a valid channel.
fn topic_channel_args(params: &Params) -> Result<(String, String), Outcome> {
    let bad = |text| Outcome::Error(StatusCode::BAD_REQUEST, text);
    let topic = topic_param(params)?;
    Topic::new(topic).map_err(|_| bad("INVALID_ARG_TOPIC"))?;
    let channel = params.get("channel").ok_or(bad("MISSING_ARG_CHANNEL"))?;
    Channel::new(channel).map_err(|_| bad("INVALID_ARG_CHANNEL"))?;
    Ok((topic.to_owned(), channel.to_owned()))
}

fn outcome(result: Result<Outcome, Outcome>) -> Outcome {
    result.unwrap_or_else(|err| err)
}

async fn ping() -> Response {
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        "OK",
    )
        .into_response()
}

async fn info() -> Response {
    Outcome::json(InfoResponse {
        version: VERSION.to_owned(),
    })
    .v1()
}

async fn lookup(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Response {
    let result = params(query).and_then(|params| {
        let topic = topic_param(&params)?;
        shared
            .read(|db| db.lookup(topic, shared.lifetimes, Instant::now()))
            .map(Outcome::json)
            .ok_or(Outcome::Error(StatusCode::NOT_FOUND, "TOPIC_NOT_FOUND"))
    });
    outcome(result).negotiated(&shared, &headers)
}

async fn topics(State(shared): State<Arc<Shared>>, headers: HeaderMap) -> Response {
    let topics = shared.read(|db| db.topics());
    Outcome::json(TopicsResponse { topics }).negotiated(&shared, &headers)
}

async fn channels(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Response {
    let result = params(query).and_then(|params| {
        let topic = topic_param(&params)?;
        let channels = shared.read(|db| db.channels(topic));
        Ok(Outcome::json(ChannelsResponse { channels }))
    });
    outcome(result).negotiated(&shared, &headers)
}

async fn nodes(State(shared): State<Arc<Shared>>, headers: HeaderMap) -> Response {
    let nodes = shared.read(|db| db.nodes(shared.lifetimes, Instant::now()));
    Outcome::json(nodes).negotiated(&shared, &headers)
}

async fn create_topic(State(shared): State<Arc<Shared>>, RawQuery(query): RawQuery) -> Response {
    let result = params(query).and_then(|params| {
        let topic = topic_param(&params)?;
        Topic::new(topic)
            .map_err(|_| Outcome::Error(StatusCode::BAD_REQUEST, "INVALID_ARG_TOPIC"))?;
        shared.update(|db| db.add_registration(Key::Topic(topic.to_owned())));
        Ok(Outcome::Empty)
    });
    outcome(result).v1()
}

async fn delete_topic(State(shared): State<Arc<Shared>>, RawQuery(query): RawQuery) -> Response {
    let result = params(query).and_then(|params| {
        let topic = topic_param(&params)?;
        shared.update(|db| db.delete_topic(topic));
        Ok(Outcome::Empty)
    });
    outcome(result).v1()
}

async fn create_channel(State(shared): State<Arc<Shared>>, RawQuery(query): RawQuery) -> Response {
    let result = params(query).and_then(|params| {
        let (topic, channel) = topic_channel_args(&params)?;
        shared.update(|db| {
            db.add_registration(Key::Channel(topic.clone(), channel));
            db.add_registration(Key::Topic(topic));
        });
        Ok(Outcome::Empty)
    });
    outcome(result).v1()
}

async fn delete_channel(State(shared): State<Arc<Shared>>, RawQuery(query): RawQuery) -> Response {
    let result = params(query).and_then(|params| {
        let (topic, channel) = topic_channel_args(&params)?;
        if shared.update(|db| db.delete_channel(&topic, &channel)) {
            Ok(Outcome::Empty)
        } else {
            Err(Outcome::Error(StatusCode::NOT_FOUND, "CHANNEL_NOT_FOUND"))
        }
    });
    outcome(result).v1()
}

async fn tombstone_topic_producer(
    State(shared): State<Arc<Shared>>,
    RawQuery(query): RawQuery,
) -> Response {
    let result = params(query).and_then(|params| {
        let topic = topic_param(&params)?;
        let node = params
            .get("node")
            .ok_or(Outcome::Error(StatusCode::BAD_REQUEST, "MISSING_ARG_NODE"))?;
        shared.update(|db| db.tombstone(topic, node, Instant::now()));
        Ok(Outcome::Empty)
    });
    outcome(result).v1()
}

async fn not_found() -> Response {
    Outcome::Error(StatusCode::NOT_FOUND, "NOT_FOUND").v1()
}

async fn method_not_allowed() -> Response {
    Outcome::Error(StatusCode::METHOD_NOT_ALLOWED, "METHOD_NOT_ALLOWED").v1()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn params_follow_go_parse_query() {
        let params = Params::parse(Some("topic=a%2Eb&topic=x&channel=&empty&sp=a+b")).unwrap();
        assert_eq!(params.get("topic"), Some("a.b"));
        assert_eq!(params.get("channel"), Some(""));
        assert_eq!(params.get("empty"), Some(""));
        assert_eq!(params.get("sp"), Some("a b"));
        assert_eq!(params.get("missing"), None);
        assert!(Params::parse(Some("topic=a;b")).is_none());
        assert!(Params::parse(Some("topic=%zz")).is_none());
        assert!(Params::parse(Some("topic=%4")).is_none());
        assert!(Params::parse(None).unwrap().get("topic").is_none());
    }

    #[test]
    fn an_escape_is_two_hex_digits_and_nothing_else() {
        // Found by the lookupd_http fuzz target: `%+4` was read as byte 4.
        for bad in [
            "topic=%+4",
            "topic=%-4",
            "topic=%+F",
            "t%+1=x",
            "topic=% 4",
            "topic=%4g",
        ] {
            assert!(Params::parse(Some(bad)).is_none(), "{bad:?}");
        }
        let params = Params::parse(Some("a=%41%4a%4A%7e&b=%00")).unwrap();
        assert_eq!(params.get("a"), Some("AJJ~"));
        assert_eq!(params.get("b"), Some("\0"));
    }
}
