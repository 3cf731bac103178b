//! Tests of the whole service over real sockets, and against the real nsqlookupd.

use std::net::SocketAddr;
use std::time::Duration;

use nsq_proto::lookup::{LookupCommand, LookupReply, LookupdInfo, PeerInfo};
use nsq_proto::{Channel, Topic};
use serde_json::Value;

use super::db::Key;
use super::test_support::{http, peer_or_skip, reply_text, RealLookupd, RealNsqd, V1Client};
use super::{Lookupd, ResponseFormat};

const TIMEOUT: Duration = Duration::from_secs(10);

fn peer(name: &str) -> PeerInfo {
    let mut info = PeerInfo::new(name, 4150, 4151, "1.3.0");
    info.hostname = "nsqd-host".into();
    info
}

fn register(topic: &str, channel: Option<&str>) -> LookupCommand {
    LookupCommand::Register {
        topic: Topic::new(topic).unwrap(),
        channel: channel.map(|c| Channel::new(c).unwrap()),
    }
}

fn unregister(topic: &str, channel: Option<&str>) -> LookupCommand {
    LookupCommand::Unregister {
        topic: Topic::new(topic).unwrap(),
        channel: channel.map(|c| Channel::new(c).unwrap()),
    }
}

async fn start() -> Lookupd {
    Lookupd::builder()
        .broadcast_address("127.0.0.1".into())
        .start()
        .await
        .unwrap()
}

async fn json(addr: SocketAddr, target: &str) -> Value {
    let reply = http(addr, "GET", target, true).await;
    assert_eq!(reply.status, 200, "{target}: {}", reply.body);
    serde_json::from_str(&reply.body).unwrap()
}

#[tokio::test]
async fn bad_magic_gets_e_bad_protocol_then_close() {
    let lookupd = start().await;
    let mut stream = tokio::net::TcpStream::connect(lookupd.tcp_addr())
        .await
        .unwrap();
    tokio::io::AsyncWriteExt::write_all(&mut stream, b"  V2")
        .await
        .unwrap();
    let mut raw = Vec::new();
    tokio::io::AsyncReadExt::read_to_end(&mut stream, &mut raw)
        .await
        .unwrap();
    assert_eq!(raw, b"\x00\x00\x00\x0eE_BAD_PROTOCOL");
    let mut client = V1Client::connect(lookupd.tcp_addr()).await;
    assert_eq!(
        client.call(LookupCommand::Ping).await,
        Some(LookupReply::Ok)
    );
}

#[tokio::test]
async fn state_rules_and_fatal_errors_match_nsqlookupd() {
    let lookupd = start().await;
    let addr = lookupd.tcp_addr();
    let mut client = V1Client::connect(addr).await;
    assert_eq!(
        client.call_text(register("t", None)).await,
        "E_INVALID client must IDENTIFY"
    );
    assert!(
        client.reply().await.is_none(),
        "errors close the connection"
    );

    // Before IDENTIFY the state error wins over a parameter error.
    let mut client = V1Client::connect(addr).await;
    assert_eq!(
        reply_text(client.call_raw(b"UNREGISTER\n").await),
        "E_INVALID client must IDENTIFY"
    );

    let mut client = V1Client::connect(addr).await;
    let missing = LookupCommand::Identify(PeerInfo::new("", 4150, 4151, "1.3.0"));
    assert_eq!(
        client.call_text(missing).await,
        "E_BAD_BODY IDENTIFY missing fields"
    );

    let mut client = V1Client::connect(addr).await;
    assert_eq!(
        reply_text(client.call_raw(b"NOPE x\n").await),
        "E_INVALID invalid command NOPE"
    );

    let mut client = V1Client::connect(addr).await;
    let reply = client.call_text(LookupCommand::Identify(peer("a"))).await;
    let info = LookupdInfo::parse(reply.as_bytes()).unwrap();
    assert_eq!(info.broadcast_address, "127.0.0.1");
    assert_eq!(info.tcp_port, addr.port());
    assert_eq!(info.http_port, lookupd.http_addr().port());
    assert_eq!(info.version, "1.3.0");
    assert_eq!(
        reply_text(client.call_raw(b"REGISTER t bad:name\n").await),
        "E_BAD_CHANNEL REGISTER channel name 'bad:name' is not valid"
    );

    let mut client = V1Client::connect(addr).await;
    client
        .call(LookupCommand::Identify(peer("a")))
        .await
        .unwrap();
    assert_eq!(
        client.call_text(LookupCommand::Identify(peer("a"))).await,
        "E_INVALID cannot IDENTIFY again"
    );
}

#[tokio::test]
async fn register_unregister_and_close_follow_nsqlookupd_rules() {
    let lookupd = start().await;
    let mut client = V1Client::connect(lookupd.tcp_addr()).await;
    client
        .call(LookupCommand::Identify(peer("a")))
        .await
        .unwrap();
    for cmd in [
        register("t", Some("c")),
        register("t", Some("e#ephemeral")),
        register("u", None),
    ] {
        assert_eq!(client.call(cmd).await, Some(LookupReply::Ok));
    }
    let found = json(lookupd.http_addr(), "/lookup?topic=t").await;
    assert_eq!(found["channels"], serde_json::json!(["c", "e#ephemeral"]));
    assert_eq!(found["producers"][0]["broadcast_address"], "a");
    assert_eq!(found["producers"][0]["hostname"], "nsqd-host");

    assert_eq!(
        client.call(unregister("t", Some("e#ephemeral"))).await,
        Some(LookupReply::Ok)
    );
    assert_eq!(
        json(lookupd.http_addr(), "/channels?topic=t").await,
        serde_json::json!({"channels": ["c"]})
    );
    assert_eq!(
        client.call(unregister("u", None)).await,
        Some(LookupReply::Ok)
    );
    let found = json(lookupd.http_addr(), "/lookup?topic=u").await;
    assert_eq!(found, serde_json::json!({"channels": [], "producers": []}));

    drop(client);
    tokio::time::timeout(
        TIMEOUT,
        lookupd.wait_until(|db| db.producer_count(&Key::Client) == Some(0)),
    )
    .await
    .unwrap();
    let found = json(lookupd.http_addr(), "/lookup?topic=t").await;
    assert_eq!(
        found,
        serde_json::json!({"channels": ["c"], "producers": []})
    );
    assert_eq!(
        json(lookupd.http_addr(), "/nodes").await,
        serde_json::json!({"producers": []})
    );
}

#[tokio::test(start_paused = true)]
async fn inactive_producer_timeout_and_tombstones_apply_to_lookup_and_nodes() {
    // No timers run in this test, so paused time only moves when advanced.
    let lookupd = start().await;
    let http_addr = lookupd.http_addr();
    let mut client = V1Client::connect(lookupd.tcp_addr()).await;
    client
        .call(LookupCommand::Identify(peer("a")))
        .await
        .unwrap();
    client.call(register("t", None)).await.unwrap();
    let tombstone = http(
        http_addr,
        "POST",
        "/topic/tombstone?topic=t&node=a:4151",
        true,
    )
    .await;
    assert_eq!((tombstone.status, tombstone.body.as_str()), (200, ""));
    assert_eq!(
        json(http_addr, "/lookup?topic=t").await["producers"],
        serde_json::json!([])
    );
    assert_eq!(
        json(http_addr, "/nodes").await["producers"][0]["tombstones"],
        serde_json::json!([true])
    );
    tokio::time::advance(super::DEFAULT_TOMBSTONE_LIFETIME).await;
    assert_eq!(
        json(http_addr, "/lookup?topic=t").await["producers"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
    assert_eq!(
        json(http_addr, "/nodes").await["producers"][0]["tombstones"],
        serde_json::json!([false])
    );

    // A PING restarts the inactivity clock; without one the producer disappears.
    tokio::time::advance(Duration::from_secs(200)).await;
    assert_eq!(
        client.call(LookupCommand::Ping).await,
        Some(LookupReply::Ok)
    );
    tokio::time::advance(super::DEFAULT_INACTIVE_PRODUCER_TIMEOUT).await;
    assert_eq!(
        json(http_addr, "/lookup?topic=t").await["producers"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
    tokio::time::advance(Duration::from_millis(1)).await;
    assert_eq!(
        json(http_addr, "/lookup?topic=t").await["producers"],
        serde_json::json!([])
    );
    assert_eq!(
        json(http_addr, "/nodes").await,
        serde_json::json!({"producers": []})
    );
}

#[tokio::test]
async fn http_answers_v1_and_legacy_shapes() {
    let lookupd = Lookupd::builder()
        .response_format(ResponseFormat::Negotiate)
        .start()
        .await
        .unwrap();
    let addr = lookupd.http_addr();
    assert_eq!(
        http(addr, "POST", "/topic/create?topic=t", true)
            .await
            .status,
        200
    );

    let v1 = http(addr, "GET", "/topics", true).await;
    assert_eq!(v1.body, r#"{"topics":["t"]}"#);
    assert_eq!(v1.nsq_content_type.as_deref(), Some("nsq; version=1.0"));
    assert_eq!(
        v1.content_type.as_deref(),
        Some("application/json; charset=utf-8")
    );
    let legacy = http(addr, "GET", "/topics", false).await;
    assert_eq!(
        legacy.body,
        r#"{"status_code":200,"status_txt":"OK","data":{"topics":["t"]}}"#
    );
    assert_eq!(legacy.nsq_content_type, None);

    let v1 = http(addr, "GET", "/lookup?topic=nope", true).await;
    assert_eq!(
        (v1.status, v1.body.as_str()),
        (404, r#"{"message":"TOPIC_NOT_FOUND"}"#)
    );
    let legacy = http(addr, "GET", "/lookup?topic=nope", false).await;
    assert_eq!(legacy.status, 500);
    assert_eq!(
        legacy.body,
        r#"{"status_code":500,"status_txt":"TOPIC_NOT_FOUND","data":null}"#
    );

    // The default answers v1 whatever the request asks, as nsqlookupd 1.x.
    let modern = start().await;
    let v1 = http(modern.http_addr(), "GET", "/topics", false).await;
    assert_eq!(
        (v1.body.as_str(), v1.nsq_content_type.as_deref()),
        (r#"{"topics":[]}"#, Some("nsq; version=1.0"))
    );
}

#[tokio::test]
async fn http_argument_errors_and_unknown_routes() {
    let lookupd = start().await;
    let addr = lookupd.http_addr();
    let cases = [
        ("GET", "/lookup", 400, r#"{"message":"MISSING_ARG_TOPIC"}"#),
        (
            "GET",
            "/lookup?topic=a;b",
            400,
            r#"{"message":"INVALID_REQUEST"}"#,
        ),
        (
            "GET",
            "/channels",
            400,
            r#"{"message":"MISSING_ARG_TOPIC"}"#,
        ),
        ("GET", "/channels?topic=nope", 200, r#"{"channels":[]}"#),
        (
            "POST",
            "/topic/create?topic=bad!",
            400,
            r#"{"message":"INVALID_ARG_TOPIC"}"#,
        ),
        (
            "POST",
            "/channel/create?topic=t",
            400,
            r#"{"message":"MISSING_ARG_CHANNEL"}"#,
        ),
        (
            "POST",
            "/channel/create?topic=t&channel=x:y",
            400,
            r#"{"message":"INVALID_ARG_CHANNEL"}"#,
        ),
        ("POST", "/channel/create?topic=t&channel=c", 200, ""),
        (
            "GET",
            "/lookup?topic=t",
            200,
            r#"{"channels":["c"],"producers":[]}"#,
        ),
        (
            "POST",
            "/channel/delete?topic=t&channel=zz",
            404,
            r#"{"message":"CHANNEL_NOT_FOUND"}"#,
        ),
        ("POST", "/channel/delete?topic=t&channel=c", 200, ""),
        (
            "POST",
            "/topic/tombstone?topic=t",
            400,
            r#"{"message":"MISSING_ARG_NODE"}"#,
        ),
        ("POST", "/topic/delete?topic=t", 200, ""),
        (
            "GET",
            "/lookup?topic=t",
            404,
            r#"{"message":"TOPIC_NOT_FOUND"}"#,
        ),
        (
            "GET",
            "/topic/create?topic=t",
            405,
            r#"{"message":"METHOD_NOT_ALLOWED"}"#,
        ),
        ("GET", "/nope", 404, r#"{"message":"NOT_FOUND"}"#),
        ("GET", "/info", 200, r#"{"version":"1.3.0"}"#),
        ("GET", "/ping", 200, "OK"),
    ];
    for (method, target, status, body) in cases {
        let reply = http(addr, method, target, true).await;
        assert_eq!(
            (reply.status, reply.body.as_str()),
            (status, body),
            "{method} {target}"
        );
    }
}

#[tokio::test]
async fn shutdown_closes_connections_and_frees_ports() {
    let lookupd = start().await;
    let (tcp, http_addr) = (lookupd.tcp_addr(), lookupd.http_addr());
    let mut client = V1Client::connect(tcp).await;
    assert_eq!(
        client.call(LookupCommand::Ping).await,
        Some(LookupReply::Ok)
    );
    tokio::time::timeout(TIMEOUT, lookupd.shutdown())
        .await
        .unwrap();
    assert!(client.reply().await.is_none());
    let again = Lookupd::builder()
        .tcp_address(tcp)
        .http_address(http_addr)
        .start()
        .await;
    assert!(again.is_ok());
}

/// Sorts string arrays, pairs `/nodes` topics with their tombstones, and blanks the
/// fields that differ between runs (ports of remote addresses, host names).
fn normalise(value: &mut Value) {
    match value {
        Value::Object(map) => {
            if let (Some(Value::Array(topics)), Some(Value::Array(tombstones))) =
                (map.get("topics"), map.get("tombstones"))
            {
                let mut pairs: Vec<Value> = topics
                    .iter()
                    .zip(tombstones)
                    .map(|(t, d)| Value::Array(vec![t.clone(), d.clone()]))
                    .collect();
                pairs.sort_by_key(Value::to_string);
                map.remove("tombstones");
                map.insert("topics".into(), Value::Array(pairs));
            }
            for (key, field) in map.iter_mut() {
                if key == "remote_address" || key == "hostname" {
                    *field = Value::String("<volatile>".into());
                } else {
                    normalise(field);
                }
            }
        }
        Value::Array(items) => {
            items.iter_mut().for_each(normalise);
            items.sort_by_key(Value::to_string);
        }
        _ => {}
    }
}

/// The same conversation, observed as text lines.
async fn scenario(tcp: SocketAddr, http_addr: SocketAddr) -> Vec<String> {
    let mut seen = Vec::new();
    let mut note = |what: &str, text: String| seen.push(format!("{what} => {text}"));

    let mut stream = tokio::net::TcpStream::connect(tcp).await.unwrap();
    tokio::io::AsyncWriteExt::write_all(&mut stream, b"  V9")
        .await
        .unwrap();
    let mut raw = Vec::new();
    tokio::io::AsyncReadExt::read_to_end(&mut stream, &mut raw)
        .await
        .unwrap();
    note("bad magic", String::from_utf8_lossy(&raw).into_owned());

    let mut c = V1Client::connect(tcp).await;
    note("register first", c.call_text(register("t1", None)).await);
    note("then", reply_text(c.reply().await));
    let mut c = V1Client::connect(tcp).await;
    note("empty line", reply_text(c.call_raw(b"\n").await));
    let mut c = V1Client::connect(tcp).await;
    note(
        "identify missing",
        c.call_text(LookupCommand::Identify(PeerInfo::new("h", 0, 1, "v")))
            .await,
    );
    let mut c = V1Client::connect(tcp).await;
    note(
        "identify bad json",
        reply_text(c.call_raw(b"IDENTIFY\n\x00\x00\x00\x01{").await),
    );

    let mut c = V1Client::connect(tcp).await;
    note(
        "ping before identify",
        c.call_text(LookupCommand::Ping).await,
    );
    let reply = c
        .call_text(LookupCommand::Identify(peer("127.0.0.1")))
        .await;
    let mut reply: Value = serde_json::from_str(&reply).unwrap();
    normalise(&mut reply);
    // The lookupd's own ports differ between the two.
    reply["tcp_port"] = Value::from(0);
    reply["http_port"] = Value::from(0);
    note("identify", reply.to_string());
    for cmd in [
        register("t1", Some("c1")),
        register("t1", Some("e#ephemeral")),
        register("t2", None),
        register("t3#ephemeral", None),
        LookupCommand::Ping,
    ] {
        note(&format!("{cmd:?}"), c.call_text(cmd).await);
    }
    note(
        "register spaces",
        reply_text(c.call_raw(b"REGISTER t4  c\n").await),
    );

    let get = |target: &'static str| async move {
        let reply = http(http_addr, "GET", target, true).await;
        let body = match serde_json::from_str::<Value>(&reply.body) {
            Ok(mut value) => {
                normalise(&mut value);
                value.to_string()
            }
            Err(_) => reply.body.clone(),
        };
        format!(
            "{} {:?} {:?} {body}",
            reply.status, reply.content_type, reply.nsq_content_type
        )
    };
    let post = |target: &'static str| async move {
        let reply = http(http_addr, "POST", target, true).await;
        format!(
            "{} {:?} {:?} {}",
            reply.status, reply.content_type, reply.nsq_content_type, reply.body
        )
    };
    for target in [
        "/ping",
        "/info",
        "/lookup?topic=t1",
        "/lookup?topic=nope",
        "/lookup",
        "/topics",
        "/channels?topic=t1",
        "/channels?topic=nope",
        "/nodes",
        "/nope",
    ] {
        note(target, get(target).await);
    }
    for target in [
        "/topic/create?topic=bad!",
        "/topic/create?topic=t5",
        "/channel/create?topic=t5&channel=c",
        "/channel/delete?topic=t5&channel=zz",
        "/channel/delete?topic=t5&channel=c",
        "/topic/delete?topic=t5",
        "/topic/tombstone?topic=t1&node=127.0.0.1:4151",
    ] {
        note(target, post(target).await);
    }
    note("GET /topic/create", get("/topic/create?topic=x").await);
    for target in ["/lookup?topic=t1", "/nodes"] {
        note(&format!("after tombstone {target}"), get(target).await);
    }
    for cmd in [
        unregister("t1", Some("e#ephemeral")),
        unregister("t2", None),
        unregister("t3#ephemeral", None),
    ] {
        note(&format!("{cmd:?}"), c.call_text(cmd).await);
    }
    for target in ["/topics", "/channels?topic=t1"] {
        note(&format!("after unregister {target}"), get(target).await);
    }
    drop(c);
    // The server notices the close on its own time: poll until /nodes is empty.
    let deadline = tokio::time::Instant::now() + TIMEOUT;
    while !get("/nodes").await.contains(r#"{"producers":[]}"#) {
        assert!(tokio::time::Instant::now() < deadline, "close not noticed");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    for target in ["/lookup?topic=t1", "/topics"] {
        note(&format!("after close {target}"), get(target).await);
    }
    seen
}

#[tokio::test]
async fn same_observable_replies_as_real_nsqlookupd() {
    let Some(bin) = peer_or_skip("NSQLOOKUPD_BIN") else {
        return;
    };
    let real = RealLookupd::start(&bin);
    let lite = start().await;
    let expected = scenario(real.tcp_addr, real.http_addr).await;
    let actual = scenario(lite.tcp_addr(), lite.http_addr()).await;
    for (expected, actual) in expected.iter().zip(&actual) {
        assert_eq!(actual, expected);
    }
    assert_eq!(actual.len(), expected.len());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn real_nsqd_registers_with_the_lite_lookupd() {
    let Some(bin) = peer_or_skip("NSQD_BIN") else {
        return;
    };
    let lookupd = start().await;
    let nsqd = RealNsqd::start(&bin, lookupd.tcp_addr());
    let created = http(nsqd.http_addr, "POST", "/topic/create?topic=interop", true).await;
    assert_eq!(created.status, 200, "{}", created.body);
    let created = http(
        nsqd.http_addr,
        "POST",
        "/channel/create?topic=interop&channel=ch",
        true,
    )
    .await;
    assert_eq!(created.status, 200, "{}", created.body);
    let key = Key::Channel("interop".into(), "ch".into());
    tokio::time::timeout(
        TIMEOUT,
        lookupd.wait_until(|db| db.producer_count(&key) == Some(1)),
    )
    .await
    .expect("nsqd registered its channel");
    let found = json(lookupd.http_addr(), "/lookup?topic=interop").await;
    assert_eq!(found["channels"], serde_json::json!(["ch"]));
    let producer = &found["producers"][0];
    assert_eq!(producer["broadcast_address"], "127.0.0.1");
    assert_eq!(producer["tcp_port"], nsqd.tcp_addr.port());
    assert_eq!(producer["http_port"], nsqd.http_addr.port());
    assert_eq!(producer["version"], "1.3.0");
}
