//! The TCP protocol (V2) on a unix socket, as nsqd 1.3.0 serves it when `--tcp-address` is a
//! path: a publisher and a consumer speak V2 over the socket through nsq-proto's codecs.
#![cfg(unix)]

use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use futures::{SinkExt, StreamExt};
use nsq_proto::{Channel, ClientCodec, Command, Frame, Identify, Response, Topic};
use nsq_server_lite::{Nsqd, StartError};
use tokio::io::AsyncWriteExt;
use tokio::net::UnixStream;
use tokio::time::timeout;
use tokio_util::codec::Framed;

type Conn = Framed<UnixStream, ClientCodec>;

const WAIT: Duration = Duration::from_secs(20);

/// A socket path no other test (or test run) uses; removed if a crashed run left it.
fn socket_path() -> PathBuf {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let path = std::env::temp_dir().join(format!("nsq-lite-{}-{n}.sock", std::process::id()));
    let _ = std::fs::remove_file(&path);
    path
}

async fn next_frame(conn: &mut Conn) -> Frame {
    match timeout(WAIT, conn.next()).await {
        Ok(Some(Ok(frame))) => frame,
        other => panic!("wanted a frame, got {other:?}"),
    }
}

async fn connect(nsqd: &Nsqd, client_id: &str) -> Conn {
    let path = nsqd.unix_socket_path().expect("listening on a unix socket");
    let mut stream = UnixStream::connect(path).await.expect("connect");
    stream.write_all(b"  V2").await.expect("magic");
    let mut conn = Framed::new(stream, ClientCodec::new());
    conn.send(Command::Identify(Box::new(Identify::new(
        client_id, "host", "tests",
    ))))
    .await
    .expect("send");
    match next_frame(&mut conn).await {
        Frame::Response(Response::Data(_)) => conn,
        other => panic!("IDENTIFY: {other:?}"),
    }
}

#[tokio::test]
async fn a_v2_client_publishes_and_subscribes_over_a_unix_socket() {
    let path = socket_path();
    let nsqd = Nsqd::builder()
        .tcp_unix_socket(&path)
        .start()
        .await
        .expect("broker starts");
    assert_eq!(nsqd.unix_socket_path(), Some(path.as_path()));
    assert!(nsqd.tcp_addr().ip().is_unspecified() && nsqd.tcp_addr().port() == 0);
    let topic = Topic::new("t").expect("valid");

    let mut consumer = connect(&nsqd, "consumer").await;
    consumer
        .send(Command::Sub {
            topic: topic.clone(),
            channel: Channel::new("c").expect("valid"),
        })
        .await
        .expect("send");
    assert_eq!(
        next_frame(&mut consumer).await,
        Frame::Response(Response::Ok)
    );
    consumer.send(Command::Rdy(1)).await.expect("send");

    let mut producer = connect(&nsqd, "producer").await;
    for body in ["one", "two"] {
        producer
            .send(Command::Pub {
                topic: topic.clone(),
                body: Bytes::from_static(body.as_bytes()),
            })
            .await
            .expect("send");
        assert_eq!(
            next_frame(&mut producer).await,
            Frame::Response(Response::Ok),
            "PUB {body}"
        );
    }
    for body in ["one", "two"] {
        let msg = match next_frame(&mut consumer).await {
            Frame::Message(msg) => msg,
            other => panic!("wanted {body}, got {other:?}"),
        };
        assert_eq!(msg.body, body.as_bytes());
        consumer.send(Command::Fin(msg.id)).await.expect("send");
        consumer.send(Command::Rdy(1)).await.expect("send");
    }

    let stats = nsqd.stats();
    let channel = stats.channel("t", "c").expect("channel");
    assert_eq!(channel.message_count, 2);
    assert_eq!(channel.clients.len(), 1);
    assert_eq!(channel.clients[0].client_id, "consumer");
    assert_eq!(
        channel.clients[0].remote_address, "@",
        "Go's name for a unix peer"
    );

    // /info (still on TCP) says there is no TCP port, as nsqd 1.3.0 does.
    let info: serde_json::Value = reqwest::get(format!("http://{}/info", nsqd.http_addr()))
        .await
        .expect("GET /info")
        .json()
        .await
        .expect("JSON");
    assert_eq!(info["tcp_port"], -1, "{info}");

    nsqd.shutdown().await;
    assert!(!path.exists(), "the socket file outlived the broker");
}

#[tokio::test]
async fn a_socket_path_in_use_is_refused_at_start() {
    let path = socket_path();
    let first = Nsqd::builder()
        .tcp_unix_socket(&path)
        .start()
        .await
        .expect("broker starts");
    let err = Nsqd::builder()
        .tcp_unix_socket(&path)
        .start()
        .await
        .expect_err("the path is taken");
    match &err {
        StartError::BindUnix { path: refused, .. } => assert_eq!(refused, &path),
        other => panic!("wanted BindUnix, got {other:?}"),
    }
    assert!(err.to_string().contains("unix socket"), "{err}");
    first.shutdown().await;
}

#[tokio::test]
async fn the_last_of_tcp_address_and_tcp_unix_socket_wins() {
    let path = socket_path();
    let nsqd = Nsqd::builder()
        .tcp_unix_socket(&path)
        .tcp_address(([127, 0, 0, 1], 0).into())
        .start()
        .await
        .expect("broker starts");
    assert_eq!(nsqd.unix_socket_path(), None);
    assert_ne!(nsqd.tcp_addr().port(), 0);
    assert!(!path.exists());
    nsqd.shutdown().await;
}
