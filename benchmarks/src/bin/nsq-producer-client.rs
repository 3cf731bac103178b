//! nsq-client's `Producer` with `ProducerConfig::default()` under the loads of
//! `nsq-client-bench`. Same command line and report as the go-nsq program
//! (`tests/peers/go/cmd/nsq-bench-client`) and the tokio-nsq one
//! (`tests/peers/rust/tokio-nsq-bench`):
//!
//! ```text
//! nsq-producer-client --nsqd HOST:PORT --topic T --mode awaited|pipelined|mpub|consume|raw-awaited
//!                     --callers N --batch K --count M --size B [--window W] [--channel C]
//!                     [--merge on|off]
//! nsq-producer-client --nsqd HOST:PORT --topic T --mode latency --rate R --count M --size B
//!                     --latencies FILE [--max-in-flight F] [--channel C] [--low-latency on|off]
//! ```
//!
//! * awaited: N tasks, each awaits `publish` before the next;
//! * pipelined: N tasks, each runs its `publish` calls through `buffer_unordered(W)`, so up to
//!   W are outstanding and every call still resolves with its own answer;
//! * mpub: the same with `multi_publish` of K bodies;
//! * raw-awaited: not nsq-client but the floor of `awaited`: one blocking socket writing each
//!   PUB and reading its answer (one caller; `--callers` is ignored);
//! * consume: nsq-client's `Consumer` on T/C with max_in_flight 2500 (as the go-nsq and
//!   tokio-nsq programs), finishing every message, until M messages arrived;
//! * latency: a `Producer` publishing R messages a second and a `Consumer` (max_in_flight F,
//!   default 200) on T/C in the same process, as [`nsq_benchmarks::latency`] describes, the
//!   counted latencies written to FILE;
//!   `--low-latency on` asks nsqd not to buffer the consumer's messages
//!   (`ConnectionConfig::output_buffer(None)`).
//!
//! M is the total over all tasks (rounded up to whole batches). `--merge off` sets
//! `ProducerConfig::merge_publishes(None)`: one PUB per publish instead of merging publishes
//! queued together into MPUBs.
//!
//! One JSON line goes to stdout: `{"client","mode","messages","seconds","cpu_seconds"}`.
//! cpu_seconds is this process's utime + stime from `/proc/self/stat` (clock ticks; Linux
//! fixes the tick rate that it shows user space, USER_HZ, at 100 on every architecture this
//! runs on, so no `sysconf` call, which would need `unsafe`). Runs last seconds, so the 10 ms
//! resolution is well below the noise.
// A benchmark client reports on stdout: that is its output, not stray debugging.
#![allow(clippy::print_stdout)]

use std::process::ExitCode;
use std::time::Instant;

use bytes::Bytes;
use futures::StreamExt;
use nsq_client::proto::Topic;
use nsq_client::{Producer, ProducerConfig};

/// nsq-client's side of nsq-client-bench and nsq-latency-bench: one load, one JSON report.
#[derive(Debug, Clone, clap::Parser)]
struct Opts {
    /// The nsqd TCP address.
    #[arg(long)]
    nsqd: String,
    /// The topic.
    #[arg(long)]
    topic: String,
    /// The load.
    #[arg(long, value_parser = ["awaited", "pipelined", "mpub", "consume", "raw-awaited", "latency"])]
    mode: String,
    /// Publishing tasks.
    #[arg(long, default_value_t = 1, value_parser = nsq_benchmarks::positive)]
    callers: usize,
    /// Bodies per MPUB (`--mode mpub`).
    #[arg(long, default_value_t = 1, value_parser = nsq_benchmarks::positive)]
    batch: usize,
    /// Messages, over all tasks.
    #[arg(long, value_parser = nsq_benchmarks::positive)]
    count: usize,
    /// Message body bytes.
    #[arg(long, default_value_t = 100, value_parser = nsq_benchmarks::positive)]
    size: usize,
    /// Outstanding publishes per task when pipelined.
    #[arg(long, default_value_t = 1000, value_parser = nsq_benchmarks::positive)]
    window: usize,
    /// The channel of `consume` and `latency`.
    #[arg(long, default_value = "bench")]
    channel: String,
    /// `off`: one PUB per publish (`ProducerConfig::merge_publishes(None)`).
    #[arg(long, default_value = "on", value_parser = on_off, action = clap::ArgAction::Set)]
    merge: bool,
    /// Messages a second (`--mode latency`).
    #[arg(long, value_parser = nsq_benchmarks::positive, required_if_eq("mode", "latency"))]
    rate: Option<usize>,
    /// The consumer's max_in_flight (`--mode latency`).
    #[arg(long, default_value_t = 200, value_parser = clap::value_parser!(u32).range(1..))]
    max_in_flight: u32,
    /// `on`: nsqd does not buffer the consumer's messages (`--mode latency`).
    #[arg(long, default_value = "off", value_parser = on_off, action = clap::ArgAction::Set)]
    low_latency: bool,
    /// Where the counted latencies go, one per line in nanoseconds (`--mode latency`).
    #[arg(long, required_if_eq("mode", "latency"))]
    latencies: Option<String>,
}

fn on_off(value: &str) -> Result<bool, String> {
    match value {
        "on" => Ok(true),
        "off" => Ok(false),
        _ => Err(format!("on or off, not {value:?}")),
    }
}

/// One caller's share of `total` units.
fn share(total: usize, callers: usize, i: usize) -> usize {
    total / callers + usize::from(i < total % callers)
}

async fn caller(producer: Producer, topic: Topic, o: Opts, units: usize) -> Result<(), String> {
    let body = Bytes::from(vec![b'x'; o.size]);
    let bodies = vec![body.clone(); o.batch];
    match o.mode.as_str() {
        "awaited" => {
            for _ in 0..units {
                producer
                    .publish(&topic, body.clone())
                    .await
                    .map_err(|e| e.to_string())?;
            }
        }
        _ => {
            let mpub = o.mode == "mpub";
            let mut answers = futures::stream::iter(0..units)
                .map(|_| {
                    let (producer, topic) = (&producer, &topic);
                    let (body, bodies) = (body.clone(), bodies.clone());
                    async move {
                        if mpub {
                            producer.multi_publish(topic, bodies).await
                        } else {
                            producer.publish(topic, body).await
                        }
                    }
                })
                .buffer_unordered(o.window);
            while let Some(answer) = answers.next().await {
                answer.map_err(|e| e.to_string())?;
            }
        }
    }
    Ok(())
}

/// Takes `count` messages with nsq-client's consumer, finishing each, then stops it.
async fn consume(o: &Opts) -> Result<usize, String> {
    use nsq_client::proto::Channel;
    use nsq_client::{Consumer, ConsumerConfig};
    let topic = Topic::new(o.topic.clone()).map_err(|e| e.to_string())?;
    let channel = Channel::new(o.channel.clone()).map_err(|e| e.to_string())?;
    let mut consumer = Consumer::builder(topic, channel)
        .nsqd(o.nsqd.clone())
        .config(ConsumerConfig::default().max_in_flight(2500))
        .build()
        .map_err(|e| e.to_string())?;
    let mut taken = 0;
    while taken < o.count {
        let msg = consumer.next().await.ok_or("the consumer stopped early")?;
        msg.finish().map_err(|e| e.to_string())?;
        taken += 1;
    }
    consumer.stop().await;
    Ok(taken)
}

/// The floor of the awaited load: a blocking socket that writes each PUB and reads its
/// answer, with no runtime, no timeout and no connection handshake beyond the magic (nsqd
/// needs no IDENTIFY). No client can await publishes one by one faster than this.
fn raw_awaited(o: &Opts) -> Result<usize, String> {
    use std::io::{Read, Write};
    let io = |e: std::io::Error| e.to_string();
    let mut socket = std::net::TcpStream::connect(&o.nsqd).map_err(io)?;
    socket.set_nodelay(true).map_err(io)?;
    socket.write_all(b"  V2").map_err(io)?;
    let mut cmd = format!("PUB {}\n", o.topic).into_bytes();
    cmd.extend_from_slice(
        &u32::try_from(o.size)
            .map_err(|e| e.to_string())?
            .to_be_bytes(),
    );
    cmd.resize(cmd.len() + o.size, b'x');
    // An OK frame: size 6, frame type 0, "OK".
    let mut answer = [0u8; 10];
    for _ in 0..o.count {
        socket.write_all(&cmd).map_err(io)?;
        socket.read_exact(&mut answer).map_err(io)?;
        if answer != *b"\0\0\0\x06\0\0\0\0OK" {
            return Err(format!("nsqd answered {answer:?}"));
        }
    }
    Ok(o.count)
}

/// Publishes at `--rate` and consumes in the same process; the latencies of the counted
/// messages, in nanoseconds.
async fn latency(o: &Opts, start: Instant) -> Result<Vec<u64>, String> {
    use nsq_benchmarks::latency::{body, read};
    use nsq_client::proto::Channel;
    use nsq_client::{ConnectionConfig, Consumer, ConsumerConfig};
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;
    use std::time::Duration;

    let topic = Topic::new(o.topic.clone()).map_err(|e| e.to_string())?;
    let channel = Channel::new(o.channel.clone()).map_err(|e| e.to_string())?;
    let mut config = ConsumerConfig::default().max_in_flight(o.max_in_flight);
    if o.low_latency {
        config = config.connection(ConnectionConfig::default().output_buffer(None));
    }
    let mut consumer = Consumer::builder(topic.clone(), channel)
        .nsqd(o.nsqd.clone())
        .config(config)
        .build()
        .map_err(|e| e.to_string())?;
    let producer =
        Producer::new(o.nsqd.clone(), ProducerConfig::default()).map_err(|e| e.to_string())?;
    let nanos = move || u64::try_from(start.elapsed().as_nanos()).unwrap_or(u64::MAX);
    let rate = o.rate.ok_or("--mode latency needs --rate")?;
    let (warmup, count, rate) = (rate as u64, o.count as u64, rate as f64);
    let total = warmup + count;
    let failed = Arc::new(AtomicUsize::new(0));
    let publisher = {
        let (producer, failed, size) = (producer.clone(), failed.clone(), o.size);
        tokio::spawn(async move {
            let began = Instant::now();
            let mut next = 0;
            while next < total {
                let due = ((began.elapsed().as_secs_f64() * rate) as u64).min(total);
                while next < due {
                    let (producer, topic, failed) =
                        (producer.clone(), topic.clone(), failed.clone());
                    let msg = body(next, nanos(), size);
                    tokio::spawn(async move {
                        if producer.publish(&topic, msg).await.is_err() {
                            failed.fetch_add(1, Ordering::Relaxed);
                        }
                    });
                    next += 1;
                }
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        })
    };
    let mut latencies = Vec::with_capacity(o.count);
    let patience = Duration::from_secs(10) + Duration::from_secs_f64(total as f64 / rate);
    let counted = tokio::time::timeout(patience, async {
        while latencies.len() < o.count {
            let msg = consumer.next().await.ok_or("the consumer stopped early")?;
            let arrived = nanos();
            let (number, sent) = read(msg.body()).ok_or("not a probe body")?;
            msg.finish().map_err(|e| e.to_string())?;
            if (warmup..total).contains(&number) {
                latencies.push(arrived.saturating_sub(sent));
            }
        }
        Ok::<(), String>(())
    })
    .await;
    publisher.await.map_err(|e| e.to_string())?;
    consumer.stop().await;
    producer.stop().await;
    counted.map_err(|_| {
        format!(
            "{} of {} counted messages arrived",
            latencies.len(),
            o.count
        )
    })??;
    match failed.load(Ordering::Relaxed) {
        0 => Ok(latencies),
        n => Err(format!("{n} publishes failed")),
    }
}

async fn run(o: &Opts) -> Result<usize, String> {
    if o.mode == "consume" {
        return consume(o).await;
    }
    if o.mode == "raw-awaited" {
        return raw_awaited(o);
    }
    let config = if o.merge {
        ProducerConfig::default()
    } else {
        ProducerConfig::default().merge_publishes(None)
    };
    let producer = Producer::new(o.nsqd.clone(), config).map_err(|e| e.to_string())?;
    let topic = Topic::new(o.topic.clone()).map_err(|e| e.to_string())?;
    let per = if o.mode == "mpub" { o.batch } else { 1 };
    let units = o.count.div_ceil(per);
    let tasks: Vec<_> = (0..o.callers)
        .map(|i| {
            tokio::spawn(caller(
                producer.clone(),
                topic.clone(),
                o.clone(),
                share(units, o.callers, i),
            ))
        })
        .collect();
    for task in tasks {
        task.await.map_err(|e| e.to_string())??;
    }
    producer.stop().await;
    Ok(units * per)
}

fn main() -> ExitCode {
    let o = <Opts as clap::Parser>::parse();
    // The default multi-thread runtime, as an application would have it.
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    let start = Instant::now();
    let result = if o.mode == "latency" {
        // On a worker, as a service's consumer loop would be (not on the thread of
        // `block_on`, which every delivery would have to wake from its sleep).
        let probe = {
            let o = o.clone();
            rt.spawn(async move { latency(&o, start).await })
        };
        rt.block_on(probe)
            .map_err(|e| e.to_string())
            .and_then(|probed| probed)
            .and_then(|nanos| {
                let lines: String = nanos.iter().map(|n| format!("{n}\n")).collect();
                let path = o.latencies.as_deref().unwrap_or_default();
                std::fs::write(path, lines).map_err(|e| format!("{path}: {e}"))?;
                Ok(nanos.len())
            })
    } else {
        rt.block_on(run(&o))
    };
    let seconds = start.elapsed().as_secs_f64();
    match result.and_then(|messages| Ok((messages, nsq_benchmarks::cpu_seconds()?))) {
        Ok((messages, cpu)) => {
            println!(
                "{{\"client\":\"nsq-client\",\"mode\":\"{}\",\"messages\":{messages},\"seconds\":{seconds},\"cpu_seconds\":{cpu}}}",
                o.mode
            );
            ExitCode::SUCCESS
        }
        Err(why) => {
            eprintln!("[nsq-producer-client] failed: {why}");
            ExitCode::FAILURE
        }
    }
}
