//! Replicated against plain, over three real nsqd 1.3.0 in one run: publishing (a
//! `ProducerPool` round-robin, and a `ReplicatedProducer` with two copies over the same pool)
//! and consuming (a plain consumer, and a de-duplicating one reading single copies and two
//! copies of each message).
//!
//! Each scenario runs `--runs` times on a fresh topic; the nsqd are separate processes, so
//! the CPU time (this process's utime + stime around the measured part) is the client's
//! alone. Publishing keeps `--window` publishes outstanding. Consuming starts on a topic
//! filled beforehand (not measured); its rate is that of the middle 80 % of the messages to
//! reach the user (connecting, and the tail, which waits for nsqd's 250 ms output-buffer
//! flush, are left out), and its CPU runs from the start until every nsqd's channel is
//! drained (the duplicates finished too). After each run the topics' `message_count` must be what was published (twice
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

/// Replicated against plain publishing and consuming, over three real nsqd.
#[derive(Debug, Clone, clap::Parser)]
struct Opts {
    /// Runs of every scenario; the table shows medians.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..))]
    runs: u32,
    /// Messages per run.
    #[arg(long, default_value_t = 200_000, value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..))]
    count: usize,
    /// Body size in bytes.
    #[arg(long, default_value_t = 100)]
    size: usize,
    /// Publishes outstanding.
    #[arg(long, default_value_t = 1000, value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..))]
    window: usize,
    /// The de-duplicating consumers' `Dedup::max_entries` (default twice `--count`, so
    /// that the window holds every key of a run).
    #[arg(long)]
    dedup_entries: Option<usize>,
    /// Scenarios to run (default all), comma separated.
    #[arg(long, value_enum, value_delimiter = ',')]
    only: Vec<Scenario>,
}

/// What one run measured.
#[derive(Debug, Clone, Copy)]
struct Run {
    seconds: f64,
    cpu: f64,
}

/// The scenarios, in the order of the table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Scenario {
    /// `publish, plain`: a `ProducerPool`, round-robin.
    #[value(name = "pub-plain")]
    PublishPlain,
    /// `publish, replicated`: two copies over the same pool.
    #[value(name = "pub-replicated")]
    PublishReplicated,
    /// `consume, plain`.
    #[value(name = "consume-plain")]
    ConsumePlain,
    /// `consume, de-duplicated, 1 copy each`.
    #[value(name = "consume-dedup1")]
    ConsumeDedupOneCopy,
    /// `consume, de-duplicated, 2 copies each`.
    #[value(name = "consume-dedup2")]
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
    /// returns how long the middle 80 % of the messages took to reach the user (from the one
    /// at 10 % to the one at 90 %), scaled to `count`: the start (connecting) and the tail
    /// (the last messages wait for nsqd's 250 ms output-buffer flush) are left out, as they
    /// are the same for every consumer and would hide the difference.
    async fn consume(&self, topic: &Topic, dedup: bool) -> Result<Duration, String> {
        let mut builder = Consumer::builder(topic.clone(), Channel::new("c").expect("channel"))
            .config(ConsumerConfig::default().max_in_flight(2500));
        for addr in self.addrs() {
            builder = builder.nsqd(addr);
        }
        if dedup {
            let entries = self.o.dedup_entries.unwrap_or(2 * self.o.count);
            builder = builder.deduplicate(Dedup::envelope().max_entries(entries));
        }
        let mut consumer = builder.build().map_err(|e| e.to_string())?;
        let (tenth, ninth) = (self.o.count / 10, self.o.count - self.o.count / 10);
        let mut middle_started = Instant::now();
        let mut middle = Duration::ZERO;
        let mut received = 0;
        while received < self.o.count {
            let msg = tokio::time::timeout(Duration::from_secs(30), consumer.next())
                .await
                .map_err(|_| format!("stalled after {received} messages"))?
                .ok_or("the consumer stopped")?;
            received += 1;
            msg.finish().map_err(|e| e.to_string())?;
            if received == tenth {
                middle_started = Instant::now();
            } else if received == ninth {
                middle = middle_started.elapsed();
            }
        }
        let middle_share = (ninth - tenth).max(1) as f64 / self.o.count as f64;
        let reached_user = middle.div_f64(middle_share);
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
    let o = <Opts as clap::Parser>::parse();
    let scenarios: Vec<Scenario> = if o.only.is_empty() {
        Scenario::ALL.to_vec()
    } else {
        o.only.clone()
    };
    let Some(bin) = std::env::var_os("NSQD_BIN") else {
        eprintln!("NSQD_BIN is not set: source ~/.cache/nsq-rs-peers/env.sh");
        return ExitCode::from(2);
    };
    let bin = std::path::PathBuf::from(bin);
    let nsqd: Vec<RealNsqd> = (0..3).map(|_| RealNsqd::start(&bin, &[])).collect();
    let mut bench = Bench {
        o: o.clone(),
        nsqd,
        body: Bytes::from(vec![b'x'; o.size]),
        next_topic: 0,
    };
    let mut results: Vec<(Scenario, Vec<Run>)> =
        scenarios.iter().map(|&s| (s, Vec::new())).collect();
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
        let runs = &results.iter().find(|(x, _)| *x == s)?.1;
        let rate = median(runs.iter().map(|r| o.count as f64 / r.seconds).collect())?;
        let cpu = median(
            runs.iter()
                .map(|r| r.cpu * 100_000.0 / o.count as f64)
                .collect(),
        )?;
        Some((rate, cpu))
    };
    println!(
        "{} messages of {} bytes per run, {} runs, 3 nsqd 1.3.0, {} publishes outstanding\n",
        o.count, o.size, o.runs, o.window
    );
    println!("| Scenario | msgs/s (median) | client CPU s per 100k msgs (median) |");
    println!("|---|---:|---:|");
    for &s in &scenarios {
        if let Some((rate, cpu)) = row(s) {
            println!("| {} | {rate:.0} | {cpu:.3} |", s.name());
        }
    }
    println!();
    let ratio = |a: Scenario, b: Scenario| Some((row(a)?, row(b)?));
    if let Some(((rep_rate, rep_cpu), (plain_rate, plain_cpu))) =
        ratio(Scenario::PublishReplicated, Scenario::PublishPlain)
    {
        println!(
            "replicated publish: {:.2}× the CPU per message of plain (goal ≤ 2.2×), {:.2}× its rate",
            rep_cpu / plain_cpu,
            rep_rate / plain_rate
        );
    }
    if let Some(((rate, cpu), (plain_rate, plain_cpu))) =
        ratio(Scenario::ConsumeDedupOneCopy, Scenario::ConsumePlain)
    {
        println!(
            "de-duplicated consume, 1 copy each: {:.2}× plain's rate (goal ≥ 0.8×), {:.2}× its CPU",
            rate / plain_rate,
            cpu / plain_cpu
        );
    }
    if let Some(((rate, cpu), (plain_rate, plain_cpu))) =
        ratio(Scenario::ConsumeDedupTwoCopies, Scenario::ConsumePlain)
    {
        println!(
            "de-duplicated consume, 2 copies each: {:.2}× plain's rate in messages reaching the \
             user, {:.2}× its CPU per such message",
            rate / plain_rate,
            cpu / plain_cpu
        );
    }
    ExitCode::SUCCESS
}
