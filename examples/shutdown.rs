#![allow(clippy::print_stdout)] // reporting what happened is the point of this example
//! A graceful stop on Ctrl-C: handlers in progress finish, nothing stays in flight, and
//! every publish made was answered.
//!
//! Run with (then press Ctrl-C):
//!
//! ```text
//! cargo run -p nsq-examples --example shutdown
//! ```
//!
//! or, without a terminal, `-- --interrupt-after 500` to have it send itself SIGINT after
//! 500 handled messages (CI runs it so).
//!
//! A producer publishes an order every millisecond while a consumer handles them. On Ctrl-C
//! the consumer stops taking messages (`RDY 0`, then `CLS`), waits for the handlers in
//! progress, and closes; the producer's `stop()` lets queued publishes be answered first.
//! What the consumer had not yet received stays queued in nsqd for the next consumer: the
//! last line says how many, and that none is in flight.

use std::error::Error;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use futures::FutureExt;
use nsq_client::{Channel, Consumer, HandlerError, Message, Producer, ProducerConfig, Topic};
use nsq_server_lite::Nsqd;
use tokio_util::sync::CancellationToken;

#[tokio::main]
async fn main() -> Result<(), Box<dyn Error>> {
    let interrupt_after = interrupt_after()?;
    let nsqd = Nsqd::start().await?;
    let topic = Topic::new("orders")?;

    // Ctrl-C, registered before anything can send it.
    let interrupted = CancellationToken::new();
    let mut ctrl_c = Box::pin(tokio::signal::ctrl_c());
    if let Some(result) = (&mut ctrl_c).now_or_never() {
        result?; // polled once so that the handler is in place
    }
    let on_signal = interrupted.clone();
    tokio::spawn(async move {
        if ctrl_c.await.is_ok() {
            on_signal.cancel();
        }
    });

    let producer = Producer::new(nsqd.tcp_addr().to_string(), ProducerConfig::default())?;
    let published = Arc::new(AtomicU64::new(0));
    let publishing = {
        let (producer, topic, published, stop) = (
            producer.clone(),
            topic.clone(),
            published.clone(),
            interrupted.clone(),
        );
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_millis(1));
            let mut n = 0u64;
            while !stop.is_cancelled() {
                tick.tick().await;
                n += 1;
                if producer.publish(&topic, format!("order {n}")).await.is_ok() {
                    published.fetch_add(1, Ordering::Relaxed);
                }
            }
        })
    };

    let consumer = Consumer::builder(topic.clone(), Channel::new("fulfil")?)
        .nsqd(nsqd.tcp_addr().to_string())
        .build()?;
    let handle = consumer.handle();
    let on_stop = interrupted.clone();
    tokio::spawn(async move {
        on_stop.cancelled().await;
        println!("\nCtrl-C: stopping gracefully");
        handle.stop().await; // run() below returns once the stop is complete
    });
    println!("handling orders; press Ctrl-C to stop");
    let handled = Arc::new(AtomicU64::new(0));
    let counter = handled.clone();
    consumer
        .run(4, move |msg: Message| {
            let counter = counter.clone();
            async move {
                let n = counter.fetch_add(1, Ordering::Relaxed) + 1;
                if Some(n) == interrupt_after {
                    send_sigint_to_self();
                }
                if n % 1000 == 0 {
                    println!(
                        "handled {n}, the last {:?}",
                        String::from_utf8_lossy(msg.body())
                    );
                }
                Ok::<_, HandlerError>(())
            }
        })
        .await;
    publishing.await?;
    producer.stop().await; // every queued publish answered before it returns

    let stats = nsqd.stats();
    let channel = stats
        .channel(topic.as_str(), "fulfil")
        .ok_or("no channel")?;
    println!(
        "published {} (each answered OK), handled {}; nsqd holds {} for the next consumer, \
         {} in flight",
        published.load(Ordering::Relaxed),
        handled.load(Ordering::Relaxed),
        channel.depth,
        channel.in_flight_count
    );
    nsqd.shutdown().await;
    Ok(())
}

/// `--interrupt-after N`, when given.
fn interrupt_after() -> Result<Option<u64>, Box<dyn Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.as_slice() {
        [] => Ok(None),
        [flag, n] if flag == "--interrupt-after" => Ok(Some(n.parse()?)),
        _ => Err("usage: shutdown [--interrupt-after N]".into()),
    }
}

/// What Ctrl-C does, for runs without a terminal.
fn send_sigint_to_self() {
    let pid = std::process::id().to_string();
    if let Err(e) = std::process::Command::new("kill")
        .args(["-INT", &pid])
        .status()
    {
        eprintln!("cannot run kill: {e}");
    }
}
