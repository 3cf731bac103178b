#![allow(clippy::print_stdout)] // reporting what happened is the point of this example
//! The smallest round trip: publish one message and consume it.
//!
//! Run with:
//!
//! ```text
//! cargo run -p nsq-examples --example quickstart
//! ```
//!
//! An nsqd from nsq-server-lite runs inside this process, so nothing needs installing. With
//! a real nsqd, replace `nsqd.tcp_addr()` with its TCP address (`127.0.0.1:4150` for a local
//! `nsqd` started without flags) and drop the `Nsqd::start` line.

use std::error::Error;
use std::time::Duration;

use futures::StreamExt;
use nsq_client::{Channel, Consumer, Producer, ProducerConfig, Topic};
use nsq_server_lite::Nsqd;

#[tokio::main]
async fn main() -> Result<(), Box<dyn Error>> {
    let nsqd = Nsqd::start().await?;
    let addr = nsqd.tcp_addr().to_string();
    println!("nsqd (nsq-server-lite) listening on {addr}");

    let topic = Topic::new("greetings")?;
    let producer = Producer::new(addr.clone(), ProducerConfig::default())?;
    producer.publish(&topic, "hello, NSQ").await?; // returns once nsqd answered OK
    println!("published to topic \"{topic}\"; nsqd acknowledged it");

    let mut consumer = Consumer::builder(topic, Channel::new("quickstart")?)
        .nsqd(addr)
        .build()?;
    consumer.connected(Duration::from_secs(5)).await?; // a typed error if it cannot subscribe
    let message = consumer.next().await.ok_or("the consumer stopped")?;
    println!(
        "received {:?} (attempt {}), finishing it",
        String::from_utf8_lossy(message.body()),
        message.attempts()
    );
    message.finish()?; // FIN: nsqd forgets it; without it, nsqd would redeliver it

    consumer.stop().await;
    producer.stop().await;
    nsqd.shutdown().await;
    Ok(())
}
