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
        p.close().await;
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
