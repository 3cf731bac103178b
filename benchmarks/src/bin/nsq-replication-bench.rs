//! Replicated against plain, over three real nsqd 1.3.0 in one run: publishing (a
//! `ProducerPool` round-robin, and a `ReplicatedProducer` with two copies over the same pool)
//! and consuming (a plain consumer, and a de-duplicating one reading single copies and two
//! copies of each message).
//!
//! Each scenario runs `--runs` times on a fresh topic; the nsqd are separate processes, so
//! the CPU time (this process's utime + stime around the measured part) is the client's
//! alone. Publishing keeps `--window` publishes outstanding. Consuming starts on a topic
//! filled beforehand (not measured); its rate is the messages that reached the user over the
//! time they took, and its CPU runs on until every nsqd's channel is drained (the duplicates
//! finished too). After each run the topics' `message_count` must be what was published (twice
//! it for two copies). The table shows medians and the ratios the replication goals are
//! stated in.
//!
//! ```sh
//! source ~/.cache/nsq-rs-peers/env.sh
//! cargo run --release -p nsq-benchmarks --bin nsq-replication-bench -- --runs 3
//! ```
// A benchmark reports on stdout: that is its output, not stray debugging.
#![allow(clippy::print_stdout)]

use std::process::ExitCode;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::StreamExt;
use nsq_benchmarks::{cpu_seconds, median};
use nsq_client::{
    Channel, Consumer, ConsumerConfig, Dedup, ProducerConfig, ProducerPool, ReplicatedProducer,
    Replication, Strategy, Topic,
};
use nsq_tests::{http, RealNsqd};

const USAGE: &str = "\
usage: nsq-replication-bench [options]
  --runs N      runs of every scenario; the table shows medians (default 3)
  --count N     messages per run (default 200000)
  --size BYTES  body size (default 100)
  --window N    publishes outstanding (default 1000)";

#[derive(Debug, Clone, Copy)]
struct Opts {
    runs: usize,
    count: usize,
    size: usize,
    window: usize,
}

fn opts() -> Result<Opts, String> {
    let mut o = Opts {
        runs: 3,
        count: 200_000,
        size: 100,
        window: 1000,
    };
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let value = args.next().ok_or_else(|| format!("{flag} needs a value"))?;
        let n: usize = value
            .parse()
            .map_err(|_| format!("{flag}: not a number: {value}"))?;
        match flag.as_str() {
            "--runs" => o.runs = n.max(1),
            "--count" => o.count = n.max(1),
            "--size" => o.size = n,
            "--window" => o.window = n.max(1),
            _ => return Err(format!("unknown flag {flag}")),
        }
    }
    Ok(o)
}

/// What one run measured.
#[derive(Debug, Clone, Copy)]
struct Run {
    seconds: f64,
    cpu: f64,
}

/// The scenarios, in the order of the table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Scenario {
    PublishPlain,
    PublishReplicated,
    ConsumePlain,
    ConsumeDedupOneCopy,
    ConsumeDedupTwoCopies,
}

impl Scenario {
    const ALL: [Scenario; 5] = [
        Scenario::PublishPlain,
        Scenario::PublishReplicated,
        Scenario::ConsumePlain,
        Scenario::ConsumeDedupOneCopy,
        Scenario::ConsumeDedupTwoCopies,
    ];

    fn name(self) -> &'static str {
        match self {
            Scenario::PublishPlain => "publish, plain (pool, round-robin)",
            Scenario::PublishReplicated => "publish, replicated (2 copies)",
            Scenario::ConsumePlain => "consume, plain",
            Scenario::ConsumeDedupOneCopy => "consume, de-duplicated, 1 copy each",
            Scenario::ConsumeDedupTwoCopies => "consume, de-duplicated, 2 copies each",
        }
    }
}

struct Bench {
    o: Opts,
    nsqd: Vec<RealNsqd>,
    body: Bytes,
    next_topic: usize,
}

impl Bench {
    fn addrs(&self) -> Vec<String> {
        self.nsqd.iter().map(|n| n.tcp_addr.to_string()).collect()
    }

    fn pool(&self) -> ProducerPool {
        ProducerPool::new(
            self.addrs(),
            ProducerConfig::default(),
            Strategy::RoundRobin,
        )
        .expect("pool")
    }

    fn topic(&mut self) -> Topic {
        self.next_topic += 1;
        Topic::new(format!("bench{}", self.next_topic)).expect("topic")
    }

    /// Publishes `count` messages through `pool` or, with `copies`, replicated.
    async fn publish(&self, topic: &Topic, copies: Option<usize>) -> Result<(), String> {
        let pool = self.pool();
        let replicated = copies.map(|k| {
            ReplicatedProducer::new(pool.clone(), Replication::copies(k)).expect("replication")
        });
        let body = self.body.clone();
        let mut results = futures::stream::iter(0..self.o.count)
            .map(|_| {
                let (pool, replicated, body) = (pool.clone(), replicated.clone(), body.clone());
                let topic = topic.clone();
                async move {
                    match replicated {
                        Some(r) => r
                            .publish(&topic, body)
                            .await
                            .map(drop)
                            .map_err(|e| e.to_string()),
                        None => pool.publish(&topic, body).await.map_err(|e| e.to_string()),
                    }
                }
            })
            .buffer_unordered(self.o.window);
        while let Some(result) = results.next().await {
            result?;
        }
        pool.stop().await;
        Ok(())
    }

    /// Consumes until `count` messages reached the user and every channel is drained;
    /// returns how long the messages took to reach the user.
    async fn consume(&self, topic: &Topic, dedup: bool) -> Result<Duration, String> {
        let mut builder = Consumer::builder(topic.clone(), Channel::new("c").expect("channel"))
            .config(ConsumerConfig::default().max_in_flight(2500));
        for addr in self.addrs() {
            builder = builder.nsqd(addr);
        }
        if dedup {
            builder = builder.deduplicate(Dedup::envelope().max_entries(self.o.count * 2));
        }
        let mut consumer = builder.build().map_err(|e| e.to_string())?;
        let started = Instant::now();
        let mut received = 0;
        while received < self.o.count {
            let msg = tokio::time::timeout(Duration::from_secs(30), consumer.next())
                .await
                .map_err(|_| format!("stalled after {received} messages"))?
                .ok_or("the consumer stopped")?;
            received += 1;
            msg.finish().map_err(|e| e.to_string())?;
        }
        let reached_user = started.elapsed();
        // The duplicates still in flight are finished as the stream is read.
        let drained = async {
            loop {
                let mut left = 0;
                for n in &self.nsqd {
                    left += channel_left(n, topic.as_str()).await?;
                }
                if left == 0 {
                    return Ok::<(), String>(());
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        };
        tokio::select! {
            result = drained => result?,
            msg = consumer.next() => return Err(format!("more than {received} messages: {msg:?}")),
        }
        consumer.stop().await;
        Ok(reached_user)
    }

    async fn run(&mut self, scenario: Scenario) -> Result<Run, String> {
        let topic = self.topic();
        let fill = match scenario {
            Scenario::ConsumePlain => Some(None),
            Scenario::ConsumeDedupOneCopy => Some(Some(1)),
            Scenario::ConsumeDedupTwoCopies => Some(Some(2)),
            _ => None,
        };
        if let Some(copies) = fill {
            self.publish(&topic, copies).await?;
        }
        let cpu0 = cpu_seconds()?;
        let t0 = Instant::now();
        let seconds = match scenario {
            Scenario::PublishPlain => self.publish(&topic, None).await.map(|()| t0.elapsed())?,
            Scenario::PublishReplicated => {
                self.publish(&topic, Some(2)).await.map(|()| t0.elapsed())?
            }
            Scenario::ConsumePlain => self.consume(&topic, false).await?,
            Scenario::ConsumeDedupOneCopy | Scenario::ConsumeDedupTwoCopies => {
                self.consume(&topic, true).await?
            }
        };
        let run = Run {
            seconds: seconds.as_secs_f64(),
            cpu: cpu_seconds()? - cpu0,
        };
        let expected = match scenario {
            Scenario::PublishReplicated | Scenario::ConsumeDedupTwoCopies => 2 * self.o.count,
            _ => self.o.count,
        };
        let mut held = 0;
        for n in &self.nsqd {
            held += topic_messages(n, topic.as_str()).await?;
        }
        if held != expected as u64 {
            return Err(format!(
                "{}: nsqd took {held} messages, expected {expected}",
                scenario.name()
            ));
        }
        for n in &self.nsqd {
            let _ =
                http::request(n.http_addr, "POST", &format!("/topic/delete?topic={topic}")).await;
        }
        Ok(run)
    }
}

async fn topic_messages(n: &RealNsqd, topic: &str) -> Result<u64, String> {
    let stats = http::json(
        n.http_addr,
        "GET",
        &format!("/stats?format=json&topic={topic}"),
    )
    .await?;
    Ok(stats["topics"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|t| t["topic_name"] == topic)
        .and_then(|t| t["message_count"].as_u64())
        .unwrap_or(0))
}

async fn channel_left(n: &RealNsqd, topic: &str) -> Result<u64, String> {
    let stats = http::json(
        n.http_addr,
        "GET",
        &format!("/stats?format=json&topic={topic}"),
    )
    .await?;
    let Some(t) = stats["topics"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|t| t["topic_name"] == topic)
    else {
        return Ok(0);
    };
    let n = |v: &serde_json::Value, k: &str| v[k].as_u64().unwrap_or(0);
    Ok(t["channels"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|c| n(c, "depth") + n(c, "in_flight_count") + n(c, "deferred_count"))
        .sum::<u64>()
        + n(t, "depth"))
}

#[tokio::main]
async fn main() -> ExitCode {
    let o = match opts() {
        Ok(o) => o,
        Err(e) => {
            eprintln!("{e}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    let Some(bin) = std::env::var_os("NSQD_BIN") else {
        eprintln!("NSQD_BIN is not set: source ~/.cache/nsq-rs-peers/env.sh");
        return ExitCode::from(2);
    };
    let bin = std::path::PathBuf::from(bin);
    let nsqd: Vec<RealNsqd> = (0..3).map(|_| RealNsqd::start(&bin, &[])).collect();
    let mut bench = Bench {
        o,
        nsqd,
        body: Bytes::from(vec![b'x'; o.size]),
        next_topic: 0,
    };
    let mut results: Vec<(Scenario, Vec<Run>)> =
        Scenario::ALL.iter().map(|&s| (s, Vec::new())).collect();
    // Runs interleave the scenarios, so a slow spell of the machine spreads over all.
    for _ in 0..o.runs {
        for (scenario, runs) in &mut results {
            match bench.run(*scenario).await {
                Ok(run) => runs.push(run),
                Err(e) => {
                    eprintln!("{}: {e}", scenario.name());
                    return ExitCode::FAILURE;
                }
            }
        }
    }
    let row = |s: Scenario| {
        let runs = &results.iter().find(|(x, _)| *x == s).expect("scenario").1;
        let rate =
            median(runs.iter().map(|r| o.count as f64 / r.seconds).collect()).unwrap_or(f64::NAN);
        let cpu = median(
            runs.iter()
                .map(|r| r.cpu * 100_000.0 / o.count as f64)
                .collect(),
        )
        .unwrap_or(f64::NAN);
        (rate, cpu)
    };
    println!(
        "{} messages of {} bytes per run, {} runs, 3 nsqd 1.3.0, {} publishes outstanding\n",
        o.count, o.size, o.runs, o.window
    );
    println!("| Scenario | msgs/s (median) | client CPU s per 100k msgs (median) |");
    println!("|---|---:|---:|");
    for s in Scenario::ALL {
        let (rate, cpu) = row(s);
        println!("| {} | {rate:.0} | {cpu:.3} |", s.name());
    }
    let (plain_rate, plain_cpu) = row(Scenario::PublishPlain);
    let (rep_rate, rep_cpu) = row(Scenario::PublishReplicated);
    let (consume_rate, consume_cpu) = row(Scenario::ConsumePlain);
    let (one_rate, one_cpu) = row(Scenario::ConsumeDedupOneCopy);
    let (two_rate, two_cpu) = row(Scenario::ConsumeDedupTwoCopies);
    println!();
    println!(
        "replicated publish: {:.2}× the CPU per message of plain (goal ≤ 2.2×), {:.2}× its rate",
        rep_cpu / plain_cpu,
        rep_rate / plain_rate
    );
    println!(
        "de-duplicated consume, 1 copy each: {:.2}× plain's rate (goal ≥ 0.8×), {:.2}× its CPU",
        one_rate / consume_rate,
        one_cpu / consume_cpu
    );
    println!(
        "de-duplicated consume, 2 copies each: {:.2}× plain's rate in messages reaching the user, \
         {:.2}× its CPU per such message",
        two_rate / consume_rate,
        two_cpu / consume_cpu
    );
    ExitCode::SUCCESS
}
