//! nsqd's HTTP API: `/ping`, `/info`, `/pub`, `/mpub`, `/stats` and the topic and channel
//! actions, answered in nsqd 1.3.0's v1 format (`internal/http_api` `RespondV1`).

use std::fmt::Write as _;
use std::sync::Arc;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{RawQuery, State};
use axum::http::{header, HeaderValue, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use nsq_proto::lookup::{V1_HEADER, V1_HEADER_VALUE};
use nsq_proto::{Channel as ChannelName, Topic as TopicName};
use tokio::net::TcpListener;

use crate::broker::{Broker, TlsRequired};
use crate::lookupd::http::Params;
use crate::topic::Topic;

/// What a handler produced, before `RespondV1` shapes it.
enum Reply {
    Text(&'static str),
    Json(serde_json::Value),
    Empty,
    Error(StatusCode, &'static str),
    /// Text built at request time (the text `/stats`).
    Report(String),
}

impl IntoResponse for Reply {
    fn into_response(self) -> Response {
        let json = "application/json; charset=utf-8";
        let mut response = match self {
            Reply::Text(text) => (
                StatusCode::OK,
                [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
                text,
            )
                .into_response(),
            Reply::Json(value) => (
                StatusCode::OK,
                [(header::CONTENT_TYPE, json)],
                value.to_string(),
            )
                .into_response(),
            Reply::Empty => StatusCode::OK.into_response(),
            Reply::Report(text) => (
                StatusCode::OK,
                [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
                text,
            )
                .into_response(),
            Reply::Error(status, message) => (
                status,
                [(header::CONTENT_TYPE, json)],
                serde_json::json!({ "message": message }).to_string(),
            )
                .into_response(),
        };
        response
            .headers_mut()
            .insert(V1_HEADER, HeaderValue::from_static(V1_HEADER_VALUE));
        response
    }
}

type Shared = Arc<Broker>;

fn router(broker: Shared) -> Router {
    Router::new()
        .route("/ping", get(ping))
        .route("/info", get(info))
        .route("/pub", post(publish))
        .route("/mpub", post(multi_publish))
        .route("/stats", get(stats))
        .route("/topic/create", post(topic_create))
        .route("/topic/delete", post(topic_delete))
        .route("/topic/empty", post(topic_empty))
        .route("/topic/pause", post(topic_pause))
        .route("/topic/unpause", post(topic_pause))
        .route("/channel/create", post(channel_create))
        .route("/channel/delete", post(channel_action))
        .route("/channel/empty", post(channel_action))
        .route("/channel/pause", post(channel_action))
        .route("/channel/unpause", post(channel_action))
        .fallback(|| async { Reply::Error(StatusCode::NOT_FOUND, "NOT_FOUND") })
        .method_not_allowed_fallback(|| async {
            Reply::Error(StatusCode::METHOD_NOT_ALLOWED, "METHOD_NOT_ALLOWED")
        })
        .layer(axum::extract::DefaultBodyLimit::disable())
        .layer(axum::middleware::from_fn_with_state(
            broker.clone(),
            tls_policy,
        ))
        .with_state(broker)
}

/// With `--tls-required=true` nsqd refuses plain HTTP; this broker serves no HTTPS.
async fn tls_policy(
    State(broker): State<Shared>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    if broker.opts.tls_required == TlsRequired::Yes {
        let body = serde_json::json!({ "message": "TLS_REQUIRED", "https_port": -1 });
        let mut response = (
            StatusCode::FORBIDDEN,
            [(header::CONTENT_TYPE, "application/json; charset=utf-8")],
            body.to_string(),
        )
            .into_response();
        response
            .headers_mut()
            .insert(V1_HEADER, HeaderValue::from_static(V1_HEADER_VALUE));
        return response;
    }
    next.run(request).await
}

/// Serves the HTTP API until the broker shuts down.
pub(crate) async fn serve(broker: Shared, listener: TcpListener) {
    let shutdown = broker.shutdown.clone();
    let app = router(broker);
    let served = axum::serve(listener, app)
        .with_graceful_shutdown(async move { shutdown.cancelled().await })
        .await;
    if let Err(err) = served {
        tracing::warn!(%err, "HTTP server stopped");
    }
}

fn params(query: Option<String>) -> Result<Params, Reply> {
    Params::parse(query.as_deref()).ok_or(Reply::Error(StatusCode::BAD_REQUEST, "INVALID_REQUEST"))
}

fn result(r: Result<Reply, Reply>) -> Reply {
    r.unwrap_or_else(|e| e)
}

async fn ping() -> Reply {
    Reply::Text("OK")
}

async fn info(State(broker): State<Shared>) -> Reply {
    let opts = &broker.opts;
    // nsqd 1.3.0 reports -1 when the TCP protocol listens on a unix socket.
    let tcp_port = match opts.tcp_unix_socket {
        Some(_) => -1,
        None => i32::from(broker.tcp_addr.port()),
    };
    let mut info = serde_json::json!({
        "version": opts.server.version,
        "broadcast_address": opts.broadcast_address,
        "hostname": nsq_proto::identify::local_hostname(),
        "http_port": broker.http_addr.port(),
        "tcp_port": tcp_port,
        "start_time": broker.start_time,
        "max_heartbeat_interval": opts.server.max_heartbeat_interval.as_nanos() as u64,
        "max_output_buffer_size": opts.server.max_output_buffer_size,
        "max_output_buffer_timeout": opts.server.max_output_buffer_timeout.as_nanos() as u64,
        "max_deflate_level": opts.server.max_deflate_level,
    });
    if opts.has_topology() {
        // nsq master's fields; nsqd 1.3.0 has none.
        info["topology_region"] = opts.server.topology_region.clone().into();
        info["topology_zone"] = opts.server.topology_zone.clone().into();
    }
    Reply::Json(info)
}

/// Reads a body of at most `max` bytes; `None` when it is longer.
async fn read_body(body: Body, max: usize) -> Result<Option<Bytes>, Reply> {
    match axum::body::to_bytes(body, max.saturating_add(1)).await {
        Ok(bytes) if bytes.len() > max => Ok(None),
        Ok(bytes) => Ok(Some(bytes)),
        Err(err) => {
            // `to_bytes` fails both on a body over the limit and on a broken connection.
            let too_big = std::error::Error::source(&err)
                .is_some_and(|e| e.is::<http_body_util::LengthLimitError>());
            if too_big {
                Ok(None)
            } else {
                Err(Reply::Error(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "INTERNAL_ERROR",
                ))
            }
        }
    }
}

fn content_length(headers: &axum::http::HeaderMap) -> Option<u64> {
    headers
        .get(header::CONTENT_LENGTH)?
        .to_str()
        .ok()?
        .parse()
        .ok()
}

/// nsqd's `getTopicFromQuery`: a present, valid `topic`.
fn topic_arg(params: &Params) -> Result<TopicName, Reply> {
    let name = params
        .get("topic")
        .ok_or(Reply::Error(StatusCode::BAD_REQUEST, "MISSING_ARG_TOPIC"))?;
    TopicName::new(name).map_err(|_| Reply::Error(StatusCode::BAD_REQUEST, "INVALID_TOPIC"))
}

async fn publish(
    State(broker): State<Shared>,
    RawQuery(query): RawQuery,
    headers: axum::http::HeaderMap,
    body: Body,
) -> Reply {
    result(
        async {
            let max = broker.opts.limits.max_msg_size as usize;
            let too_big = Reply::Error(StatusCode::PAYLOAD_TOO_LARGE, "MSG_TOO_BIG");
            if content_length(&headers).is_some_and(|len| len > max as u64) {
                return Err(too_big);
            }
            let body = read_body(body, max).await?.ok_or(too_big)?;
            if body.is_empty() {
                return Err(Reply::Error(StatusCode::BAD_REQUEST, "MSG_EMPTY"));
            }
            let params = params(query)?;
            let topic = topic_arg(&params)?;
            let mut defer = Duration::ZERO;
            if let Some(raw) = params.get("defer") {
                let ms: i64 = raw.parse().map_err(|_| invalid_defer())?;
                let ms = u64::try_from(ms).map_err(|_| invalid_defer())?;
                defer = Duration::from_millis(ms);
                if defer > broker.opts.limits.max_req_timeout {
                    return Err(invalid_defer());
                }
            }
            broker
                .publish(&topic, vec![body], defer)
                .await
                .map_err(put_failed)?;
            Ok(Reply::Text("OK"))
        }
        .await,
    )
}

fn invalid_defer() -> Reply {
    Reply::Error(StatusCode::BAD_REQUEST, "INVALID_DEFER")
}

fn put_failed(err: crate::topic::PutError) -> Reply {
    match err {
        crate::topic::PutError::Exiting => Reply::Error(StatusCode::SERVICE_UNAVAILABLE, "EXITING"),
        crate::topic::PutError::Full(_) => {
            Reply::Error(StatusCode::INTERNAL_SERVER_ERROR, "INTERNAL_ERROR")
        }
    }
}

async fn multi_publish(
    State(broker): State<Shared>,
    RawQuery(query): RawQuery,
    headers: axum::http::HeaderMap,
    body: Body,
) -> Reply {
    result(
        async {
            let limits = broker.opts.limits;
            let (max_msg, max_body) = (limits.max_msg_size as usize, limits.max_body_size as usize);
            let body_too_big = || Reply::Error(StatusCode::PAYLOAD_TOO_LARGE, "BODY_TOO_BIG");
            if content_length(&headers).is_some_and(|len| len > max_body as u64) {
                return Err(body_too_big());
            }
            let params = params(query)?;
            let topic = topic_arg(&params)?;
            // Text mode by default; any `binary` value but the false ones means binary, as in nsqd.
            let binary = params
                .get("binary")
                .is_some_and(|v| !matches!(v, "false" | "0" | "f" | "F" | "FALSE" | "False"));
            let body = read_body(body, max_body).await?.ok_or_else(body_too_big)?;
            let bodies = if binary {
                read_binary_mpub(body, max_msg, max_body)?
            } else {
                let mut bodies = Vec::new();
                for line in body.split(|&b| b == b'\n') {
                    if line.is_empty() {
                        continue;
                    }
                    if line.len() > max_msg {
                        return Err(Reply::Error(StatusCode::PAYLOAD_TOO_LARGE, "MSG_TOO_BIG"));
                    }
                    bodies.push(body.slice_ref(line));
                }
                bodies
            };
            if !bodies.is_empty() {
                broker
                    .publish(&topic, bodies, Duration::ZERO)
                    .await
                    .map_err(put_failed)?;
            }
            Ok(Reply::Text("OK"))
        }
        .await,
    )
}

/// nsqd's `readMPUB` on an HTTP body; errors are its codes without the `E_` prefix, as 413.
fn read_binary_mpub(body: Bytes, max_msg: usize, max_body: usize) -> Result<Vec<Bytes>, Reply> {
    let fail = |code| Reply::Error(StatusCode::PAYLOAD_TOO_LARGE, code);
    let mut rest = body;
    let take_len = |rest: &mut Bytes| -> Option<i32> {
        if rest.len() < 4 {
            return None;
        }
        let len = i32::from_be_bytes([rest[0], rest[1], rest[2], rest[3]]);
        let _ = rest.split_to(4);
        Some(len)
    };
    let count = take_len(&mut rest).ok_or(fail("BAD_BODY"))?;
    let max_messages = (max_body.saturating_sub(4) / 5) as i64;
    if count <= 0 || i64::from(count) > max_messages {
        return Err(fail("BAD_BODY"));
    }
    // Room for what the body can hold (each message takes at least 5 bytes), not for what
    // its count claims: a count of millions in a short body must not reserve megabytes.
    let mut bodies = Vec::with_capacity((count as usize).min(rest.len() / 5));
    for _ in 0..count {
        let len = take_len(&mut rest).ok_or(fail("BAD_MESSAGE"))?;
        if len <= 0 || len as usize > max_msg {
            return Err(fail("BAD_MESSAGE"));
        }
        if rest.len() < len as usize {
            return Err(fail("BAD_MESSAGE"));
        }
        bodies.push(rest.split_to(len as usize));
    }
    Ok(bodies)
}

fn bool_param(value: Option<&str>) -> Option<bool> {
    match value? {
        "true" | "1" | "t" | "T" | "TRUE" | "True" => Some(true),
        "false" | "0" | "f" | "F" | "FALSE" | "False" => Some(false),
        _ => None,
    }
}

async fn stats(State(broker): State<Shared>, RawQuery(query): RawQuery) -> Reply {
    let params = match params(query) {
        Ok(p) => p,
        Err(e) => return e,
    };
    let topic = params.get("topic").filter(|t| !t.is_empty());
    let channel = params.get("channel").filter(|c| !c.is_empty());
    let include_clients = bool_param(params.get("include_clients")).unwrap_or(true);
    let stats = broker.stats(topic, channel, include_clients);
    if params.get("format") == Some("json") {
        return match serde_json::to_value(&stats) {
            Ok(value) => Reply::Json(value),
            Err(_) => Reply::Error(StatusCode::INTERNAL_SERVER_ERROR, "INTERNAL_ERROR"),
        };
    }
    let mut text = format!(
        "nsqd v{} (nsq-server-lite)\nstart_time {}\n\nHealth: {}\n",
        stats.version, stats.start_time, stats.health
    );
    if stats.topics.is_empty() {
        text.push_str("\nTopics: None\n");
    } else {
        text.push_str("\nTopics:");
    }
    for t in &stats.topics {
        let _ = write!(
            text,
            "\n   [{:<15}] depth: {:<5} be-depth: {:<5} msgs: {:<8}\n",
            t.topic_name, t.depth, t.backend_depth, t.message_count
        );
        for c in &t.channels {
            let _ = writeln!(
                text,
                "      [{:<25}] depth: {:<5} be-depth: {:<5} inflt: {:<4} def: {:<4} re-q: {:<5} timeout: {:<5} msgs: {:<8}",
                c.channel_name, c.depth, c.backend_depth, c.in_flight_count, c.deferred_count,
                c.requeue_count, c.timeout_count, c.message_count
            );
            for client in &c.clients {
                let _ = writeln!(
                    text,
                    "        [V2 {:<21}] state: {} inflt: {:<4} rdy: {:<4} fin: {:<8} re-q: {:<8} msgs: {:<8}",
                    client.client_id, client.state, client.in_flight_count, client.ready_count,
                    client.finish_count, client.requeue_count, client.message_count
                );
            }
        }
    }
    Reply::Report(text)
}

async fn topic_create(State(broker): State<Shared>, RawQuery(query): RawQuery) -> Reply {
    let topic = match params(query).and_then(|p| topic_arg(&p)) {
        Ok(topic) => topic,
        Err(reply) => return reply,
    };
    broker.get_or_create_topic(&topic).await;
    Reply::Empty
}

/// The named existing topic: 400 on a missing argument, 404 when absent.
fn existing_topic(broker: &Broker, params: &Params, validate: bool) -> Result<Arc<Topic>, Reply> {
    let name = params
        .get("topic")
        .ok_or(Reply::Error(StatusCode::BAD_REQUEST, "MISSING_ARG_TOPIC"))?;
    if validate && TopicName::new(name).is_err() {
        return Err(Reply::Error(StatusCode::BAD_REQUEST, "INVALID_TOPIC"));
    }
    broker
        .topic(name)
        .ok_or(Reply::Error(StatusCode::NOT_FOUND, "TOPIC_NOT_FOUND"))
}

async fn topic_delete(State(broker): State<Shared>, RawQuery(query): RawQuery) -> Reply {
    result((|| {
        let params = params(query)?;
        let name = params
            .get("topic")
            .ok_or(Reply::Error(StatusCode::BAD_REQUEST, "MISSING_ARG_TOPIC"))?;
        if !broker.delete_topic(name) {
            return Err(Reply::Error(StatusCode::NOT_FOUND, "TOPIC_NOT_FOUND"));
        }
        Ok(Reply::Empty)
    })())
}

async fn topic_empty(State(broker): State<Shared>, RawQuery(query): RawQuery) -> Reply {
    result((|| {
        existing_topic(&broker, &params(query)?, true)?.empty();
        Ok(Reply::Empty)
    })())
}

async fn topic_pause(State(broker): State<Shared>, uri: Uri, RawQuery(query): RawQuery) -> Reply {
    result((|| {
        let topic = existing_topic(&broker, &params(query)?, false)?;
        topic.set_paused(!uri.path().contains("unpause"));
        Ok(Reply::Empty)
    })())
}

/// `http_api.GetTopicChannelArgs`, then the existing topic.
fn topic_channel(
    broker: &Broker,
    query: Option<String>,
) -> Result<(Arc<Topic>, ChannelName), Reply> {
    let params = params(query)?;
    let bad = |text| Reply::Error(StatusCode::BAD_REQUEST, text);
    let topic = params.get("topic").ok_or(bad("MISSING_ARG_TOPIC"))?;
    TopicName::new(topic).map_err(|_| bad("INVALID_ARG_TOPIC"))?;
    let channel = params.get("channel").ok_or(bad("MISSING_ARG_CHANNEL"))?;
    let channel = ChannelName::new(channel).map_err(|_| bad("INVALID_ARG_CHANNEL"))?;
    let topic = broker
        .topic(topic)
        .ok_or(Reply::Error(StatusCode::NOT_FOUND, "TOPIC_NOT_FOUND"))?;
    Ok((topic, channel))
}

async fn channel_create(State(broker): State<Shared>, RawQuery(query): RawQuery) -> Reply {
    let (topic, channel) = match topic_channel(&broker, query) {
        Ok(found) => found,
        Err(reply) => return reply,
    };
    broker.get_or_create_channel(&topic.name, &channel).await;
    Reply::Empty
}

async fn channel_action(
    State(broker): State<Shared>,
    uri: Uri,
    RawQuery(query): RawQuery,
) -> Reply {
    result((|| {
        let (topic, name) = topic_channel(&broker, query)?;
        let channel = topic
            .channel(name.as_str())
            .ok_or(Reply::Error(StatusCode::NOT_FOUND, "CHANNEL_NOT_FOUND"))?;
        match uri.path() {
            "/channel/delete" => {
                broker.delete_channel(&topic, name.as_str());
            }
            "/channel/empty" => channel.empty(),
            "/channel/pause" => channel.set_paused(true),
            _ => channel.set_paused(false),
        }
        Ok(Reply::Empty)
    })())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A binary MPUB whose count claims 2^31 - 1 messages in a body of 8 bytes (allowed by a
    /// body limit of 10 GiB) is refused without reserving room for them: 64 GiB, which this
    /// process could not get, and would abort.
    #[test]
    fn a_binary_mpub_count_reserves_only_what_the_body_can_hold() {
        let max_body = 5 * i32::MAX as usize + 4;
        let count = i32::MAX;
        let mut body = count.to_be_bytes().to_vec();
        body.extend_from_slice(&1i32.to_be_bytes());
        let result = read_binary_mpub(Bytes::from(body), 1024, max_body);
        assert!(matches!(result, Err(Reply::Error(_, "BAD_MESSAGE"))));
    }
}
