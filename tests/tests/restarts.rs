//! A broker restarted at awkward moments, against nsq-server-lite and real nsqd 1.3.0 (the
//! real one is skipped without `NSQD_BIN` and `NSQLOOKUPD_BIN`, unless `CI` is set):
//!
//! * while the consumer is in backoff: it reconnects, leaves backoff and consumes again;
//! * while the consumer is stopping with messages unanswered: the stop ends within its
//!   shutdown timeout, and (real nsqd, which writes what it holds to disk on SIGTERM) every
//!   message is either finished or back in the queue;
//! * in the middle of the TLS, snappy and deflate handshakes (the broker's replies held by the
//!   harness's proxy while it restarts): the attempt fails with a typed error within the dial
//!   timeout, and the next publish goes through.
//!
//! The real broker gets SIGTERM and comes back on its data path; the lite one has no disk
//! and comes back empty. Both come back on the same ports.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use futures::StreamExt;
use nsq_client::{
    Channel, Compression, ConnectionConfig, Consumer, ConsumerConfig, ConsumerEvent, Producer,
    ProducerConfig, PublishErrorKind, TlsConfig, Topic,
};
use nsq_tests::broker::{Broker, BrokerKind, BrokerOpts, BrokerTls};
use nsq_tests::proxy::Proxy;
use nsq_tests::tls::{TestCerts, SERVER_NAME};

const WAIT: Duration = Duration::from_secs(20);
const CHANNEL: &str = "c";

async fn each_kind<F, Fut>(case: F)
where
    F: Fn(BrokerKind) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    nsq_tests::broker::each_kind(Duration::from_secs(120), case).await;
}

async fn publish_all(broker: &Broker, topic: &Topic, bodies: impl IntoIterator<Item = String>) {
    let p = Producer::new(broker.tcp_addr().to_string(), ProducerConfig::default()).unwrap();
    for body in bodies {
        p.publish(topic, body).await.expect("PUB");
    }
    p.stop().await;
}

async fn next_event(events: &mut nsq_client::Events) -> ConsumerEvent {
    tokio::time::timeout(WAIT, events.next())
        .await
        .expect("an event in time")
        .expect("events open")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broker_restart_during_backoff_does_not_stall_the_consumer() {
    each_kind(during_backoff).await;
}

async fn during_backoff(kind: BrokerKind) {
    const BEFORE: usize = 10;
    const AFTER: usize = 10;
    let what = kind.name();
    if !kind.available() {
        return;
    }
    let opts = BrokerOpts::default();
    let mut broker = Broker::start(kind, &opts).await.unwrap();
    broker.create_channel("backoff", CHANNEL).await.unwrap();
    let topic = Topic::new("backoff").unwrap();
    publish_all(&broker, &topic, (0..BEFORE).map(|i| format!("before-{i}"))).await;

    let mut consumer = Consumer::builder(topic.clone(), Channel::new(CHANNEL).unwrap())
        .nsqd(broker.tcp_addr().to_string())
        .config(
            ConsumerConfig::default()
                .max_in_flight(5)
                .backoff_multiplier(Duration::from_millis(200))
                .max_backoff(Duration::from_secs(2))
                .reconnect_backoff(Duration::from_millis(50), Duration::from_millis(200)),
        )
        .build()
        .unwrap();
    let mut events = consumer.events();
    let mut failures_left = 3;
    let mut seen = HashSet::new();
    // Fail the first deliveries until the consumer says it backs off. The event, not a
    // stats read after each message: the supervisor counts a failure after the message's
    // answer, and by then later successes may have brought the level back to 0.
    let deadline = Instant::now() + WAIT;
    loop {
        tokio::select! {
            event = next_event(&mut events) => {
                if let ConsumerEvent::BackoffEntered { .. } = event {
                    break;
                }
            }
            msg = tokio::time::timeout_at(deadline.into(), consumer.next()) => {
                let msg = msg.expect("backing off in time").expect("open");
                if failures_left > 0 {
                    failures_left -= 1;
                    msg.requeue(Some(Duration::ZERO)).unwrap();
                } else {
                    seen.insert(String::from_utf8_lossy(msg.body()).into_owned());
                    msg.finish().unwrap();
                }
            }
        }
    }
    broker.restart(&opts).await;
    publish_all(&broker, &topic, (0..AFTER).map(|i| format!("after-{i}"))).await;

    // Real nsqd kept the messages published before (SIGTERM writes them to disk); lite has
    // only those published after.
    let mut want: HashSet<String> = (0..AFTER).map(|i| format!("after-{i}")).collect();
    if kind == BrokerKind::RealNsqd {
        want.extend((0..BEFORE).map(|i| format!("before-{i}")));
    }
    let deadline = Instant::now() + WAIT;
    while !want.is_subset(&seen) {
        let left = deadline.saturating_duration_since(Instant::now());
        let msg = tokio::time::timeout(left, consumer.next())
            .await
            .unwrap_or_else(|_| {
                panic!(
                    "{what}: stalled after the restart; missing {:?}; {:?}",
                    want.difference(&seen).collect::<Vec<_>>(),
                    consumer.stats()
                )
            })
            .expect("open");
        seen.insert(String::from_utf8_lossy(msg.body()).into_owned());
        // A message read from the connection that the restart closed cannot be answered: it
        // says so, and nsqd delivers it again.
        if let Err(e) = msg.finish() {
            assert!(
                matches!(e, nsq_client::AckError::ConnectionClosed(_)),
                "{what}: {e:?}"
            );
        }
    }
    nsq_tests::eventually(&format!("{what}: out of backoff"), WAIT, || {
        let stats = consumer.stats();
        async move {
            (stats.backoff_level == 0 && stats.total_rdy == 5)
                .then_some(())
                .ok_or(format!("{stats:?}"))
        }
    })
    .await;
    consumer.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stopping_while_the_broker_restarts_ends_in_time_and_loses_nothing() {
    each_kind(stop_during_restart).await;
}

async fn stop_during_restart(kind: BrokerKind) {
    const MESSAGES: usize = 30;
    const HELD: usize = 10;
    const SHUTDOWN: Duration = Duration::from_secs(2);
    let what = kind.name();
    if !kind.available() {
        return;
    }
    let opts = BrokerOpts::default();
    let mut broker = Broker::start(kind, &opts).await.unwrap();
    broker.create_channel("stopping", CHANNEL).await.unwrap();
    let topic = Topic::new("stopping").unwrap();
    publish_all(&broker, &topic, (0..MESSAGES).map(|i| format!("m-{i}"))).await;

    let addr = broker.tcp_addr().to_string();
    let consumer = |max_in_flight: u32| {
        Consumer::builder(topic.clone(), Channel::new(CHANNEL).unwrap())
            .nsqd(addr.clone())
            .config(
                ConsumerConfig::default()
                    .max_in_flight(max_in_flight)
                    .shutdown_timeout(SHUTDOWN),
            )
            .build()
            .unwrap()
    };
    let mut first = consumer(HELD as u32);
    let mut held = Vec::new();
    for _ in 0..HELD {
        let msg = tokio::time::timeout(WAIT, first.next())
            .await
            .expect("a message")
            .expect("open");
        held.push(msg);
    }
    // The stop waits for the held messages; the broker restarts meanwhile; then they are
    // answered (on a connection that is gone: nsqd has them back).
    let started = Instant::now();
    let stopping = first.handle().stop();
    broker.restart(&opts).await;
    let late_fins_taken = held.drain(..).filter_map(|msg| msg.finish().ok()).count();
    tokio::time::timeout(SHUTDOWN + Duration::from_secs(3), stopping)
        .await
        .unwrap_or_else(|_| panic!("{what}: the stop did not end in time"));
    drop(first);
    let took = started.elapsed();
    eprintln!(
        "{what}: stop during a restart took {took:?} ({late_fins_taken} of {HELD} late FINs \
         taken without an error)"
    );

    if kind == BrokerKind::Lite {
        return; // no disk: the restart emptied it
    }
    // The held messages were answered on a connection that was gone, so nsqd (which wrote
    // them to disk on SIGTERM) has them back with the rest: a second consumer gets them all.
    let mut second = consumer(MESSAGES as u32);
    let all: HashSet<String> = (0..MESSAGES).map(|i| format!("m-{i}")).collect();
    let mut seen = HashSet::new();
    while !all.is_subset(&seen) {
        let msg = tokio::time::timeout(WAIT, second.next())
            .await
            .unwrap_or_else(|_| {
                panic!(
                    "{what}: messages lost across the stop and restart: {:?}",
                    all.difference(&seen).collect::<Vec<_>>()
                )
            })
            .expect("open");
        seen.insert(String::from_utf8_lossy(msg.body()).into_owned());
        msg.finish().unwrap();
    }
    second.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broker_restart_in_the_middle_of_a_tls_snappy_or_deflate_handshake() {
    each_kind(mid_handshake).await;
}

async fn mid_handshake(kind: BrokerKind) {
    let what = kind.name();
    if !kind.available() {
        return;
    }
    let certs = TestCerts::generate();
    let tls_opts = BrokerOpts {
        tls: Some(BrokerTls::server(&certs)),
        ..BrokerOpts::default()
    };
    let cases = [
        (
            "TLS",
            tls_opts,
            ConnectionConfig::default()
                .tls(TlsConfig::new(certs.client_config()).server_name(SERVER_NAME)),
        ),
        (
            "snappy",
            BrokerOpts::default(),
            ConnectionConfig::default().compression(Compression::Snappy),
        ),
        (
            "deflate",
            BrokerOpts::default(),
            ConnectionConfig::default().compression(Compression::Deflate { level: 6 }),
        ),
    ];
    for (feature, opts, connection) in cases {
        let what = format!("{what}, {feature}");
        let dial_timeout = Duration::from_secs(5);
        let mut broker = Broker::start(kind, &opts).await.unwrap();
        let proxy = Proxy::start(broker.tcp_addr()).await;
        let producer = Producer::new(
            proxy.addr().to_string(),
            ProducerConfig::default().connection(connection.dial_timeout(dial_timeout)),
        )
        .unwrap();
        let topic = Topic::new("handshake").unwrap();

        // IDENTIFY goes out; its answer is held while the broker restarts, then released
        // along with the end of that connection.
        proxy.hold_replies();
        let started = Instant::now();
        let attempt = producer.publish(&topic, "during");
        nsq_tests::eventually(&format!("{what}: connected to the broker"), WAIT, || {
            let n = proxy.forwarded();
            async move { (n == 1).then_some(()).ok_or(format!("{n} forwarded")) }
        })
        .await;
        broker.restart(&opts).await;
        proxy.open();
        let result = tokio::time::timeout(dial_timeout + Duration::from_secs(3), attempt)
            .await
            .unwrap_or_else(|_| panic!("{what}: the publish hung"));
        let err = result.expect_err(&format!("{what}: the connection died in the handshake"));
        assert!(
            matches!(
                err.kind(),
                PublishErrorKind::Connect(_) | PublishErrorKind::Disconnected(_)
            ),
            "{what}: {err:?}"
        );
        eprintln!("{what}: failed in {:?}: {err}", started.elapsed());

        // Within its reconnect backoff the producer fails publishes at once with the same
        // typed error (so a pool can go elsewhere); after it, it connects again. (When the old
        // broker's held answers completed the handshake, the first publish after meets the
        // dead connection instead.)
        nsq_tests::eventually(&format!("{what}: a publish after"), WAIT, || {
            let attempt = producer.publish(&topic, "after");
            async move {
                match attempt.await {
                    Ok(()) => Ok(()),
                    Err(e)
                        if matches!(
                            e.kind(),
                            PublishErrorKind::Connect(_) | PublishErrorKind::Disconnected(_)
                        ) =>
                    {
                        Err(e.to_string())
                    }
                    Err(e) => panic!("not a connection failure: {e:?}"),
                }
            }
        })
        .await;
        producer.stop().await;
    }
}
