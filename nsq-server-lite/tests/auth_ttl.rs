//! AUTH answers whose TTL is absurdly long (a hostile or buggy auth service): the broker must
//! neither panic computing the expiry nor treat the grant as expired and ask again early.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::{SinkExt, StreamExt};
use nsq_proto::{ClientCodec, Command, Frame, Identify, Response, Topic};
use nsq_server_lite::auth::{
    AuthFuture, AuthRequest, AuthState, Authenticator, Authorization, Permission,
};
use nsq_server_lite::Nsqd;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio::time::timeout;
use tokio_util::codec::Framed;

type Conn = Framed<TcpStream, ClientCodec>;

/// Virtual (or real) time any one wait may take.
const WAIT: Duration = Duration::from_secs(30);

/// Grants publishing on every topic for `ttl`, and counts how often it was asked.
#[derive(Debug)]
struct CountingAuth {
    ttl: Duration,
    calls: Arc<AtomicUsize>,
}

impl Authenticator for CountingAuth {
    fn authenticate(&self, _: AuthRequest) -> AuthFuture<'_> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        let grant = Authorization::new(".*", [".*"], [Permission::Publish]);
        let state = grant.map(|grant| AuthState::new("svc", self.ttl).with(grant));
        Box::pin(async move {
            state.map_err(|e| nsq_server_lite::auth::AuthError::Invalid(e.to_string()))
        })
    }
}

async fn next_frame(conn: &mut Conn) -> Option<Frame> {
    match timeout(WAIT, conn.next()).await {
        Ok(Some(Ok(frame))) => Some(frame),
        Ok(Some(Err(e))) => panic!("bad frame: {e}"),
        Ok(None) => None,
        Err(_) => panic!("nothing within {WAIT:?}"),
    }
}

/// Connects, IDENTIFYs without heartbeats (so that no read deadline ends the connection
/// while the clock jumps) and AUTHs.
async fn authed(nsqd: &Nsqd) -> Conn {
    let mut stream = TcpStream::connect(nsqd.tcp_addr()).await.expect("connect");
    stream.write_all(b"  V2").await.expect("magic");
    let mut conn = Framed::new(stream, ClientCodec::new());
    let identify = Identify::new("ttl", "host", "tests").with_heartbeat_interval(None);
    conn.send(Command::Identify(Box::new(identify)))
        .await
        .expect("send");
    let reply = next_frame(&mut conn).await;
    assert!(
        matches!(&reply, Some(Frame::Response(Response::Data(_)))),
        "IDENTIFY: {reply:?}"
    );
    conn.send(Command::Auth(Bytes::from_static(b"secret")))
        .await
        .expect("send");
    let reply = next_frame(&mut conn).await;
    match &reply {
        Some(Frame::Response(Response::Data(json))) => {
            let text = String::from_utf8_lossy(json);
            assert!(text.contains(r#""permission_count":1"#), "AUTH: {text}");
        }
        other => panic!("AUTH: wanted its JSON reply, got {other:?}"),
    }
    conn
}

async fn publish_ok(conn: &mut Conn) {
    conn.send(Command::Pub {
        topic: Topic::new("t").expect("valid"),
        body: Bytes::from_static(b"m"),
    })
    .await
    .expect("send");
    assert_eq!(
        next_frame(conn).await,
        Some(Frame::Response(Response::Ok)),
        "PUB after AUTH"
    );
}

#[tokio::test(start_paused = true)]
async fn an_auth_ttl_beyond_the_clock_neither_panics_nor_expires() {
    for ttl in [
        Duration::MAX,
        Duration::from_secs(u64::MAX),
        Duration::from_secs(i64::MAX.unsigned_abs()),
    ] {
        let calls = Arc::new(AtomicUsize::new(0));
        let auth = CountingAuth {
            ttl,
            calls: calls.clone(),
        };
        let nsqd = Nsqd::builder()
            .authenticator(Arc::new(auth))
            .start()
            .await
            .expect("broker starts");
        let mut conn = authed(&nsqd).await;
        publish_ok(&mut conn).await;
        // Far longer than any sane TTL: a grant capped or expired early is re-asked here.
        tokio::time::advance(Duration::from_secs(200 * 365 * 24 * 3600)).await;
        publish_ok(&mut conn).await;
        assert_eq!(
            calls.load(Ordering::SeqCst),
            1,
            "ttl {ttl:?}: the auth service was asked again"
        );
        nsqd.shutdown().await;
    }
}

/// nsqd's auth service contract over HTTP, answering with a TTL of `i64::MAX` seconds (the
/// largest nsqd's `int64` field holds).
#[tokio::test]
async fn an_http_auth_service_answering_ttl_i64_max_grants_for_good() {
    let hits = Arc::new(AtomicUsize::new(0));
    let counter = hits.clone();
    let app = axum::Router::new().route(
        "/auth",
        axum::routing::get(move || {
            let counter = counter.clone();
            async move {
                counter.fetch_add(1, Ordering::SeqCst);
                format!(
                    r#"{{"ttl":{},"identity":"svc","identity_url":"","authorizations":[{{"topic":".*","channels":[".*"],"permissions":["publish"]}}]}}"#,
                    i64::MAX
                )
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let service = tokio::spawn(async move { axum::serve(listener, app).await });

    let nsqd = Nsqd::builder()
        .auth_http_addresses(vec![addr.to_string()])
        .start()
        .await
        .expect("broker starts");
    let mut conn = authed(&nsqd).await;
    publish_ok(&mut conn).await;
    publish_ok(&mut conn).await;
    assert_eq!(hits.load(Ordering::SeqCst), 1, "asked again before the TTL");
    nsqd.shutdown().await;
    service.abort();
}
