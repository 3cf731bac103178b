//! The cost of a broker per test: from starting a broker to the first acknowledged PUB, for
//! nsq-server-lite in-process (`Nsqd::start()`) and for a real nsqd 1.3.0 process (started
//! on free loopback ports, ready once it says it listens), one after the other, `--runs`
//! times each (the producer's and the broker's stop are not timed). Prints the median and
//! the slowest run of each, and their ratio.
//!
//! ```sh
//! source ~/.cache/nsq-rs-peers/env.sh
//! cargo run --release -p nsq-benchmarks --bin nsq-broker-cost -- --runs 20
//! ```
// A benchmark reports on stdout: that is its output, not stray debugging.
#![allow(clippy::print_stdout)]

use std::process::ExitCode;
use std::time::{Duration, Instant};

use nsq_benchmarks::median;
use nsq_client::{Producer, ProducerConfig, Topic};
use nsq_tests::RealNsqd;

/// How long a broker takes to be usable from a test.
#[derive(Debug, Clone, clap::Parser)]
struct Opts {
    /// Brokers of each kind to start.
    #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u32).range(1..))]
    runs: u32,
}

/// Publishes one message to `addr` and waits for nsqd's OK; the producer is left to stop.
async fn first_pub(addr: String) -> Result<Producer, String> {
    let producer = Producer::new(addr, ProducerConfig::default()).map_err(|e| e.to_string())?;
    let topic = Topic::new("first").map_err(|e| e.to_string())?;
    producer
        .publish(&topic, "hello")
        .await
        .map_err(|e| e.to_string())?;
    Ok(producer)
}

async fn lite() -> Result<Duration, String> {
    let started = Instant::now();
    let nsqd = nsq_server_lite::Nsqd::start()
        .await
        .map_err(|e| e.to_string())?;
    let producer = first_pub(nsqd.tcp_addr().to_string()).await?;
    let took = started.elapsed();
    producer.stop().await;
    nsqd.shutdown().await;
    Ok(took)
}

async fn real(bin: std::path::PathBuf) -> Result<Duration, String> {
    let started = Instant::now();
    let nsqd = tokio::task::spawn_blocking(move || RealNsqd::start(&bin, &[]))
        .await
        .map_err(|e| e.to_string())?;
    let producer = first_pub(nsqd.tcp_addr.to_string()).await?;
    let took = started.elapsed();
    producer.stop().await;
    drop(nsqd);
    Ok(took)
}

fn ms(d: f64) -> String {
    format!("{:.2} ms", d * 1e3)
}

#[tokio::main]
async fn main() -> ExitCode {
    let o = <Opts as clap::Parser>::parse();
    let bin = std::env::var_os("NSQD_BIN").map(std::path::PathBuf::from);
    let (mut lite_runs, mut real_runs) = (Vec::new(), Vec::new());
    for _ in 0..o.runs {
        match lite().await {
            Ok(took) => lite_runs.push(took.as_secs_f64()),
            Err(e) => {
                eprintln!("nsq-server-lite: {e}");
                return ExitCode::FAILURE;
            }
        }
        if let Some(bin) = &bin {
            match real(bin.clone()).await {
                Ok(took) => real_runs.push(took.as_secs_f64()),
                Err(e) => {
                    eprintln!("nsqd: {e}");
                    return ExitCode::FAILURE;
                }
            }
        }
    }
    println!(
        "Start to the first acknowledged PUB, {} runs each\n",
        o.runs
    );
    println!("| Broker | median | slowest |");
    println!("|---|---:|---:|");
    let row = |name: &str, runs: &[f64]| {
        let slowest = runs.iter().copied().fold(0.0, f64::max);
        let mid = median(runs.to_vec()).unwrap_or(f64::NAN);
        println!("| {name} | {} | {} |", ms(mid), ms(slowest));
        mid
    };
    let lite_mid = row("nsq-server-lite, in-process (`Nsqd::start()`)", &lite_runs);
    if real_runs.is_empty() {
        println!("\n(NSQD_BIN is not set: real nsqd left out)");
    } else {
        let real_mid = row("nsqd 1.3.0, a process", &real_runs);
        println!(
            "\nnsq-server-lite is ready {:.0}× sooner (medians)",
            real_mid / lite_mid
        );
    }
    ExitCode::SUCCESS
}
