#![allow(clippy::print_stdout)] // reporting what happened is the point of this example
//! A dead-letter topic: messages that keep failing are moved aside by the give-up hook.
//!
//! Run with:
//!
//! ```text
//! cargo run -p nsq-examples --example dead_letter
//! ```
//!
//! Ten orders are published; the handler cannot process `order 7`. Each failure requeues it
//! (here after 10 ms, without backoff); on its fourth delivery it is past `max_attempts(3)`,
//! so instead of reaching the handler again it goes to the give-up hook, which publishes its
//! body to `orders.dead`, and is then finished. A second consumer reads the dead letters.
//!
//! The hook is synchronous and runs just before the message is finished, so it spawns the
//! publish: if that publish fails, the dead letter is lost (logged here). Where that is not
//! acceptable, do it in the handler instead: when `msg.attempts()` reaches the limit, await
//! the publish to the dead-letter topic and return `Ok` only after nsqd answered it.

use std::error::Error;
use std::time::Duration;

use futures::StreamExt;
use nsq_client::{
    Channel, Consumer, ConsumerConfig, HandlerError, Message, Producer, ProducerConfig, Topic,
};
use nsq_server_lite::Nsqd;

#[tokio::main]
async fn main() -> Result<(), Box<dyn Error>> {
    let nsqd = Nsqd::start().await?;
    let addr = nsqd.tcp_addr().to_string();
    let (orders, dead) = (Topic::new("orders")?, Topic::new("orders.dead")?);
    let producer = Producer::new(addr.clone(), ProducerConfig::default())?;
    for i in 1..=10 {
        producer.publish(&orders, format!("order {i}")).await?;
    }
    println!("published orders 1 to 10");

    let (hook_producer, hook_topic) = (producer.clone(), dead.clone());
    let consumer = Consumer::builder(orders, Channel::new("fulfil")?)
        .nsqd(addr.clone())
        .config(ConsumerConfig::default().max_in_flight(10).max_attempts(3))
        .give_up(move |msg: &Message| {
            println!(
                "giving up on {:?} after {} attempts: to \"{hook_topic}\"",
                String::from_utf8_lossy(msg.body()),
                msg.attempts() - 1
            );
            let publish = hook_producer.publish(&hook_topic, msg.body().clone());
            tokio::spawn(async move {
                if let Err(e) = publish.await {
                    eprintln!("dead letter lost: {e}");
                }
            });
        })
        .build()?;

    let mut dead_letters = Consumer::builder(dead, Channel::new("inspect")?)
        .nsqd(addr)
        .build()?;
    let handle = consumer.handle();
    let run = tokio::spawn(async move {
        consumer
            .run(4, |msg: Message| async move {
                if &msg.body()[..] == b"order 7" {
                    println!("order 7 failed (attempt {})", msg.attempts());
                    return Err(HandlerError::new("cannot fulfil order 7")
                        .requeue_after(Duration::from_millis(10))
                        .without_backoff());
                }
                Ok(())
            })
            .await;
    });

    let letter = dead_letters
        .next()
        .await
        .ok_or("dead-letter consumer stopped")?;
    println!(
        "dead-letter topic holds {:?}",
        String::from_utf8_lossy(letter.body())
    );
    letter.finish()?;
    let stats = handle.stats();
    println!(
        "fulfil: {} finished, {} requeued, {} given up",
        stats.finished, stats.requeued, stats.given_up
    );
    handle.stop().await;
    run.await?;
    dead_letters.stop().await;
    producer.stop().await;
    nsqd.shutdown().await;
    Ok(())
}
