#![allow(clippy::print_stdout)] // reporting what happened is the point of this example
//! A `ProducerPool` over three nsqd that keeps publishing when one of them disappears.
//!
//! Run with:
//!
//! ```text
//! cargo run -p nsq-examples --example pool
//! ```
//!
//! 3,000 publishes, round-robin over three nsq-server-lite nsqd. After the first 1,000 one
//! nsqd shuts down; the pool notices on the next publish there, cools that node down and
//! sends the publish to another one, so every call still returns `Ok` (each one answered by
//! an nsqd that said OK). The table shows where publishes went.
//!
//! What the pool does not do: the messages the stopped nsqd had accepted are gone with it.
//! NSQ does not replicate; an OK means one nsqd holds the message.

use std::error::Error;
use std::time::Duration;

use nsq_client::{ProducerConfig, ProducerPool, Strategy, Topic};
use nsq_server_lite::Nsqd;

#[tokio::main]
async fn main() -> Result<(), Box<dyn Error>> {
    let mut brokers = Vec::new();
    for _ in 0..3 {
        brokers.push(Nsqd::start().await?);
    }
    let addrs: Vec<String> = brokers.iter().map(|b| b.tcp_addr().to_string()).collect();
    let config = ProducerConfig::default().publish_timeout(Some(Duration::from_secs(5)));
    let pool = ProducerPool::new(addrs.clone(), config, Strategy::RoundRobin)?;
    let topic = Topic::new("payments")?;

    let mut failed = 0;
    for i in 0..3_000 {
        if i == 1_000 {
            brokers[1].shutdown().await;
            println!("after 1000 publishes: {} shut down", addrs[1]);
        }
        if let Err(e) = pool.publish(&topic, format!("payment {i}")).await {
            failed += 1;
            eprintln!("publish {i} failed: {e}");
        }
    }
    let stats = pool.stats();
    println!(
        "3000 publishes: {} acknowledged, {failed} failed, {} failed over to another nsqd",
        stats.messages_published, stats.failovers
    );
    for node in &stats.nodes {
        println!(
            "  {}: {} published{}",
            node.addr,
            node.producer.messages_published,
            if node.cooling_down {
                ", cooling down (unreachable)"
            } else {
                ""
            }
        );
    }
    let stopped = &stats
        .nodes
        .iter()
        .find(|n| n.addr == addrs[1])
        .ok_or("node")?;
    println!(
        "the {} messages {} had accepted are gone with it: an OK means one nsqd holds a message",
        stopped.producer.messages_published, stopped.addr
    );
    pool.stop().await;
    for broker in &brokers {
        broker.shutdown().await;
    }
    Ok(())
}
