//! Many clients on one broker: 1,000 concurrent connections to nsq-server-lite's `nsqd` and to
//! nsqd 1.3.0 (each a process on loopback, `--mem-queue-size` 2,000,000 so that both keep
//! every message in memory, other flags default).
//!
//! Each run starts a fresh broker and creates `--topics` topics with `--channels` channels
//! each before anything is measured, so that their memory is not counted per connection:
//!
//! * **idle connections**: the growth of the broker's resident set as `--producers`
//!   producers connect (each its own connection, IDENTIFY done), then as `--consumers`
//!   consumers subscribe (each one connection, spread evenly over every channel, RDY
//!   `--max-in-flight`); shown per connection of each kind.
//! * **throughput**, over those connections: every producer publishes its share of
//!   `--messages` to its topic (producer `i` to topic `i % topics`, `--window` publishes in
//!   flight each), and every channel's consumers finish what the channel gets, so each
//!   message is delivered `--channels` times. Deliveries per second from the first publish
//!   to the last FIN'd delivery; the broker's and the clients' CPU per 100k deliveries.
//! * **queued messages** (a second fresh broker): `--queued` messages of `--size` B
//!   published (MPUB of 1,000) to a topic with one channel and nobody consuming; the growth
//!   of the broker's resident set once the channel holds them all, per message.
//!
//! ```sh
//! source ~/.cache/nsq-rs-peers/env.sh
//! cargo run --release -p nsq-benchmarks --bin nsq-connections-bench -- --runs 3
//! ```
// A benchmark reports on stdout: that is its output, not stray debugging.
#![allow(clippy::print_stdout)]

use std::process::ExitCode;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use clap::Parser;
use futures::StreamExt;
use nsq_benchmarks::{cpu_seconds, median, process_cpu_seconds, process_resident_bytes, Broker};
use nsq_client::{Channel, Consumer, ConsumerConfig, Producer, ProducerConfig, Topic};
use nsq_tests::{http, RealNsqd};
use tokio::sync::Notify;

/// Many clients on one broker: memory per connection and per queued message, throughput.
#[derive(Debug, Clone, Parser)]
struct Opts {
    /// Runs of every scenario; the table shows medians.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..))]
    runs: u32,
    /// Producer connections.
    #[arg(long, default_value_t = 500)]
    producers: usize,
    /// Consumer connections.
    #[arg(long, default_value_t = 500)]
    consumers: usize,
    /// Topics.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..))]
    topics: u64,
    /// Channels of each topic.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..))]
    channels: u64,
    /// Messages published per throughput run, over all producers.
    #[arg(long, default_value_t = 200_000)]
    messages: usize,
    /// Publishes each producer keeps in flight.
    #[arg(long, default_value_t = 10)]
    window: usize,
    /// Each consumer's `max_in_flight`.
    #[arg(long, default_value_t = 100)]
    max_in_flight: u32,
    /// Message body bytes.
    #[arg(long, default_value_t = 100)]
    size: usize,
    /// Messages of the queued-memory scenario.
    #[arg(long, default_value_t = 1_000_000)]
    queued: usize,
    /// Brokers, comma separated.
    #[arg(long, value_delimiter = ',', default_values_t = [Broker::Lite, Broker::Nsqd])]
    brokers: Vec<Broker>,
}

/// One run's figures.
#[derive(Debug, Clone, Copy, Default)]
struct Figures {
    per_producer: f64,
    per_consumer: f64,
    deliveries_per_s: f64,
    broker_cpu_per_100k: f64,
    client_cpu_per_100k: f64,
    per_queued: f64,
}

/// Enough room in memory for every scenario's messages, on both brokers.
const BROKER_FLAGS: &[&str] = &["--mem-queue-size=2000000"];

fn err(e: impl std::fmt::Display) -> String {
    e.to_string()
}

/// Creates topic `topic` and its channels `c0..cN` over HTTP.
async fn create(broker: &RealNsqd, topic: &str, channels: u64) -> Result<(), String> {
    http::request(
        broker.http_addr,
        "POST",
        &format!("/topic/create?topic={topic}"),
    )
    .await?;
    for c in 0..channels {
        let path = format!("/channel/create?topic={topic}&channel=c{c}");
        http::request(broker.http_addr, "POST", &path).await?;
    }
    Ok(())
}

fn resident(broker: &RealNsqd) -> Result<f64, String> {
    process_resident_bytes(&broker.pid().to_string()).map(|b| b as f64)
}

/// Idle connections, then throughput over them, on a fresh broker.
async fn connections(o: &Opts, broker: Broker, f: &mut Figures) -> Result<(), String> {
    let b = broker.start(1, BROKER_FLAGS).await?.remove(0);
    let addr = b.tcp_addr.to_string();
    for t in 0..o.topics {
        create(&b, &format!("t{t}"), o.channels).await?;
    }
    let rss0 = resident(&b)?;
    let producers = (0..o.producers)
        .map(|_| Producer::new(addr.clone(), ProducerConfig::default()).map_err(err))
        .collect::<Result<Vec<_>, _>>()?;
    for ping in futures::future::join_all(producers.iter().map(Producer::ping)).await {
        ping.map_err(|e| format!("connecting the producers: {e}"))?;
    }
    let rss1 = resident(&b)?;
    let consumers = (0..o.consumers as u64)
        .map(|i| {
            let topic = Topic::new(format!("t{}", i % o.topics)).map_err(err)?;
            let channel = Channel::new(format!("c{}", (i / o.topics) % o.channels)).map_err(err)?;
            Consumer::builder(topic, channel)
                .nsqd(addr.clone())
                .config(ConsumerConfig::default().max_in_flight(o.max_in_flight))
                .build()
                .map_err(err)
        })
        .collect::<Result<Vec<_>, _>>()?;
    let connected = consumers
        .iter()
        .map(|c| c.connected(Duration::from_secs(60)));
    for c in futures::future::join_all(connected).await {
        c.map_err(|e| format!("connecting the consumers: {e}"))?;
    }
    let rss2 = resident(&b)?;
    f.per_producer = (rss1 - rss0) / o.producers.max(1) as f64;
    f.per_consumer = (rss2 - rss1) / o.consumers.max(1) as f64;

    // Every message reaches each channel of its topic once; what reaches a channel nobody
    // consumes (fewer consumers than channels) stays there.
    let share = o.messages / o.producers.max(1);
    let consumed: std::collections::HashSet<(u64, u64)> = (0..o.consumers as u64)
        .map(|i| (i % o.topics, (i / o.topics) % o.channels))
        .collect();
    let expected: usize = (0..o.producers as u64)
        .map(|i| share * consumed.iter().filter(|(t, _)| *t == i % o.topics).count())
        .sum();
    let delivered = Arc::new(AtomicUsize::new(0));
    let all_in = Arc::new(Notify::new());
    let handles: Vec<_> = consumers.iter().map(Consumer::handle).collect();
    let readers: Vec<_> = consumers
        .into_iter()
        .map(|mut consumer| {
            let (delivered, all_in) = (delivered.clone(), all_in.clone());
            tokio::spawn(async move {
                while let Some(msg) = consumer.next().await {
                    let _ = msg.finish();
                    if delivered.fetch_add(1, Ordering::Relaxed) + 1 == expected {
                        all_in.notify_one();
                    }
                }
            })
        })
        .collect();
    let body = Bytes::from(vec![b'x'; o.size]);
    let (broker_cpu0, client_cpu0) = (process_cpu_seconds(&b.pid().to_string())?, cpu_seconds()?);
    let started = Instant::now();
    let publishing = producers.iter().enumerate().map(|(i, p)| {
        let topic = Topic::new(format!("t{}", i as u64 % o.topics)).map_err(err);
        let body = body.clone();
        async move {
            let topic = topic?;
            futures::stream::iter(0..share)
                .map(|_| p.publish(&topic, body.clone()))
                .buffer_unordered(o.window)
                .map(|r| r.map_err(err))
                .collect::<Vec<_>>()
                .await
                .into_iter()
                .collect::<Result<(), String>>()
        }
    });
    let all_in = all_in.notified();
    for published in futures::future::join_all(publishing).await {
        published.map_err(|e| format!("publishing: {e}"))?;
    }
    tokio::time::timeout(Duration::from_secs(300), all_in)
        .await
        .map_err(|_| {
            format!(
                "{} of {expected} deliveries",
                delivered.load(Ordering::Relaxed)
            )
        })?;
    let elapsed = started.elapsed().as_secs_f64();
    let broker_cpu = process_cpu_seconds(&b.pid().to_string())? - broker_cpu0;
    let client_cpu = cpu_seconds()? - client_cpu0;
    f.deliveries_per_s = expected as f64 / elapsed;
    f.broker_cpu_per_100k = broker_cpu * 100_000.0 / expected as f64;
    f.client_cpu_per_100k = client_cpu * 100_000.0 / expected as f64;
    for h in &handles {
        h.stop().await;
    }
    for r in readers {
        let _ = r.await;
    }
    for p in &producers {
        p.stop().await;
    }
    Ok(())
}

/// The broker's resident set per queued message, on a fresh broker.
async fn queued(o: &Opts, broker: Broker, f: &mut Figures) -> Result<(), String> {
    let b = broker.start(1, BROKER_FLAGS).await?.remove(0);
    create(&b, "q", 1).await?;
    let rss0 = resident(&b)?;
    let topic = Topic::new("q").map_err(err)?;
    let body = Bytes::from(vec![b'x'; o.size]);
    let batches = o.queued / 1000;
    let producer = Producer::new(b.tcp_addr.to_string(), ProducerConfig::default()).map_err(err)?;
    let results: Vec<_> = futures::stream::iter(0..batches)
        .map(|_| producer.multi_publish(&topic, vec![body.clone(); 1000]))
        .buffer_unordered(8)
        .collect()
        .await;
    for r in results {
        r.map_err(|e| format!("queueing: {e}"))?;
    }
    producer.stop().await;
    let want = (batches * 1000) as u64;
    let path = "/stats?format=json&topic=q&channel=c0";
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let stats = http::json(b.http_addr, "GET", path).await?;
        let depth = stats["topics"][0]["channels"][0]["depth"]
            .as_u64()
            .unwrap_or(0);
        if depth >= want {
            break;
        }
        if Instant::now() > deadline {
            return Err(format!("the channel holds {depth} of {want}"));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    f.per_queued = (resident(&b)? - rss0) / want as f64;
    Ok(())
}

fn med(runs: &[Figures], field: fn(&Figures) -> f64) -> f64 {
    median(runs.iter().map(field).collect()).unwrap_or(f64::NAN)
}

#[tokio::main]
async fn main() -> ExitCode {
    let o = Opts::parse();
    let started = Instant::now();
    println!(
        "{} producer and {} consumer connections, {} topics × {} channels, {} messages of {} B per run, {} queued; {} runs, medians",
        o.producers,
        o.consumers,
        o.topics,
        o.channels,
        o.messages,
        o.size,
        o.queued,
        o.runs
    );
    println!();
    let mut results: Vec<(Broker, Vec<Figures>)> = Vec::new();
    let mut failed = false;
    for &broker in &o.brokers {
        let mut runs = Vec::new();
        for _ in 0..o.runs {
            let mut f = Figures::default();
            let run = async {
                connections(&o, broker, &mut f).await?;
                queued(&o, broker, &mut f).await
            };
            match run.await {
                Ok(()) => runs.push(f),
                Err(why) => {
                    eprintln!("{}: {why}", broker.name());
                    failed = true;
                }
            }
        }
        results.push((broker, runs));
    }
    let nsqd_rate = results
        .iter()
        .find(|(b, _)| *b == Broker::Nsqd)
        .map(|(_, runs)| med(runs, |f| f.deliveries_per_s));
    println!("| Broker | deliveries/s | ÷ nsqd | broker CPU s per 100k deliveries | client CPU s per 100k deliveries | broker KiB per idle producer connection | … per idle consumer connection | broker B per queued {} B message |", o.size);
    println!("|---|---:|---:|---:|---:|---:|---:|---:|");
    for (broker, runs) in &results {
        if runs.is_empty() {
            continue;
        }
        let rate = med(runs, |f| f.deliveries_per_s);
        println!(
            "| {} | {rate:.0} | {} | {:.3} | {:.3} | {:.1} | {:.1} | {:.0} |",
            broker.name(),
            nsqd_rate.map_or(String::new(), |n| format!("{:.2}×", rate / n)),
            med(runs, |f| f.broker_cpu_per_100k),
            med(runs, |f| f.client_cpu_per_100k),
            med(runs, |f| f.per_producer) / 1024.0,
            med(runs, |f| f.per_consumer) / 1024.0,
            med(runs, |f| f.per_queued),
        );
    }
    nsq_benchmarks::finish(started, failed)
}
