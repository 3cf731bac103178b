//! The broker's timers under tokio's paused clock: in-flight timeouts, REQ delays, DPUB
//! defers, TOUCH's cap and the heartbeat read deadline, each asserted to the scan interval.
//!
//! The broker runs in-process on real loopback sockets. With the clock paused, tokio advances it
//! to the next timer only when every task is idle, and loopback writes are readable at once, so
//! the broker and the test's client take turns exactly as they would in real time, just without
//! waiting. Every bound below is therefore tight: a timer that fired early or late fails.

use std::time::Duration;

use bytes::Bytes;
use futures::{SinkExt, StreamExt};
use nsq_proto::{Channel, ClientCodec, Command, Frame, Identify, Message, Response, Topic};
use nsq_server_lite::{Nsqd, NsqdBuilder};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio::time::{timeout, Instant};
use tokio_util::codec::Framed;

type Conn = Framed<TcpStream, ClientCodec>;

/// How often the broker scans for timeouts and due deferred messages (nsqd's 100 ms).
const SCAN: Duration = Duration::from_millis(100);
/// Virtual time any one wait may take.
const WAIT: Duration = Duration::from_secs(600);

async fn start(builder: NsqdBuilder) -> Nsqd {
    builder.start().await.expect("broker starts")
}

async fn connect(nsqd: &Nsqd, identify: Identify) -> Conn {
    let mut stream = TcpStream::connect(nsqd.tcp_addr()).await.expect("connect");
    stream.write_all(b"  V2").await.expect("magic");
    let mut conn = Framed::new(stream, ClientCodec::new());
    conn.send(Command::Identify(Box::new(identify)))
        .await
        .expect("send");
    let reply = next_frame(&mut conn).await;
    assert!(
        matches!(reply, Some(Frame::Response(Response::Data(_)))),
        "IDENTIFY: {reply:?}"
    );
    conn
}

fn identify(change: impl FnOnce(&mut Identify)) -> Identify {
    let mut id = Identify::new("paused", "host", "nsq-server-lite-tests");
    change(&mut id);
    id
}

/// A consumer of `t/c` with RDY 1.
async fn consumer(nsqd: &Nsqd, change: impl FnOnce(&mut Identify)) -> Conn {
    let mut conn = connect(nsqd, identify(change)).await;
    let sub = Command::Sub {
        topic: Topic::new("t").expect("valid"),
        channel: Channel::new("c").expect("valid"),
    };
    conn.send(sub).await.expect("send");
    assert_eq!(
        next_frame(&mut conn).await,
        Some(Frame::Response(Response::Ok))
    );
    conn.send(Command::Rdy(1)).await.expect("send");
    conn
}

async fn next_frame(conn: &mut Conn) -> Option<Frame> {
    match timeout(WAIT, conn.next()).await {
        Ok(Some(Ok(frame))) => Some(frame),
        Ok(Some(Err(e))) => panic!("bad frame: {e}"),
        Ok(None) => None,
        Err(_) => panic!("nothing within {WAIT:?}"),
    }
}

/// The next message, answering heartbeats on the way.
async fn message(conn: &mut Conn) -> Message {
    loop {
        match next_frame(conn).await {
            Some(Frame::Message(msg)) => return msg,
            Some(Frame::Response(Response::Heartbeat)) => {
                conn.send(Command::Nop).await.expect("send");
            }
            other => panic!("wanted a message, got {other:?}"),
        }
    }
}

/// Publishes one message (deferred by `delay` when non-zero) and waits for the OK.
async fn publish(nsqd: &Nsqd, body: &'static str, delay: Duration) {
    let mut conn = connect(nsqd, Identify::new("producer", "host", "tests")).await;
    let topic = Topic::new("t").expect("valid");
    let body = Bytes::from_static(body.as_bytes());
    let cmd = if delay.is_zero() {
        Command::Pub { topic, body }
    } else {
        Command::Dpub { topic, delay, body }
    };
    conn.send(cmd).await.expect("send");
    assert_eq!(
        next_frame(&mut conn).await,
        Some(Frame::Response(Response::Ok))
    );
}

/// Asserts `elapsed` is `due` or at most one scan interval later.
fn assert_due(what: &str, elapsed: Duration, due: Duration) {
    assert!(
        elapsed >= due && elapsed <= due + SCAN,
        "{what}: after {elapsed:?}, due at {due:?} (+ one {SCAN:?} scan)"
    );
}

#[tokio::test(start_paused = true)]
async fn an_unfinished_message_is_requeued_at_msg_timeout() {
    let nsqd = start(Nsqd::builder().msg_timeout(Duration::from_secs(10))).await;
    let mut conn = consumer(&nsqd, |_| {}).await;
    publish(&nsqd, "slow", Duration::ZERO).await;
    let first = message(&mut conn).await;
    let delivered = Instant::now();
    assert_eq!(first.attempts, 1);

    let again = message(&mut conn).await;
    assert_due("redelivery", delivered.elapsed(), Duration::from_secs(10));
    assert_eq!((again.id, again.attempts), (first.id, 2));
    let stats = nsqd.stats();
    let channel = stats.channel("t", "c").expect("channel");
    assert_eq!((channel.timeout_count, channel.in_flight_count), (1, 1));
}

#[tokio::test(start_paused = true)]
async fn a_client_msg_timeout_overrides_the_default() {
    let nsqd = start(Nsqd::builder()).await;
    let mut conn = consumer(&nsqd, |i| i.msg_timeout = 3000).await;
    publish(&nsqd, "slow", Duration::ZERO).await;
    message(&mut conn).await;
    let delivered = Instant::now();
    message(&mut conn).await;
    assert_due("redelivery", delivered.elapsed(), Duration::from_secs(3));
}

#[tokio::test(start_paused = true)]
async fn req_with_a_delay_redelivers_when_it_is_due() {
    let nsqd = start(Nsqd::builder()).await;
    let mut conn = consumer(&nsqd, |_| {}).await;
    publish(&nsqd, "later", Duration::ZERO).await;
    let msg = message(&mut conn).await;
    let delay = Duration::from_secs(5);
    conn.send(Command::Req { id: msg.id, delay })
        .await
        .expect("send");
    let requeued = Instant::now();
    let again = message(&mut conn).await;
    assert_due("REQ 5 s", requeued.elapsed(), delay);
    assert_eq!((again.id, again.attempts), (msg.id, 2));
}

#[tokio::test(start_paused = true)]
async fn req_past_max_req_timeout_is_clamped() {
    let max = Duration::from_secs(4);
    let nsqd = start(Nsqd::builder().max_req_timeout(max)).await;
    let mut conn = consumer(&nsqd, |_| {}).await;
    publish(&nsqd, "later", Duration::ZERO).await;
    let msg = message(&mut conn).await;
    conn.send(Command::Req {
        id: msg.id,
        delay: Duration::from_secs(3600),
    })
    .await
    .expect("send");
    let requeued = Instant::now();
    message(&mut conn).await;
    assert_due("REQ clamped to 4 s", requeued.elapsed(), max);
}

#[tokio::test(start_paused = true)]
async fn dpub_delivers_when_the_defer_is_due() {
    let nsqd = start(Nsqd::builder()).await;
    let mut conn = consumer(&nsqd, |_| {}).await;
    let defer = Duration::from_secs(3);
    let published = Instant::now();
    publish(&nsqd, "deferred", defer).await;
    assert_eq!(
        nsqd.stats().channel("t", "c").map(|c| c.deferred_count),
        Some(1)
    );
    let msg = message(&mut conn).await;
    assert_due("DPUB 3 s", published.elapsed(), defer);
    assert_eq!(msg.attempts, 1);
}

#[tokio::test(start_paused = true)]
async fn touch_restarts_the_timeout() {
    let nsqd = start(Nsqd::builder()).await;
    let mut conn = consumer(&nsqd, |i| i.msg_timeout = 2000).await;
    publish(&nsqd, "touched", Duration::ZERO).await;
    let msg = message(&mut conn).await;
    let delivered = Instant::now();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    conn.send(Command::Touch(msg.id)).await.expect("send");
    message(&mut conn).await;
    assert_due(
        "timeout after TOUCH at 1.5 s",
        delivered.elapsed(),
        Duration::from_millis(3500),
    );
}

#[tokio::test(start_paused = true)]
async fn touch_is_capped_at_max_msg_timeout() {
    let nsqd = start(Nsqd::builder().max_msg_timeout(Duration::from_secs(3))).await;
    let mut conn = consumer(&nsqd, |i| i.msg_timeout = 2000).await;
    publish(&nsqd, "touched", Duration::ZERO).await;
    let msg = message(&mut conn).await;
    let delivered = Instant::now();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    conn.send(Command::Touch(msg.id)).await.expect("send");
    message(&mut conn).await;
    // Uncapped, TOUCH at 1.5 s would hold the message until 3.5 s.
    assert_due(
        "timeout capped at max_msg_timeout",
        delivered.elapsed(),
        Duration::from_secs(3),
    );
}

#[tokio::test(start_paused = true)]
async fn a_silent_client_is_closed_two_heartbeats_after_its_last_command() {
    let nsqd = start(Nsqd::builder()).await;
    let interval = Duration::from_secs(5);
    let mut conn = connect(&nsqd, identify(|i| i.heartbeat_interval = 5000)).await;
    let identified = Instant::now();
    let mut beats = Vec::new();
    let end = loop {
        match next_frame(&mut conn).await {
            Some(Frame::Response(Response::Heartbeat)) => beats.push(identified.elapsed()),
            other => break other,
        }
    };
    assert_eq!(end, None, "the broker ends the connection");
    let closed = identified.elapsed();
    assert!(
        closed >= interval * 2 && closed <= interval * 2 + Duration::from_millis(1),
        "closed after {closed:?}, want {:?}",
        interval * 2
    );
    // The second heartbeat and the deadline fall on the same instant; either may go first.
    assert!(
        beats == [interval] || beats == [interval, interval * 2],
        "heartbeats at {beats:?}, want one every {interval:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn answering_heartbeats_keeps_a_client_connected() {
    let nsqd = start(Nsqd::builder()).await;
    let mut conn = connect(&nsqd, identify(|i| i.heartbeat_interval = 5000)).await;
    let identified = Instant::now();
    for _ in 0..5 {
        assert_eq!(
            next_frame(&mut conn).await,
            Some(Frame::Response(Response::Heartbeat))
        );
        conn.send(Command::Nop).await.expect("send");
    }
    assert!(identified.elapsed() >= Duration::from_secs(25));
    assert_eq!(nsqd.stats().topics.len(), 0);
    let stream = conn.get_mut();
    stream.write_all(b"NOP\n").await.expect("still open");
}
