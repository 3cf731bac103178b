//! Scenarios: the HTTP API, and AUTH against an auth service.

use super::*;

// ---------------------------------------------------------------------------------------------
// HTTP API
// ---------------------------------------------------------------------------------------------

/// Sends each request in order and logs status and body.
pub(super) async fn http_log(addr: SocketAddr, requests: &[(&str, &str, &[u8])], log: &mut Log) {
    for (method, path, body) in requests {
        let (status, text) = http::request_with_body(addr, method, path, body)
            .await
            .expect("HTTP answers");
        log.push(format!("{method} {path}: {status} {}", text.trim_end()));
    }
}

pub(super) async fn http_api(b: Broker) -> Log {
    let mut log = Log::new();
    let binary: Vec<u8> = [
        &2u32.to_be_bytes()[..],
        &2u32.to_be_bytes(),
        b"b1",
        &2u32.to_be_bytes(),
        b"b2",
    ]
    .concat();
    let big = [b'x'; 101];
    let requests: Vec<(&str, &str, &[u8])> = vec![
        ("GET", "/ping", b""),
        ("POST", "/pub?topic=h", b"one"),
        ("POST", "/pub?topic=h&defer=60000", b"deferred"),
        ("POST", "/pub", b"x"),
        ("POST", "/pub?topic=bad!", b"x"),
        ("POST", "/pub?topic=h", b""),
        ("POST", "/pub?topic=h", &big),
        ("POST", "/pub?topic=h&defer=-1", b"x"),
        ("POST", "/pub?topic=h&defer=3600001", b"x"),
        ("POST", "/pub?topic=h&defer=soon", b"x"),
        ("GET", "/pub?topic=h", b"x"),
        ("POST", "/mpub?topic=h", b"t1\nt2\n\nt3"),
        ("POST", "/mpub?topic=h&binary=true", &binary),
        (
            "POST",
            "/mpub?topic=h&binary=true",
            &[0, 0, 0, 2, 0, 0, 0, 9, b'x'],
        ),
        ("POST", "/mpub?topic=h&binary=true", &[0, 0, 0, 0]),
        ("POST", "/mpub?topic=h", &big),
        ("POST", "/mpub?topic=h", b""),
        ("POST", "/mpub", b"x"),
        ("POST", "/topic/create?topic=x", b""),
        ("POST", "/topic/create", b""),
        ("POST", "/topic/create?topic=bad!", b""),
        ("POST", "/channel/create?topic=x&channel=c", b""),
        ("POST", "/channel/create?topic=x", b""),
        ("POST", "/channel/create?topic=x&channel=bad!", b""),
        ("POST", "/channel/create?topic=y&channel=c", b""),
        ("POST", "/topic/pause?topic=x", b""),
        ("POST", "/channel/pause?topic=x&channel=c", b""),
        ("POST", "/pub?topic=x", b"held"),
        ("POST", "/topic/pause?topic=nope", b""),
        ("POST", "/channel/pause?topic=x&channel=nope", b""),
        ("POST", "/topic/empty?topic=nope", b""),
        ("POST", "/channel/empty?topic=x&channel=nope", b""),
        ("POST", "/channel/empty?topic=nope&channel=c", b""),
        ("POST", "/topic/empty?topic=x", b""),
        ("POST", "/topic/unpause?topic=x", b""),
        ("POST", "/channel/unpause?topic=x&channel=c", b""),
        ("POST", "/channel/empty?topic=x&channel=c", b""),
        ("POST", "/channel/delete?topic=x&channel=nope", b""),
        ("POST", "/channel/delete?topic=x&channel=c", b""),
        ("POST", "/topic/delete?topic=nope", b""),
        ("POST", "/topic/delete", b""),
        ("POST", "/topic/delete?topic=y", b""),
        ("GET", "/nope", b""),
    ];
    http_log(b.http_addr(), &requests, &mut log).await;
    for t in ["h", "x", "y"] {
        log.extend(stats_of(&b, t).await);
    }
    log
}

// ---------------------------------------------------------------------------------------------
// AUTH
// ---------------------------------------------------------------------------------------------

pub(super) const SECRET: &str = "s3cret";
pub(super) const IDENTITY_URL: &str = "https://auth.invalid/alice";

/// The grants both brokers apply: publish and subscribe on `allowed`, subscribe only to `ch`.
pub(super) fn grants() -> AuthState {
    let mut state = AuthState::new("alice", Duration::from_secs(3600)).with(
        Authorization::new(
            "^allowed$",
            ["^ch$"],
            [Permission::Publish, Permission::Subscribe],
        )
        .expect("valid patterns"),
    );
    state = state.with(
        Authorization::new("^allowed$", ["^$"], [Permission::Publish]).expect("valid patterns"),
    );
    state.identity_url = IDENTITY_URL.to_owned();
    state
}

/// The auth service `nsqd --auth-http-address` asks: [`grants`] as JSON for [`SECRET`], 403
/// for anything else.
pub(super) async fn auth_service() -> SocketAddr {
    let grant = serde_json::json!({
        "ttl": 3600,
        "identity": "alice",
        "identity_url": IDENTITY_URL,
        "authorizations": [
            {"topic": "^allowed$", "channels": ["^ch$"], "permissions": ["publish", "subscribe"]},
            {"topic": "^allowed$", "channels": ["^$"], "permissions": ["publish"]},
        ],
    });
    nsq_tests::auth::start(SECRET, grant).await
}

pub(super) fn auth(secret: &str) -> Command {
    Command::Auth(Bytes::from(secret.to_owned()))
}

pub(super) async fn auth_disabled(b: Broker) -> Log {
    let mut c = connect(&b).await;
    vec![
        format!("AUTH: {}", reply(&mut c, auth(SECRET)).await),
        render(next(&mut c).await),
    ]
}

pub(super) async fn auth_required(b: Broker) -> Log {
    let mut log = Log::new();
    let mut c = connect(&b).await;
    let r = reply(&mut c, identify(|_| {})).await;
    log.push(format!(
        "auth_required: {}",
        r.contains(r#""auth_required":true"#)
    ));
    log.push(format!(
        "PUB first: {}",
        reply(&mut c, publish("allowed", "x")).await
    ));
    log.push(render(next(&mut c).await));
    let mut c = connect(&b).await;
    log.push(format!(
        "SUB first: {}",
        reply(&mut c, sub("allowed", "ch")).await
    ));
    log.push(render(next(&mut c).await));
    let mut c = connect(&b).await;
    log.push(format!(
        "MPUB first: {}",
        reply(&mut c, mpub("allowed", &["x"])).await
    ));
    log.push(render(next(&mut c).await));
    let mut c = connect(&b).await;
    log.push(format!(
        "wrong secret: {}",
        reply(&mut c, auth("wrong")).await
    ));
    log.push(render(next(&mut c).await));

    let mut c = connect(&b).await;
    log.push(format!("AUTH: {}", reply(&mut c, auth(SECRET)).await));
    log.push(format!("AUTH again: {}", reply(&mut c, auth(SECRET)).await));
    log.push(render(next(&mut c).await));

    let mut c = connect(&b).await;
    reply(&mut c, auth(SECRET)).await;
    log.push(format!(
        "PUB allowed: {}",
        reply(&mut c, publish("allowed", "x")).await
    ));
    log.push(format!(
        "PUB other: {}",
        reply(&mut c, publish("other", "x")).await
    ));
    log.push(render(next(&mut c).await));
    let mut c = connect(&b).await;
    reply(&mut c, auth(SECRET)).await;
    log.push(format!(
        "SUB other channel: {}",
        reply(&mut c, sub("allowed", "nope")).await
    ));
    log.push(render(next(&mut c).await));
    let mut c = connect(&b).await;
    reply(&mut c, auth(SECRET)).await;
    log.push(format!(
        "SUB allowed: {}",
        reply(&mut c, sub("allowed", "ch")).await
    ));
    // nsqd moves the message published before the channel existed to it asynchronously.
    let moved = eventually(|| async {
        let stats = b.stats().await.expect("stats");
        stats.channel("allowed", "ch").is_some_and(|c| c.depth == 1)
    })
    .await;
    log.push(format!("message reached the new channel: {moved}"));
    log.extend(stats_of(&b, "allowed").await);
    log
}
