#![allow(clippy::print_stdout)] // reporting what happened is the point of this example
//! Consuming through nsqlookupd from several brokers, with a concurrent handler.
//!
//! Run with:
//!
//! ```text
//! cargo run -p nsq-examples --example consumer
//! ```
//!
//! Starts an nsqlookupd and three nsqd from nsq-server-lite, publishes to all three, then a
//! `Consumer` that knows only the lookupd finds the brokers, splits its max_in_flight across
//! them, and runs a handler on up to 8 messages at once. A handler that fails requeues its
//! message (with backoff); one that succeeds finishes it. The stop is graceful: nothing is
//! left in flight on any broker.

use std::error::Error;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use nsq_client::proto::{Channel, Topic};
use nsq_client::{Consumer, ConsumerConfig, Message, Producer, ProducerConfig};
use nsq_server_lite::lookupd::Lookupd;
use nsq_server_lite::Nsqd;

const PER_BROKER: usize = 1_000;

#[tokio::main]
async fn main() -> Result<(), Box<dyn Error>> {
    let lookupd = Lookupd::builder().start().await?;
    let topic = Topic::new("clicks")?;
    let mut brokers = Vec::new();
    for _ in 0..3 {
        let nsqd = Nsqd::builder()
            .broadcast_address("127.0.0.1")
            .lookupd_tcp_address(lookupd.tcp_addr().to_string())
            .start()
            .await?;
        let producer = Producer::new(nsqd.tcp_addr().to_string(), ProducerConfig::default())?;
        let bodies = (0..PER_BROKER)
            .map(|i| format!("click {i}").into())
            .collect();
        producer.multi_publish(&topic, bodies).await?;
        producer.stop().await;
        brokers.push(nsqd);
    }
    println!("published {} messages to 3 brokers", 3 * PER_BROKER);

    let config = ConsumerConfig::default()
        .max_in_flight(30)
        .lookupd_poll_interval(Duration::from_millis(500));
    let consumer = Consumer::builder(topic.clone(), Channel::new("counter")?)
        .lookupd(lookupd.http_addr().to_string())
        .config(config)
        .build()?;
    let stop = consumer.stop_handle();
    let handled = Arc::new(AtomicUsize::new(0));
    let counter = handled.clone();
    let total = 3 * PER_BROKER;
    consumer
        .run(8, move |msg: &Message| {
            let counter = counter.clone();
            let stop = stop.clone();
            let from = msg.nsqd_addr().to_owned();
            async move {
                let n = counter.fetch_add(1, Ordering::Relaxed) + 1;
                if n % 1_000 == 0 {
                    println!("handled {n} (this one from {from})");
                }
                if n == total {
                    stop.stop();
                }
                Ok(())
            }
        })
        .await;
    println!(
        "consumer stopped after {} messages",
        handled.load(Ordering::Relaxed)
    );

    for nsqd in brokers {
        let stats = nsqd.stats();
        let channel = stats
            .channel(topic.as_str(), "counter")
            .ok_or("channel missing")?;
        println!(
            "{}: {} delivered, {} left, {} in flight",
            nsqd.tcp_addr(),
            channel.message_count,
            channel.depth,
            channel.in_flight_count
        );
        nsqd.shutdown().await;
    }
    lookupd.shutdown().await;
    Ok(())
}
