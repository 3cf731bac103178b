use nsq_client::proto::Topic;
use nsq_client::{Producer, ProducerConfig};

#[tokio::test]
async fn publishes_are_answered_in_order_under_pipelining() {
    let nsqd = nsq_server_lite::Nsqd::start().await.unwrap();
    let producer = Producer::new(nsqd.tcp_addr().to_string(), ProducerConfig::default()).unwrap();
    let topic = Topic::new("smoke").unwrap();
    let mut calls = Vec::new();
    for i in 0..10_000u32 {
        let p = producer.clone();
        let t = topic.clone();
        calls.push(tokio::spawn(
            async move { p.publish(&t, i.to_string()).await },
        ));
    }
    for c in calls {
        c.await.unwrap().unwrap();
    }
    let bad = Topic::new("smoke").unwrap();
    let err = producer.multi_publish(&bad, vec![]).await.unwrap_err();
    assert!(!err.is_retriable());
    producer.ping().await.unwrap();
    assert_eq!(nsqd.stats().topic("smoke").unwrap().message_count, 10_000);
    producer.stop().await;
}

#[tokio::test]
async fn pool_fails_over_when_a_broker_goes_away() {
    use nsq_client::{ProducerPool, Strategy};
    let a = nsq_server_lite::Nsqd::start().await.unwrap();
    let b = nsq_server_lite::Nsqd::start().await.unwrap();
    let pool = ProducerPool::new(
        [a.tcp_addr().to_string(), b.tcp_addr().to_string()],
        ProducerConfig::default(),
        Strategy::RoundRobin,
    )
    .unwrap();
    let topic = Topic::new("pool").unwrap();
    for i in 0..100 {
        pool.publish(&topic, format!("{i}")).await.unwrap();
    }
    a.shutdown().await;
    for i in 100..200 {
        pool.publish(&topic, format!("{i}")).await.unwrap();
    }
    let on_b = b.stats().topic("pool").unwrap().message_count;
    assert!(on_b >= 150, "{on_b}");
    pool.stop().await;
}
