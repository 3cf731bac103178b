//! Publish-to-consumer latency at fixed rates: nsq-client against go-nsq and tokio-nsq,
//! through a real nsqd 1.3.0 and nsq-server-lite's `nsqd` (each a process on loopback,
//! started with default flags), in one run.
//!
//! Every client program runs in its `latency` mode ([`nsq_benchmarks::latency`]): one process
//! publishes at the rate and consumes what it publishes, `max_in_flight` the same for all.
//! Each is run with its default configuration and, where the client has the setting, with
//! nsqd's output buffering off ("low latency": nsq-client's
//! `ConnectionConfig::output_buffer(None)`, go-nsq's `OutputBufferSize` and
//! `OutputBufferTimeout` at -1; tokio-nsq has no such setting). Runs interleave the clients;
//! the table shows medians over the runs of each percentile, the client's CPU and the broker's
//! CPU, as a share of one core over the run. A run that fails (a client that cannot keep up
//! the rate in time) is counted as such and shown.
//!
//! ```sh
//! source ~/.cache/nsq-rs-peers/env.sh
//! cargo run --release -p nsq-benchmarks --bin nsq-latency-bench -- --runs 3
//! ```
// A benchmark reports on stdout: that is its output, not stray debugging.
#![allow(clippy::print_stdout)]

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use clap::Parser;
use nsq_benchmarks::latency::{percentiles, read_latencies};
use nsq_benchmarks::{median, process_cpu_seconds, run_client, sibling_binary, Broker};
use nsq_tests::RealNsqd;

/// Publish-to-consumer latency at fixed rates, client against client.
#[derive(Debug, Clone, Parser)]
struct Opts {
    /// Runs of every client at every rate on every broker; the table shows medians.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..))]
    runs: u32,
    /// Publish rates, messages a second, comma separated.
    #[arg(long, value_delimiter = ',', default_values_t = [1000, 20000])]
    rates: Vec<u32>,
    /// Seconds of counted messages per run (after one second of warm-up).
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u32).range(1..))]
    seconds: u32,
    /// Message body bytes (at least 16).
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u32).range(16..))]
    size: u32,
    /// Every consumer's max_in_flight.
    #[arg(long, default_value_t = 2500)]
    max_in_flight: u32,
    /// Brokers, comma separated.
    #[arg(long, value_delimiter = ',', default_values_t = [Broker::Nsqd, Broker::Lite])]
    brokers: Vec<Broker>,
}

/// A client program and the configuration it runs with.
#[derive(Debug, Clone)]
struct Variant {
    name: &'static str,
    program: PathBuf,
    low_latency: bool,
    ours: bool,
}

fn variants() -> Result<Vec<Variant>, String> {
    let ours = sibling_binary("nsq-benchmarks", "nsq-producer-client")?;
    let mut out = vec![
        Variant {
            name: "nsq-client",
            program: ours.clone(),
            low_latency: false,
            ours: true,
        },
        Variant {
            name: "nsq-client, low latency",
            program: ours,
            low_latency: true,
            ours: true,
        },
    ];
    let peer = |var: &str| {
        std::env::var_os(var)
            .map(PathBuf::from)
            .filter(|p| p.exists())
    };
    match peer("NSQ_GO_BENCH") {
        Some(go) => {
            out.push(Variant {
                name: "go-nsq 1.1.0",
                program: go.clone(),
                low_latency: false,
                ours: false,
            });
            out.push(Variant {
                name: "go-nsq 1.1.0, low latency",
                program: go,
                low_latency: true,
                ours: false,
            });
        }
        None => eprintln!("NSQ_GO_BENCH is not set: go-nsq left out"),
    }
    match peer("NSQ_TOKIO_NSQ_BENCH") {
        Some(tokio_nsq) => out.push(Variant {
            name: "tokio-nsq 0.14.0",
            program: tokio_nsq,
            low_latency: false,
            ours: false,
        }),
        None => eprintln!("NSQ_TOKIO_NSQ_BENCH is not set: tokio-nsq left out"),
    }
    Ok(out)
}

/// One run's figures.
#[derive(Debug, Clone, Copy)]
struct Sample {
    p50: f64,
    p99: f64,
    p999: f64,
    max: f64,
    /// Shares of one core over the run.
    client_cpu: f64,
    broker_cpu: f64,
}

struct Bench {
    o: Opts,
    nsqd: RealNsqd,
    runs: usize,
    /// For nsqd's HTTP API.
    rt: tokio::runtime::Runtime,
}

impl Bench {
    fn run(&mut self, v: &Variant, rate: u32) -> Result<Sample, String> {
        self.runs += 1;
        let topic = format!("latency{}", self.runs);
        let file =
            std::env::temp_dir().join(format!("nsq-latency-{}-{}", std::process::id(), self.runs));
        let mut args: Vec<String> = [
            "--nsqd",
            &self.nsqd.tcp_addr.to_string(),
            "--topic",
            &topic,
            "--mode",
            "latency",
            "--rate",
            &rate.to_string(),
            "--count",
            &(rate * self.o.seconds).to_string(),
            "--size",
            &self.o.size.to_string(),
            "--max-in-flight",
            &self.o.max_in_flight.to_string(),
            "--latencies",
            &file.display().to_string(),
        ]
        .map(str::to_owned)
        .into();
        if v.low_latency {
            args.extend(["--low-latency".to_owned(), "on".to_owned()]);
        }
        let pid = self.nsqd.pid().to_string();
        let broker0 = process_cpu_seconds(&pid)?;
        let t0 = Instant::now();
        let result = run_client(&v.program, &args);
        let wall = t0.elapsed().as_secs_f64();
        let broker = process_cpu_seconds(&pid)? - broker0;
        let _ = self.rt.block_on(nsq_tests::http::request(
            self.nsqd.http_addr,
            "POST",
            &format!("/topic/delete?topic={topic}"),
        ));
        let report = result?;
        let mut nanos = read_latencies(&file);
        let _ = std::fs::remove_file(&file);
        let p =
            percentiles(nanos.as_mut().map_err(|e| e.clone())?).ok_or("no latencies reported")?;
        let client_cpu = report["cpu_seconds"].as_f64().ok_or("no cpu_seconds")?;
        let seconds = report["seconds"].as_f64().ok_or("no seconds")?;
        Ok(Sample {
            p50: p.p50,
            p99: p.p99,
            p999: p.p999,
            max: p.max,
            client_cpu: client_cpu / seconds,
            broker_cpu: broker / wall,
        })
    }
}

fn ms(us: f64) -> String {
    format!("{:.2}", us / 1000.0)
}

fn main() -> ExitCode {
    let o = Opts::parse();
    let variants = match variants() {
        Ok(v) => v,
        Err(why) => {
            eprintln!("nsq-latency-bench: {why}");
            return ExitCode::FAILURE;
        }
    };
    let started = Instant::now();
    println!(
        "{} B bodies, {} counted seconds per run after 1 s of warm-up, max_in_flight {}, {} runs; medians",
        o.size, o.seconds, o.max_in_flight, o.runs
    );
    println!();
    println!("| Broker | Rate | Client | p50 ms | p99 ms | p99.9 ms | max ms | client CPU | broker CPU | p99 ÷ best peer's |");
    println!("|---|---:|---|---:|---:|---:|---:|---:|---:|---:|");
    let mut failed = false;
    for broker in o.brokers.clone() {
        let Ok(bin) = broker.binary() else {
            eprintln!(
                "no binary for {}: NSQD_BIN unset or lite not built",
                broker.name()
            );
            failed = true;
            continue;
        };
        let mut bench = Bench {
            o: o.clone(),
            nsqd: RealNsqd::start(&bin, &[]),
            runs: 0,
            rt: match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(rt) => rt,
                Err(why) => {
                    eprintln!("nsq-latency-bench: runtime: {why}");
                    return ExitCode::FAILURE;
                }
            },
        };
        for &rate in &o.rates {
            let mut samples: Vec<Vec<Sample>> = vec![Vec::new(); variants.len()];
            let mut failures: Vec<Vec<String>> = vec![Vec::new(); variants.len()];
            for _ in 0..o.runs {
                for (i, v) in variants.iter().enumerate() {
                    match bench.run(v, rate) {
                        Ok(s) => samples[i].push(s),
                        Err(why) => {
                            eprintln!("{} {} at {rate}/s: {why}", broker.name(), v.name);
                            failures[i].push(why);
                        }
                    }
                }
            }
            let med = |i: usize, f: fn(&Sample) -> f64| median(samples[i].iter().map(f).collect());
            for (i, v) in variants.iter().enumerate() {
                let Some(p99) = med(i, |s| s.p99) else {
                    println!(
                        "| {} | {rate}/s | {} | failed ({} of {} runs) | | | | | | |",
                        broker.name(),
                        v.name,
                        failures[i].len(),
                        o.runs
                    );
                    continue;
                };
                // Ours against the best peer with the same kind of configuration.
                let best_peer = variants
                    .iter()
                    .enumerate()
                    .filter(|(_, p)| !p.ours && p.low_latency == v.low_latency)
                    .filter_map(|(j, _)| med(j, |s| s.p99))
                    .min_by(f64::total_cmp);
                let ratio = match (v.ours, best_peer) {
                    (true, Some(best)) if best > 0.0 => format!("{:.2}×", p99 / best),
                    _ => String::new(),
                };
                let failed_runs = match failures[i].len() {
                    0 => String::new(),
                    n => format!(" ({n} runs failed)"),
                };
                println!(
                    "| {} | {rate}/s | {}{failed_runs} | {} | {} | {} | {} | {:.1} % | {:.1} % | {ratio} |",
                    broker.name(),
                    v.name,
                    ms(med(i, |s| s.p50).unwrap_or_default()),
                    ms(p99),
                    ms(med(i, |s| s.p999).unwrap_or_default()),
                    ms(med(i, |s| s.max).unwrap_or_default()),
                    100.0 * med(i, |s| s.client_cpu).unwrap_or_default(),
                    100.0 * med(i, |s| s.broker_cpu).unwrap_or_default(),
                );
            }
        }
    }
    nsq_benchmarks::finish(started, failed)
}
