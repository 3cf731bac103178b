//! `nsq_client::Consumer` against clusters of nsq-server-lite and of real nsqd 1.3.0: delivery
//! from a lookupd-discovered cluster with the RDY budget held at the brokers, RDY rotation over
//! many brokers with `max_in_flight` 1, a broker stopped and restarted mid-stream, a graceful
//! stop, backoff, and `max_in_flight` changed at runtime.
//!
//! Every assertion about RDY and in-flight messages is made on what the brokers report in
//! `/stats`, not only on the consumer's own counters.
//!
//! Each test runs against both brokers, concurrently (the real one is skipped without
//! `NSQD_BIN` and `NSQLOOKUPD_BIN`, unless `CI` is set).

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::{FutureExt, StreamExt};
use nsq_client::proto::{Channel, Topic};
use nsq_client::{Consumer, ConsumerConfig, Producer, ProducerConfig};
use nsq_tests::broker::{Broker, BrokerKind, BrokerOpts, Lookupd};
use nsq_tests::proxy::Proxy;
use nsq_tests::{eventually, http};
use tokio::sync::Semaphore;

mod restart;

const TOPIC: &str = "consumer";
const CHANNEL: &str = "c";
/// How long a condition polled on `/stats` may take to hold.
const WAIT: Duration = Duration::from_secs(20);

/// Runs `case` for every broker kind at once, within 120 s.
async fn each_kind<F, Fut>(case: F)
where
    F: Fn(BrokerKind) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    nsq_tests::broker::each_kind(Duration::from_secs(120), case).await;
}

fn topic() -> Topic {
    Topic::new(TOPIC).unwrap()
}

fn channel() -> Channel {
    Channel::new(CHANNEL).unwrap()
}

fn body(broker: usize, i: usize) -> Bytes {
    Bytes::from(format!("broker {broker} message {i:06}"))
}

/// `n` brokers of `kind` with `opts`, each with the test's topic and channel; `None` when
/// the kind's peers are missing.
async fn start_brokers(kind: BrokerKind, n: usize, opts: &BrokerOpts) -> Option<Vec<Broker>> {
    if !kind.available() {
        return None;
    }
    let mut brokers = Vec::with_capacity(n);
    for _ in 0..n {
        let broker = Broker::start(kind, opts).await?;
        broker.create_channel(TOPIC, CHANNEL).await.unwrap();
        brokers.push(broker);
    }
    Some(brokers)
}

fn producer(addr: SocketAddr) -> Producer {
    let config = ProducerConfig::default()
        .publish_timeout(Some(Duration::from_secs(2)))
        .reconnect_backoff(Duration::from_millis(20), Duration::from_millis(200));
    Producer::new(addr.to_string(), config).expect("valid producer config")
}

/// Per broker: the channel's clients' RDY summed, and the channel's figures.
#[derive(Debug, Clone, Copy, Default)]
struct ChannelView {
    ready: i64,
    depth: i64,
    in_flight: usize,
    deferred: usize,
    clients: usize,
}

async fn channel_view(addr: SocketAddr) -> Result<ChannelView, String> {
    let value = http::json(addr, "GET", "/stats?format=json").await?;
    let stats: nsq_server_lite::stats::Stats =
        serde_json::from_value(value).map_err(|e| format!("/stats: {e}"))?;
    let c = stats
        .channel(TOPIC, CHANNEL)
        .ok_or_else(|| format!("no channel {TOPIC}/{CHANNEL} at {addr}"))?;
    Ok(ChannelView {
        ready: c.clients.iter().map(|c| c.ready_count).sum(),
        depth: c.depth,
        in_flight: c.in_flight_count,
        deferred: c.deferred_count,
        clients: c.clients.len(),
    })
}

async fn channel_views(addrs: &[SocketAddr]) -> Result<Vec<ChannelView>, String> {
    let mut views = Vec::with_capacity(addrs.len());
    for &addr in addrs {
        views.push(channel_view(addr).await?);
    }
    Ok(views)
}

fn http_addrs(brokers: &[Broker]) -> Vec<SocketAddr> {
    brokers.iter().map(Broker::http_addr).collect()
}

/// Waits until the consumer has `n` connections; polls it once first, which starts it.
async fn until_connected(consumer: &mut Consumer, n: usize, what: &str) {
    assert!(
        consumer.next().now_or_never().is_none(),
        "{what}: a message before anything was published"
    );
    eventually(&format!("{what}: {n} connections"), WAIT, || {
        let connections = consumer.stats().connections;
        async move {
            match connections {
                c if c == n => Ok(()),
                c => Err(format!("{c} connections")),
            }
        }
    })
    .await;
}

/// Every broker's channel: nothing in flight and a depth (with deferred messages) of `left`
/// in total.
async fn assert_settled(addrs: &[SocketAddr], left: i64, what: &str) {
    let views = channel_views(addrs).await.unwrap();
    for (k, v) in views.iter().enumerate() {
        assert_eq!(
            v.in_flight, 0,
            "{what}: broker {k} has messages in flight: {v:?}"
        );
    }
    let held: i64 = views.iter().map(|v| v.depth + v.deferred as i64).sum();
    assert_eq!(
        held, left,
        "{what}: messages left at the brokers: {views:?}"
    );
}

// ---------------------------------------------------------------------------------------------
// 1. A lookupd cluster: every message exactly once, Σ RDY ≤ max_in_flight at the brokers.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_message_is_delivered_from_a_lookupd_cluster() {
    each_kind(lookupd_cluster).await;
}

async fn lookupd_cluster(kind: BrokerKind) {
    const BROKERS: usize = 3;
    const PER_BROKER: usize = 2_000;
    const MAX_IN_FLIGHT: u32 = 10;
    let what = kind.name();
    if !kind.available() {
        return;
    }
    let lookupd_count = if kind == BrokerKind::Lite { 1 } else { 2 };
    let mut lookupds = Vec::new();
    for _ in 0..lookupd_count {
        lookupds.push(Lookupd::start(kind).await.expect("lookupd starts"));
    }
    let opts = BrokerOpts {
        lookupd_tcp: lookupds.iter().map(Lookupd::tcp_addr).collect(),
        ..BrokerOpts::default()
    };
    let brokers = start_brokers(kind, BROKERS, &opts).await.unwrap();
    for l in &lookupds {
        eventually(
            &format!("{what}: every broker registered with a lookupd"),
            WAIT,
            || async {
                let answer =
                    http::json(l.http_addr(), "GET", &format!("/lookup?topic={TOPIC}")).await?;
                let producers = answer["producers"].as_array().map_or(0, Vec::len);
                match producers {
                    BROKERS => Ok(()),
                    n => Err(format!("{n} producers: {answer}")),
                }
            },
        )
        .await;
    }

    let mut builder = Consumer::builder(topic(), channel()).config(
        ConsumerConfig::default()
            .max_in_flight(MAX_IN_FLIGHT)
            .lookupd_poll_interval(Duration::from_millis(200)),
    );
    for l in &lookupds {
        builder = builder.lookupd(l.http_addr().to_string());
    }
    let mut consumer = builder.build().unwrap();
    until_connected(&mut consumer, BROKERS, what).await;
    // The set-up's RDY changes go out on different sockets (decreases first, but a broker may
    // read its raise before another reads its decrease): sample once they have all landed.
    let addrs = http_addrs(&brokers);
    eventually(
        &format!("{what}: RDY at the brokers as the consumer set it"),
        WAIT,
        || {
            let per_connection = consumer.stats().per_connection;
            let brokers = &brokers;
            async move {
                for b in brokers {
                    let addr = b.tcp_addr().to_string();
                    let want = per_connection
                        .iter()
                        .find(|c| c.0 == addr)
                        .map_or(0, |c| c.1);
                    let ready = channel_view(b.http_addr()).await?.ready;
                    if ready != i64::from(want) {
                        return Err(format!(
                            "{addr}: ready_count {ready}, consumer's RDY {want}"
                        ));
                    }
                }
                Ok(())
            }
        },
    )
    .await;

    // Sample every broker's RDY while the messages flow.
    let sampling = Arc::new(AtomicBool::new(true));
    let sampler = tokio::spawn({
        let (addrs, sampling) = (addrs.clone(), sampling.clone());
        async move {
            let mut samples = Vec::new();
            while sampling.load(Ordering::Relaxed) {
                let views = channel_views(&addrs).await.unwrap();
                samples.push(views.iter().map(|v| v.ready).sum::<i64>());
            }
            samples
        }
    });
    let publishers: Vec<_> = brokers
        .iter()
        .enumerate()
        .map(|(k, b)| {
            let producer = producer(b.tcp_addr());
            tokio::spawn(async move {
                for chunk in (0..PER_BROKER).collect::<Vec<_>>().chunks(100) {
                    let bodies: Vec<Bytes> = chunk.iter().map(|&i| body(k, i)).collect();
                    producer.multi_publish(&topic(), bodies).await.unwrap();
                }
                producer.stop().await;
            })
        })
        .collect();

    let total = BROKERS * PER_BROKER;
    let mut seen: HashMap<Bytes, usize> = HashMap::with_capacity(total);
    let started = Instant::now();
    while seen.len() < total {
        let msg = tokio::time::timeout(WAIT, consumer.next())
            .await
            .unwrap_or_else(|_| panic!("{what}: only {} of {total} messages", seen.len()))
            .expect("the consumer's stream ended early");
        *seen.entry(msg.body().clone()).or_default() += 1;
        msg.finish().unwrap();
    }
    let elapsed = started.elapsed();
    for p in publishers {
        p.await.unwrap();
    }
    sampling.store(false, Ordering::Relaxed);
    let samples = sampler.await.unwrap();
    // Answers reach the consumer's counters through its connection tasks.
    let stats = eventually(&format!("{what}: every message finished"), WAIT, || {
        let stats = consumer.stats();
        async move {
            if stats.finished == total as u64 {
                Ok(stats)
            } else {
                Err(format!("{stats:?}"))
            }
        }
    })
    .await;
    consumer.stop().await;

    let max_rdy = samples.iter().copied().max().unwrap_or(0);
    eprintln!(
        "{what}: {total} messages from {BROKERS} brokers in {elapsed:?}; {} RDY samples, Σ ready_count at most {max_rdy}",
        samples.len()
    );
    assert!(!samples.is_empty(), "{what}: no RDY sample");
    assert!(
        max_rdy <= i64::from(MAX_IN_FLIGHT),
        "{what}: Σ ready_count {max_rdy} above max_in_flight {MAX_IN_FLIGHT}"
    );
    let twice: Vec<_> = seen.iter().filter(|(_, &n)| n > 1).collect();
    assert!(
        twice.is_empty(),
        "{what}: delivered more than once: {twice:?}"
    );
    for k in 0..BROKERS {
        for i in 0..PER_BROKER {
            assert!(
                seen.contains_key(&body(k, i)),
                "{what}: never received {:?}",
                body(k, i)
            );
        }
    }
    assert_eq!(stats.finished, total as u64, "{what}: {stats:?}");
    assert_settled(&addrs, 0, what).await;
}

// ---------------------------------------------------------------------------------------------
// 2. max_in_flight 1 over 10 brokers: each broker is served within a second.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_in_flight_one_with_ten_brokers_serves_each_within_a_second() {
    each_kind(ten_brokers).await;
}

async fn ten_brokers(kind: BrokerKind) {
    const BROKERS: usize = 10;
    let what = kind.name();
    let Some(brokers) = start_brokers(kind, BROKERS, &BrokerOpts::default()).await else {
        return;
    };
    let producers: Vec<Producer> = brokers.iter().map(|b| producer(b.tcp_addr())).collect();
    for p in &producers {
        p.ping().await.unwrap();
    }
    let mut builder =
        Consumer::builder(topic(), channel()).config(ConsumerConfig::default().max_in_flight(1));
    for b in &brokers {
        builder = builder.nsqd(b.tcp_addr().to_string());
    }
    let mut consumer = builder.build().unwrap();
    until_connected(&mut consumer, BROKERS, what).await;

    let mut latencies = Vec::with_capacity(BROKERS);
    for (k, p) in producers.iter().enumerate() {
        let sent = Instant::now();
        p.publish(&topic(), body(k, 0)).await.unwrap();
        let msg = tokio::time::timeout(Duration::from_secs(10), consumer.next())
            .await
            .unwrap_or_else(|_| panic!("{what}: nothing from broker {k} within 10 s"))
            .expect("the consumer's stream ended early");
        latencies.push(sent.elapsed());
        assert_eq!(msg.body(), &body(k, 0), "{what}");
        msg.finish().unwrap();
    }
    eprintln!(
        "{what}: publish-to-receipt with max_in_flight 1 over {BROKERS} brokers: {latencies:?}"
    );
    let slowest = latencies.iter().max().copied().unwrap_or_default();
    assert!(
        slowest < Duration::from_secs(1),
        "{what}: a broker waited {slowest:?} for RDY: {latencies:?}"
    );
    consumer.stop().await;
    for p in &producers {
        p.stop().await;
    }
    assert_settled(&http_addrs(&brokers), 0, what).await;
}

// ---------------------------------------------------------------------------------------------
// 4. A graceful stop leaves nothing in flight: every message is finished or back in the queue.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graceful_stop_leaves_nothing_in_flight() {
    each_kind(graceful_stop).await;
}

const STOP_BROKERS: usize = 2;
const STOP_PER_BROKER: usize = 500;

/// A consumer of brokers that then get `STOP_PER_BROKER` messages each. They are published
/// once the consumer's RDY has reached every broker: a broker that delivers its whole RDY before
/// a second connection is set up leaves more than `max_in_flight` in flight for a moment (the
/// RDY it had is lowered after nsqd may already have used it), which is not what this tests.
async fn loaded(kind: BrokerKind, what: &str) -> Option<(Vec<Broker>, Consumer)> {
    let brokers = start_brokers(kind, STOP_BROKERS, &BrokerOpts::default()).await?;
    let mut builder =
        Consumer::builder(topic(), channel()).config(ConsumerConfig::default().max_in_flight(100));
    for b in &brokers {
        builder = builder.nsqd(b.tcp_addr().to_string());
    }
    let mut consumer = builder.build().unwrap();
    until_connected(&mut consumer, STOP_BROKERS, what).await;
    ready_is(&http_addrs(&brokers), 100, what).await;
    for (k, b) in brokers.iter().enumerate() {
        let p = producer(b.tcp_addr());
        let bodies: Vec<Bytes> = (0..STOP_PER_BROKER).map(|i| body(k, i)).collect();
        p.multi_publish(&topic(), bodies).await.unwrap();
        p.stop().await;
    }
    Some((brokers, consumer))
}

async fn graceful_stop(kind: BrokerKind) {
    graceful_stop_of_run(kind).await;
    graceful_stop_of_stream(kind).await;
}

/// `run` with a handler that blocks until after the stop: the stop waits for the handlers.
async fn graceful_stop_of_run(kind: BrokerKind) {
    const QUICK: usize = 150;
    const CONCURRENCY: usize = 10;
    let what = format!("{} run", kind.name());
    let Some((brokers, consumer)) = loaded(kind, &what).await else {
        return;
    };
    let stop = consumer.handle();
    let handled = Arc::new(AtomicUsize::new(0));
    let blocked = Arc::new(AtomicUsize::new(0));
    let gate = Arc::new(Semaphore::new(0));
    let running = tokio::spawn({
        let (handled, blocked, gate) = (handled.clone(), blocked.clone(), gate.clone());
        async move {
            consumer
                .run(CONCURRENCY, move |_msg: nsq_client::Message| {
                    let (handled, blocked, gate) = (handled.clone(), blocked.clone(), gate.clone());
                    async move {
                        if handled.fetch_add(1, Ordering::SeqCst) >= QUICK {
                            blocked.fetch_add(1, Ordering::SeqCst);
                            gate.acquire().await?.forget();
                        }
                        Ok(())
                    }
                })
                .await
        }
    });
    let addrs = http_addrs(&brokers);
    // Every handler is stuck and the brokers have the whole budget in flight.
    eventually(
        &format!("{what}: handlers stuck, 100 in flight"),
        WAIT,
        || async {
            let stuck = blocked.load(Ordering::SeqCst);
            let in_flight: usize = channel_views(&addrs)
                .await?
                .iter()
                .map(|v| v.in_flight)
                .sum();
            if stuck == CONCURRENCY && in_flight == 100 {
                Ok(())
            } else {
                Err(format!("{stuck} handlers stuck, {in_flight} in flight"))
            }
        },
    )
    .await;
    drop(stop.stop());
    gate.add_permits(STOP_BROKERS * STOP_PER_BROKER);
    tokio::time::timeout(WAIT, running)
        .await
        .expect("run returns after the stop")
        .unwrap();
    let finished = handled.load(Ordering::SeqCst);
    eprintln!("{what}: {finished} finished before the stop completed");
    assert!(
        finished >= QUICK + CONCURRENCY,
        "{what}: {finished} handled"
    );
    assert_settled(
        &addrs,
        (STOP_BROKERS * STOP_PER_BROKER - finished) as i64,
        &what,
    )
    .await;
}

/// The stream, with messages held unanswered when `stop` is called and dropped during it:
/// they go back to the brokers.
async fn graceful_stop_of_stream(kind: BrokerKind) {
    const FINISH: usize = 60;
    let what = format!("{} stream", kind.name());
    let Some((brokers, mut consumer)) = loaded(kind, &what).await else {
        return;
    };
    let mut held = Vec::new();
    while held.len() < 100 {
        let msg = tokio::time::timeout(WAIT, consumer.next())
            .await
            .expect("messages arrive")
            .expect("the stream goes on");
        held.push(msg);
    }
    for msg in held.drain(..FINISH) {
        msg.finish().unwrap();
    }
    let addrs = http_addrs(&brokers);
    let dropper = async move {
        tokio::task::yield_now().await;
        drop(held);
    };
    tokio::time::timeout(WAIT, async { tokio::join!(consumer.stop(), dropper) })
        .await
        .expect("stop returns");
    assert_settled(
        &addrs,
        (STOP_BROKERS * STOP_PER_BROKER - FINISH) as i64,
        &what,
    )
    .await;
}

// ---------------------------------------------------------------------------------------------
// 5. Backoff is entered on failures, holds RDY at the brokers to 0 (1 while probing), and is
//    left once messages succeed.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backoff_is_entered_and_left() {
    each_kind(backoff).await;
}

async fn backoff(kind: BrokerKind) {
    const BROKERS: usize = 2;
    const PER_BROKER: usize = 20;
    const FAILURES: u64 = 3;
    const MAX_IN_FLIGHT: u32 = 6;
    let what = kind.name();
    let Some(brokers) = start_brokers(kind, BROKERS, &BrokerOpts::default()).await else {
        return;
    };
    let mut builder = Consumer::builder(topic(), channel()).config(
        ConsumerConfig::default()
            .max_in_flight(MAX_IN_FLIGHT)
            // Long enough for the 10 ms sampling below to see each backoff window.
            .backoff_multiplier(Duration::from_millis(100))
            .max_backoff(Duration::from_secs(1)),
    );
    for b in &brokers {
        builder = builder.nsqd(b.tcp_addr().to_string());
    }
    let mut consumer = builder.build().unwrap();
    until_connected(&mut consumer, BROKERS, what).await;
    for (k, b) in brokers.iter().enumerate() {
        let p = producer(b.tcp_addr());
        let bodies: Vec<Bytes> = (0..PER_BROKER).map(|i| body(k, i)).collect();
        p.multi_publish(&topic(), bodies).await.unwrap();
        p.stop().await;
    }

    let total = (BROKERS * PER_BROKER) as u64;
    let addrs = http_addrs(&brokers);
    let failures = AtomicU64::new(0);
    let mut max_level = 0;
    let mut backoff_since: Option<Instant> = None;
    let mut backoff_samples = Vec::new();
    let deadline = Instant::now() + WAIT;
    while consumer.stats().finished < total {
        assert!(
            Instant::now() < deadline,
            "{what}: stuck: {:?}",
            consumer.stats()
        );
        let sample = tokio::time::sleep(Duration::from_millis(10));
        tokio::select! {
            msg = consumer.next() => {
                let msg = msg.expect("the stream goes on");
                if failures.fetch_add(1, Ordering::Relaxed) < FAILURES {
                    msg.requeue(Some(Duration::ZERO)).unwrap();
                } else {
                    msg.finish().unwrap();
                }
            }
            () = sample => {
                let before = consumer.stats().backoff_level;
                let views = channel_views(&addrs).await.unwrap();
                let after = consumer.stats().backoff_level;
                max_level = max_level.max(before).max(after);
                if before > 0 && after > 0 {
                    let since = *backoff_since.get_or_insert_with(Instant::now);
                    // RDY 0 has had time to reach the brokers.
                    if since.elapsed() > Duration::from_millis(30) {
                        backoff_samples.push(views.iter().map(|v| v.ready).sum::<i64>());
                    }
                } else if after == 0 {
                    backoff_since = None;
                }
            }
        }
    }
    eprintln!(
        "{what}: backoff level up to {max_level}; Σ ready_count in backoff: {backoff_samples:?}"
    );
    assert!(max_level > 0, "{what}: never backed off");
    assert!(
        !backoff_samples.is_empty(),
        "{what}: no sample during backoff"
    );
    assert!(
        backoff_samples.iter().all(|&r| r <= 1),
        "{what}: RDY above 1 during backoff: {backoff_samples:?}"
    );
    eventually(&format!("{what}: backoff left"), WAIT, || {
        let level = consumer.stats().backoff_level;
        let addrs = &addrs;
        async move {
            let ready: i64 = channel_views(addrs).await?.iter().map(|v| v.ready).sum();
            if level == 0 && ready == i64::from(MAX_IN_FLIGHT) {
                Ok(())
            } else {
                Err(format!("level {level}, Σ ready_count {ready}"))
            }
        }
    })
    .await;
    let stats = consumer.stats();
    assert_eq!(stats.finished, total, "{what}: {stats:?}");
    assert_eq!(stats.requeued, FAILURES, "{what}: {stats:?}");
    consumer.stop().await;
    assert_settled(&addrs, 0, what).await;
}

// ---------------------------------------------------------------------------------------------
// 6. set_max_in_flight(0) pauses delivery; setting it back resumes.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_in_flight_changes_at_runtime() {
    each_kind(runtime_max_in_flight).await;
}

/// Waits until the brokers' clients' RDY add up to `want`.
async fn ready_is(addrs: &[SocketAddr], want: i64, what: &str) {
    eventually(
        &format!("{what}: Σ ready_count {want}"),
        WAIT,
        || async move {
            let views = channel_views(addrs).await?;
            match views.iter().map(|v| v.ready).sum::<i64>() {
                r if r == want => Ok(()),
                r => Err(format!("Σ ready_count {r}: {views:?}")),
            }
        },
    )
    .await;
}

async fn runtime_max_in_flight(kind: BrokerKind) {
    const BROKERS: usize = 2;
    const PER_BROKER: usize = 20;
    const MAX_IN_FLIGHT: u32 = 8;
    let what = kind.name();
    let Some(brokers) = start_brokers(kind, BROKERS, &BrokerOpts::default()).await else {
        return;
    };
    let mut builder = Consumer::builder(topic(), channel())
        .config(ConsumerConfig::default().max_in_flight(MAX_IN_FLIGHT));
    for b in &brokers {
        builder = builder.nsqd(b.tcp_addr().to_string());
    }
    let mut consumer = builder.build().unwrap();
    until_connected(&mut consumer, BROKERS, what).await;
    let addrs = http_addrs(&brokers);
    ready_is(&addrs, i64::from(MAX_IN_FLIGHT), what).await;

    consumer.set_max_in_flight(0);
    ready_is(&addrs, 0, what).await;
    for (k, b) in brokers.iter().enumerate() {
        let p = producer(b.tcp_addr());
        let bodies: Vec<Bytes> = (0..PER_BROKER).map(|i| body(k, i)).collect();
        p.multi_publish(&topic(), bodies).await.unwrap();
        p.stop().await;
    }
    // Paused: nothing is delivered, the brokers keep everything queued.
    let paused = tokio::time::timeout(Duration::from_millis(300), consumer.next()).await;
    assert!(paused.is_err(), "{what}: a message while paused");
    assert_settled(&addrs, (BROKERS * PER_BROKER) as i64, what).await;
    assert_eq!(consumer.stats().total_rdy, 0, "{what}");

    consumer.set_max_in_flight(MAX_IN_FLIGHT);
    let mut seen = HashSet::new();
    while seen.len() < BROKERS * PER_BROKER {
        let msg = tokio::time::timeout(WAIT, consumer.next())
            .await
            .unwrap_or_else(|_| panic!("{what}: only {} messages after resuming", seen.len()))
            .expect("the stream goes on");
        seen.insert(msg.body().clone());
        msg.finish().unwrap();
    }
    ready_is(&addrs, i64::from(MAX_IN_FLIGHT), what).await;
    consumer.stop().await;
    assert_settled(&addrs, 0, what).await;
}
