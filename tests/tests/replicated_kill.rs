//! Replicated publishing survives the death of an nsqd: three nsqd behind nsqlookupd, a
//! `ReplicatedProducer` putting each of 100,000 messages on two of them, and a handler
//! consumer de-duplicating by envelope. After 30 % of the publishes were acknowledged, one
//! nsqd dies and stays dead (`kill -9` for real nsqd; for nsq-server-lite, a shutdown
//! without draining). Every publish reported OK must reach the handler exactly once: lost 0,
//! handler duplicates 0. The test prints its figures. The real-nsqd run is skipped without
//! `NSQD_BIN` and `NSQLOOKUPD_BIN`, unless `CI` is set.

use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use nsq_client::{
    Channel, Consumer, ConsumerConfig, Dedup, HandlerError, Message, ProducerConfig, ProducerPool,
    ReplicatedProducer, Replication, Strategy, Topic,
};
use nsq_tests::broker::{Broker, BrokerKind, BrokerOpts};
use nsq_tests::cluster::{number_of, numbered_body, Cluster};
use nsq_tests::eventually;
use tokio::sync::oneshot;

const TOPIC: &str = "replicated";
const CHANNEL: &str = "c";
const MESSAGES: usize = 100_000;
/// The node that dies, after 30 % of the publishes were acknowledged.
const VICTIM: usize = 1;
/// Publishes in flight at once.
const WINDOW: usize = 256;
const MAX_IN_FLIGHT: u32 = 300;
const BODY_LEN: usize = 100;
const WAIT: Duration = Duration::from_secs(60);

#[derive(Debug)]
struct Figures {
    ok: usize,
    failed: usize,
    handled: usize,
    handler_duplicates: u64,
    lost: usize,
    /// Copies finished by the window without reaching the handler.
    duplicates_finished: u64,
    /// Copies the victim acknowledged before it died.
    ok_by_victim: u64,
    /// What the victim held when it died: (queued, in flight), all lost with it.
    victim_at_death: (u64, u64),
}

async fn scenario(kind: BrokerKind) -> Option<Figures> {
    let what = kind.name();
    let Cluster {
        lookupd,
        mut brokers,
    } = Cluster::start(kind, 3, TOPIC, CHANNEL, |_| BrokerOpts::default(), WAIT).await?;
    let addrs: Vec<String> = brokers.iter().map(|b| b.tcp_addr().to_string()).collect();

    // The handler side: deliveries per message, through `run`, de-duplicated by envelope.
    let topic = Topic::new(TOPIC).unwrap();
    let consumer = Consumer::builder(topic.clone(), Channel::new(CHANNEL).unwrap())
        .lookupd(lookupd.http_addr().to_string())
        .config(
            ConsumerConfig::default()
                .max_in_flight(MAX_IN_FLIGHT)
                .lookupd_poll_interval(Duration::from_millis(500)),
        )
        .deduplicate(Dedup::envelope())
        .build()
        .unwrap();
    consumer.connected(WAIT).await.expect("subscribed");
    eventually(&format!("{what}: consumer on 3 nsqd"), WAIT, || {
        let n = consumer.stats().connections;
        async move { (n == 3).then_some(()).ok_or(format!("{n} connections")) }
    })
    .await;
    let handled: Arc<Vec<AtomicU32>> = Arc::new((0..MESSAGES).map(|_| AtomicU32::new(0)).collect());
    let handle = consumer.handle();
    let counts = handled.clone();
    let consuming = tokio::spawn(async move {
        consumer
            .run(32, move |msg: Message| {
                let counts = counts.clone();
                async move {
                    let seq = number_of(msg.body())
                        .filter(|&s| s < MESSAGES)
                        .expect("a body of ours, without its envelope");
                    counts[seq].fetch_add(1, Ordering::Relaxed);
                    Ok::<_, HandlerError>(())
                }
            })
            .await;
    });

    // The victim dies from a task of its own once enough OKs came back.
    let (kill_now, kill_rx) = oneshot::channel::<()>();
    let mut victim = brokers.remove(VICTIM);
    let dying = tokio::spawn(async move {
        let mut at_death = (0, 0);
        if kill_rx.await.is_ok() {
            let (topic_depth, depth, in_flight, _) =
                victim.held(TOPIC, CHANNEL).await.unwrap_or_default();
            at_death = (topic_depth + depth, in_flight);
            victim.kill().await;
        }
        (victim, at_death)
    });

    let pool = ProducerPool::new(
        addrs.clone(),
        ProducerConfig::default(),
        Strategy::RoundRobin,
    )
    .unwrap();
    let producer = ReplicatedProducer::new(pool.clone(), Replication::copies(2)).unwrap();
    let ok = AtomicUsize::new(0);
    let mut ok_seqs = vec![false; MESSAGES];
    let mut kill_now = Some(kill_now);
    let started = Instant::now();
    let mut results = futures::stream::iter(0..MESSAGES)
        .map(|seq| {
            let publish = producer.publish(&topic, numbered_body(seq, BODY_LEN));
            async move { (seq, publish.await) }
        })
        .buffer_unordered(WINDOW);
    while let Some((seq, result)) = results.next().await {
        match result {
            Ok(receipt) => {
                assert_eq!(receipt.acked().len(), 2, "{what}: two copies for an OK");
                ok_seqs[seq] = true;
                if ok.fetch_add(1, Ordering::Relaxed) + 1 == MESSAGES * 3 / 10 {
                    if let Some(tx) = kill_now.take() {
                        let _ = tx.send(());
                    }
                }
            }
            Err(e) => eprintln!("{what}: publish {seq}: {e}"),
        }
    }
    drop(results);
    let published_in = started.elapsed();
    let (_victim, victim_at_death) = dying.await.expect("the victim's task");
    let ok_by_victim = pool.stats().nodes[VICTIM].producer.messages_published;
    pool.stop().await;

    // Done when both survivors hold nothing for the channel.
    let live: Vec<&Broker> = brokers.iter().collect();
    eventually(&format!("{what}: the survivors drained"), WAIT, || {
        let live = live.clone();
        async move {
            for b in live {
                let counts = b.held(TOPIC, CHANNEL).await?;
                if counts != (0, 0, 0, 0) {
                    return Err(format!("{}: {counts:?}", b.tcp_addr()));
                }
            }
            Ok(())
        }
    })
    .await;
    let stats = handle.stats();
    handle.stop().await;
    tokio::time::timeout(WAIT, consuming)
        .await
        .expect("the consumer stops")
        .expect("the consumer's task");

    let ok = ok.load(Ordering::Relaxed);
    let deliveries: Vec<u32> = handled.iter().map(|c| c.load(Ordering::Relaxed)).collect();
    let figures = Figures {
        ok,
        failed: MESSAGES - ok,
        handled: deliveries.iter().filter(|&&d| d > 0).count(),
        handler_duplicates: deliveries
            .iter()
            .map(|&d| u64::from(d.saturating_sub(1)))
            .sum(),
        lost: (0..MESSAGES)
            .filter(|&s| ok_seqs[s] && deliveries[s] == 0)
            .count(),
        duplicates_finished: stats.duplicates,
        ok_by_victim,
        victim_at_death,
    };
    eprintln!(
        "{what}: published {MESSAGES} with 2 copies each, OK {}, failed {}, handled {}, lost {}, \
         handler duplicates {}; copies the window finished {}; copies the victim acknowledged \
         before it died {}, and held when it died: {} queued, {} in flight; published in \
         {published_in:?}",
        figures.ok,
        figures.failed,
        figures.handled,
        figures.lost,
        figures.handler_duplicates,
        figures.duplicates_finished,
        figures.ok_by_victim,
        figures.victim_at_death.0,
        figures.victim_at_death.1,
    );
    assert_eq!(figures.lost, 0, "{what}: {figures:?}");
    assert_eq!(figures.handler_duplicates, 0, "{what}: {figures:?}");
    assert!(
        figures.ok_by_victim >= (MESSAGES * 3 / 10) as u64 / 4,
        "{what}: the victim took its share before it died: {figures:?}"
    );
    assert!(
        figures.victim_at_death.0 + figures.victim_at_death.1 > 0,
        "{what}: the victim died holding messages, or the test proves nothing: {figures:?}"
    );
    assert!(
        figures.duplicates_finished > 0,
        "{what}: the survivors' twin copies were recognised: {figures:?}"
    );
    Some(figures)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicated_publish_survives_nsqd_kill() {
    let run = async {
        for kind in [BrokerKind::Lite, BrokerKind::RealNsqd] {
            scenario(kind).await;
        }
    };
    tokio::time::timeout(Duration::from_secs(300), run)
        .await
        .expect("within 300 s");
}
