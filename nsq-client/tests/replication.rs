//! Replicated publishing and de-duplicated consuming against nsq-server-lite brokers: the
//! copies of a message land on distinct nsqd, a dead nsqd's copy moves to another one, a
//! quorum that cannot be reached is a typed error with the body, and a de-duplicating
//! consumer hands every message to the user once, through the stream and through a handler.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use nsq_client::replication::{open, MessageKey};
use nsq_client::{
    Channel, Consumer, ConsumerConfig, Dedup, HandlerError, Message, ProducerConfig, ProducerPool,
    ReplicatedProducer, Replication, Strategy, Topic,
};
use nsq_server_lite::Nsqd;

const WAIT: Duration = Duration::from_secs(10);

async fn brokers(n: usize) -> Vec<Nsqd> {
    let mut all = Vec::new();
    for _ in 0..n {
        all.push(Nsqd::start().await.unwrap());
    }
    all
}

fn pool_of(brokers: &[Nsqd]) -> ProducerPool {
    let config = ProducerConfig::default().publish_timeout(Some(WAIT));
    ProducerPool::new(
        brokers.iter().map(|b| b.tcp_addr().to_string()),
        config,
        Strategy::RoundRobin,
    )
    .unwrap()
}

/// Every message of `topic` on `nsqd`, read raw (envelope and all) from a channel of its own.
async fn keys_on(nsqd: &Nsqd, topic: &Topic, n: usize) -> Vec<MessageKey> {
    let mut raw = Consumer::builder(topic.clone(), Channel::new("raw").unwrap())
        .nsqd(nsqd.tcp_addr().to_string())
        .config(ConsumerConfig::default().max_in_flight(100))
        .build()
        .unwrap();
    let mut keys = Vec::new();
    while keys.len() < n {
        let msg = tokio::time::timeout(WAIT, raw.next())
            .await
            .expect("a message")
            .expect("open");
        keys.push(open(msg.body()).expect("an envelope").0);
        msg.finish().unwrap();
    }
    raw.stop().await;
    keys
}

fn depth(nsqd: &Nsqd, topic: &str) -> u64 {
    nsqd.stats().topic(topic).map_or(0, |t| t.message_count)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_message_lands_on_two_distinct_nsqd() {
    let all = brokers(3).await;
    let producer = ReplicatedProducer::new(pool_of(&all), Replication::copies(2)).unwrap();
    let topic = Topic::new("two").unwrap();
    let mut sent = HashSet::new();
    for i in 0..300 {
        let receipt = producer.publish(&topic, format!("m{i}")).await.unwrap();
        let acked: HashSet<&str> = receipt.acked().into_iter().collect();
        assert_eq!(acked.len(), 2, "two distinct nsqd: {receipt:?}");
        assert!(sent.insert(receipt.key()), "a fresh key per message");
    }
    let counts: Vec<u64> = all.iter().map(|b| depth(b, "two")).collect();
    assert_eq!(counts.iter().sum::<u64>(), 600, "{counts:?}");
    let mut copies: HashMap<MessageKey, usize> = HashMap::new();
    for (b, &n) in all.iter().zip(&counts) {
        for key in keys_on(b, &topic, n as usize).await {
            *copies.entry(key).or_default() += 1;
        }
    }
    assert_eq!(copies.len(), 300);
    assert!(copies.values().all(|&c| c == 2), "{copies:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_copy_for_a_dead_nsqd_goes_to_another_one() {
    let all = brokers(3).await;
    let dead = all[0].tcp_addr().to_string();
    all[0].shutdown().await;
    let producer = ReplicatedProducer::new(pool_of(&all), Replication::copies(2)).unwrap();
    let topic = Topic::new("moved").unwrap();
    let receipt = producer.publish(&topic, "first").await.unwrap();
    let mut acked = receipt.acked().to_vec();
    acked.sort();
    let mut live = vec![all[1].tcp_addr().to_string(), all[2].tcp_addr().to_string()];
    live.sort();
    assert_eq!(acked, live, "{receipt:?}");
    assert!(
        receipt.failed().iter().all(|(addr, _)| *addr == dead),
        "{receipt:?}"
    );
    for i in 0..20 {
        let receipt = producer.publish(&topic, format!("m{i}")).await.unwrap();
        assert_eq!(receipt.acked().len(), 2, "{receipt:?}");
    }
    assert_eq!(depth(&all[1], "moved") + depth(&all[2], "moved"), 42);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_quorum_out_of_reach_is_a_typed_error_with_the_body() {
    let all = brokers(2).await;
    all[1].shutdown().await;
    let topic = Topic::new("short").unwrap();
    let both = ReplicatedProducer::new(pool_of(&all), Replication::copies(2)).unwrap();
    let err = both.publish(&topic, "precious").await.unwrap_err();
    assert_eq!(err.acked(), [all[0].tcp_addr().to_string()]);
    assert_eq!(err.failed().len(), 1, "{err}");
    assert!(err.to_string().contains("reached 1 of the 2"), "{err}");
    assert_eq!(&err.into_body()[..], b"precious");

    let one_will_do =
        ReplicatedProducer::new(pool_of(&all), Replication::copies(2).quorum(1)).unwrap();
    let receipt = one_will_do.publish(&topic, "good enough").await.unwrap();
    assert_eq!(receipt.acked(), [all[0].tcp_addr().to_string()]);
}

/// `n` messages, two copies each, on `brokers`.
async fn publish_replicated(brokers: &[Nsqd], topic: &Topic, n: usize) {
    let producer = ReplicatedProducer::new(pool_of(brokers), Replication::copies(2)).unwrap();
    let publishes: Vec<_> = (0..n)
        .map(|i| producer.publish(topic, format!("m{i}")))
        .collect();
    for result in futures::future::join_all(publishes).await {
        result.unwrap();
    }
}

fn consumer_of(brokers: &[Nsqd], topic: &Topic) -> Consumer {
    let mut builder = Consumer::builder(topic.clone(), Channel::new("once").unwrap())
        .config(ConsumerConfig::default().max_in_flight(64))
        .deduplicate(Dedup::envelope());
    for b in brokers {
        builder = builder.nsqd(b.tcp_addr().to_string());
    }
    builder.build().unwrap()
}

/// Waits until every broker's channel is drained: each copy finished.
async fn drained(brokers: &[Nsqd], topic: &str) {
    tokio::time::timeout(WAIT, async {
        loop {
            let done = brokers.iter().all(|b| {
                b.stats().channel(topic, "once").is_some_and(|c| {
                    c.depth == 0 && c.in_flight_count == 0 && c.deferred_count == 0
                })
            });
            if done {
                return;
            }
            tokio::task::yield_now().await;
        }
    })
    .await
    .expect("every copy finished");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_stream_sees_each_replicated_message_once() {
    let all = brokers(3).await;
    let topic = Topic::new("stream").unwrap();
    publish_replicated(&all, &topic, 500).await;
    let mut consumer = consumer_of(&all, &topic);
    let mut seen = HashSet::new();
    while seen.len() < 500 {
        let msg = tokio::time::timeout(WAIT, consumer.next())
            .await
            .expect("a message")
            .expect("open");
        assert!(
            seen.insert(msg.body().clone()),
            "delivered twice: {:?}",
            msg.body()
        );
        msg.finish().unwrap();
    }
    // Keep reading until every copy is finished; none of them may come out.
    tokio::select! {
        () = drained(&all, "stream") => {}
        msg = consumer.next() => panic!("a copy reached the stream: {msg:?}"),
    }
    let stats = consumer.stats();
    assert_eq!(stats.duplicates, 500, "{stats:?}");
    assert_eq!(stats.held_copies, 0, "{stats:?}");
    consumer.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_handler_sees_each_replicated_message_once_even_when_a_copy_fails() {
    let all = brokers(2).await;
    let topic = Topic::new("handler").unwrap();
    publish_replicated(&all, &topic, 300).await;
    let consumer = consumer_of(&all, &topic);
    let handle = consumer.handle();
    let handled = Arc::new(Mutex::new(HashMap::<String, u32>::new()));
    let failed_once = Arc::new(Mutex::new(HashSet::<String>::new()));
    let (counts, failures) = (handled.clone(), failed_once.clone());
    let run = tokio::spawn(async move {
        consumer
            .run(8, move |msg: Message| {
                let (counts, failures) = (counts.clone(), failures.clone());
                async move {
                    let body = String::from_utf8_lossy(msg.body()).into_owned();
                    // Every tenth message fails its first try: its twin must not be lost.
                    if body.ends_with('7') && failures.lock().unwrap().insert(body.clone()) {
                        return Err(HandlerError::new("first try fails")
                            .requeue_after(Duration::from_millis(10))
                            .without_backoff());
                    }
                    *counts.lock().unwrap().entry(body).or_default() += 1;
                    Ok(())
                }
            })
            .await;
    });
    tokio::time::timeout(WAIT, async {
        while handled.lock().unwrap().len() < 300 {
            tokio::task::yield_now().await;
        }
    })
    .await
    .expect("every message handled");
    drained(&all, "handler").await;
    let stats = handle.stats();
    handle.stop().await;
    run.await.unwrap();
    let handled = handled.lock().unwrap();
    assert!(handled.values().all(|&n| n == 1), "{handled:?}");
    assert_eq!(failed_once.lock().unwrap().len(), 30);
    assert_eq!(stats.held_copies, 0, "{stats:?}");
    assert!(stats.duplicates >= 270, "{stats:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_window_outlives_the_connections_that_filled_it() {
    let all = brokers(2).await;
    let topic = Topic::new("later").unwrap();
    publish_replicated(&all, &topic, 100).await; // both nsqd hold every message
    let (a, b) = (all[0].tcp_addr().to_string(), all[1].tcp_addr().to_string());
    let mut consumer = Consumer::builder(topic.clone(), Channel::new("once").unwrap())
        .nsqd(a.clone())
        .config(ConsumerConfig::default().max_in_flight(64))
        .deduplicate(Dedup::envelope())
        .build()
        .unwrap();
    let mut seen = HashSet::new();
    while seen.len() < 100 {
        let msg = tokio::time::timeout(WAIT, consumer.next())
            .await
            .expect("a message")
            .expect("open");
        assert!(seen.insert(msg.body().clone()));
        msg.finish().unwrap();
    }
    // The first connection goes; a connection to the other nsqd brings its copies.
    let handle = consumer.handle();
    handle.disconnect_nsqd(a);
    handle.connect_nsqd(b);
    tokio::select! {
        () = drained(&all[1..], "later") => {}
        msg = consumer.next() => panic!("a copy reached the stream: {msg:?}"),
    }
    assert_eq!(consumer.stats().duplicates, 100);
    consumer.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn more_copies_than_nsqd_make_one_copy_on_each() {
    let all = brokers(2).await;
    let topic = Topic::new("many").unwrap();
    let greedy =
        ReplicatedProducer::new(pool_of(&all), Replication::copies(usize::MAX).quorum(2)).unwrap();
    let receipt = tokio::time::timeout(WAIT, greedy.publish(&topic, "once each"))
        .await
        .expect("a publish that asked for more copies than nsqd still ends")
        .unwrap();
    assert_eq!(receipt.acked().len(), 2, "{receipt:?}");
    assert_eq!(depth(&all[0], "many") + depth(&all[1], "many"), 2);
    let err = tokio::time::timeout(
        WAIT,
        ReplicatedProducer::new(pool_of(&all), Replication::copies(usize::MAX).quorum(3))
            .unwrap()
            .publish(&topic, "three of two"),
    )
    .await
    .expect("ends")
    .unwrap_err();
    assert_eq!(err.acked().len(), 2, "{err}");
}
