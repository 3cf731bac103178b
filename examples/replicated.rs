#![allow(clippy::print_stdout)] // reporting what happened is the point of this example
//! No message lost when an nsqd dies: every message on two nsqd, each handled once.
//!
//! Run with:
//!
//! ```text
//! cargo run -p nsq-examples --example replicated
//! ```
//!
//! Three nsq-server-lite nsqd. A `ReplicatedProducer` puts each of 10,000 messages on two of
//! them (a publish returns `Ok` once both said OK); a consumer with
//! `deduplicate(Dedup::envelope())` reads all three and hands each message to its handler
//! once, finishing the second copy without it. Halfway through publishing, one nsqd stops
//! without delivering what it holds, as a crashed one would. Every message still reaches the
//! handler, exactly once: its other copy was on a survivor.

use std::error::Error;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use nsq_client::{
    Channel, Consumer, ConsumerConfig, Dedup, HandlerError, Message, ProducerPool,
    ReplicatedProducer, Replication, Strategy, Topic,
};
use nsq_server_lite::Nsqd;

const MESSAGES: usize = 10_000;

#[tokio::main]
async fn main() -> Result<(), Box<dyn Error>> {
    let mut brokers = Vec::new();
    for _ in 0..3 {
        brokers.push(Nsqd::start().await?);
    }
    let addrs: Vec<String> = brokers.iter().map(|b| b.tcp_addr().to_string()).collect();
    let topic = Topic::new("invoices")?;

    let mut builder = Consumer::builder(topic.clone(), Channel::new("billing")?)
        .config(ConsumerConfig::default().max_in_flight(300))
        .deduplicate(Dedup::envelope());
    for addr in &addrs {
        builder = builder.nsqd(addr.clone());
    }
    let consumer = builder.build()?;
    consumer.connected(Duration::from_secs(5)).await?;
    let handled: Arc<Vec<AtomicU32>> = Arc::new((0..MESSAGES).map(|_| AtomicU32::new(0)).collect());
    let handle = consumer.handle();
    let counts = handled.clone();
    let running = tokio::spawn(async move {
        consumer
            .run(16, move |msg: Message| {
                let counts = counts.clone();
                async move {
                    let n: usize = std::str::from_utf8(msg.body())?.parse()?;
                    counts[n].fetch_add(1, Ordering::Relaxed);
                    Ok::<_, HandlerError>(())
                }
            })
            .await;
    });

    let pool = ProducerPool::new(addrs.clone(), Default::default(), Strategy::RoundRobin)?;
    let producer = ReplicatedProducer::new(pool, Replication::copies(2))?;
    let mut acknowledged = 0;
    let mut results = futures::stream::iter(0..MESSAGES)
        .map(|n| producer.publish(&topic, n.to_string()))
        .buffer_unordered(100);
    while let Some(result) = results.next().await {
        result?; // Ok: two nsqd hold the message
        acknowledged += 1;
        if acknowledged == MESSAGES / 2 {
            let held = brokers[1]
                .stats()
                .channel("invoices", "billing")
                .map_or(0, |c| c.depth.unsigned_abs() + c.in_flight_count as u64);
            brokers[1].shutdown().await;
            println!(
                "after {acknowledged} publishes: {} stopped, taking {held} undelivered copies with it",
                addrs[1]
            );
        }
    }
    drop(results);
    println!("{acknowledged} publishes acknowledged, each by two nsqd");

    // Wait until every message reached the handler (its copy on a survivor included).
    tokio::time::timeout(Duration::from_secs(30), async {
        while handled.iter().any(|c| c.load(Ordering::Relaxed) == 0) {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await?;
    let stats = handle.stats();
    handle.stop().await;
    running.await?;
    let twice = handled
        .iter()
        .filter(|c| c.load(Ordering::Relaxed) > 1)
        .count();
    println!(
        "handled {MESSAGES} messages, {twice} of them more than once; {} second copies \
         finished without reaching the handler",
        stats.duplicates
    );
    for b in &brokers {
        b.shutdown().await;
    }
    Ok(())
}
