//! A soak: rounds of publish + consume through nsq-server-lite and real nsqd 1.3.0 (skipped
//! without `NSQD_BIN` unless `CI` is set), each round with a new `Producer` and `Consumer`
//! that are stopped at its end. Sampled from this process (which also holds the lite broker
//! when that is the one under test):
//!
//! * open file descriptors and live tokio tasks return to their baseline after every round;
//! * resident memory does not grow with the messages: after the first round it stays within
//!   a fixed allowance, however many rounds follow.
//!
//! `NSQ_SOAK_SECS` sets how long each broker is soaked (default 20 s, as in CI);
//! RELIABILITY.md has the figures of a longer run.

use std::time::{Duration, Instant};

use futures::StreamExt;
use nsq_client::{Channel, Consumer, ConsumerConfig, Producer, ProducerConfig, Topic};
use nsq_tests::broker::{Broker, BrokerKind, BrokerOpts};
use nsq_tests::eventually;

const PER_ROUND: usize = 20_000;
const BODY: [u8; 100] = [b'x'; 100];
/// How much resident memory may grow after the first round, whatever the number of rounds.
const RSS_ALLOWANCE_KIB: u64 = 16 * 1024;
const WAIT: Duration = Duration::from_secs(30);

/// This process's resident set size, in KiB.
fn rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd").map_or(0, Iterator::count)
}

fn live_tasks() -> usize {
    tokio::runtime::Handle::current()
        .metrics()
        .num_alive_tasks()
}

/// What is open now: (file descriptors, tokio tasks).
fn open_now() -> (usize, usize) {
    (open_fds(), live_tasks())
}

async fn round(broker: &Broker, topic: &Topic, n: usize) {
    let addr = broker.tcp_addr().to_string();
    let producer = Producer::new(addr.clone(), ProducerConfig::default()).unwrap();
    let mut consumer = Consumer::builder(topic.clone(), Channel::new("soak").unwrap())
        .nsqd(addr)
        .config(ConsumerConfig::default().max_in_flight(200))
        .build()
        .unwrap();
    let publishing = {
        let producer = producer.clone();
        let topic = topic.clone();
        tokio::spawn(async move {
            futures::stream::iter(0..n)
                .map(|_| producer.publish(&topic, &BODY[..]))
                .buffer_unordered(100)
                .for_each(|r| async move { r.expect("PUB") })
                .await;
        })
    };
    for _ in 0..n {
        let msg = tokio::time::timeout(WAIT, consumer.next())
            .await
            .expect("a message in time")
            .expect("open");
        msg.finish().expect("FIN");
    }
    publishing.await.unwrap();
    producer.stop().await;
    consumer.stop().await;
}

async fn soak(kind: BrokerKind, length: Duration) {
    let what = kind.name();
    if !kind.available() {
        return;
    }
    let broker = Broker::start(kind, &BrokerOpts::default()).await.unwrap();
    broker.create_channel("soak", "soak").await.unwrap();
    let topic = Topic::new("soak").unwrap();
    let baseline = open_now();
    let rss_start = rss_kib();

    let started = Instant::now();
    let mut rounds = 0;
    let mut rss_after_first = 0;
    let mut rss_max = 0;
    while rounds == 0 || started.elapsed() < length {
        round(&broker, &topic, PER_ROUND).await;
        rounds += 1;
        // Every connection of the round is closed: what it opened is gone.
        eventually(
            &format!(
                "{what}: fds and tasks back to the baseline {baseline:?} after round {rounds}"
            ),
            WAIT,
            || async move {
                let now = open_now();
                (now == baseline).then_some(()).ok_or(format!("{now:?}"))
            },
        )
        .await;
        let rss = rss_kib();
        if rounds == 1 {
            rss_after_first = rss;
        }
        rss_max = rss_max.max(rss);
    }
    let messages = rounds * PER_ROUND;
    let growth = rss_max.saturating_sub(rss_after_first);
    eprintln!(
        "{what}: {rounds} rounds, {messages} messages in {:?}; RSS {rss_start} KiB at the start, \
         {rss_after_first} KiB after round 1, at most {rss_max} KiB after ({growth} KiB of growth, \
         {:.3} bytes per message); fds and tasks {baseline:?} before and after every round",
        started.elapsed(),
        growth as f64 * 1024.0 / messages as f64,
    );
    assert!(
        growth <= RSS_ALLOWANCE_KIB,
        "{what}: resident memory grew by {growth} KiB over {messages} messages"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_soak_keeps_memory_flat_and_returns_fds_and_tasks_to_baseline() {
    let length = std::env::var("NSQ_SOAK_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .map_or(Duration::from_secs(20), Duration::from_secs);
    // One broker after the other, so that each one's figures are its own.
    for kind in [BrokerKind::Lite, BrokerKind::RealNsqd] {
        soak(kind, length).await;
    }
}
