//! The client under network faults injected by the harness's proxy, against nsq-server-lite
//! and real nsqd 1.3.0: a blackholed connection (bytes vanish both ways, no FIN, no RST).
//!
//! * The consumer notices within two heartbeat intervals (its read deadline), reports it as a
//!   typed [`DisconnectReason::ReadTimeout`], forgets the connection's in-flight state, and
//!   consumes again once the path is back.
//! * The producer fails a publish in flight with a typed error within its publish timeout.
//!
//! Each test runs against both brokers (the real one is skipped without `NSQD_BIN` and
//! `NSQLOOKUPD_BIN`, unless `CI` is set).

use std::time::{Duration, Instant};

use futures::StreamExt;
use nsq_client::{
    Channel, ConnectionConfig, Consumer, ConsumerConfig, ConsumerEvent, DisconnectReason, Producer,
    ProducerConfig, PublishErrorKind, Topic,
};
use nsq_tests::broker::{Broker, BrokerKind, BrokerOpts};
use nsq_tests::proxy::Proxy;

/// The heartbeat interval the clients ask for: nsqd's minimum.
const HEARTBEAT: Duration = Duration::from_secs(1);
/// Slack on top of a deadline, for a loaded machine.
const SLACK: Duration = Duration::from_millis(1500);
const WAIT: Duration = Duration::from_secs(20);

/// Runs `case` for every broker kind at once, within 120 s.
async fn each_kind<F, Fut>(case: F)
where
    F: Fn(BrokerKind) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    nsq_tests::broker::each_kind(Duration::from_secs(120), case).await;
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

    proxy.open();
    producer
        .publish(&topic, "after")
        .await
        .expect("a new connection once the path is back");
    assert_eq!(producer.stats().reconnects, 1, "{what}");
    producer.stop().await;
}
