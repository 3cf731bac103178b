#![allow(clippy::print_stdout)] // reporting what happened is the point of this example
//! Publishing with `nsq_client::Producer` to an nsq-server-lite broker started in-process.
//!
//! Run with:
//!
//! ```text
//! cargo run -p nsq-examples --example producer
//! ```
//!
//! Shows the three publish calls, many publishes in flight on one connection, a publish
//! bounded by a timeout, what a failed publish hands back, a publish awaited by a spawned
//! task, and the producer's stats. Point `Producer::new` at a real nsqd's TCP address (4150
//! by default) and nothing else changes.

use std::error::Error;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::stream::{FuturesUnordered, StreamExt};
use nsq_client::proto::Topic;
use nsq_client::{ConnectionConfig, Producer, ProducerConfig};
use nsq_server_lite::Nsqd;

#[tokio::main]
async fn main() -> Result<(), Box<dyn Error>> {
    let nsqd = Nsqd::start().await?;
    let config = ProducerConfig::default()
        .publish_timeout(Some(Duration::from_secs(5)))
        .connection(ConnectionConfig::default().client_id("producer-example"));
    let producer = Producer::new(nsqd.tcp_addr().to_string(), config)?;
    let topic = Topic::new("events")?;

    producer.publish(&topic, "one message").await?;
    producer
        .multi_publish(&topic, vec![Bytes::from("two"), Bytes::from("at once")])
        .await?;
    producer
        .deferred_publish(&topic, Duration::from_secs(30), "in 30 seconds")
        .await?;
    println!("published 1 + 2 + 1 deferred");

    // Many publishes in flight on one connection; each resolves with nsqd's answer to it.
    let started = Instant::now();
    let count = 20_000;
    let mut in_flight: FuturesUnordered<_> = (0..count)
        .map(|i| {
            let producer = producer.clone();
            let topic = topic.clone();
            async move { producer.publish(&topic, format!("event {i}")).await }
        })
        .collect();
    while let Some(result) = in_flight.next().await {
        result?;
    }
    println!(
        "{count} pipelined publishes acknowledged in {:.0?}",
        started.elapsed()
    );

    // A failed publish says why and hands the body back.
    let bad = producer.publish(&topic, Bytes::new()).await.unwrap_err();
    println!("refused: {bad} (retriable: {})", bad.is_retriable());

    // A publish future borrows nothing: a task can wait for nsqd's answer.
    tokio::spawn(producer.publish(&topic, "from a task")).await??;

    let mine = producer.stats();
    println!(
        "producer: {} messages published, {} publishes failed, {} in flight, {} reconnects",
        mine.messages_published, mine.publishes_failed, mine.in_flight, mine.reconnects
    );
    let stats = nsqd.stats();
    let t = stats.topic("events").ok_or("topic missing")?;
    println!("nsqd holds {} messages for topic events", t.message_count);
    producer.stop().await;
    nsqd.shutdown().await;
    Ok(())
}
