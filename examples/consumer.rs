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
//! them, and runs a handler on up to 8 messages at once, printing the consumer's events. A
//! handler that fails requeues its message (with backoff); one that succeeds finishes it.
//! The stop is graceful: nothing is left in flight on any broker. The last lines read each
//! broker's `/stats` and say what the figures mean.

use std::error::Error;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use nsq_client::{
    Channel, Consumer, ConsumerConfig, HandlerError, Message, Producer, ProducerConfig, Topic,
};
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
    println!(
        "nsqlookupd at {}; 3 nsqd from nsq-server-lite, in this process, registered with it",
        lookupd.http_addr()
    );
    println!(
        "published {PER_BROKER} messages to topic \"{topic}\" on each nsqd ({} in all)\n",
        3 * PER_BROKER
    );

    let config = ConsumerConfig::default()
        .max_in_flight(30) // at least the handler concurrency below
        .lookupd_poll_interval(Duration::from_millis(500));
    let consumer = Consumer::builder(topic.clone(), Channel::new("counter")?)
        .lookupd(lookupd.http_addr().to_string())
        .config(config)
        .build()?;
    // What happens to the connections, as values: print it.
    let mut events = consumer.events();
    let printer = tokio::spawn(async move {
        while let Some(event) = events.next().await {
            println!("event: {event}");
        }
    });
    consumer.connected(Duration::from_secs(5)).await?;
    let started = Instant::now();
    let handle = consumer.handle();
    let handled = Arc::new(AtomicUsize::new(0));
    let counter = handled.clone();
    let total = 3 * PER_BROKER;
    consumer
        .run(8, move |msg: Message| {
            let (counter, handle) = (counter.clone(), handle.clone());
            async move {
                let text = std::str::from_utf8(msg.body())?; // an error requeues, with backoff
                let n = counter.fetch_add(1, Ordering::Relaxed) + 1;
                if n % 1_000 == 0 {
                    let stats = handle.stats();
                    println!(
                        "handled {n} (this one {text:?}, from {}); {} connections, RDY {} in all",
                        msg.nsqd_addr(),
                        stats.connections,
                        stats.total_rdy
                    );
                }
                if n == total {
                    // Starts the graceful stop; run returns once it is complete.
                    drop(handle.stop());
                }
                Ok::<_, HandlerError>(()) // finishes the message
            }
        })
        .await;
    let elapsed = started.elapsed();
    drop(consumer); // its events end with "stopped": wait for the last to be printed
    tokio::time::timeout(Duration::from_secs(5), printer).await??;
    let n = handled.load(Ordering::Relaxed);
    println!(
        "\nconsumer stopped after {n} messages in {:.2} s ({:.0} messages/s, 8 handlers at once)",
        elapsed.as_secs_f64(),
        n as f64 / elapsed.as_secs_f64()
    );
    println!("what each nsqd says about channel \"counter\" (its /stats):");

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
    println!(
        "\n\"delivered\": messages nsqd sent to the consumer; \"left\": still queued;\n\
         \"in flight\": sent but not yet answered. 0 left and 0 in flight means every\n\
         message was finished (FIN) and none waits to be redelivered.\n\
         RDY: how many messages the consumer lets the nsqd send ahead; the sum over all\n\
         nsqd stays within max_in_flight (30 here)."
    );
    lookupd.shutdown().await;
    Ok(())
}
