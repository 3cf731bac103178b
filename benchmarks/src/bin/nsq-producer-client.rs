//! nsq-client's `Producer` with `ProducerConfig::default()` under the loads of
//! `nsq-client-bench`. Same command line and report as the go-nsq program
//! (`tests/peers/go/cmd/nsq-bench-client`) and the tokio-nsq one
//! (`tests/peers/rust/tokio-nsq-bench`):
//!
//! ```text
//! nsq-producer-client --nsqd HOST:PORT --topic T --mode awaited|pipelined|mpub|consume|raw-awaited
//!                     --callers N --batch K --count M --size B [--window W] [--channel C]
//!                     [--merge on|off]
//! ```
//!
//! * awaited: N tasks, each awaits `publish` before the next;
//! * pipelined: N tasks, each runs its `publish` calls through `buffer_unordered(W)`, so up to
//!   W are outstanding and every call still resolves with its own answer;
//! * mpub: the same with `multi_publish` of K bodies;
//! * raw-awaited: not nsq-client but the floor of `awaited`: one blocking socket writing each
//!   PUB and reading its answer (one caller; `--callers` is ignored);
//! * consume: nsq-client's `Consumer` on T/C with max_in_flight 2500 (as the go-nsq and
//!   tokio-nsq programs), finishing every message, until M messages arrived.
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

#[derive(Debug, Clone)]
struct Opts {
    nsqd: String,
    topic: String,
    mode: String,
    callers: usize,
    batch: usize,
    count: usize,
    size: usize,
    window: usize,
    channel: String,
    merge: bool,
}

fn parse_args() -> Result<Opts, String> {
    let mut o = Opts {
        nsqd: String::new(),
        topic: String::new(),
        mode: String::new(),
        callers: 1,
        batch: 1,
        count: 0,
        size: 100,
        window: 1000,
        channel: "bench".to_owned(),
        merge: true,
    };
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let value = args.next().ok_or(format!("{flag} needs a value"))?;
        let num = || {
            value
                .parse::<usize>()
                .ok()
                .filter(|n| *n > 0)
                .ok_or(format!("{flag}: not a positive number: {value:?}"))
        };
        match flag.as_str() {
            "--nsqd" => o.nsqd = value.clone(),
            "--topic" => o.topic = value.clone(),
            "--mode" => o.mode = value.clone(),
            "--callers" => o.callers = num()?,
            "--batch" => o.batch = num()?,
            "--count" => o.count = num()?,
            "--size" => o.size = num()?,
            "--window" => o.window = num()?,
            "--channel" => o.channel = value.clone(),
            "--merge" => {
                o.merge = match value.as_str() {
                    "on" => true,
                    "off" => false,
                    _ => return Err(format!("--merge: on or off, not {value:?}")),
                }
            }
            other => return Err(format!("unknown option {other}")),
        }
    }
    if o.nsqd.is_empty() || o.topic.is_empty() || o.count == 0 {
        return Err("--nsqd, --topic and --count are needed".into());
    }
    if !matches!(
        o.mode.as_str(),
        "awaited" | "pipelined" | "mpub" | "consume" | "raw-awaited"
    ) {
        return Err(format!("unsupported --mode {:?}", o.mode));
    }
    Ok(o)
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
    let o = match parse_args() {
        Ok(o) => o,
        Err(why) => {
            eprintln!("[nsq-producer-client] usage error: {why}");
            return ExitCode::from(2);
        }
    };
    // The default multi-thread runtime, as an application would have it.
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    let start = Instant::now();
    let result = rt.block_on(run(&o));
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
