//! One `Consumer` over many nsqd: 1, 10, 50 and 100 brokers (nsqd 1.3.0 processes and
//! nsq-server-lite's `nsqd` binary, each a process on loopback with default flags).
//!
//! For every broker count `N`, each scenario runs `--runs` times on a fresh topic that holds
//! `--messages / N` messages on every broker, published beforehand:
//!
//! * **throughput** (`max_in_flight` 2500): a Stream consumer over the `N` addresses finishes
//!   every message. Rate of the middle 80 % of the messages (as the other consume benches),
//!   and the client's CPU per message over the whole run; nothing else runs in the process
//!   meanwhile. Its ratios are to the 1-broker figures.
//! * **memory**, in a fresh process of this program (`--idle-probe`, so that memory the
//!   allocator kept from earlier runs does not hide it): a first consumer of an empty topic
//!   connects to one broker, which brings the runtime's first use and the first consumer's
//!   tasks; then a second consumer of another empty topic connects to all `N`, and the
//!   resident set's growth across that, divided by `N`, is the memory per connection. It
//!   carries the second consumer's own share (its supervisor, its channels) divided by `N`,
//!   so it reads high at 1 broker.
//! * **Σ RDY** (`max_in_flight` 2500, then `max_in_flight` N / 2): the same consumer while
//!   a sampler sweeps every broker's `/stats` every 100 ms (all brokers at once) and adds up
//!   the RDY of the channel's clients. A sweep is not one instant: RDY moving from one
//!   connection to another between two brokers' answers can be counted twice, so the
//!   consumer's own `ConsumerStats::total_rdy`, read with each sweep, is shown beside it.
//! * **starvation** (`max_in_flight` N / 2, fewer than the brokers, so that RDY must rotate):
//!   200 messages on every broker; for each broker, the longest wait for its next message
//!   (from the start, then between deliveries) while it still held messages.
//! * **the floor** (a second table): the throughput load again through go-nsq's consumer
//!   (`NSQ_GO_BENCH`, `nsq-bench-client --mode consume` with every address, in its own
//!   process) and through [`nsq_benchmarks::raw_reader`] (the protocol and nothing else, one
//!   task per connection on this process's runtime). The raw reader's CPU per message at N
//!   brokers, against its own at 1, is what N sockets cost on this machine whatever the
//!   client; nsq-client's CPU divided by the raw reader's at the same N is what the client
//!   adds.
//!
//! ```sh
//! source ~/.cache/nsq-rs-peers/env.sh
//! cargo run --release -p nsq-benchmarks --bin nsq-scale-bench -- --runs 3
//! ```
// A benchmark reports on stdout: that is its output, not stray debugging.
#![allow(clippy::print_stdout)]

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use clap::Parser;
use futures::StreamExt;
use nsq_benchmarks::{cpu_seconds, median, raw_reader, Broker};
use nsq_client::{Channel, Consumer, ConsumerConfig, Producer, ProducerConfig, Topic};
use nsq_tests::{http, RealNsqd};

/// One consumer over many nsqd: throughput, CPU, Σ RDY, memory and starvation.
#[derive(Debug, Clone, Parser)]
struct Opts {
    /// Runs of every scenario; the table shows medians.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..))]
    runs: u32,
    /// Broker counts, comma separated.
    #[arg(long, value_delimiter = ',', default_values_t = [1, 10, 50, 100])]
    counts: Vec<usize>,
    /// Messages per throughput run, over all brokers.
    #[arg(long, default_value_t = 1_000_000)]
    messages: usize,
    /// Message body bytes.
    #[arg(long, default_value_t = 100)]
    size: usize,
    /// Brokers, comma separated.
    #[arg(long, value_delimiter = ',', default_values_t = [Broker::Lite, Broker::Nsqd])]
    brokers: Vec<Broker>,
    /// Internal: measure a consumer of TOPIC over these nsqd (comma separated) and print
    /// the bytes it adds per connection.
    #[arg(long, value_delimiter = ',', hide = true, requires = "probe_topic")]
    idle_probe: Vec<String>,
    /// Internal: the topic of `--idle-probe`.
    #[arg(long, hide = true)]
    probe_topic: Option<String>,
}

struct Cluster {
    brokers: Vec<RealNsqd>,
    topics: usize,
    body: Bytes,
}

/// Client CPU seconds per 100k messages of the throughput load, by client.
#[derive(Debug, Clone, Copy)]
struct Floor {
    ours: f64,
    go_nsq: Option<f64>,
    raw: f64,
}

/// A consume run's figures.
#[derive(Debug, Default, Clone, Copy)]
struct Throughput {
    rate: f64,
    cpu_per_100k: f64,
    /// Resident-set bytes per connection of a consumer connected to every broker, and those
    /// the first consumer of the process brought (`--idle-probe`).
    idle: (f64, f64),
}

/// The largest Σ RDY seen by the `/stats` sweeps and by the consumer itself (`total_rdy`),
/// once every connection was up and while they were coming up.
#[derive(Debug, Default, Clone, Copy)]
struct Rdys {
    connected: (u64, u64),
    connecting: (u64, u64),
}

/// Waits until `consumer` has a connection to each of `n` brokers.
async fn all_connected(consumer: &Consumer, n: usize) -> Result<(), String> {
    consumer
        .connected(Duration::from_secs(30))
        .await
        .map_err(|e| e.to_string())?;
    let deadline = Instant::now() + Duration::from_secs(30);
    while consumer.stats().connections < n {
        if Instant::now() > deadline {
            return Err(format!(
                "{} of {n} connections",
                consumer.stats().connections
            ));
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    Ok(())
}

impl Cluster {
    fn addrs(&self) -> Vec<String> {
        self.brokers
            .iter()
            .map(|b| b.tcp_addr.to_string())
            .collect()
    }

    /// A fresh topic with `per_broker` messages on every broker.
    async fn fill(&mut self, per_broker: usize) -> Result<Topic, String> {
        self.topics += 1;
        let topic = Topic::new(format!("scale{}", self.topics)).map_err(|e| e.to_string())?;
        let fills = self.brokers.iter().map(|b| {
            let (topic, body) = (topic.clone(), self.body.clone());
            let addr = b.tcp_addr.to_string();
            async move {
                let producer =
                    Producer::new(addr, ProducerConfig::default()).map_err(|e| e.to_string())?;
                let mut left = per_broker;
                while left > 0 {
                    let n = left.min(500);
                    producer
                        .multi_publish(&topic, vec![body.clone(); n])
                        .await
                        .map_err(|e| e.to_string())?;
                    left -= n;
                }
                producer.stop().await;
                Ok::<(), String>(())
            }
        });
        for result in futures::future::join_all(fills).await {
            result?;
        }
        Ok(topic)
    }

    async fn delete(&self, topic: &Topic) {
        for b in &self.brokers {
            let path = format!("/topic/delete?topic={topic}");
            let _ = http::request(b.http_addr, "POST", &path).await;
        }
    }

    fn consumer(&self, topic: &Topic, max_in_flight: u32) -> Result<Consumer, String> {
        let mut builder = Consumer::builder(topic.clone(), Channel::new("c").expect("channel"))
            .config(ConsumerConfig::default().max_in_flight(max_in_flight));
        for addr in self.addrs() {
            builder = builder.nsqd(addr);
        }
        builder.build().map_err(|e| e.to_string())
    }

    /// Σ RDY of the channel's clients over every broker, one sweep.
    async fn rdy_sweep(&self, topic: &Topic) -> Result<u64, String> {
        let path = format!("/stats?format=json&topic={topic}&channel=c");
        let sweeps = self
            .brokers
            .iter()
            .map(|b| http::json(b.http_addr, "GET", &path));
        let mut total = 0;
        for stats in futures::future::join_all(sweeps).await {
            let stats = stats?;
            for t in stats["topics"].as_array().into_iter().flatten() {
                for c in t["channels"].as_array().into_iter().flatten() {
                    for client in c["clients"].as_array().into_iter().flatten() {
                        total += client["ready_count"].as_u64().unwrap_or(0);
                    }
                }
            }
        }
        Ok(total)
    }

    /// Consumes `count` messages; with `sample`, sweeps Σ RDY meanwhile and returns the
    /// largest seen by the sweeps and by the consumer itself.
    async fn consume(
        &mut self,
        max_in_flight: u32,
        count: usize,
        sample: bool,
    ) -> Result<(Throughput, Option<Rdys>), String> {
        let n = self.brokers.len();
        let topic = self.fill(count / n).await?;
        let count = count / n * n;
        let cpu0 = cpu_seconds()?;
        let mut consumer = self.consumer(&topic, max_in_flight)?;
        let handle = consumer.handle();
        let done = Arc::new(AtomicBool::new(false));
        let sampler = sample.then(|| {
            let (done, handle) = (done.clone(), handle.clone());
            let cluster: &Cluster = self;
            let topic = topic.clone();
            async move {
                // Sweeps begun before every connection was up are kept apart: RDY moves
                // between brokers then as each new one takes its share.
                let mut seen = Rdys::default();
                while !done.load(Ordering::Relaxed) {
                    let before = handle.stats();
                    let swept = cluster.rdy_sweep(&topic).await?;
                    let own = before.total_rdy.max(handle.stats().total_rdy);
                    let into = if before.connections < n {
                        &mut seen.connecting
                    } else {
                        &mut seen.connected
                    };
                    into.0 = into.0.max(swept);
                    into.1 = into.1.max(u64::from(own));
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Ok::<Rdys, String>(seen)
            }
        });
        let (tenth, ninth) = (count / 10, count - count / 10);
        let reading = async {
            let (mut started, mut middle) = (Instant::now(), Duration::ZERO);
            for received in 1..=count {
                let msg = tokio::time::timeout(Duration::from_secs(30), consumer.next())
                    .await
                    .map_err(|_| format!("stalled after {received} messages"))?
                    .ok_or("the consumer stopped")?;
                msg.finish().map_err(|e| e.to_string())?;
                if received == tenth {
                    started = Instant::now();
                } else if received == ninth {
                    middle = started.elapsed();
                }
            }
            done.store(true, Ordering::Relaxed);
            Ok::<Duration, String>(middle)
        };
        let (middle, rdy) = match sampler {
            Some(sampler) => {
                let (middle, rdy) = futures::join!(reading, sampler);
                (middle?, Some(rdy?))
            }
            None => (reading.await?, None),
        };
        consumer.stop().await;
        let cpu = cpu_seconds()? - cpu0;
        self.delete(&topic).await;
        let share = (ninth - tenth).max(1) as f64 / count as f64;
        Ok((
            Throughput {
                rate: count as f64 / (middle.as_secs_f64() / share),
                cpu_per_100k: cpu * 100_000.0 / count as f64,
                idle: (0.0, 0.0),
            },
            rdy,
        ))
    }

    /// The throughput load through the raw reader: CPU seconds per 100k messages.
    async fn consume_raw(&mut self, count: usize) -> Result<f64, String> {
        let n = self.brokers.len();
        let topic = self.fill(count / n).await?;
        let count = count / n * n;
        let cpu0 = cpu_seconds()?;
        raw_reader::consume(&self.addrs(), topic.as_ref(), "c", 2500, count).await?;
        let cpu = cpu_seconds()? - cpu0;
        self.delete(&topic).await;
        Ok(cpu * 100_000.0 / count as f64)
    }

    /// The throughput load through go-nsq's consumer, in its own process: CPU seconds per
    /// 100k messages.
    async fn consume_go(&mut self, program: &Path, count: usize) -> Result<f64, String> {
        let n = self.brokers.len();
        let topic = self.fill(count / n).await?;
        let count = count / n * n;
        let args = [
            "--nsqd",
            &self.addrs().join(","),
            "--topic",
            topic.as_ref(),
            "--channel",
            "c",
            "--mode",
            "consume",
            "--count",
            &count.to_string(),
        ]
        .map(str::to_owned)
        .to_vec();
        let program = program.to_owned();
        let report =
            tokio::task::spawn_blocking(move || nsq_benchmarks::run_client(&program, &args))
                .await
                .map_err(|e| e.to_string())??;
        self.delete(&topic).await;
        let cpu = report["cpu_seconds"]
            .as_f64()
            .ok_or_else(|| format!("go-nsq's report has no cpu_seconds: {report}"))?;
        Ok(cpu * 100_000.0 / count as f64)
    }

    /// The resident set a consumer of an empty topic adds per broker once connected to all,
    /// and what the first consumer of the process brought before it, measured by a fresh
    /// process of this program (`--idle-probe`).
    async fn idle_bytes_per_conn(&mut self) -> Result<(f64, f64), String> {
        self.topics += 1;
        let topic = format!("idle{}", self.topics);
        let exe = std::env::current_exe().map_err(|e| e.to_string())?;
        let args = vec![
            "--idle-probe".to_owned(),
            self.addrs().join(","),
            "--probe-topic".to_owned(),
            topic.clone(),
        ];
        let measured =
            tokio::task::spawn_blocking(move || nsq_benchmarks::run_program(&exe, &args))
                .await
                .map_err(|e| e.to_string())??;
        for name in [format!("{topic}w"), topic] {
            if let Ok(topic) = Topic::new(name) {
                self.delete(&topic).await;
            }
        }
        let printed = measured.0.trim();
        let mut numbers = printed.split(' ').map(str::parse::<f64>);
        match (numbers.next(), numbers.next(), numbers.next()) {
            (Some(Ok(per)), Some(Ok(first)), None) => Ok((per, first)),
            _ => Err(format!("--idle-probe printed {printed:?}")),
        }
    }

    /// With fewer RDY than brokers: the longest any broker with messages left waited for its
    /// next delivery.
    async fn starvation(
        &mut self,
        max_in_flight: u32,
        per_broker: usize,
    ) -> Result<Duration, String> {
        let topic = self.fill(per_broker).await?;
        let mut consumer = self.consumer(&topic, max_in_flight)?;
        let start = Instant::now();
        let mut last: HashMap<String, (Instant, usize)> =
            self.addrs().into_iter().map(|a| (a, (start, 0))).collect();
        let mut worst = Duration::ZERO;
        for received in 0..per_broker * self.brokers.len() {
            let msg = tokio::time::timeout(Duration::from_secs(30), consumer.next())
                .await
                .map_err(|_| format!("stalled after {received} messages"))?
                .ok_or("the consumer stopped")?;
            let now = Instant::now();
            let entry = last
                .get_mut(msg.nsqd_addr())
                .ok_or_else(|| format!("a message from {}", msg.nsqd_addr()))?;
            worst = worst.max(now - entry.0);
            *entry = (now, entry.1 + 1);
            msg.finish().map_err(|e| e.to_string())?;
            // Brokers still holding messages have been waiting since their last delivery.
            for (at, got) in last.values() {
                if *got < per_broker {
                    worst = worst.max(now - *at);
                }
            }
        }
        consumer.stop().await;
        self.delete(&topic).await;
        Ok(worst)
    }
}

fn med(values: impl Iterator<Item = f64>) -> f64 {
    median(values.collect()).unwrap_or(f64::NAN)
}

/// Runs every scenario over `broker`, printing a row of the main table per broker count and
/// adding one of the floor table to `floor_rows`.
async fn bench(
    o: &Opts,
    broker: Broker,
    go_nsq: Option<&Path>,
    floor_rows: &mut Vec<String>,
) -> Result<(), String> {
    let (mut baseline, mut floor_base): (Option<Throughput>, Option<Floor>) = (None, None);
    for &n in &o.counts {
        let mut cluster = Cluster {
            brokers: broker.start(n, &[]).await?,
            topics: 0,
            body: Bytes::from(vec![b'x'; o.size]),
        };
        let low = u32::try_from((n / 2).max(1)).unwrap_or(u32::MAX);
        let (mut runs, mut sweeps, mut low_sweeps, mut waits) = (vec![], vec![], vec![], vec![]);
        let (mut idle, mut raws, mut gos) = (vec![], vec![], vec![]);
        for _ in 0..o.runs {
            idle.push(cluster.idle_bytes_per_conn().await?);
            runs.push(cluster.consume(2500, o.messages, false).await?.0);
            raws.push(cluster.consume_raw(o.messages).await?);
            if let Some(program) = go_nsq {
                gos.push(cluster.consume_go(program, o.messages).await?);
            }
            if let (_, Some(rdy)) = cluster.consume(2500, o.messages, true).await? {
                sweeps.push(rdy);
            }
            if n > 1 {
                if let (_, Some(rdy)) = cluster.consume(low, o.messages / 10, true).await? {
                    low_sweeps.push(rdy);
                }
                waits.push(cluster.starvation(low, 200).await?);
            }
        }
        let t = Throughput {
            rate: med(runs.iter().map(|r| r.rate)),
            cpu_per_100k: med(runs.iter().map(|r| r.cpu_per_100k)),
            idle: (
                med(idle.iter().map(|i: &(f64, f64)| i.0)),
                med(idle.iter().map(|i: &(f64, f64)| i.1)),
            ),
        };
        let base = *baseline.get_or_insert(t);
        let floor = Floor {
            ours: t.cpu_per_100k,
            go_nsq: (!gos.is_empty()).then(|| med(gos.iter().copied())),
            raw: med(raws.iter().copied()),
        };
        let fbase = *floor_base.get_or_insert(floor);
        let go_cells = match (floor.go_nsq, fbase.go_nsq) {
            (Some(go), Some(go1)) => format!("{go:.3} | {:.2}×", go / go1),
            _ => "– | –".to_owned(),
        };
        floor_rows.push(format!(
            "| {} | {n} | {:.3} | {:.2}× | {go_cells} | {:.3} | {:.2}× | {:.2}× |",
            broker.name(),
            floor.ours,
            floor.ours / fbase.ours,
            floor.raw,
            floor.raw / fbase.raw,
            floor.ours / floor.raw,
        ));
        let max = |v: &[Rdys]| {
            let top = |f: fn(&Rdys) -> (u64, u64)| {
                let swept = v.iter().map(|r| f(r).0).max().unwrap_or(0);
                let own = v.iter().map(|r| f(r).1).max().unwrap_or(0);
                format!("{swept} / {own}")
            };
            format!(
                "{}; while connecting {}",
                top(|r| r.connected),
                top(|r| r.connecting)
            )
        };
        let memory = format!(
            "{:.1} each; the first consumer {:.0}",
            t.idle.0 / 1024.0,
            t.idle.1 / 1024.0
        );
        println!(
            "| {} | {n} | {:.0} | {:.2}× | {:.3} | {:.2}× | {} | {} (≤ 2500) | {} | {} |",
            broker.name(),
            t.rate,
            t.rate / base.rate,
            t.cpu_per_100k,
            t.cpu_per_100k / base.cpu_per_100k,
            memory,
            max(&sweeps),
            if n > 1 {
                format!("{} (≤ {low})", max(&low_sweeps))
            } else {
                "–".to_owned()
            },
            if n > 1 {
                let worst = waits.iter().max().copied().unwrap_or_default();
                format!("{} ms", worst.as_millis())
            } else {
                "–".to_owned()
            },
        );
        drop(cluster);
    }
    Ok(())
}

/// `--idle-probe`: the resident set a consumer over `addrs` adds per connection, once a
/// first consumer (of `TOPIC` + `w`, over the first address) has brought what the process's
/// first consumer brings; and that first amount.
async fn idle_probe(addrs: &[String], topic: &str) -> Result<(f64, f64), String> {
    let connect = |topic: String, addrs: &[String]| {
        let topic = Topic::new(topic).map_err(|e| e.to_string())?;
        let mut builder = Consumer::builder(topic, Channel::new("c").expect("channel"))
            .config(ConsumerConfig::default().max_in_flight(2500));
        for addr in addrs {
            builder = builder.nsqd(addr.clone());
        }
        builder.build().map_err(|e| e.to_string())
    };
    let first_addr = addrs.first().ok_or("--idle-probe needs an address")?;
    let rss0 = nsq_benchmarks::process_resident_bytes("self")?;
    let warm = connect(format!("{topic}w"), std::slice::from_ref(first_addr))?;
    all_connected(&warm, 1).await?;
    let rss1 = nsq_benchmarks::process_resident_bytes("self")?;
    let consumer = connect(topic.to_owned(), addrs)?;
    all_connected(&consumer, addrs.len()).await?;
    let rss2 = nsq_benchmarks::process_resident_bytes("self")?;
    consumer.stop().await;
    warm.stop().await;
    let per = rss2.saturating_sub(rss1) as f64 / addrs.len() as f64;
    Ok((per, rss1.saturating_sub(rss0) as f64))
}

#[tokio::main]
async fn main() -> ExitCode {
    let o = Opts::parse();
    if let Some(topic) = &o.probe_topic {
        return match idle_probe(&o.idle_probe, topic).await {
            Ok((per, first)) => {
                println!("{per} {first}");
                ExitCode::SUCCESS
            }
            Err(why) => {
                eprintln!("--idle-probe: {why}");
                ExitCode::FAILURE
            }
        };
    }
    let started = Instant::now();
    println!(
        "{} messages of {} B per throughput run, {} runs; medians (Σ RDY: the largest of every run)",
        o.messages, o.size, o.runs
    );
    println!();
    println!("| Broker | nsqd | msgs/s | ÷ 1 nsqd | client CPU s per 100k msgs | ÷ 1 nsqd | client KiB per connection, connected and idle | Σ RDY max, swept / own (max_in_flight 2500) | … (max_in_flight N/2) | longest wait of an nsqd with messages (max_in_flight N/2) |");
    println!("|---|---:|---:|---:|---:|---:|---:|---|---|---:|");
    let go_nsq = std::env::var_os("NSQ_GO_BENCH")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from);
    if go_nsq.is_none() {
        eprintln!("NSQ_GO_BENCH is not set: go-nsq left out of the floor table");
    }
    let mut failed = false;
    let mut floor = Vec::new();
    for &broker in &o.brokers {
        // Ratios are to this broker's own 1-nsqd figures.
        if let Err(why) = bench(&o, broker, go_nsq.as_deref(), &mut floor).await {
            eprintln!("{}: {why}", broker.name());
            failed = true;
        }
    }
    println!();
    println!("The floor: client CPU s per 100k messages of the throughput load (max_in_flight 2500), by client");
    println!();
    println!("| Broker | nsqd | nsq-client | ÷ 1 nsqd | go-nsq | ÷ 1 nsqd | raw reader | ÷ 1 nsqd | nsq-client ÷ raw reader |");
    println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|");
    for row in floor {
        println!("{row}");
    }
    nsq_benchmarks::finish(started, failed)
}
