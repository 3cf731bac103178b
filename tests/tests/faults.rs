//! The client under network faults injected by the harness's proxy, against nsq-server-lite
//! and real nsqd 1.3.0.
//!
//! * Blackholed (bytes vanish both ways, no FIN, no RST): the consumer notices within two
//!   heartbeat intervals (its read deadline), reports it as a typed
//!   [`DisconnectReason::ReadTimeout`], forgets the connection's in-flight state, and consumes
//!   again once the path is back; the producer fails a publish in flight with a typed error
//!   within its publish timeout.
//! * Latency each way: every message published is consumed exactly once; a publish whose
//!   answer comes later than its timeout fails with [`PublishErrorKind::Timeout`].
//! * Reset (RST) mid-stream: a typed i/o error on both clients, a reconnect, and every message
//!   published OK consumed at least once.
//! * A frame cut mid-way by a close: a typed i/o error (no hang, no panic), then a reconnect.
//! * A bandwidth cap each way: 1 MiB still gets through both ways, no faster than the cap.
//! * Dropped traffic, then a close (toxiproxy's `timeout`): both clients see the close before
//!   their own deadlines, the consumer's attempts fail while it lasts, then all is delivered.
//!
//! Each test runs against both brokers (the real one is skipped without `NSQD_BIN` and
//! `NSQLOOKUPD_BIN`, unless `CI` is set).

use std::collections::{BTreeMap, BTreeSet};
use std::io;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::StreamExt;
use nsq_client::{
    Channel, ConnectionConfig, Consumer, ConsumerConfig, ConsumerEvent, DisconnectReason, Message,
    Producer, ProducerConfig, PublishErrorKind, Topic,
};
use nsq_tests::broker::{Broker, BrokerKind, BrokerOpts};
use nsq_tests::eventually;
use nsq_tests::proxy::{Direction, Proxy};
use tokio::sync::mpsc;

/// The heartbeat interval the clients ask for: nsqd's minimum.
const HEARTBEAT: Duration = Duration::from_secs(1);
/// Slack on top of a deadline, for a loaded machine.
const SLACK: Duration = Duration::from_millis(1500);
const WAIT: Duration = Duration::from_secs(20);

/// Runs `case` for every broker kind at once, within 30 s.
async fn each_kind<F, Fut>(case: F)
where
    F: Fn(BrokerKind) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    nsq_tests::broker::each_kind(Duration::from_secs(30), case).await;
}

fn connection() -> ConnectionConfig {
    ConnectionConfig::default().heartbeat_interval(HEARTBEAT)
}

async fn next_event(events: &mut nsq_client::Events) -> ConsumerEvent {
    tokio::time::timeout(WAIT, events.next())
        .await
        .expect("an event in time")
        .expect("events open")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_blackholed_consumer_connection_is_dropped_within_two_heartbeats_and_replaced() {
    each_kind(blackholed_consumer).await;
}

async fn blackholed_consumer(kind: BrokerKind) {
    let what = kind.name();
    if !kind.available() {
        return;
    }
    let broker = Broker::start(kind, &BrokerOpts::default()).await.unwrap();
    broker.create_channel("faults", "c").await.unwrap();
    let proxy = Proxy::start(broker.tcp_addr()).await;
    let topic = Topic::new("faults").unwrap();
    let producer = Producer::new(broker.tcp_addr().to_string(), ProducerConfig::default()).unwrap();

    let mut consumer = Consumer::builder(topic.clone(), Channel::new("c").unwrap())
        .nsqd(proxy.addr().to_string())
        .config(
            ConsumerConfig::default()
                .max_in_flight(10)
                .connection(connection())
                .reconnect_backoff(Duration::from_millis(50), Duration::from_millis(500)),
        )
        .build()
        .unwrap();
    let mut events = consumer.events();
    consumer.connected(WAIT).await.unwrap();
    assert!(matches!(
        next_event(&mut events).await,
        ConsumerEvent::Connected { .. }
    ));

    // One message held unanswered when the path goes dark.
    producer.publish(&topic, "before").await.unwrap();
    let held = tokio::time::timeout(WAIT, consumer.next())
        .await
        .expect("a message")
        .unwrap();
    proxy.blackhole();
    let dark = Instant::now();
    let reason = loop {
        if let ConsumerEvent::Disconnected { reason, .. } = next_event(&mut events).await {
            break reason;
        }
    };
    let noticed = dark.elapsed();
    assert!(
        matches!(reason, DisconnectReason::ReadTimeout(d) if d == 2 * HEARTBEAT),
        "{what}: {reason:?}"
    );
    assert!(
        noticed <= 2 * HEARTBEAT + SLACK,
        "{what}: noticed after {noticed:?}"
    );
    assert_eq!(
        consumer.stats().connections,
        0,
        "{what}: the dead connection's state is gone"
    );
    // Its message can no longer be answered; nsqd redelivers it.
    assert!(
        held.finish().is_err(),
        "{what}: answering on a closed connection"
    );

    proxy.open();
    loop {
        if let ConsumerEvent::Connected { .. } = next_event(&mut events).await {
            break;
        }
    }
    producer.publish(&topic, "after").await.unwrap();
    let mut bodies = Vec::new();
    while !bodies.iter().any(|b: &bytes::Bytes| &b[..] == b"after") {
        let msg = tokio::time::timeout(WAIT, consumer.next())
            .await
            .expect("consumption continues")
            .unwrap();
        bodies.push(msg.body().clone());
        msg.finish().unwrap();
    }
    let stats = consumer.stats();
    assert_eq!(stats.connections, 1, "{what}: {stats:?}");
    eprintln!(
        "{what}: a blackholed consumer connection (heartbeat {HEARTBEAT:?}) was dropped after          {noticed:?} ({reason}), and consumption went on over a new one"
    );
    consumer.stop().await;
    producer.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_publish_on_a_blackholed_connection_fails_typed_within_its_timeout() {
    each_kind(blackholed_producer).await;
}

async fn blackholed_producer(kind: BrokerKind) {
    let what = kind.name();
    if !kind.available() {
        return;
    }
    const TIMEOUT: Duration = Duration::from_secs(5);
    let broker = Broker::start(kind, &BrokerOpts::default()).await.unwrap();
    let proxy = Proxy::start(broker.tcp_addr()).await;
    let topic = Topic::new("faults").unwrap();
    let producer = Producer::new(
        proxy.addr().to_string(),
        ProducerConfig::default()
            .connection(connection())
            .publish_timeout(Some(TIMEOUT)),
    )
    .unwrap();
    producer.publish(&topic, "through").await.unwrap();

    proxy.blackhole();
    let dark = Instant::now();
    let err = producer
        .publish(&topic, "into the void")
        .await
        .expect_err("no answer can come");
    let failed = dark.elapsed();
    assert!(failed <= TIMEOUT + SLACK, "{what}: failed after {failed:?}");
    eprintln!(
        "{what}: a publish on a blackholed connection (publish timeout {TIMEOUT:?}, heartbeat \
         {HEARTBEAT:?}) failed after {failed:?}: {err}"
    );
    // The read deadline (two heartbeats) comes before the publish timeout.
    assert!(
        matches!(
            err.kind(),
            PublishErrorKind::Disconnected(DisconnectReason::ReadTimeout(_))
        ),
        "{what}: {err:?}"
    );
    assert!(
        err.is_retriable(),
        "{what}: nsqd may not have it: a retry is safe"
    );

    // The producer reconnects at once; if that happens before the path is back, that
    // connection is dead too and is given up in its turn: a publish goes through once a
    // connection made after `open` is up.
    proxy.open();
    nsq_tests::eventually(
        &format!("{what}: a publish once the path is back"),
        WAIT,
        || {
            let attempt = producer.publish(&topic, "after");
            async move {
                match attempt.await {
                    Ok(()) => Ok(()),
                    Err(e) if e.is_retriable() => Err(e.to_string()),
                    Err(e) => panic!("not retriable: {e:?}"),
                }
            }
        },
    )
    .await;
    assert!(producer.stats().reconnects >= 1, "{what}");
    producer.stop().await;
}

// ---------------------------------------------------------------------------------------------
// Helpers for the faults below
// ---------------------------------------------------------------------------------------------

/// nsqd's in-flight timeout for the consumers below (their IDENTIFY asks for it), so that a
/// delivery lost with its connection comes again soon.
const REDELIVERY: Duration = Duration::from_secs(2);

/// A consumer of `topic`/`c` through `addr`, reconnecting quickly.
fn consumer_at(addr: std::net::SocketAddr, topic: &Topic, max_in_flight: u32) -> Consumer {
    Consumer::builder(topic.clone(), Channel::new("c").unwrap())
        .nsqd(addr.to_string())
        .config(
            ConsumerConfig::default()
                .max_in_flight(max_in_flight)
                .connection(connection().msg_timeout(REDELIVERY))
                .reconnect_backoff(Duration::from_millis(50), Duration::from_millis(500)),
        )
        .build()
        .unwrap()
}

/// The consumer's events, each stamped with the time it was read (by a task of its own, so
/// the stamp is the time it came, not the time the test got round to it).
fn timed_events(consumer: &Consumer) -> mpsc::UnboundedReceiver<(Instant, ConsumerEvent)> {
    let mut events = consumer.events();
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Some(event) = events.next().await {
            if tx.send((Instant::now(), event)).is_err() {
                return;
            }
        }
    });
    rx
}

/// The first event `pick` takes, with the time it came; other events are passed over.
async fn first_event<T>(
    events: &mut mpsc::UnboundedReceiver<(Instant, ConsumerEvent)>,
    mut pick: impl FnMut(ConsumerEvent) -> Option<T>,
) -> (Instant, T) {
    loop {
        let (at, event) = tokio::time::timeout(WAIT, events.recv())
            .await
            .expect("an event in time")
            .expect("events open");
        if let Some(v) = pick(event) {
            return (at, v);
        }
    }
}

fn disconnected(event: ConsumerEvent) -> Option<DisconnectReason> {
    match event {
        ConsumerEvent::Disconnected { reason, .. } => Some(reason),
        _ => None,
    }
}

fn connected(event: ConsumerEvent) -> Option<()> {
    matches!(event, ConsumerEvent::Connected { .. }).then_some(())
}

/// Message `i` of a test: its number, padded with `x` to `len` bytes.
fn numbered(i: usize, len: usize) -> Bytes {
    let mut body = format!("{i:08}").into_bytes();
    body.resize(len.max(8), b'x');
    Bytes::from(body)
}

/// How many times each body was delivered.
#[derive(Debug, Default)]
struct Tally(BTreeMap<Bytes, usize>);

impl Tally {
    fn add(&mut self, body: &Bytes) {
        *self.0.entry(body.clone()).or_default() += 1;
    }

    fn distinct(&self) -> usize {
        self.0.len()
    }

    fn deliveries(&self) -> usize {
        self.0.values().sum()
    }

    /// The bodies delivered more than once, as text.
    fn duplicates(&self) -> Vec<String> {
        self.0
            .iter()
            .filter(|(_, &n)| n > 1)
            .map(|(b, n)| format!("{} x{n}", String::from_utf8_lossy(b).trim_end_matches('x')))
            .collect()
    }

    fn has_all(&self, bodies: &BTreeSet<Bytes>) -> bool {
        bodies.iter().all(|b| self.0.contains_key(b))
    }
}

/// Receives messages and finishes them until `done` says the tally is complete; a finish that
/// fails (its connection is gone: nsqd redelivers it) is counted and returned.
async fn consume_until(
    what: &str,
    consumer: &mut Consumer,
    tally: &mut Tally,
    mut done: impl FnMut(&Tally) -> bool,
) -> usize {
    let mut unfinished = 0;
    while !done(tally) {
        let msg: Message = tokio::time::timeout(WAIT, consumer.next())
            .await
            .unwrap_or_else(|_| {
                panic!(
                    "{what}: no message within {WAIT:?}; {} distinct so far",
                    tally.distinct()
                )
            })
            .expect("the consumer runs");
        tally.add(msg.body());
        if msg.finish().is_err() {
            unfinished += 1;
        }
    }
    unfinished
}

/// A figure of the channel's stats, as a number.
fn figure(stats: &serde_json::Value, name: &str) -> u64 {
    stats[name]
        .as_u64()
        .unwrap_or_else(|| panic!("{name} in {stats}"))
}

// ---------------------------------------------------------------------------------------------
// Latency
// ---------------------------------------------------------------------------------------------

/// The latency the proxy adds each way.
const LATENCY: Duration = Duration::from_millis(50);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_latency_each_way_every_message_published_is_consumed_exactly_once() {
    each_kind(delayed_delivery).await;
}

async fn delayed_delivery(kind: BrokerKind) {
    const COUNT: usize = 200;
    let what = kind.name();
    if !kind.available() {
        return;
    }
    let broker = Broker::start(kind, &BrokerOpts::default()).await.unwrap();
    broker.create_channel("delayed", "c").await.unwrap();
    let proxy = Proxy::start(broker.tcp_addr()).await;
    proxy.delay(Direction::Both, LATENCY);
    let topic = Topic::new("delayed").unwrap();
    let producer = Producer::new(proxy.addr().to_string(), ProducerConfig::default()).unwrap();
    let mut consumer = consumer_at(proxy.addr(), &topic, 50);
    consumer.connected(WAIT).await.unwrap();

    let bodies: Vec<Bytes> = (0..COUNT).map(|i| numbered(i, 64)).collect();
    producer.publish(&topic, bodies[0].clone()).await.unwrap();
    // Connected now: a round trip crosses the proxy twice.
    let sent = Instant::now();
    producer.publish(&topic, bodies[1].clone()).await.unwrap();
    let round_trip = sent.elapsed();
    assert!(
        round_trip >= 2 * LATENCY,
        "{what}: a publish answered after {round_trip:?}, under the latency"
    );
    let rest: Vec<_> = bodies[2..]
        .iter()
        .map(|b| tokio::spawn(producer.publish(&topic, b.clone())))
        .collect();
    let mut published = BTreeSet::from([bodies[0].clone(), bodies[1].clone()]);
    for (body, publish) in bodies[2..].iter().zip(rest) {
        match publish.await.unwrap() {
            Ok(()) => {
                published.insert(body.clone());
            }
            Err(e) => panic!("{what}: latency alone failed a publish: {e:?}"),
        }
    }

    let mut tally = Tally::default();
    let unfinished =
        consume_until(what, &mut consumer, &mut tally, |t| t.has_all(&published)).await;
    assert_eq!(unfinished, 0, "{what}: every finish was taken");
    assert_eq!(
        tally.distinct(),
        published.len(),
        "{what}: only what was published"
    );
    assert!(
        tally.duplicates().is_empty(),
        "{what}: delivered twice: {:?}",
        tally.duplicates()
    );
    // Exactly once as nsqd saw it too: every FIN arrived through the latency, nothing was
    // requeued or timed out.
    let stats = eventually("every FIN reaches nsqd", WAIT, || async {
        let c = broker.channel_stats("delayed", "c").await?;
        match (figure(&c, "in_flight_count"), figure(&c, "depth")) {
            (0, 0) => Ok(c),
            _ => Err(c.to_string()),
        }
    })
    .await;
    assert_eq!(figure(&stats, "message_count"), COUNT as u64, "{what}");
    assert_eq!(figure(&stats, "requeue_count"), 0, "{what}");
    assert_eq!(figure(&stats, "timeout_count"), 0, "{what}");
    eprintln!(
        "{what}: latency {LATENCY:?} each way: a round trip took {round_trip:?}; {} published, {} delivered",
        published.len(),
        tally.deliveries()
    );
    consumer.stop().await;
    producer.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_publish_answered_later_than_its_timeout_fails_typed() {
    each_kind(late_answer).await;
}

async fn late_answer(kind: BrokerKind) {
    const TIMEOUT: Duration = Duration::from_millis(300);
    let what = kind.name();
    if !kind.available() {
        return;
    }
    let broker = Broker::start(kind, &BrokerOpts::default()).await.unwrap();
    let proxy = Proxy::start(broker.tcp_addr()).await;
    let topic = Topic::new("late").unwrap();
    let producer = Producer::new(
        proxy.addr().to_string(),
        ProducerConfig::default().publish_timeout(Some(TIMEOUT)),
    )
    .unwrap();
    producer.publish(&topic, "prompt").await.unwrap();

    proxy.delay(Direction::ToClient, 2 * TIMEOUT);
    let sent = Instant::now();
    let err = producer
        .publish(&topic, "late")
        .await
        .expect_err("its answer comes after the timeout");
    let failed = sent.elapsed();
    assert!(
        matches!(err.kind(), PublishErrorKind::Timeout(after) if *after == TIMEOUT),
        "{what}: {err:?}"
    );
    assert!(err.is_timeout() && err.is_retriable(), "{what}: {err:?}");
    assert!(
        failed >= TIMEOUT && failed < 2 * TIMEOUT,
        "{what}: failed after {failed:?}, not at its timeout"
    );
    // nsqd took it all the same: a timeout says nothing either way.
    let count = |n: u64| {
        let broker = &broker;
        move || async move {
            let t = broker.topic_stats("late").await?;
            match figure(&t, "message_count") {
                c if c == n => Ok(()),
                c => Err(format!("{c} messages")),
            }
        }
    };
    eventually("nsqd has the late message", WAIT, count(2)).await;

    proxy.delay(Direction::ToClient, Duration::ZERO);
    // The late answer still comes (order is kept): the next publish's answer would queue
    // behind it.
    eventually("the late answer arrived", WAIT, || {
        let in_flight = producer.stats().in_flight;
        async move {
            (in_flight == 0)
                .then_some(())
                .ok_or(format!("{in_flight} in flight"))
        }
    })
    .await;
    producer
        .publish(&topic, "after")
        .await
        .expect("answered in time again");
    eventually("nsqd has the last message", WAIT, count(3)).await;
    eprintln!(
        "{what}: a {TIMEOUT:?} publish timeout under a {:?} latency failed after {failed:?}",
        2 * TIMEOUT
    );
    producer.stop().await;
}

// ---------------------------------------------------------------------------------------------
// Reset
// ---------------------------------------------------------------------------------------------

fn is_reset(reason: &DisconnectReason) -> bool {
    matches!(reason, DisconnectReason::Io(e) if e.kind() == io::ErrorKind::ConnectionReset)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reset_mid_stream_is_a_typed_io_error_and_nothing_published_ok_is_lost() {
    each_kind(reset_mid_stream).await;
}

async fn reset_mid_stream(kind: BrokerKind) {
    const BATCH: usize = 50;
    let what = kind.name();
    if !kind.available() {
        return;
    }
    let broker = Broker::start(kind, &BrokerOpts::default()).await.unwrap();
    broker.create_channel("reset", "c").await.unwrap();
    let proxy = Proxy::start(broker.tcp_addr()).await;
    let topic = Topic::new("reset").unwrap();
    let producer = Producer::new(
        proxy.addr().to_string(),
        ProducerConfig::default()
            .reconnect_backoff(Duration::from_millis(50), Duration::from_millis(500)),
    )
    .unwrap();
    let mut consumer = consumer_at(proxy.addr(), &topic, 10);
    let mut events = timed_events(&consumer);
    consumer.connected(WAIT).await.unwrap();

    let mut published = BTreeSet::new();
    for body in (0..BATCH).map(|i| numbered(i, 64)) {
        producer.publish(&topic, body.clone()).await.unwrap();
        published.insert(body);
    }
    // Mid-stream: part consumed, the rest in flight or queued at nsqd.
    let mut tally = Tally::default();
    let mut unfinished = consume_until(what, &mut consumer, &mut tally, |t| {
        t.deliveries() >= BATCH / 2
    })
    .await;

    // A publish in flight when the reset comes: nsqd has it, its OK is held in the proxy.
    proxy.hold_replies();
    let in_flight = tokio::spawn(producer.publish(&topic, "in flight"));
    eventually("nsqd takes the held publish", WAIT, || async {
        let t = broker.topic_stats("reset").await?;
        match figure(&t, "message_count") {
            n if n == BATCH as u64 + 1 => Ok(()),
            n => Err(format!("{n} messages")),
        }
    })
    .await;
    proxy.reset();
    let reset_at = Instant::now();
    let err = in_flight
        .await
        .unwrap()
        .expect_err("its answer went with the connection");
    let publish_failed = reset_at.elapsed();
    assert!(
        matches!(err.kind(), PublishErrorKind::Disconnected(reason) if is_reset(reason)),
        "{what}: {err:?}"
    );
    assert!(err.is_retriable(), "{what}: {err:?}");
    proxy.open();

    let (at, reason) = first_event(&mut events, disconnected).await;
    let consumer_noticed = at - reset_at;
    assert!(is_reset(&reason), "{what}: {reason:?}");
    assert!(
        consumer_noticed < HEARTBEAT,
        "{what}: the reset was read after {consumer_noticed:?}, not at once"
    );
    let (at, ()) = first_event(&mut events, connected).await;
    let back = at - reset_at;

    // The retry: nsqd may now have it twice (at-least-once), never not at all.
    let body = err.into_body().expect("the body handed back");
    producer
        .publish(&topic, body.clone())
        .await
        .expect("a retry on a new connection");
    published.insert(body);
    for i in BATCH..2 * BATCH {
        let body = numbered(i, 64);
        producer.publish(&topic, body.clone()).await.unwrap();
        published.insert(body);
    }
    unfinished += consume_until(what, &mut consumer, &mut tally, |t| t.has_all(&published)).await;
    assert_eq!(
        tally.distinct(),
        published.len(),
        "{what}: only what was published"
    );
    eprintln!(
        "{what}: reset: the publish failed after {publish_failed:?}, the consumer read the RST after \
         {consumer_noticed:?} and was back after {back:?}; {} published OK, {} delivered \
         ({unfinished} finishes lost with the connection), duplicates: {:?}",
        published.len(),
        tally.deliveries(),
        tally.duplicates()
    );
    consumer.stop().await;
    producer.stop().await;
}

// ---------------------------------------------------------------------------------------------
// Truncation
// ---------------------------------------------------------------------------------------------

/// Fewer bytes than any frame (size, type, and at least `OK`): the next frame is cut inside.
const CUT: u64 = 6;

/// A frame cut short by the end of the stream: tokio-util's framing reports the bytes left
/// over as an i/o error, not a clean close (which [`DisconnectReason::ClosedByPeer`] is).
fn is_cut_frame(reason: &DisconnectReason) -> bool {
    matches!(reason, DisconnectReason::Io(e) if e.kind() == io::ErrorKind::Other)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frame_cut_mid_way_is_a_typed_disconnect_and_the_clients_carry_on() {
    each_kind(cut_frames).await;
}

async fn cut_frames(kind: BrokerKind) {
    let what = kind.name();
    if !kind.available() {
        return;
    }
    let broker = Broker::start(kind, &BrokerOpts::default()).await.unwrap();
    broker.create_channel("cut", "c").await.unwrap();
    let topic = Topic::new("cut").unwrap();
    let direct = Producer::new(broker.tcp_addr().to_string(), ProducerConfig::default()).unwrap();

    // The consumer: the message frame after the cut is cut.
    let proxy = Proxy::start(broker.tcp_addr()).await;
    let mut consumer = consumer_at(proxy.addr(), &topic, 10);
    let mut events = timed_events(&consumer);
    consumer.connected(WAIT).await.unwrap();
    let mut tally = Tally::default();
    direct.publish(&topic, "whole").await.unwrap();
    consume_until(what, &mut consumer, &mut tally, |t| t.distinct() == 1).await;
    proxy.truncate_after(CUT);
    let cut_at = Instant::now();
    direct.publish(&topic, "cut in two").await.unwrap();
    let (at, reason) = first_event(&mut events, disconnected).await;
    let noticed = at - cut_at;
    assert!(is_cut_frame(&reason), "{what}: {reason:?}");
    assert!(
        noticed < 2 * HEARTBEAT,
        "{what}: noticed after {noticed:?}, by the read deadline rather than the cut"
    );
    first_event(&mut events, connected).await;
    // The cut message comes again once its in-flight timeout passes, and so does what follows.
    direct.publish(&topic, "after").await.unwrap();
    let want = BTreeSet::from([Bytes::from("cut in two"), Bytes::from("after")]);
    consume_until(what, &mut consumer, &mut tally, |t| t.has_all(&want)).await;

    // The producer: the OK after the cut is cut.
    let proxy = Proxy::start(broker.tcp_addr()).await;
    let producer = Producer::new(proxy.addr().to_string(), ProducerConfig::default()).unwrap();
    producer.publish(&topic, "before").await.unwrap();
    proxy.truncate_after(CUT);
    let err = producer
        .publish(&topic, "answer cut")
        .await
        .expect_err("its answer is cut short");
    assert!(
        matches!(err.kind(), PublishErrorKind::Disconnected(reason) if is_cut_frame(reason)),
        "{what}: {err:?}"
    );
    assert!(err.is_retriable(), "{what}: {err:?}");
    producer
        .publish(&topic, err.into_body().expect("the body handed back"))
        .await
        .expect("a retry on a new connection");
    assert_eq!(producer.stats().reconnects, 1, "{what}");
    eprintln!("{what}: a frame cut after {CUT} bytes was noticed after {noticed:?}: {reason}");
    consumer.stop().await;
    producer.stop().await;
    direct.stop().await;
}

// ---------------------------------------------------------------------------------------------
// Bandwidth
// ---------------------------------------------------------------------------------------------

/// The cap each way, per connection.
const RATE: u64 = 128 * 1024;
/// What goes through each way: 1 MiB of bodies.
const BODY: usize = 4096;
const BODIES: usize = (1 << 20) / BODY;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn under_a_bandwidth_cap_a_mebibyte_goes_through_each_way_no_faster_than_the_cap() {
    each_kind(capped).await;
}

async fn capped(kind: BrokerKind) {
    let what = kind.name();
    if !kind.available() {
        return;
    }
    let broker = Broker::start(kind, &BrokerOpts::default()).await.unwrap();
    broker.create_channel("capped-down", "c").await.unwrap();
    let (down, up) = (
        Topic::new("capped-down").unwrap(),
        Topic::new("capped-up").unwrap(),
    );
    let bodies: Vec<Bytes> = (0..BODIES).map(|i| numbered(i, BODY)).collect();
    // Down: 1 MiB waiting at nsqd before the consumer comes.
    let direct = Producer::new(broker.tcp_addr().to_string(), ProducerConfig::default()).unwrap();
    for batch in bodies.chunks(16) {
        direct.multi_publish(&down, batch.to_vec()).await.unwrap();
    }
    let proxy = Proxy::start(broker.tcp_addr()).await;
    proxy.limit_rate(Direction::Both, Some(RATE));

    // Up, at the same time on its own connection: 1 MiB published through the proxy.
    let producer = Producer::new(proxy.addr().to_string(), ProducerConfig::default()).unwrap();
    let publishing = {
        let publishes: Vec<_> = bodies
            .iter()
            .map(|b| producer.publish(&up, b.clone()))
            .collect();
        tokio::spawn(async move {
            let started = Instant::now();
            let results = futures::future::join_all(publishes).await;
            (results, started.elapsed())
        })
    };
    let mut consumer = consumer_at(proxy.addr(), &down, 32);
    let mut tally = Tally::default();
    consume_until(what, &mut consumer, &mut tally, |t| t.distinct() == 1).await;
    let first_came = Instant::now();
    consume_until(what, &mut consumer, &mut tally, |t| t.distinct() == BODIES).await;
    let consuming = first_came.elapsed();
    let (results, publishing) = publishing.await.unwrap();
    let failed = results.iter().filter(|r| r.is_err()).count();
    assert_eq!(failed, 0, "{what}: publishes failed under the cap");

    let per_second = |bytes: usize, took: Duration| bytes as f64 / took.as_secs_f64();
    let down_rate = per_second((BODIES - 1) * BODY, consuming);
    let up_rate = per_second(BODIES * BODY, publishing);
    // Bodies are most of the bytes (a message frame adds 34, an MPUB 4 per body); the
    // bucket's burst is 50 ms worth.
    let most = RATE as f64 * 1.1;
    assert!(
        down_rate <= most,
        "{what}: consumed at {down_rate:.0} B/s, over the cap"
    );
    assert!(
        up_rate <= most,
        "{what}: published at {up_rate:.0} B/s, over the cap"
    );
    assert!(
        down_rate >= RATE as f64 / 2.0 && up_rate >= RATE as f64 / 2.0,
        "{what}: {down_rate:.0} B/s down, {up_rate:.0} B/s up: far under the cap"
    );
    let t = broker.topic_stats("capped-up").await.unwrap();
    assert_eq!(figure(&t, "message_count"), BODIES as u64, "{what}");
    eprintln!(
        "{what}: capped at {RATE} B/s: 1 MiB consumed in {consuming:?} ({down_rate:.0} B/s of \
         bodies), published in {publishing:?} ({up_rate:.0} B/s)"
    );
    consumer.stop().await;
    producer.stop().await;
    direct.stop().await;
}

// ---------------------------------------------------------------------------------------------
// Dropped traffic
// ---------------------------------------------------------------------------------------------

/// How long the proxy drops a connection's bytes before it closes it: less than the clients'
/// read deadline (two heartbeats), so that the close is what they see.
const CLOSE_AFTER: Duration = Duration::from_millis(500);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropped_traffic_then_a_close_is_seen_before_the_read_deadline_and_nothing_is_lost() {
    each_kind(dropped).await;
}

async fn dropped(kind: BrokerKind) {
    let what = kind.name();
    if !kind.available() {
        return;
    }
    let broker = Broker::start(kind, &BrokerOpts::default()).await.unwrap();
    broker.create_channel("dropped", "c").await.unwrap();
    let proxy = Proxy::start(broker.tcp_addr()).await;
    let topic = Topic::new("dropped").unwrap();
    let direct = Producer::new(broker.tcp_addr().to_string(), ProducerConfig::default()).unwrap();
    let producer = Producer::new(
        proxy.addr().to_string(),
        ProducerConfig::default()
            .connection(connection())
            .publish_timeout(Some(Duration::from_secs(5))),
    )
    .unwrap();
    producer.publish(&topic, "before").await.unwrap();
    let mut consumer = consumer_at(proxy.addr(), &topic, 10);
    let mut events = timed_events(&consumer);
    consumer.connected(WAIT).await.unwrap();

    proxy.drop_traffic(CLOSE_AFTER);
    let dropped_at = Instant::now();
    // Taken by nsqd; its delivery to the consumer is dropped on the way.
    direct.publish(&topic, "during").await.unwrap();
    let err = producer
        .publish(&topic, "into the drop")
        .await
        .expect_err("neither the PUB nor an answer gets through");
    let publish_failed = dropped_at.elapsed();
    assert!(
        matches!(
            err.kind(),
            PublishErrorKind::Disconnected(DisconnectReason::ClosedByPeer)
        ),
        "{what}: {err:?}"
    );
    let (at, reason) = first_event(&mut events, disconnected).await;
    let consumer_noticed = at - dropped_at;
    assert!(
        matches!(reason, DisconnectReason::ClosedByPeer),
        "{what}: {reason:?}"
    );
    for (who, after) in [("publish", publish_failed), ("consumer", consumer_noticed)] {
        assert!(
            after >= CLOSE_AFTER && after < 2 * HEARTBEAT,
            "{what}: the {who} saw the close after {after:?}"
        );
    }
    // While the traffic is dropped, a new connection hears nothing and is closed in turn.
    let (_, error) = first_event(&mut events, |e| match e {
        ConsumerEvent::ConnectFailed { error, .. } => Some(Ok(error)),
        ConsumerEvent::Connected { .. } => Some(Err("connected through a dropping proxy")),
        _ => None,
    })
    .await;
    let error = error.unwrap_or_else(|e| panic!("{what}: {e}"));
    assert!(!error.is_permanent(), "{what}: {error:?}");

    proxy.open();
    first_event(&mut events, connected).await;
    let body = err.into_body().expect("the body handed back");
    producer
        .publish(&topic, body)
        .await
        .expect("a retry once the path is back");
    let want = BTreeSet::from([
        Bytes::from("before"),
        Bytes::from("during"),
        Bytes::from("into the drop"),
    ]);
    let mut tally = Tally::default();
    consume_until(what, &mut consumer, &mut tally, |t| t.has_all(&want)).await;
    assert_eq!(
        tally.distinct(),
        want.len(),
        "{what}: only what was published"
    );
    eprintln!(
        "{what}: dropped for {CLOSE_AFTER:?} then closed: the publish failed after \
         {publish_failed:?}, the consumer noticed after {consumer_noticed:?}; a reconnect while \
         dropping failed: {error}"
    );
    consumer.stop().await;
    producer.stop().await;
    direct.stop().await;
}
