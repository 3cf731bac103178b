//! One `ProducerPool` over 1, 10 and 50 nsqd (nsqd 1.3.0 processes and nsq-server-lite's
//! `nsqd` binary, each a process on loopback with default flags but lite's
//! `--mem-queue-size`, raised to 10,000,000 as it has no disk to spill to), round robin,
//! default settings.
//!
//! For every broker count `N`, each scenario runs `--runs` times on a fresh topic:
//!
//! * **throughput**: `--concurrency` single-message publishes (`--size` B) kept in flight
//!   until `--messages` were answered `OK`. Rate of the middle 80 % of the answers (as the
//!   other benches), the client's CPU per message over the whole run; ratios to the 1-nsqd
//!   figures.
//! * **failover, kill** (`N` ≥ 2): the same publishing, endless; after `--before` one nsqd is
//!   killed (SIGKILL: its sockets close), and publishing goes on for `--after`. Shown: the
//!   publishes that returned an error to the caller, the pool's failovers, how long after the
//!   kill the last publish that was in flight at the kill was answered, the longest gap
//!   between two answers after it, and the rate of the second after the kill ÷ the second
//!   before.
//! * **failover, hang** (`N` ≥ 2): the same, but the nsqd is stopped (SIGSTOP: its sockets stay
//!   open and nothing answers), with `publish_timeout` `--hang-timeout` instead of the default
//!   10 s, and publishing goes on for `--after` plus that timeout. A publish that times out
//!   cannot be retried (nsqd may have taken it), so what was in flight there fails.
//!
//! ```sh
//! source ~/.cache/nsq-rs-peers/env.sh
//! cargo run --release -p nsq-benchmarks --bin nsq-pool-bench -- --runs 3
//! ```
// A benchmark reports on stdout: that is its output, not stray debugging.
#![allow(clippy::print_stdout)]

use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use clap::Parser;
use futures::stream::FuturesUnordered;
use futures::StreamExt;
use nsq_benchmarks::{cpu_seconds, median, Broker};
use nsq_client::{ProducerConfig, ProducerPool, PublishError, Strategy, Topic};
use nsq_tests::RealNsqd;

/// One ProducerPool over many nsqd: throughput and failover.
#[derive(Debug, Clone, Parser)]
struct Opts {
    /// Runs of every scenario; the table shows medians.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..))]
    runs: u32,
    /// Broker counts, comma separated.
    #[arg(long, value_delimiter = ',', default_values_t = [1, 10, 50])]
    counts: Vec<usize>,
    /// Messages per throughput run.
    #[arg(long, default_value_t = 500_000)]
    messages: usize,
    /// Message body bytes.
    #[arg(long, default_value_t = 100)]
    size: usize,
    /// Publishes kept in flight.
    #[arg(long, default_value_t = 500)]
    concurrency: usize,
    /// Seconds of publishing before an nsqd is killed or stopped.
    #[arg(long, default_value_t = 1.0)]
    before: f64,
    /// Seconds of publishing after it.
    #[arg(long, default_value_t = 2.0)]
    after: f64,
    /// `publish_timeout` of the hang scenario, seconds.
    #[arg(long, default_value_t = 1.0)]
    hang_timeout: f64,
    /// Brokers, comma separated.
    #[arg(long, value_delimiter = ',', default_values_t = [Broker::Lite, Broker::Nsqd])]
    brokers: Vec<Broker>,
}

/// One answered publish: when it was called, when it was answered, whether `OK`, and
/// whether its error was a timeout.
#[derive(Debug, Clone, Copy)]
struct Answer {
    called: Instant,
    answered: Instant,
    ok: bool,
    timed_out: bool,
}

/// A throughput run's figures.
#[derive(Debug, Clone, Copy)]
struct Throughput {
    rate: f64,
    cpu_per_100k: f64,
}

/// A failover run's figures.
#[derive(Debug, Clone, Copy, Default)]
struct Failover {
    errors: u64,
    failovers: u64,
    /// From the kill to the answer of the last publish that was in flight at the kill.
    in_flight_answered: Duration,
    /// The longest time without an `OK` after the kill.
    longest_gap: Duration,
    /// `OK`s in the second after the kill ÷ in the second before.
    rate_after: f64,
}

/// How a failover scenario takes an nsqd away.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fault {
    Kill,
    Hang,
}

/// Keeps `concurrency` publishes of `body` in flight on `pool` until `enough` says so (given
/// the number of `OK`s so far); every answer, in the order they came.
async fn publish(
    pool: &ProducerPool,
    topic: &Topic,
    body: &Bytes,
    concurrency: usize,
    enough: impl Fn(usize) -> bool,
) -> Vec<Answer> {
    let call = || {
        let called = Instant::now();
        let publish = pool.publish(topic, body.clone());
        async move {
            let result = publish.await;
            let timed_out = result.as_ref().is_err_and(PublishError::is_timeout);
            Answer {
                called,
                answered: Instant::now(),
                ok: result.is_ok(),
                timed_out,
            }
        }
    };
    let mut in_flight: FuturesUnordered<_> = (0..concurrency).map(|_| call()).collect();
    let (mut answers, mut oks) = (Vec::new(), 0);
    while let Some(answer) = in_flight.next().await {
        oks += usize::from(answer.ok);
        answers.push(answer);
        if !enough(oks) {
            in_flight.push(call());
        }
    }
    answers
}

struct Cluster {
    brokers: Vec<RealNsqd>,
    topics: usize,
    body: Bytes,
    concurrency: usize,
}

impl Cluster {
    fn pool(&self, config: ProducerConfig) -> Result<ProducerPool, String> {
        let addrs = self.brokers.iter().map(|b| b.tcp_addr.to_string());
        ProducerPool::new(addrs, config, Strategy::RoundRobin).map_err(|e| e.to_string())
    }

    fn topic(&mut self) -> Result<Topic, String> {
        self.topics += 1;
        Topic::new(format!("pool{}", self.topics)).map_err(|e| e.to_string())
    }

    async fn delete(&self, topic: &Topic) {
        for b in &self.brokers {
            let path = format!("/topic/delete?topic={topic}");
            let _ = nsq_tests::http::request(b.http_addr, "POST", &path).await;
        }
    }

    async fn throughput(&mut self, count: usize) -> Result<Throughput, String> {
        let topic = self.topic()?;
        let pool = self.pool(ProducerConfig::default())?;
        let cpu0 = cpu_seconds()?;
        let answers = publish(&pool, &topic, &self.body, self.concurrency, |ok| {
            ok >= count
        })
        .await;
        pool.stop().await;
        let cpu = cpu_seconds()? - cpu0;
        self.delete(&topic).await;
        let oks: Vec<Instant> = answers
            .iter()
            .filter(|a| a.ok)
            .map(|a| a.answered)
            .collect();
        let (tenth, ninth) = (oks.len() / 10, oks.len() - oks.len() / 10);
        if ninth < tenth + 2 {
            return Err(format!("{} OKs are too few to time", oks.len()));
        }
        let failed = answers.len() - oks.len();
        if failed > 0 {
            eprintln!("{failed} of {} publishes failed", answers.len());
        }
        let middle = oks[ninth - 1] - oks[tenth];
        Ok(Throughput {
            rate: (ninth - 1 - tenth) as f64 / middle.as_secs_f64(),
            cpu_per_100k: cpu * 100_000.0 / answers.len() as f64,
        })
    }

    /// Publishes for `before`, takes the first nsqd away by `fault`, publishes for `after`.
    async fn failover(
        &mut self,
        fault: Fault,
        config: ProducerConfig,
        before: Duration,
        after: Duration,
    ) -> Result<Failover, String> {
        let topic = self.topic()?;
        let pool = self.pool(config)?;
        let stop = AtomicBool::new(false);
        let publishing = publish(&pool, &topic, &self.body, self.concurrency, |_| {
            stop.load(Ordering::Relaxed)
        });
        let victim = self.brokers[0].pid();
        let schedule = async {
            // The scenario's own timeline, not a wait for an event.
            tokio::time::sleep(before).await;
            match fault {
                Fault::Kill => signal("-KILL", victim)?,
                Fault::Hang => signal("-STOP", victim)?,
            }
            // `kill` has returned: the signal was delivered.
            let at = Instant::now();
            tokio::time::sleep(after).await;
            stop.store(true, Ordering::Relaxed);
            Ok::<Instant, String>(at)
        };
        let (answers, at) = futures::join!(publishing, schedule);
        let at = at?;
        let failovers = pool.stats().failovers;
        // A hang's errors are timeouts; anything else (a broker refusing a publish) is not
        // what the scenario measures, and is said.
        let others = answers.iter().filter(|a| !a.ok && !a.timed_out).count();
        if others > 0 {
            eprintln!("{fault:?}: {others} publishes failed otherwise than by a timeout");
        }
        if fault == Fault::Hang {
            signal("-CONT", victim)?;
        }
        pool.stop().await;
        self.delete(&topic).await;
        let in_flight_answered = answers
            .iter()
            .filter(|a| a.called < at && a.answered >= at)
            .map(|a| a.answered - at)
            .max()
            .unwrap_or_default();
        let mut oks: Vec<Instant> = answers
            .iter()
            .filter(|a| a.ok)
            .map(|a| a.answered)
            .collect();
        oks.sort();
        let longest_gap = std::iter::once(at)
            .chain(oks.iter().copied().filter(|&t| t >= at))
            .collect::<Vec<_>>()
            .windows(2)
            .map(|w| w[1] - w[0])
            .max()
            .unwrap_or_default();
        let second = Duration::from_secs(1);
        let in_window =
            |from: Instant, to: Instant| oks.iter().filter(|&&t| t >= from && t < to).count();
        let before_rate =
            in_window(at - second.min(before), at) as f64 / second.min(before).as_secs_f64();
        let after_rate =
            in_window(at, at + second.min(after)) as f64 / second.min(after).as_secs_f64();
        Ok(Failover {
            errors: answers.iter().filter(|a| !a.ok).count() as u64,
            failovers,
            in_flight_answered,
            longest_gap,
            rate_after: after_rate / before_rate.max(1.0),
        })
    }
}

/// Flags of every broker. nsq-server-lite has no disk to spill to: a topic refuses
/// publishes past `--mem-queue-size` (default 1,000,000), which a failover run over two
/// brokers reaches; it is raised so that the runs measure failover, not that bound.
fn flags(broker: Broker) -> &'static [&'static str] {
    match broker {
        Broker::Lite => &["--mem-queue-size=10000000"],
        Broker::Nsqd => &[],
    }
}

/// Sends `sig` (as `kill` spells it) to process `pid`.
fn signal(sig: &str, pid: u32) -> Result<(), String> {
    nsq_benchmarks::run_program("kill".as_ref(), &[sig.to_owned(), pid.to_string()]).map(|_| ())
}

fn med(values: impl Iterator<Item = f64>) -> f64 {
    median(values.collect()).unwrap_or(f64::NAN)
}

fn ms(d: f64) -> String {
    format!("{:.0} ms", d * 1000.0)
}

async fn bench(o: &Opts, broker: Broker) -> Result<(), String> {
    let mut baseline: Option<Throughput> = None;
    let before = Duration::from_secs_f64(o.before);
    let after = Duration::from_secs_f64(o.after);
    let hang_timeout = Duration::from_secs_f64(o.hang_timeout);
    for &n in &o.counts {
        let mut runs = vec![];
        let mut faults: Vec<(Fault, Vec<Failover>)> =
            vec![(Fault::Kill, vec![]), (Fault::Hang, vec![])];
        for _ in 0..o.runs {
            // A fresh set of brokers per run: a failover run leaves one of them dead.
            let mut cluster = Cluster {
                brokers: broker.start(n, flags(broker)).await?,
                topics: 0,
                body: Bytes::from(vec![b'x'; o.size]),
                concurrency: o.concurrency,
            };
            runs.push(cluster.throughput(o.messages).await?);
            if n < 2 {
                continue;
            }
            for (fault, results) in &mut faults {
                let (config, after) = match fault {
                    Fault::Kill => (ProducerConfig::default(), after),
                    Fault::Hang => (
                        ProducerConfig::default().publish_timeout(Some(hang_timeout)),
                        after + hang_timeout,
                    ),
                };
                results.push(cluster.failover(*fault, config, before, after).await?);
                if *fault == Fault::Kill {
                    // Back on its ports for the next scenario.
                    tokio::task::block_in_place(|| cluster.brokers[0].restart());
                }
            }
        }
        let t = Throughput {
            rate: med(runs.iter().map(|r| r.rate)),
            cpu_per_100k: med(runs.iter().map(|r| r.cpu_per_100k)),
        };
        let base = *baseline.get_or_insert(t);
        let failover = |f: &[Failover]| {
            if f.is_empty() {
                return "– | – | – | – | –".to_owned();
            }
            format!(
                "{} | {} | {} | {} | {:.2}×",
                f.iter().map(|r| r.errors).max().unwrap_or(0),
                med(f.iter().map(|r| r.failovers as f64)),
                ms(med(f.iter().map(|r| r.in_flight_answered.as_secs_f64()))),
                ms(med(f.iter().map(|r| r.longest_gap.as_secs_f64()))),
                med(f.iter().map(|r| r.rate_after)),
            )
        };
        println!(
            "| {} | {n} | {:.0} | {:.2}× | {:.3} | {:.2}× | {} | {} |",
            broker.name(),
            t.rate,
            t.rate / base.rate,
            t.cpu_per_100k,
            t.cpu_per_100k / base.cpu_per_100k,
            failover(&faults[0].1),
            failover(&faults[1].1),
        );
    }
    Ok(())
}

#[tokio::main]
async fn main() -> ExitCode {
    let o = Opts::parse();
    let started = Instant::now();
    println!(
        "{} publishes of {} B per throughput run, {} in flight, {} runs; medians (errors: the most of any run)",
        o.messages, o.size, o.concurrency, o.runs
    );
    println!(
        "failover: {} s of publishing, one nsqd killed (SIGKILL) or stopped (SIGSTOP, publish_timeout {} s), then {} s more",
        o.before, o.hang_timeout, o.after
    );
    println!();
    println!("| Broker | nsqd | msgs/s | ÷ 1 nsqd | client CPU s per 100k msgs | ÷ 1 nsqd | kill: errors | failovers | in flight answered after | longest gap | rate after ÷ before | hang: errors | failovers | in flight answered after | longest gap | rate after ÷ before |");
    println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    let mut failed = false;
    for &broker in &o.brokers {
        if let Err(why) = bench(&o, broker).await {
            eprintln!("{}: {why}", broker.name());
            failed = true;
        }
    }
    nsq_benchmarks::finish(started, failed)
}
