//! An AUTH grant lives for its `ttl`: nsq-server-lite asks the auth service again once it
//! expires, and refuses what the new answer no longer allows, with real nsqd 1.3.0's exact
//! replies (the real one is skipped without `NSQD_BIN` unless `CI` is set). Per-topic and
//! per-channel authorizations (regular expressions) are compared with nsqd in
//! `conformance.rs` ("AUTH required").

use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::{SinkExt, StreamExt};
use nsq_proto::{ClientCodec, Command, Frame, Identify, Response, Topic};
use nsq_tests::broker::{Broker, BrokerKind, BrokerOpts, KINDS};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio_util::codec::Framed;

const SECRET: &str = "short-lived";
const WAIT: Duration = Duration::from_secs(10);

/// nsqd 1.3.0's transcript, which the lite broker must give word for word.
const EXPIRY: &[&str] = &[
    "IDENTIFY: auth_required=true",
    "AUTH: DATA {\"identity\":\"tester\",\"identity_url\":\"\",\"permission_count\":1}",
    "PUB t: OK",
    "auth service asked: 1",
    "revoked; first refusal: ERR E_AUTH_FAILED AUTH failed",
    "then: EOF",
    "auth service asked again: true",
];

async fn reply(c: &mut Framed<TcpStream, ClientCodec>, cmd: Command) -> String {
    c.send(cmd).await.expect("send");
    match tokio::time::timeout(WAIT, c.next()).await.expect("a reply") {
        None => "EOF".to_owned(),
        Some(Err(e)) if matches!(&e, nsq_proto::ProtocolError::Io(io) if io.kind() == std::io::ErrorKind::ConnectionReset) => {
            "EOF".to_owned()
        }
        Some(Err(e)) => panic!("undecodable: {e}"),
        Some(Ok(Frame::Response(Response::Ok))) => "OK".to_owned(),
        Some(Ok(Frame::Response(Response::Data(d)))) => {
            format!("DATA {}", String::from_utf8_lossy(&d))
        }
        Some(Ok(Frame::Error(e))) => format!("ERR {e}"),
        Some(Ok(other)) => format!("{other:?}"),
    }
}

async fn expiry(kind: BrokerKind) -> Option<Vec<String>> {
    if !kind.available() {
        return None;
    }
    let grant = serde_json::json!({
        "ttl": 1, "identity": "tester", "identity_url": "",
        "authorizations": [{"topic": "^t$", "channels": [".*"], "permissions": ["publish"]}],
    });
    let service = nsq_tests::auth::serve(SECRET, grant).await;
    let opts = BrokerOpts {
        auth_http_address: Some(service.addr.to_string()),
        ..BrokerOpts::default()
    };
    let broker = Broker::start(kind, &opts).await.unwrap();
    let mut stream = TcpStream::connect(broker.tcp_addr()).await.unwrap();
    stream.write_all(b"  V2").await.unwrap();
    let mut c = Framed::new(stream, ClientCodec::new());
    let mut log = Vec::new();
    let mut identify = Identify::new("auth-grants", "host", "nsq-tests");
    identify.feature_negotiation = true;
    let r = reply(&mut c, Command::Identify(Box::new(identify))).await;
    log.push(format!(
        "IDENTIFY: auth_required={}",
        r.contains(r#""auth_required":true"#)
    ));
    log.push(format!(
        "AUTH: {}",
        reply(&mut c, Command::Auth(Bytes::from(SECRET))).await
    ));
    let topic = Topic::new("t").unwrap();
    let publish = || Command::Pub {
        topic: topic.clone(),
        body: Bytes::from_static(b"x"),
    };
    log.push(format!("PUB t: {}", reply(&mut c, publish()).await));
    log.push(format!("auth service asked: {}", service.requests()));

    // Withdrawn at the service: each PUB is allowed until the grant's ttl runs out and the
    // broker asks again (bounded: the ttl is 1 s).
    service.revoke();
    let deadline = Instant::now() + WAIT;
    let refusal = loop {
        let r = reply(&mut c, publish()).await;
        if r != "OK" {
            break r;
        }
        assert!(
            Instant::now() < deadline,
            "{}: the grant never expired",
            kind.name()
        );
        // The next PUB after a short pause: the expiry is a clock's business.
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    log.push(format!("revoked; first refusal: {refusal}"));
    log.push(format!("then: {}", reply(&mut c, publish()).await));
    log.push(format!(
        "auth service asked again: {}",
        service.requests() >= 2
    ));
    Some(log)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_grant_is_asked_again_and_a_revoked_one_refused_as_nsqd_does() {
    let logs = futures::future::join_all(KINDS.map(expiry)).await;
    for (kind, log) in KINDS.iter().zip(logs) {
        let Some(log) = log else { continue };
        assert_eq!(log, EXPIRY, "{}", kind.name());
    }
}
