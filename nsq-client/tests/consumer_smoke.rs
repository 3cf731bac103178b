use std::collections::HashSet;
use std::time::Duration;

use futures::StreamExt;
use nsq_client::proto::{Channel, Topic};
use nsq_client::{Consumer, ConsumerConfig, Producer, ProducerConfig};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consumes_everything_from_two_brokers_and_stops_clean() {
    let a = nsq_server_lite::Nsqd::start().await.unwrap();
    let b = nsq_server_lite::Nsqd::start().await.unwrap();
    let topic = Topic::new("smoke").unwrap();
    for (i, nsqd) in [&a, &b].into_iter().enumerate() {
        let p = Producer::new(nsqd.tcp_addr().to_string(), ProducerConfig::default()).unwrap();
        let bodies = (0..500).map(|n| format!("{i}-{n}").into()).collect();
        p.multi_publish(&topic, bodies).await.unwrap();
        p.stop().await;
    }
    let mut consumer = Consumer::builder(topic, Channel::new("c").unwrap())
        .nsqd(a.tcp_addr().to_string())
        .nsqd(b.tcp_addr().to_string())
        .config(ConsumerConfig::default().max_in_flight(50))
        .build()
        .unwrap();
    let mut seen = HashSet::new();
    while seen.len() < 1000 {
        let msg = tokio::time::timeout(Duration::from_secs(10), consumer.next())
            .await
            .expect("a message within 10 s")
            .expect("stream open");
        let stats = consumer.stats();
        assert!(stats.total_rdy <= 50, "{stats:?}");
        seen.insert(msg.body().clone());
        msg.finish().unwrap();
    }
    consumer.stop().await;
    for nsqd in [&a, &b] {
        let c = nsqd.stats().channel("smoke", "c").cloned().unwrap();
        assert_eq!(
            (c.depth, c.in_flight_count, c.message_count),
            (0, 0, 500),
            "{c:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_that_keeps_failing_is_given_up_after_max_attempts() {
    use std::sync::atomic::{AtomicU32, Ordering};
    use std::sync::Arc;
    let nsqd = nsq_server_lite::Nsqd::start().await.unwrap();
    let topic = Topic::new("poison").unwrap();
    let p = Producer::new(nsqd.tcp_addr().to_string(), ProducerConfig::default()).unwrap();
    p.publish(&topic, "poison").await.unwrap();
    let given_up = Arc::new(AtomicU32::new(0));
    let hook = given_up.clone();
    let gave_up = Arc::new(tokio::sync::Notify::new());
    let signal = gave_up.clone();
    let config = ConsumerConfig::default()
        .max_attempts(2)
        .default_requeue_delay(Duration::from_millis(10))
        .backoff_multiplier(Duration::from_millis(10))
        .max_backoff(Duration::from_millis(100));
    let consumer = Consumer::builder(topic, Channel::new("c").unwrap())
        .nsqd(nsqd.tcp_addr().to_string())
        .config(config)
        .give_up(move |msg| {
            assert_eq!(msg.attempts(), 3);
            hook.fetch_add(1, Ordering::SeqCst);
            signal.notify_one();
        })
        .build()
        .unwrap();
    let stop = consumer.handle();
    let handled = Arc::new(AtomicU32::new(0));
    let calls = handled.clone();
    let watcher = tokio::spawn(async move {
        gave_up.notified().await;
        drop(stop.stop());
    });
    tokio::time::timeout(
        Duration::from_secs(10),
        consumer.run(1, move |_msg| {
            calls.fetch_add(1, Ordering::SeqCst);
            async { Err("always fails".into()) }
        }),
    )
    .await
    .expect("gave up and stopped within 10 s");
    watcher.await.unwrap();
    assert_eq!(
        handled.load(Ordering::SeqCst),
        2,
        "the handler ran for attempts 1 and 2"
    );
    assert_eq!(given_up.load(Ordering::SeqCst), 1);
    let c = nsqd.stats().channel("poison", "c").cloned().unwrap();
    assert_eq!(
        (c.depth, c.in_flight_count, c.requeue_count),
        (0, 0, 2),
        "{c:?}"
    );
}
