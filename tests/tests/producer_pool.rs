//! `nsq_client::ProducerPool` failing over between brokers, against nsq-server-lite and real
//! nsqd 1.3.0: a broker dies mid-stream (its proxy cuts every connection, or the real nsqd
//! process is killed) and every publish still succeeds, traffic moves to the live brokers, and
//! every publish reported `OK` is held by some broker. Also `PreferFirst` ordering and nodes
//! found through nsqlookupd.
//!
//! Delivery is at-least-once: a publish written just before its connection was cut may have
//! been taken by the dying broker *and* retried on another, so the union of what the brokers
//! hold may contain a body twice. What must never happen is a publish reported `OK` that no
//! broker holds.
//!
//! Each test runs against both brokers (the real one is skipped without `NSQD_BIN` and
//! `NSQLOOKUPD_BIN`, unless `CI` is set).

use std::collections::HashSet;
use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::stream::{self, StreamExt};
use nsq_client::proto::Topic;
use nsq_client::{ProducerConfig, ProducerPool, PublishError, Strategy};
use nsq_tests::broker::{Broker, BrokerKind, BrokerOpts, Lookupd};
use nsq_tests::http;
use nsq_tests::proxy::Proxy;
use nsq_tests::{consume, eventually};
use tokio::sync::Notify;

const KINDS: [BrokerKind; 2] = [BrokerKind::Lite, BrokerKind::RealNsqd];
const TOPIC: &str = "pool";
const CHANNEL: &str = "c";
/// How long a condition polled on `/stats` may take to hold.
const WAIT: Duration = Duration::from_secs(20);

/// A broker and the proxy clients reach it through.
struct Node {
    broker: Broker,
    proxy: Proxy,
}

/// `n` brokers of `kind` with `opts`, each with the test's channel.
async fn start_brokers(kind: BrokerKind, n: usize, opts: &BrokerOpts) -> Vec<Broker> {
    let mut brokers = Vec::with_capacity(n);
    for _ in 0..n {
        let broker = Broker::start(kind, opts).await.expect("broker starts");
        broker.create_channel(TOPIC, CHANNEL).await.unwrap();
        brokers.push(broker);
    }
    brokers
}

/// `n` brokers behind proxies, and a pool over the proxies.
async fn proxied_pool(kind: BrokerKind, n: usize, strategy: Strategy) -> (Vec<Node>, ProducerPool) {
    let mut nodes = Vec::with_capacity(n);
    for broker in start_brokers(kind, n, &BrokerOpts::default()).await {
        let proxy = Proxy::start(broker.tcp_addr()).await;
        nodes.push(Node { broker, proxy });
    }
    let addrs = nodes.iter().map(|n| n.proxy.addr().to_string());
    let pool = ProducerPool::new(addrs, ProducerConfig::default(), strategy).unwrap();
    (nodes, pool)
}

/// How many messages the broker's topic has taken.
async fn message_count(broker: &Broker) -> u64 {
    broker.topic_stats(TOPIC).await.unwrap()["message_count"]
        .as_u64()
        .expect("message_count")
}

async fn message_counts(brokers: &[&Broker]) -> Vec<u64> {
    let mut counts = Vec::with_capacity(brokers.len());
    for b in brokers {
        counts.push(message_count(b).await);
    }
    counts
}

/// Waits until the broker has no publishing connection left: everything a cut connection had
/// delivered to it has been taken, so its message count is final.
async fn until_no_producers(broker: &Broker) {
    eventually(
        "the cut connections to close at the broker",
        WAIT,
        || async {
            let stats = broker.stats().await?;
            match stats.producers.len() {
                0 => Ok(()),
                n => Err(format!("{n} producer connections left")),
            }
        },
    )
    .await;
}

fn body(i: usize) -> Bytes {
    Bytes::from(format!("pool message {i:06}"))
}

/// What the publishers of [`publish_all`] report.
struct Published {
    /// The indexes of the bodies whose publish returned `Ok`.
    ok: Vec<usize>,
    /// The publishes that returned an error.
    failed: Vec<(usize, PublishError)>,
}

/// Publishes bodies `0..n` through `pool` from `publishers` concurrent tasks, each publishing
/// one body at a time; once a third of them were reported `OK`, runs `kill` (publishing goes
/// on meanwhile) and returns what it returned with what was published.
async fn publish_all<F, Fut, T>(
    pool: &ProducerPool,
    n: usize,
    publishers: usize,
    kill: F,
) -> (Published, T)
where
    F: FnOnce() -> Fut,
    Fut: Future<Output = T>,
{
    let next = Arc::new(AtomicUsize::new(0));
    let oks = Arc::new(AtomicUsize::new(0));
    let at_third = Arc::new(Notify::new());
    let tasks: Vec<_> = (0..publishers)
        .map(|_| {
            let (pool, next, oks, at_third) =
                (pool.clone(), next.clone(), oks.clone(), at_third.clone());
            tokio::spawn(async move {
                let topic = Topic::new(TOPIC).unwrap();
                let mut done = Published {
                    ok: Vec::new(),
                    failed: Vec::new(),
                };
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= n {
                        return done;
                    }
                    match pool.publish(&topic, body(i)).await {
                        Ok(()) => {
                            done.ok.push(i);
                            if oks.fetch_add(1, Ordering::Relaxed) + 1 == n / 3 {
                                at_third.notify_one();
                            }
                        }
                        Err(err) => done.failed.push((i, err)),
                    }
                }
            })
        })
        .collect();
    tokio::time::timeout(WAIT, at_third.notified())
        .await
        .expect("a third of the publishes succeed");
    let killed = kill().await;
    let mut all = Published {
        ok: Vec::new(),
        failed: Vec::new(),
    };
    for task in tasks {
        let part = task.await.expect("publisher panicked");
        all.ok.extend(part.ok);
        all.failed.extend(part.failed);
    }
    (all, killed)
}

fn assert_all_ok(published: &Published, n: usize, what: &str) {
    if let Some((i, err)) = published.failed.first() {
        panic!(
            "{what}: {} of {n} publishes failed; the first, #{i}: {err}",
            published.failed.len()
        );
    }
    assert_eq!(published.ok.len(), n, "{what}");
}

/// Everything each broker holds on the channel, consumed directly (not through the proxies).
async fn drain(brokers: &[&Broker]) -> Vec<Bytes> {
    let mut all = Vec::new();
    for b in brokers {
        let count = usize::try_from(message_count(b).await).unwrap();
        let got = consume::take(
            b.tcp_addr(),
            TOPIC,
            CHANNEL,
            count,
            2500,
            Duration::from_secs(60),
        )
        .await
        .unwrap();
        all.extend(got);
    }
    all
}

async fn round_robin_failover(kind: BrokerKind) {
    const N: usize = 30_000;
    const PUBLISHERS: usize = 16;
    let what = kind.name();
    let (nodes, pool) = proxied_pool(kind, 3, Strategy::RoundRobin).await;
    let brokers: Vec<&Broker> = nodes.iter().map(|n| &n.broker).collect();
    let victim = 1;
    let (published, at_kill) = publish_all(&pool, N, PUBLISHERS, || async {
        nodes[victim].proxy.kill();
        // What the victim received before the cut is all it will ever hold.
        until_no_producers(&nodes[victim].broker).await;
        message_counts(&brokers).await
    })
    .await;
    assert_all_ok(&published, N, what);
    let after = message_counts(&brokers).await;
    eprintln!("{what}: message counts at the kill {at_kill:?}, at the end {after:?}");
    assert_eq!(
        after[victim], at_kill[victim],
        "{what}: the killed broker took messages after the kill"
    );
    for live in (0..3).filter(|&k| k != victim) {
        assert!(
            after[live] > at_kill[live],
            "{what}: live broker {live} took nothing after the kill: {at_kill:?} -> {after:?}"
        );
    }

    let held = drain(&brokers).await;
    let unique: HashSet<Bytes> = held.iter().cloned().collect();
    let lost: Vec<usize> = published
        .ok
        .iter()
        .copied()
        .filter(|&i| !unique.contains(&body(i)))
        .collect();
    assert!(
        lost.is_empty(),
        "{what}: {} publishes reported OK are held by no broker, e.g. #{}",
        lost.len(),
        lost[0]
    );
    // At-least-once: a body cut in flight may be held twice, never missing.
    eprintln!(
        "{what}: {} held, {} distinct, {} duplicates",
        held.len(),
        unique.len(),
        held.len() - unique.len()
    );
    assert_eq!(unique.len(), N, "{what}: bodies that were never published");
    pool.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn round_robin_fails_over_when_a_broker_dies_mid_stream() {
    for kind in KINDS {
        if kind.available() {
            round_robin_failover(kind).await;
        }
    }
}

/// Publishes `range` one after another; panics on the first failure.
async fn publish_range(pool: &ProducerPool, range: std::ops::Range<usize>, what: &str) {
    let topic = Topic::new(TOPIC).unwrap();
    let results: Vec<_> = stream::iter(range)
        .map(|i| {
            let (pool, topic) = (pool.clone(), topic.clone());
            async move { (i, pool.publish(&topic, body(i)).await) }
        })
        .buffer_unordered(8)
        .collect()
        .await;
    for (i, result) in results {
        if let Err(err) = result {
            panic!("{what}: publish #{i} failed: {err}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prefer_first_sends_everything_to_the_first_healthy_broker() {
    const M: usize = 500;
    for kind in KINDS {
        if !kind.available() {
            continue;
        }
        let what = kind.name();
        let (nodes, pool) = proxied_pool(kind, 3, Strategy::PreferFirst).await;
        let brokers: Vec<&Broker> = nodes.iter().map(|n| &n.broker).collect();

        publish_range(&pool, 0..M, what).await;
        assert_eq!(message_counts(&brokers).await, [M as u64, 0, 0], "{what}");

        nodes[0].proxy.kill();
        until_no_producers(&nodes[0].broker).await;
        publish_range(&pool, M..2 * M, what).await;
        // Nothing reaches the first broker through its dead proxy, and a publish cut there
        // is retried on the second alone: no duplicates.
        assert_eq!(
            message_counts(&brokers).await,
            [M as u64, M as u64, 0],
            "{what}"
        );
        pool.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publishes_survive_a_real_nsqd_being_killed() {
    const N: usize = 15_000;
    const PUBLISHERS: usize = 16;
    let kind = BrokerKind::RealNsqd;
    if !kind.available() {
        return;
    }
    let mut brokers = start_brokers(kind, 3, &BrokerOpts::default()).await;
    let addrs = brokers.iter().map(|b| b.tcp_addr().to_string());
    let pool = ProducerPool::new(addrs, ProducerConfig::default(), Strategy::RoundRobin).unwrap();
    let victim = brokers.remove(1);
    let live: Vec<&Broker> = brokers.iter().collect();
    let (published, at_kill) = publish_all(&pool, N, PUBLISHERS, || async {
        // Dropping a real nsqd kills its process (SIGKILL): connections are reset, the port
        // refuses.
        tokio::task::spawn_blocking(move || drop(victim))
            .await
            .unwrap();
        message_counts(&live).await
    })
    .await;
    assert_all_ok(&published, N, "nsqd killed");
    let after = message_counts(&live).await;
    eprintln!("live nsqd message counts at the kill {at_kill:?}, at the end {after:?}");
    for (k, (a, b)) in at_kill.iter().zip(&after).enumerate() {
        assert!(b > a, "live nsqd {k} took nothing after the kill");
    }
    pool.stop().await;
}

/// A broker that stops answering with its connections open (its replies held): the
/// publishes waiting on it time out, but round robin stops giving it publishes once they
/// pile up there, the live brokers take the rest at their own pace, and once it answers
/// again a probe brings it back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broker_that_stops_answering_costs_only_what_waited_on_it() {
    const N: usize = 6_000;
    const PUBLISHERS: usize = 16;
    const TIMEOUT: Duration = Duration::from_secs(1);
    for kind in KINDS {
        if !kind.available() {
            continue;
        }
        let what = kind.name();
        let mut nodes = Vec::new();
        for broker in start_brokers(kind, 3, &BrokerOpts::default()).await {
            let proxy = Proxy::start(broker.tcp_addr()).await;
            nodes.push(Node { broker, proxy });
        }
        let addrs = nodes.iter().map(|n| n.proxy.addr().to_string());
        let config = ProducerConfig::default().publish_timeout(Some(TIMEOUT));
        let pool = ProducerPool::new(addrs, config, Strategy::RoundRobin).unwrap();
        let victim = 1;
        let victim_addr = nodes[victim].proxy.addr().to_string();
        // Every publish given to the hung broker costs its publisher TIMEOUT: had it kept
        // getting one publish in three, the two thirds left would take minutes.
        let (published, ()) = tokio::time::timeout(
            WAIT,
            publish_all(&pool, N, PUBLISHERS, || async {
                nodes[victim].proxy.hold_replies();
            }),
        )
        .await
        .unwrap_or_else(|_| panic!("{what}: publishing stalled behind the hung broker"));
        eprintln!(
            "{what}: {} OK, {} failed while one broker held its replies",
            published.ok.len(),
            published.failed.len()
        );
        for (i, err) in &published.failed {
            assert!(
                err.is_timeout(),
                "{what}: publish #{i} failed otherwise: {err}"
            );
            assert_eq!(
                err.addr(),
                victim_addr,
                "{what}: publish #{i} failed elsewhere"
            );
        }
        // What was waiting there when it hung, what piled up before round robin passed it
        // over, and a probe or two: not one publish in three.
        assert!(
            published.failed.len() <= 2 * PUBLISHERS,
            "{what}: {} publishes failed",
            published.failed.len()
        );
        assert_eq!(published.ok.len() + published.failed.len(), N, "{what}");
        let node = |pool: &ProducerPool| pool.stats().nodes[victim].clone();
        assert!(node(&pool).cooling_down, "{what}: {:?}", node(&pool));

        nodes[victim].proxy.open();
        let before = node(&pool).producer.messages_published;
        let topic = Topic::new(TOPIC).unwrap();
        eventually("the broker to be given publishes again", WAIT, || async {
            pool.publish(&topic, body(N))
                .await
                .map_err(|e| e.to_string())?;
            let now = node(&pool);
            if now.producer.messages_published > before && !now.cooling_down {
                Ok(())
            } else {
                Err(format!("{now:?}"))
            }
        })
        .await;
        pool.stop().await;
    }
}

/// A node that refuses for good (here: its HTTP port given for its TCP port) is an error
/// no retry on that node can fix, yet the pool still tries the next node with the body.
#[tokio::test]
async fn a_node_that_cannot_be_connected_to_for_good_is_skipped() {
    for kind in KINDS {
        if !kind.available() {
            continue;
        }
        let what = kind.name();
        let brokers = start_brokers(kind, 1, &BrokerOpts::default()).await;
        let broker = &brokers[0];
        let addrs = [
            broker.http_addr().to_string(),
            broker.tcp_addr().to_string(),
        ];
        let pool =
            ProducerPool::new(addrs, ProducerConfig::default(), Strategy::PreferFirst).unwrap();
        let topic = Topic::new(TOPIC).unwrap();
        pool.publish(&topic, body(0)).await.expect(what);
        assert_eq!(message_count(broker).await, 1, "{what}");
        pool.stop().await;
    }
}

/// The pool counts its own calls (one published, one failover) and each node its own (the
/// dead one a failure, the live one the message).
#[tokio::test]
async fn pool_stats_count_calls_failovers_and_each_node() {
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let dead = closed.local_addr().unwrap().to_string();
    drop(closed);
    let live = nsq_server_lite::Nsqd::start().await.unwrap();
    let addrs = [dead.clone(), live.tcp_addr().to_string()];
    let pool = ProducerPool::new(addrs, ProducerConfig::default(), Strategy::PreferFirst).unwrap();
    let topic = Topic::new(TOPIC).unwrap();
    pool.publish(&topic, body(0)).await.unwrap();
    pool.multi_publish(&topic, vec![body(1), body(2)])
        .await
        .unwrap();
    let stats = pool.stats();
    assert_eq!(stats.messages_published, 3, "{stats:?}");
    assert_eq!(stats.publishes_failed, 0, "{stats:?}");
    // The first publish found the dead node; the second started at the live one, the dead
    // one cooling down.
    assert_eq!(stats.failovers, 1, "{stats:?}");
    assert_eq!(stats.connected, 1, "{stats:?}");
    assert_eq!(stats.in_flight, 0, "{stats:?}");
    let (first, second) = (&stats.nodes[0], &stats.nodes[1]);
    assert_eq!(first.addr, dead);
    assert!(first.cooling_down, "{stats:?}");
    assert_eq!(first.producer.publishes_failed, 1, "{stats:?}");
    assert!(!first.producer.connected, "{stats:?}");
    assert!(!second.cooling_down, "{stats:?}");
    assert_eq!(second.producer.messages_published, 3, "{stats:?}");

    // Every node failing: one failed pool publish.
    let only_dead =
        ProducerPool::new([dead], ProducerConfig::default(), Strategy::PreferFirst).unwrap();
    only_dead.publish(&topic, body(3)).await.unwrap_err();
    let stats = only_dead.stats();
    assert_eq!(stats.publishes_failed, 1, "{stats:?}");
    assert_eq!(stats.failovers, 0, "{stats:?}");
    pool.stop().await;
}

/// A lookupd that takes the connection and never answers is given up on after
/// `lookupd_poll_timeout`, not after a fixed 5 s.
#[tokio::test]
async fn the_lookupd_poll_timeout_bounds_the_first_discovery() {
    // Connections complete (the backlog takes them) but nothing is ever read or answered.
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let config = ProducerConfig::default().lookupd_poll_timeout(Duration::from_millis(200));
    let pool = tokio::time::timeout(
        Duration::from_secs(3),
        ProducerPool::with_lookupd(
            [silent.local_addr().unwrap().to_string()],
            config,
            Strategy::RoundRobin,
            Duration::from_secs(60),
        ),
    )
    .await
    .expect("discovery gave up within the poll timeout");
    assert!(pool.is_err(), "no nsqd found");
    drop(silent);
}

/// The TCP ports of the nsqd that the lookupd's `/nodes` lists.
async fn registered_ports(lookupd: &Lookupd) -> Result<Vec<u64>, String> {
    let nodes = http::json(lookupd.http_addr(), "GET", "/nodes").await?;
    let mut ports: Vec<u64> = nodes["producers"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|p| p["tcp_port"].as_u64())
        .collect();
    ports.sort_unstable();
    Ok(ports)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pool_from_lookupd_finds_every_broker_and_publishes() {
    const M: usize = 10;
    for kind in KINDS {
        if !kind.available() {
            continue;
        }
        let what = kind.name();
        let lookupd = Lookupd::start(kind).await.expect("lookupd starts");
        let opts = BrokerOpts {
            lookupd_tcp: vec![lookupd.tcp_addr()],
            ..BrokerOpts::default()
        };
        let brokers = start_brokers(kind, 2, &opts).await;
        let mut want: Vec<u64> = brokers
            .iter()
            .map(|b| u64::from(b.tcp_addr().port()))
            .collect();
        want.sort_unstable();
        eventually(
            &format!("{what}: both brokers registered"),
            WAIT,
            || async {
                let ports = registered_ports(&lookupd).await?;
                if ports == want {
                    Ok(())
                } else {
                    Err(format!("/nodes lists ports {ports:?}, want {want:?}"))
                }
            },
        )
        .await;

        let pool = ProducerPool::with_lookupd(
            [lookupd.http_addr().to_string()],
            ProducerConfig::default(),
            Strategy::RoundRobin,
            Duration::from_secs(60),
        )
        .await
        .unwrap();
        let mut found = pool.addrs();
        found.sort();
        let mut addrs: Vec<String> = brokers.iter().map(|b| b.tcp_addr().to_string()).collect();
        addrs.sort();
        assert_eq!(found, addrs, "{what}");

        // One at a time, so round-robin alternates exactly.
        let topic = Topic::new(TOPIC).unwrap();
        for i in 0..M {
            pool.publish(&topic, body(i)).await.unwrap();
        }
        let refs: Vec<&Broker> = brokers.iter().collect();
        let half = (M / 2) as u64;
        assert_eq!(message_counts(&refs).await, [half, half], "{what}");
        pool.stop().await;
    }
}
