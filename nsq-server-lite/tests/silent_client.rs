//! A client that connects and never sends the protocol magic: nsqd 1.3.0 reads the magic with
//! no deadline and keeps such a client (tests/tests/hostile_clients.rs checks that against
//! both brokers); the lite broker does too, and it must not hold up the broker's shutdown.

use std::time::Duration;

use bytes::BytesMut;
use nsq_proto::{ClientCodec, Command, Frame, Response, Topic, MAGIC_V2};
use nsq_server_lite::Nsqd;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::timeout;
use tokio_util::codec::{Decoder, Encoder};

const WAIT: Duration = Duration::from_secs(5);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_never_sends_the_magic_does_not_hold_up_shutdown() {
    let nsqd = Nsqd::builder()
        .client_timeout(Duration::from_secs(60))
        .start()
        .await
        .expect("broker starts");
    let mut silent = TcpStream::connect(nsqd.tcp_addr()).await.expect("connect");

    // Connections are accepted in order: once a later one is served, the silent one is
    // accepted and waiting for its magic.
    let mut later = TcpStream::connect(nsqd.tcp_addr()).await.expect("connect");
    let mut out = BytesMut::from(&MAGIC_V2[..]);
    let publish = Command::Pub {
        topic: Topic::new("t").expect("valid"),
        body: "served".into(),
    };
    ClientCodec::new()
        .encode(publish, &mut out)
        .expect("encode");
    later.write_all(&out).await.expect("write");
    let mut buf = BytesMut::new();
    let frame = loop {
        if let Some(frame) = ClientCodec::new().decode(&mut buf).expect("a frame") {
            break frame;
        }
        let n = timeout(WAIT, later.read_buf(&mut buf))
            .await
            .expect("an answer in time")
            .expect("read");
        assert_ne!(n, 0, "closed before answering");
    };
    assert!(matches!(frame, Frame::Response(Response::Ok)), "{frame:?}");

    timeout(WAIT, nsqd.shutdown())
        .await
        .expect("the shutdown does not wait for the silent client");
    let n = timeout(WAIT, silent.read(&mut [0u8; 1]))
        .await
        .expect("the silent client is closed by the shutdown");
    assert!(matches!(n, Ok(0) | Err(_)), "{n:?}");
}
