//! tokio-nsq 0.14 with its default configuration under the loads of
//! benchmarks/src/bin/nsq-client-bench.rs. Same command line and report as
//! tests/peers/go/cmd/nsq-bench-client (go-nsq) and benchmarks/src/bin/nsq-producer-client.rs:
//!
//! ```text
//! tokio-nsq-bench --nsqd HOST:PORT --topic T --mode awaited|pipelined|mpub|consume
//!                 --callers N --batch K --count M --size B [--window W] [--channel C]
//! tokio-nsq-bench --nsqd HOST:PORT --topic T --mode latency --rate R --count M --size B
//!                 --latencies FILE [--max-in-flight F] [--channel C]
//! ```
//!
//! tokio-nsq's `NSQProducer` takes `&mut self` both to queue a publish and to read its events,
//! and its `NSQEvent::Ok()` says that *some* publish was acknowledged, not which one (an
//! `E_*` answer is only logged, no event). So callers cannot each await their own answer: one
//! task queues publishes and counts `Ok` events, keeping at most `callers` (awaited) or
//! `callers * window` (pipelined, mpub) publishes unacknowledged. That is as many in flight as the
//! other clients have, but an answer is not tied to a call.
//!
//! consume: an `NSQConsumer` with max_in_flight 2500 on T/C, FIN for every message, until M.
//! tokio-nsq queues a FIN and writes it out on its next flush (every 250 ms by default), so the
//! program waits a second after the last one before it exits; that wait is not in `seconds`,
//! which ends when the last FIN was handed to tokio-nsq.
//!
//! latency: an `NSQProducer` publishing R messages a second (every millisecond, or sooner when
//! an answer arrives, the messages due by then) and an `NSQConsumer` (max_in_flight F, default
//! 200) on T/C in the same process, with the body and counting of nsq-benchmarks' latency
//! module: each body starts with its number and the nanoseconds from the start to its
//! publish (big-endian u64s); the first R messages are not counted, the latencies of the next
//! M go to FILE in nanoseconds, one a line. tokio-nsq has no setting for nsqd's output
//! buffering, so there is no `--low-latency`.
//!
//! Prints one JSON line `{"client","mode","messages","seconds","cpu_seconds"}`; cpu_seconds is
//! this process's user+system time from getrusage(RUSAGE_SELF) at the end. Logs to stderr.
//! Exit status: 0 ok, 1 failure, 2 bad usage.

use std::process::ExitCode;
use std::time::{Duration, Instant};

use tokio_nsq::{
    NSQChannel, NSQConsumerConfig, NSQConsumerConfigSources, NSQEvent, NSQProducerConfig, NSQTopic,
};

struct Opts {
    nsqd: String,
    topic: String,
    channel: String,
    mode: String,
    callers: usize,
    batch: usize,
    count: usize,
    size: usize,
    window: usize,
    rate: usize,
    max_in_flight: u32,
    latencies: String,
}

fn parse_args() -> Result<Opts, String> {
    let mut o = Opts {
        nsqd: String::new(),
        topic: String::new(),
        channel: "bench".into(),
        mode: String::new(),
        callers: 1,
        batch: 1,
        count: 0,
        size: 100,
        window: 1000,
        rate: 0,
        max_in_flight: 200,
        latencies: String::new(),
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
            "--channel" => o.channel = value.clone(),
            "--mode" => o.mode = value.clone(),
            "--callers" => o.callers = num()?,
            "--batch" => o.batch = num()?,
            "--count" => o.count = num()?,
            "--size" => o.size = num()?,
            "--window" => o.window = num()?,
            "--rate" => o.rate = num()?,
            "--max-in-flight" => {
                o.max_in_flight = u32::try_from(num()?).map_err(|e| format!("{flag}: {e}"))?;
            }
            "--latencies" => o.latencies = value.clone(),
            other => return Err(format!("unknown option {other}")),
        }
    }
    if o.nsqd.is_empty() || o.topic.is_empty() || o.count == 0 {
        return Err("--nsqd, --topic and --count are needed".into());
    }
    if o.mode == "latency" && (o.rate == 0 || o.latencies.is_empty() || o.size < 16) {
        return Err("--mode latency needs --rate, --latencies and --size >= 16".into());
    }
    Ok(o)
}

/// User + system CPU seconds of this process so far.
fn cpu_seconds() -> f64 {
    // SAFETY: getrusage only writes the struct we pass.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    let rc = unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) };
    assert_eq!(rc, 0, "getrusage");
    let secs = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    secs(ru.ru_utime) + secs(ru.ru_stime)
}

/// The next producer event within a generous limit (an `E_*` answer never produces one).
async fn next_event(producer: &mut tokio_nsq::NSQProducer) -> Result<NSQEvent, String> {
    match tokio::time::timeout(Duration::from_secs(60), producer.consume()).await {
        Ok(Some(event)) => Ok(event),
        Ok(None) => Err("producer closed".into()),
        Err(_) => Err("no event from the producer for 60 s".into()),
    }
}

async fn publish(o: &Opts) -> Result<usize, String> {
    let topic = NSQTopic::new(o.topic.clone()).ok_or("bad topic name")?;
    let mut producer = NSQProducerConfig::new(o.nsqd.clone()).build();
    match next_event(&mut producer).await? {
        NSQEvent::Healthy() => {}
        other => return Err(format!("expected Healthy, got {other:?}")),
    }
    let body = vec![b'x'; o.size];
    let (per, limit) = match o.mode.as_str() {
        "awaited" => (1, o.callers),
        "pipelined" => (1, o.callers * o.window),
        "mpub" => (o.batch, o.callers * o.window),
        m => return Err(format!("unknown mode {m}")),
    };
    let units = o.count.div_ceil(per);
    let (mut sent, mut acked) = (0usize, 0usize);
    while acked < units {
        if sent < units && sent - acked < limit {
            let queued = if per == 1 {
                producer.publish(&topic, body.clone()).await
            } else {
                producer
                    .publish_multiple(&topic, vec![body.clone(); per])
                    .await
            };
            queued.map_err(|e| format!("publish: {e}"))?;
            sent += 1;
            continue;
        }
        match next_event(&mut producer).await? {
            NSQEvent::Ok() => acked += 1,
            other => return Err(format!("expected Ok, got {other:?}")),
        }
    }
    Ok(units * per)
}

async fn consume(o: &Opts, end: &mut Option<Instant>) -> Result<usize, String> {
    let topic = NSQTopic::new(o.topic.clone()).ok_or("bad topic name")?;
    let channel = NSQChannel::new(o.channel.clone()).ok_or("bad channel name")?;
    let mut consumer = NSQConsumerConfig::new(topic, channel)
        .set_max_in_flight(2500)
        .set_sources(NSQConsumerConfigSources::Daemons(vec![o.nsqd.clone()]))
        .build();
    let mut seen = 0;
    while seen < o.count {
        let message = tokio::time::timeout(Duration::from_secs(60), consumer.consume_filtered())
            .await
            .map_err(|_| "no message for 60 s")?
            .ok_or("consumer closed")?;
        message.finish().await;
        seen += 1;
    }
    *end = Some(Instant::now());
    tokio::time::sleep(Duration::from_secs(1)).await;
    Ok(seen)
}

/// Publishes at `--rate` and consumes in the same process; writes the counted latencies.
async fn latency(o: &Opts, start: Instant) -> Result<usize, String> {
    let topic = NSQTopic::new(o.topic.clone()).ok_or("bad topic name")?;
    let channel = NSQChannel::new(o.channel.clone()).ok_or("bad channel name")?;
    let mut consumer = NSQConsumerConfig::new(topic.clone(), channel)
        .set_max_in_flight(o.max_in_flight)
        .set_sources(NSQConsumerConfigSources::Daemons(vec![o.nsqd.clone()]))
        .build();
    let mut producer = NSQProducerConfig::new(o.nsqd.clone()).build();
    match next_event(&mut producer).await? {
        NSQEvent::Healthy() => {}
        other => return Err(format!("expected Healthy, got {other:?}")),
    }
    let nanos = move || u64::try_from(start.elapsed().as_nanos()).unwrap_or(u64::MAX);
    let (warmup, count, rate, size) = (o.rate as u64, o.count as u64, o.rate as f64, o.size);
    let total = warmup + count;
    let publisher = tokio::spawn(async move {
        let began = Instant::now();
        let (mut next, mut acked) = (0u64, 0u64);
        while acked < total {
            let due = ((began.elapsed().as_secs_f64() * rate) as u64).min(total);
            while next < due {
                let mut body = Vec::with_capacity(size);
                body.extend_from_slice(&next.to_be_bytes());
                body.extend_from_slice(&nanos().to_be_bytes());
                body.resize(size, b'x');
                producer
                    .publish(&topic, body)
                    .await
                    .map_err(|e| format!("publish: {e}"))?;
                next += 1;
            }
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_millis(1)), if next < total => {}
                event = next_event(&mut producer) => match event? {
                    NSQEvent::Ok() => acked += 1,
                    other => return Err(format!("expected Ok, got {other:?}")),
                },
            }
        }
        Ok::<(), String>(())
    });
    let mut latencies = Vec::with_capacity(o.count);
    let patience = Duration::from_secs(10) + Duration::from_secs_f64(total as f64 / rate);
    let deadline = Instant::now() + patience;
    while latencies.len() < o.count {
        let left = deadline.saturating_duration_since(Instant::now());
        let message = tokio::time::timeout(left, consumer.consume_filtered())
            .await
            .map_err(|_| {
                format!(
                    "{} of {} counted messages arrived",
                    latencies.len(),
                    o.count
                )
            })?
            .ok_or("consumer closed")?;
        let arrived = nanos();
        let stamp = |at: usize| {
            message
                .body
                .get(at..at + 8)
                .and_then(|b| b.try_into().ok())
                .map(u64::from_be_bytes)
        };
        let (number, sent) = stamp(0).zip(stamp(8)).ok_or("not a probe body")?;
        message.finish().await;
        if (warmup..total).contains(&number) {
            latencies.push(arrived.saturating_sub(sent));
        }
    }
    publisher.await.map_err(|e| e.to_string())??;
    let lines: String = latencies.iter().map(|n| format!("{n}\n")).collect();
    std::fs::write(&o.latencies, lines).map_err(|e| format!("{}: {e}", o.latencies))?;
    Ok(latencies.len())
}

fn main() -> ExitCode {
    let o = match parse_args() {
        Ok(o) => o,
        Err(why) => {
            eprintln!("[tokio-nsq-bench] usage error: {why}");
            return ExitCode::from(2);
        }
    };
    // tokio-nsq's examples use the multi-thread runtime; so do we (default worker count).
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let start = Instant::now();
    let mut end = None;
    let result = rt.block_on(async {
        if o.mode == "consume" {
            consume(&o, &mut end).await
        } else if o.mode == "latency" {
            latency(&o, start).await
        } else {
            publish(&o).await
        }
    });
    let seconds = end
        .unwrap_or_else(Instant::now)
        .duration_since(start)
        .as_secs_f64();
    match result {
        Ok(messages) => {
            println!(
                "{{\"client\":\"tokio-nsq\",\"mode\":\"{}\",\"messages\":{messages},\"seconds\":{seconds},\"cpu_seconds\":{}}}",
                o.mode,
                cpu_seconds()
            );
            ExitCode::SUCCESS
        }
        Err(why) => {
            eprintln!("[tokio-nsq-bench] failed: {why}");
            ExitCode::FAILURE
        }
    }
}
