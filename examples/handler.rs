#![allow(clippy::print_stdout)] // reporting what happened is the point of this example
//! A `Handler` run on many messages at once, with state shared between the runs.
//!
//! Run with:
//!
//! ```text
//! cargo run -p nsq-examples --example handler
//! ```
//!
//! Each message takes 20 ms of (simulated) I/O. One at a time, 400 messages would take 8 s;
//! `Consumer::run(16, handler)` keeps 16 in progress and takes about half a second. The
//! handler is a struct implementing `Handler`, so its state (a counter and a gauge of the
//! runs in progress) lives in one place. `max_in_flight` must be at least the concurrency:
//! it is how many messages nsqd may send before they are answered, so below 16 some of the
//! 16 runs would wait with nothing to do.

use std::error::Error;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use nsq_client::{
    Channel, Consumer, ConsumerConfig, ConsumerHandle, Handler, HandlerError, Message, Producer,
    ProducerConfig, Topic,
};
use nsq_server_lite::Nsqd;

const MESSAGES: usize = 400;
const CONCURRENCY: usize = 16;

/// Counts what it handled, notes the most runs seen at once, and stops the consumer after
/// the last message.
struct Resizer {
    done: AtomicUsize,
    running: AtomicUsize,
    most_at_once: AtomicUsize,
    consumer: ConsumerHandle,
}

impl Handler for Resizer {
    async fn handle(&self, msg: Message) -> Result<(), HandlerError> {
        let now = self.running.fetch_add(1, Ordering::SeqCst) + 1;
        self.most_at_once.fetch_max(now, Ordering::SeqCst);
        let image = std::str::from_utf8(msg.body())?; // not UTF-8: requeued, with backoff
        tokio::time::sleep(Duration::from_millis(20)).await; // stands for the real work
        let _ = image;
        self.running.fetch_sub(1, Ordering::SeqCst);
        if self.done.fetch_add(1, Ordering::SeqCst) + 1 == MESSAGES {
            drop(self.consumer.stop()); // graceful: the runs still going finish first
        }
        Ok(()) // finishes the message
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn Error>> {
    let nsqd = Nsqd::start().await?;
    let topic = Topic::new("images")?;
    let producer = Producer::new(nsqd.tcp_addr().to_string(), ProducerConfig::default())?;
    let bodies = (0..MESSAGES)
        .map(|i| format!("img-{i}.png").into())
        .collect();
    producer.multi_publish(&topic, bodies).await?;
    println!("published {MESSAGES} messages; each takes 20 ms to handle");

    let consumer = Consumer::builder(topic, Channel::new("resize")?)
        .nsqd(nsqd.tcp_addr().to_string())
        .config(ConsumerConfig::default().max_in_flight(CONCURRENCY as u32))
        .build()?;
    let resizer = Arc::new(Resizer {
        done: AtomicUsize::new(0),
        running: AtomicUsize::new(0),
        most_at_once: AtomicUsize::new(0),
        consumer: consumer.handle(),
    });
    let started = Instant::now();
    let shared = resizer.clone();
    consumer
        .run(CONCURRENCY, move |msg| {
            let resizer = shared.clone();
            async move { resizer.handle(msg).await }
        })
        .await;
    let elapsed = started.elapsed();
    println!(
        "handled {} in {:.2} s with run({CONCURRENCY}, ..): at most {} at once \
         (one at a time would take {:.1} s)",
        resizer.done.load(Ordering::SeqCst),
        elapsed.as_secs_f64(),
        resizer.most_at_once.load(Ordering::SeqCst),
        MESSAGES as f64 * 0.020
    );
    producer.stop().await;
    nsqd.shutdown().await;
    Ok(())
}
