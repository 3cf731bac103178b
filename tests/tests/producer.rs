//! `nsq_client::Producer` against nsq-server-lite and real nsqd 1.3.0: every call, pipelining,
//! timeouts and cancellation, connection failures, and nsqd's errors.
//!
//! Each test runs against both brokers (the real one is skipped without `NSQD_BIN`, unless
//! `CI` is set).

use std::collections::HashSet;
use std::time::Duration;

use bytes::Bytes;
use futures::stream::{self, StreamExt};
use nsq_client::proto::{ErrorCode, Topic};
use nsq_client::{
    ConnectError, ConnectionConfig, Producer, ProducerConfig, ProducerStats, PublishErrorKind,
};
use nsq_tests::broker::{Broker, BrokerKind, BrokerOpts};
use nsq_tests::consume;
use nsq_tests::proxy::Proxy;

const KINDS: [BrokerKind; 2] = [BrokerKind::Lite, BrokerKind::RealNsqd];

/// Runs `scenario` against each broker kind that is available.
macro_rules! each_broker {
    (|$broker:ident| $body:expr) => {
        for kind in KINDS {
            if !kind.available() {
                continue;
            }
            let $broker = Broker::start(kind, &BrokerOpts::default())
                .await
                .expect("broker starts");
            eprintln!("-- {}", kind.name());
            $body;
        }
    };
}

fn producer(addr: impl ToString) -> Producer {
    Producer::new(addr.to_string(), ProducerConfig::default()).expect("valid config")
}

#[tokio::test]
async fn every_call_is_answered_and_lands() {
    each_broker!(|broker| {
        broker.create_channel("calls", "c").await.unwrap();
        let p = producer(broker.tcp_addr());
        let topic = Topic::new("calls").unwrap();
        p.ping().await.unwrap();
        p.publish(&topic, "one").await.unwrap();
        p.multi_publish(&topic, vec![Bytes::from("two"), Bytes::from("three")])
            .await
            .unwrap();
        p.deferred_publish(&topic, Duration::from_secs(60), "later")
            .await
            .unwrap();
        let stats = broker.channel_stats("calls", "c").await.unwrap();
        assert_eq!(stats["message_count"], 4, "{stats}");
        assert_eq!(stats["deferred_count"], 1, "{stats}");
        let bodies = consume::take(
            broker.tcp_addr(),
            "calls",
            "c",
            3,
            10,
            Duration::from_secs(10),
        )
        .await
        .unwrap();
        assert_eq!(bodies, ["one", "two", "three"]);
        p.stop().await;
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hundred_thousand_pipelined_publishes_all_arrive_intact() {
    const N: usize = 100_000;
    each_broker!(|broker| {
        broker.create_channel("bulk", "c").await.unwrap();
        let p = producer(broker.tcp_addr());
        let topic = Topic::new("bulk").unwrap();
        let body = |i: usize| Bytes::from(format!("message {i:06} {}", "x".repeat(i % 50)));
        let results: Vec<_> = stream::iter(0..N)
            .map(|i| {
                let (p, topic) = (p.clone(), topic.clone());
                async move { p.publish(&topic, body(i)).await }
            })
            .buffer_unordered(2_000)
            .collect()
            .await;
        assert!(results.iter().all(Result::is_ok), "a publish failed");
        let got = consume::take(
            broker.tcp_addr(),
            "bulk",
            "c",
            N,
            2500,
            Duration::from_secs(60),
        )
        .await
        .unwrap();
        let got: HashSet<Bytes> = got.into_iter().collect();
        let want: HashSet<Bytes> = (0..N).map(body).collect();
        assert_eq!(got.len(), N, "duplicates arrived");
        assert!(got == want, "bodies differ from what was published");
        p.stop().await;
    });
}

#[tokio::test]
async fn callers_finding_the_queue_full_wait_for_room_and_are_all_answered() {
    each_broker!(|broker| {
        // A queue of one: all but the first of each burst find it full and wait for room.
        let config = ProducerConfig::default().queue(1);
        let p = Producer::new(broker.tcp_addr().to_string(), config).unwrap();
        let topic = Topic::new("full").unwrap();
        p.ping().await.unwrap();
        let results: Vec<_> = stream::iter(0..500)
            .map(|i| {
                let (p, topic) = (p.clone(), topic.clone());
                async move { p.publish(&topic, format!("m{i}")).await }
            })
            .buffer_unordered(100)
            .collect()
            .await;
        assert!(results.iter().all(Result::is_ok), "a publish failed");
        let stats = broker.topic_stats("full").await.unwrap();
        assert_eq!(stats["message_count"], 500, "{stats}");
        p.stop().await;
    });
}

#[tokio::test]
async fn a_timed_out_or_dropped_publish_leaves_the_connection_usable() {
    each_broker!(|broker| {
        let proxy = Proxy::start(broker.tcp_addr()).await;
        let config = ProducerConfig::default().publish_timeout(Some(Duration::from_millis(300)));
        let p = Producer::new(proxy.addr().to_string(), config).unwrap();
        let topic = Topic::new("gated").unwrap();
        p.publish(&topic, "before").await.unwrap();

        // nsqd's answer is held back: the publish times out (nsqd did take it).
        proxy.hold_replies();
        let err = p.publish(&topic, "timed out").await.unwrap_err();
        assert!(err.is_timeout(), "{err}");

        // A publish dropped while its answer is outstanding.
        let dropped = {
            let (p, topic) = (p.clone(), topic.clone());
            tokio::spawn(async move { p.publish(&topic, "dropped").await })
        };
        tokio::task::yield_now().await;
        dropped.abort();

        // Once answers flow again, the next publish gets its own answer, not a stale one.
        proxy.open();
        p.publish(&topic, "after").await.unwrap();
        p.multi_publish(&topic, vec![Bytes::from("a"), Bytes::from("b")])
            .await
            .unwrap();
        let stats = broker.topic_stats("gated").await.unwrap();
        let count = stats["message_count"].as_u64().unwrap();
        // before, timed out, (dropped, if it was written), after, a, b
        assert!((5..=6).contains(&count), "{stats}");
        p.stop().await;
    });
}

#[tokio::test]
async fn an_unreachable_nsqd_fails_fast_and_hands_the_body_back() {
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = closed.local_addr().unwrap();
    drop(closed);
    let p = producer(addr);
    let err = p
        .publish(&Topic::new("t").unwrap(), "keep me")
        .await
        .unwrap_err();
    assert!(matches!(err.kind(), PublishErrorKind::Connect(_)), "{err}");
    assert!(err.is_retriable());
    assert_eq!(err.into_body().as_deref(), Some(&b"keep me"[..]));
}

#[tokio::test]
async fn publishes_during_the_reconnect_backoff_fail_fast_too() {
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = closed.local_addr().unwrap();
    drop(closed);
    // A backoff far longer than the wait below: publishes must not queue behind it.
    let config = ProducerConfig::default()
        .reconnect_backoff(Duration::from_secs(30), Duration::from_secs(30))
        .publish_timeout(Some(Duration::from_secs(60)));
    let p = Producer::new(addr.to_string(), config).unwrap();
    let topic = Topic::new("t").unwrap();
    for body in ["first", "during backoff", "still backing off"] {
        let err = tokio::time::timeout(Duration::from_secs(5), p.publish(&topic, body))
            .await
            .expect("a publish waited out the reconnect backoff")
            .unwrap_err();
        assert!(matches!(err.kind(), PublishErrorKind::Connect(_)), "{err}");
        assert!(err.is_retriable());
        assert_eq!(err.into_body().as_deref(), Some(body.as_bytes()));
    }
}

#[tokio::test]
async fn the_http_port_given_by_mistake_is_named() {
    each_broker!(|broker| {
        let p = producer(broker.http_addr());
        let err = p.publish(&Topic::new("t").unwrap(), "x").await.unwrap_err();
        assert!(err.to_string().contains("HTTP port"), "{err}");
        // Trying again cannot help: it is not retriable, and the cause says why.
        assert!(
            matches!(err.connect_error(), Some(ConnectError::HttpPort { .. })),
            "{err}"
        );
        assert!(!err.is_retriable(), "{err}");
        let source = std::error::Error::source(&err).expect("a cause");
        assert!(source.is::<ConnectError>(), "{source:?}");
    });
}

#[tokio::test]
async fn an_nsqd_error_is_typed_and_the_next_publish_reconnects() {
    each_broker!(|broker| {
        let p = producer(broker.tcp_addr());
        let topic = Topic::new("errors").unwrap();
        // nsqd's default --max-msg-size is 1 MiB: one byte more is E_BAD_MESSAGE, fatal.
        let big = Bytes::from(vec![b'x'; 1024 * 1024 + 1]);
        let err = p.publish(&topic, big.clone()).await.unwrap_err();
        let code = err.server_error().map(|e| e.code.clone());
        assert_eq!(code, Some(ErrorCode::BadMessage), "{err}");
        assert!(!err.is_retriable());
        assert_eq!(err.into_body(), Some(big));
        p.publish(&topic, "fine").await.unwrap();
        p.stop().await;
    });
}

/// The publish futures borrow neither the producer nor the topic: they can be spawned, and
/// outlive both.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publish_futures_can_be_spawned() {
    each_broker!(|broker| {
        let p = producer(broker.tcp_addr());
        let spawned = {
            let topic = Topic::new("spawned").unwrap();
            vec![
                tokio::spawn(p.ping()),
                tokio::spawn(p.publish(&topic, "x")),
                tokio::spawn(p.multi_publish(&topic, vec![Bytes::from("y"), Bytes::from("z")])),
                tokio::spawn(p.deferred_publish(&topic, Duration::from_secs(60), "later")),
            ]
        };
        let pool = nsq_client::ProducerPool::new(
            [broker.tcp_addr().to_string()],
            ProducerConfig::default(),
            nsq_client::Strategy::RoundRobin,
        )
        .unwrap();
        let from_pool = {
            let topic = Topic::new("spawned").unwrap();
            vec![
                tokio::spawn(pool.publish(&topic, "p")),
                tokio::spawn(pool.multi_publish(&topic, vec![Bytes::from("q")])),
                tokio::spawn(pool.deferred_publish(&topic, Duration::from_secs(60), "r")),
            ]
        };
        for task in spawned.into_iter().chain(from_pool) {
            task.await.expect("no panic").expect("published");
        }
        let stats = broker.topic_stats("spawned").await.unwrap();
        assert_eq!(stats["message_count"], 7, "{stats}");
        p.stop().await;
        pool.stop().await;
    });
}

/// A producer's counters: messages published (each of an MPUB), publishes failed, nothing
/// left in flight once all is answered, and a reconnect after nsqd closed the connection.
#[tokio::test]
async fn stats_count_what_was_published_failed_and_reconnected() {
    let nsqd = nsq_server_lite::Nsqd::builder()
        .max_msg_size(100)
        .start()
        .await
        .unwrap();
    let p = producer(nsqd.tcp_addr());
    assert_eq!(
        p.stats(),
        ProducerStats::default(),
        "nothing before the first call"
    );
    let topic = Topic::new("stats").unwrap();
    p.ping().await.unwrap();
    let stats = p.stats();
    assert!(stats.connected);
    assert_eq!(stats.messages_published, 0, "a ping publishes nothing");
    p.publish(&topic, "one").await.unwrap();
    p.multi_publish(&topic, vec![Bytes::from("two"), Bytes::from("three")])
        .await
        .unwrap();
    p.deferred_publish(&topic, Duration::from_secs(60), "four")
        .await
        .unwrap();
    let stats = p.stats();
    assert_eq!(stats.messages_published, 4, "{stats:?}");
    assert_eq!(stats.publishes_failed, 0, "{stats:?}");
    assert_eq!(stats.in_flight, 0, "{stats:?}");
    assert_eq!(stats.reconnects, 0, "{stats:?}");

    // Above --max-msg-size: E_BAD_MESSAGE, after which nsqd closes the connection.
    let err = p.publish(&topic, vec![b'x'; 101]).await.unwrap_err();
    assert!(err.server_error().is_some(), "{err}");
    // Refused before it is sent, but a failed publish all the same.
    p.publish(&topic, Bytes::new()).await.unwrap_err();
    p.publish(&topic, "five").await.unwrap();
    let stats = p.stats();
    assert_eq!(stats.messages_published, 5, "{stats:?}");
    assert_eq!(stats.publishes_failed, 2, "{stats:?}");
    assert_eq!(stats.reconnects, 1, "{stats:?}");
    assert!(stats.connected, "{stats:?}");
    assert_eq!(stats.in_flight, 0, "{stats:?}");
    assert_eq!(nsqd.stats().topic("stats").unwrap().message_count, 5);
    p.stop().await;
    assert!(!p.stats().connected, "closed");
}

#[tokio::test]
async fn stats_of_an_unreachable_nsqd_count_failures_and_no_connection() {
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = closed.local_addr().unwrap();
    drop(closed);
    let p = producer(addr);
    let topic = Topic::new("t").unwrap();
    p.publish(&topic, "a").await.unwrap_err();
    p.multi_publish(&topic, vec![Bytes::from("b"), Bytes::from("c")])
        .await
        .unwrap_err();
    p.ping().await.unwrap_err();
    let stats = p.stats();
    assert_eq!(
        stats.publishes_failed, 2,
        "pings are not publishes: {stats:?}"
    );
    assert_eq!(stats.messages_published, 0, "{stats:?}");
    assert_eq!(stats.in_flight, 0, "{stats:?}");
    assert_eq!(stats.reconnects, 0, "{stats:?}");
    assert!(!stats.connected, "{stats:?}");
}

/// With heartbeats disabled, nsqd sends none and the producer has no read deadline: it
/// publishes, and stays connected while a neighbour asking for 1 s heartbeats gets them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_producer_without_heartbeats_publishes_and_gets_none() {
    // The broker's own heartbeat, for clients that do not ask, is 1 s.
    let nsqd = nsq_server_lite::Nsqd::builder()
        .client_timeout(Duration::from_secs(2))
        .start()
        .await
        .unwrap();
    let with = |connection: ConnectionConfig| {
        let config = ProducerConfig::default().connection(connection);
        Producer::new(nsqd.tcp_addr().to_string(), config).unwrap()
    };
    let quiet = with(ConnectionConfig::default().disable_heartbeats());
    let beating = with(ConnectionConfig::default().heartbeat_interval(Duration::from_secs(1)));
    let topic = Topic::new("quiet").unwrap();
    quiet.publish(&topic, "one").await.unwrap();
    beating.ping().await.unwrap();
    // Two heartbeats to the neighbour: over a second has passed with both connected.
    nsq_tests::eventually("two heartbeats", Duration::from_secs(10), || async {
        match beating.stats().heartbeats {
            n if n >= 2 => Ok(()),
            n => Err(format!("{n} heartbeats")),
        }
    })
    .await;
    let stats = quiet.stats();
    assert_eq!(stats.heartbeats, 0, "{stats:?}");
    assert!(stats.connected, "{stats:?}");
    quiet.publish(&topic, "two").await.unwrap();
    assert_eq!(quiet.stats().reconnects, 0, "the same connection");
    assert_eq!(nsqd.stats().topic("quiet").unwrap().message_count, 2);
    quiet.stop().await;
    beating.stop().await;
}
