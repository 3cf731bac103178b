//! Commands that arrive together in one read: the broker finishes a run of FINs under one
//! channel lock and hands out messages in batches, and none of that may show on the wire.

use std::time::Duration;

use bytes::{Bytes, BytesMut};
use nsq_proto::{
    Channel, ClientCodec, Command, ErrorCode, Frame, Message, MessageId, Response, Topic, MAGIC_V2,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_util::codec::{Decoder, Encoder};

struct Client {
    stream: TcpStream,
    buf: BytesMut,
    codec: ClientCodec,
}

impl Client {
    async fn connect(addr: std::net::SocketAddr) -> Self {
        let mut stream = TcpStream::connect(addr).await.expect("connect");
        stream.write_all(&MAGIC_V2).await.expect("magic");
        Self {
            stream,
            buf: BytesMut::new(),
            codec: ClientCodec::new(),
        }
    }

    /// Sends all of `cmds` in one write.
    async fn send(&mut self, cmds: Vec<Command>) {
        let mut out = BytesMut::new();
        for cmd in cmds {
            self.codec.encode(cmd, &mut out).expect("encode");
        }
        self.stream.write_all(&out).await.expect("write");
    }

    async fn next(&mut self) -> Frame {
        loop {
            if let Some(frame) = self.codec.decode(&mut self.buf).expect("decode") {
                return frame;
            }
            let read =
                tokio::time::timeout(Duration::from_secs(5), self.stream.read_buf(&mut self.buf))
                    .await
                    .expect("a frame within 5 s")
                    .expect("read");
            assert_ne!(read, 0, "connection closed");
        }
    }

    async fn message(&mut self) -> Message {
        match self.next().await {
            Frame::Message(msg) => msg,
            other => panic!("wanted a message, got {other:?}"),
        }
    }
}

/// Publishes `count` messages `m0`, `m1`, ... to `topic` and returns a consumer subscribed to
/// its channel `ch` with `RDY rdy`, its SUB answered.
async fn filled(nsqd: &nsq_server_lite::Nsqd, topic: &str, count: usize, rdy: u32) -> Client {
    let topic = Topic::new(topic).unwrap();
    let mut producer = Client::connect(nsqd.tcp_addr()).await;
    let bodies = (0..count).map(|i| Bytes::from(format!("m{i}"))).collect();
    producer
        .send(vec![Command::Mpub {
            topic: topic.clone(),
            bodies,
        }])
        .await;
    assert_eq!(producer.next().await, Frame::Response(Response::Ok));

    let mut consumer = Client::connect(nsqd.tcp_addr()).await;
    consumer
        .send(vec![
            Command::Sub {
                topic,
                channel: Channel::new("ch").unwrap(),
            },
            Command::Rdy(rdy),
        ])
        .await;
    assert_eq!(consumer.next().await, Frame::Response(Response::Ok));
    consumer
}

/// Channel `ch` of `topic` is empty with nothing in flight, its one consumer finished
/// `finished` messages and `timed_out` timed out; then the broker stops.
async fn assert_drained(nsqd: nsq_server_lite::Nsqd, topic: &str, finished: u64, timed_out: u64) {
    let stats = nsqd.stats();
    let ch = stats.channel(topic, "ch").expect("channel stats");
    assert_eq!((ch.depth, ch.in_flight_count), (0, 0));
    assert_eq!(ch.clients[0].finish_count, finished);
    assert_eq!(ch.timeout_count, timed_out);
    nsqd.shutdown().await;
}

#[tokio::test]
async fn a_run_of_fins_with_failures_answers_each_failure_in_order() {
    let nsqd = nsq_server_lite::Nsqd::start().await.expect("start");
    let mut consumer = filled(&nsqd, "pipelined", 10, 10).await;
    let mut ids = Vec::new();
    for i in 0..10 {
        let msg = consumer.message().await;
        assert_eq!(msg.body, format!("m{i}"));
        ids.push(msg.id);
    }

    // One write: FINs with an unknown ID and a repeated one among them, then CLS.
    let unknown = MessageId::from_u64(7);
    let mut cmds = vec![Command::Fin(ids[0]), Command::Fin(unknown)];
    cmds.extend(ids[1..].iter().map(|id| Command::Fin(*id)));
    cmds.push(Command::Fin(ids[1]));
    cmds.push(Command::Cls);
    consumer.send(cmds).await;

    for id in [unknown, ids[1]] {
        match consumer.next().await {
            Frame::Error(err) => {
                assert_eq!(err.code, ErrorCode::FinFailed);
                assert_eq!(
                    err.to_string(),
                    format!("E_FIN_FAILED FIN {id} failed ID not in flight")
                );
            }
            other => panic!("wanted E_FIN_FAILED for {id}, got {other:?}"),
        }
    }
    assert_eq!(consumer.next().await, Frame::Response(Response::CloseWait));
    assert_drained(nsqd, "pipelined", 10, 0).await;
}

#[tokio::test]
async fn messages_freed_by_a_run_of_fins_go_out_in_order() {
    let nsqd = nsq_server_lite::Nsqd::start().await.expect("start");
    let mut consumer = filled(&nsqd, "refill", 1000, 50).await;
    let mut next = 0;
    while next < 1000 {
        // Take what the window holds, then finish it all in one write.
        let mut fins = Vec::new();
        for _ in 0..50.min(1000 - next) {
            let msg = consumer.message().await;
            assert_eq!(msg.body, format!("m{next}"));
            assert_eq!(msg.attempts, 1);
            next += 1;
            fins.push(Command::Fin(msg.id));
        }
        consumer.send(fins).await;
    }
    consumer.send(vec![Command::Nop, Command::Cls]).await;
    assert_eq!(consumer.next().await, Frame::Response(Response::CloseWait));
    assert_drained(nsqd, "refill", 1000, 0).await;
}

#[tokio::test]
async fn touch_and_timeout_still_hold_after_thousands_of_fins() {
    let nsqd = nsq_server_lite::Nsqd::builder()
        .msg_timeout(Duration::from_secs(1))
        .start()
        .await
        .expect("start");
    let mut consumer = filled(&nsqd, "timeouts", 5001, 2500).await;
    // Finish everything but the first message, so that far more deadlines go stale than stay.
    let mut held = None;
    for i in 0..5001 {
        let msg = consumer.message().await;
        assert_eq!(msg.body, format!("m{i}"));
        if i == 0 {
            held = Some(msg.id);
        } else {
            consumer.send(vec![Command::Fin(msg.id)]).await;
        }
    }
    let held = held.expect("the first message");
    tokio::time::sleep(Duration::from_millis(500)).await;
    consumer.send(vec![Command::Touch(held)]).await;
    let touched = tokio::time::Instant::now();

    // The message comes back once, after the deadline TOUCH set and not the first one.
    let again = consumer.message().await;
    assert_eq!((again.id, again.attempts), (held, 2));
    assert!(
        touched.elapsed() >= Duration::from_secs(1),
        "redelivered before the TOUCHed deadline"
    );
    consumer.send(vec![Command::Fin(held), Command::Cls]).await;
    assert_eq!(consumer.next().await, Frame::Response(Response::CloseWait));
    assert_drained(nsqd, "timeouts", 5001, 1).await;
}
