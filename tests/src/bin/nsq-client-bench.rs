//! Client against client: nsq-client's `Producer`, go-nsq and tokio-nsq (each with its default
//! configuration) under the same loads, against one real nsqd 1.3.0 in one run.
//!
//! Every client is its own process with one command line (`--nsqd --topic --mode --callers
//! --batch --count --size [--window] [--channel]`) that prints one JSON line
//! `{"client","mode","messages","seconds","cpu_seconds"}`:
//!
//! * nsq-client: `nsq-producer-client` (this package; built next to this binary),
//! * go-nsq: `NSQ_GO_BENCH` (tests/peers/go/cmd/nsq-bench-client),
//! * tokio-nsq: `NSQ_TOKIO_NSQ_BENCH` (tests/peers/rust/tokio-nsq-bench),
//!
//! and for the MPUB scenarios nsq's own `bench_writer` (`NSQ_BENCH_WRITER`) as a reference: raw
//! protocol, one connection per core, each waiting for every MPUB's answer. It runs for a time
//! instead of a count and reports no CPU time. `scripts/install-peers.sh` builds all three
//! peers; one that is missing is skipped with a message.
//!
//! Scenarios (100-byte bodies by default):
//!
//! * `PUB awaited`: one caller awaits each publish (latency-bound);
//! * `PUB pipelined ×1` / `×8`: 1 or 8 callers, each with up to `--window` publishes
//!   outstanding, each answered on its own (tokio-nsq cannot tie an answer to a call: its
//!   callers are in-flight slots of one task counting `Ok` events);
//! * `MPUB 100`, `MPUB 200`: one caller with up to 8 MPUBs outstanding;
//! * `consume`: a consumer with max_in_flight 2500 FINishes a pre-filled topic.
//!
//! Every client of every scenario runs `--runs` times on a fresh topic (runs interleave the
//! clients, so a slow spell of the machine spreads over all of them). After each run the
//! topic's `message_count` in nsqd's `/stats` must equal what the client reports; then the
//! topic is deleted. The table shows medians.
//!
//! ```sh
//! source ~/.cache/nsq-rs-peers/env.sh
//! cargo run --release -p nsq-tests --bin nsq-client-bench -- --runs 3
//! ```
// A benchmark reports on stdout: that is its output, not stray debugging.
#![allow(clippy::print_stdout)]

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::{Command, ExitCode, Stdio};

use nsq_tests::{http, RealNsqd};

const USAGE: &str = "\
usage: nsq-client-bench [options]
  --runs N            runs of every scenario and client; the table shows medians (default 3)
  --size BYTES        message body size (default 100)
  --awaited-count N   messages of the awaited scenario (default 20000)
  --slow-count N      ... for tokio-nsq, whose every write waits for its 250 ms flush timer
                      (default 20)
  --pub-count N       messages of the pipelined PUB scenarios (default 200000)
  --window N          outstanding publishes per caller when pipelined (default 1000)
  --mpub-count N      messages of the MPUB scenarios (default 2000000)
  --consume-count N   messages of the consume scenario, 0 to leave it out (default 500000)
  --runfor SECONDS    how long bench_writer runs (default 3)
  --only LIST         scenarios to run, comma separated: awaited, pub1, pub8, mpub100,
                      mpub200, consume (default all)";

#[derive(Debug, Clone)]
struct Opts {
    runs: usize,
    size: usize,
    awaited_count: usize,
    slow_count: usize,
    pub_count: usize,
    window: usize,
    mpub_count: usize,
    consume_count: usize,
    runfor: u64,
    only: Option<Vec<String>>,
}

fn parse_args() -> Result<Opts, String> {
    let mut o = Opts {
        runs: 3,
        size: 100,
        awaited_count: 20_000,
        slow_count: 20,
        pub_count: 200_000,
        window: 1000,
        mpub_count: 2_000_000,
        consume_count: 500_000,
        runfor: 3,
        only: None,
    };
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        if flag == "-h" || flag == "--help" {
            return Err(String::new());
        }
        let value = args.next().ok_or_else(|| format!("{flag} needs a value"))?;
        let num = |zero_ok: bool| -> Result<usize, String> {
            value
                .parse::<usize>()
                .ok()
                .filter(|n| zero_ok || *n > 0)
                .ok_or_else(|| format!("{flag}: not a positive number: {value:?}"))
        };
        match flag.as_str() {
            "--runs" => o.runs = num(false)?,
            "--size" => o.size = num(false)?,
            "--awaited-count" => o.awaited_count = num(false)?,
            "--slow-count" => o.slow_count = num(false)?,
            "--pub-count" => o.pub_count = num(false)?,
            "--window" => o.window = num(false)?,
            "--mpub-count" => o.mpub_count = num(false)?,
            "--consume-count" => o.consume_count = num(true)?,
            "--runfor" => o.runfor = num(false)? as u64,
            "--only" => o.only = Some(value.split(',').map(|s| s.trim().to_owned()).collect()),
            other => return Err(format!("unknown option {other}")),
        }
    }
    Ok(o)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Client {
    Ours,
    GoNsq,
    TokioNsq,
    BenchWriter,
}

impl Client {
    fn name(self) -> &'static str {
        match self {
            Client::Ours => "nsq-client",
            Client::GoNsq => "go-nsq 1.1.0",
            Client::TokioNsq => "tokio-nsq 0.14.0",
            Client::BenchWriter => "nsq bench_writer",
        }
    }
}

/// One load: what every client is asked to do.
#[derive(Debug, Clone)]
struct Scenario {
    key: &'static str,
    title: String,
    mode: &'static str,
    callers: usize,
    batch: usize,
    window: usize,
    count: usize,
}

fn scenarios(o: &Opts) -> Vec<Scenario> {
    let s = |key, title: String, mode, callers, batch, window, count| Scenario {
        key,
        title,
        mode,
        callers,
        batch,
        window,
        count,
    };
    let mut all = vec![
        s(
            "awaited",
            "PUB awaited, 1 caller".into(),
            "awaited",
            1,
            1,
            1,
            o.awaited_count,
        ),
        s(
            "pub1",
            format!("PUB pipelined, 1 caller × {} outstanding", o.window),
            "pipelined",
            1,
            1,
            o.window,
            o.pub_count,
        ),
        s(
            "pub8",
            format!("PUB pipelined, 8 callers × {} outstanding", o.window),
            "pipelined",
            8,
            1,
            o.window,
            o.pub_count,
        ),
        s(
            "mpub100",
            "MPUB 100, 8 outstanding".into(),
            "mpub",
            1,
            100,
            8,
            o.mpub_count,
        ),
        s(
            "mpub200",
            "MPUB 200, 8 outstanding".into(),
            "mpub",
            1,
            200,
            8,
            o.mpub_count,
        ),
    ];
    if o.consume_count > 0 {
        all.push(s(
            "consume",
            "consume, max_in_flight 2500, FIN each".into(),
            "consume",
            1,
            1,
            1,
            o.consume_count,
        ));
    }
    if let Some(only) = &o.only {
        all.retain(|sc| only.iter().any(|k| k == sc.key));
    }
    all
}

/// One run's numbers.
#[derive(Debug, Clone, Copy)]
struct Sample {
    messages: u64,
    seconds: f64,
    cpu_seconds: Option<f64>,
}

/// Where every client's program is; `None` for one that is missing.
struct Programs(BTreeMap<Client, PathBuf>);

impl Programs {
    fn find() -> Result<Self, String> {
        let mut found = BTreeMap::new();
        found.insert(Client::Ours, ours()?);
        for (client, var) in [
            (Client::GoNsq, "NSQ_GO_BENCH"),
            (Client::TokioNsq, "NSQ_TOKIO_NSQ_BENCH"),
            (Client::BenchWriter, "NSQ_BENCH_WRITER"),
        ] {
            match std::env::var_os(var).filter(|v| !v.is_empty()) {
                Some(path) => {
                    found.insert(client, PathBuf::from(path));
                }
                None => eprintln!(
                    "skipping {}: {var} is not set (run scripts/install-peers.sh and source its env file)",
                    client.name()
                ),
            }
        }
        Ok(Self(found))
    }
}

/// Our client: `nsq-producer-client` next to this binary. Under `cargo run` (which builds only
/// the binary it runs) it is built first with the same profile, so it is never stale.
fn ours() -> Result<PathBuf, String> {
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let path = exe.with_file_name("nsq-producer-client");
    if let Some(cargo) = std::env::var_os("CARGO") {
        let mut build = Command::new(cargo);
        build.args([
            "build",
            "-q",
            "-p",
            "nsq-tests",
            "--bin",
            "nsq-producer-client",
        ]);
        if !cfg!(debug_assertions) {
            build.arg("--release");
        }
        let status = build.status().map_err(|e| format!("cargo build: {e}"))?;
        if !status.success() {
            return Err("cargo build of nsq-producer-client failed".into());
        }
    }
    if path.exists() {
        Ok(path)
    } else {
        Err(format!(
            "{} is missing: cargo build --release -p nsq-tests --bin nsq-producer-client",
            path.display()
        ))
    }
}

/// Runs one client process; its JSON line, or why it failed.
fn run_client(program: &PathBuf, args: &[String]) -> Result<serde_json::Value, String> {
    let out = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("{}: {e}", program.display()))?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    if !out.status.success() {
        return Err(format!(
            "{} {args:?}: {}: {stderr}",
            program.display(),
            out.status
        ));
    }
    let stdout = String::from_utf8_lossy(&out.stdout);
    let line = stdout.lines().last().unwrap_or_default();
    serde_json::from_str(line)
        .map_err(|e| format!("{}: bad report {line:?}: {e}", program.display()))
}

/// bench_writer's own measure of its run, from its last log line
/// (`duration: 3.001932571s - ...`); Go prints durations under a minute that way.
fn bench_writer_seconds(stderr: &str) -> Option<f64> {
    let rest = stderr.rsplit_once("duration: ")?.1;
    let d = rest.split_whitespace().next()?;
    if let Some(ms) = d.strip_suffix("ms") {
        ms.parse::<f64>().ok().map(|v| v / 1e3)
    } else {
        d.strip_suffix('s')?.parse().ok()
    }
}

struct Bench {
    nsqd: RealNsqd,
    rt: tokio::runtime::Runtime,
    programs: Programs,
    opts: Opts,
}

impl Bench {
    fn topic_message_count(&self, topic: &str) -> Result<u64, String> {
        let path = format!("/stats?format=json&topic={topic}");
        let stats = self
            .rt
            .block_on(http::json(self.nsqd.http_addr, "GET", &path))?;
        let topic_stats = stats["topics"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|t| t["topic_name"] == topic)
            .ok_or_else(|| format!("no topic {topic} in /stats"))?;
        Ok(topic_stats["message_count"].as_u64().unwrap_or(0))
    }

    fn channel_left(&self, topic: &str, channel: &str) -> Result<u64, String> {
        let path = format!("/stats?format=json&topic={topic}&channel={channel}");
        let stats = self
            .rt
            .block_on(http::json(self.nsqd.http_addr, "GET", &path))?;
        let ch = stats["topics"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|t| t["topic_name"] == topic)
            .flat_map(|t| t["channels"].as_array().cloned().unwrap_or_default())
            .find(|c| c["channel_name"] == channel)
            .ok_or_else(|| format!("no channel {topic}/{channel} in /stats"))?;
        Ok(ch["depth"].as_u64().unwrap_or(0) + ch["in_flight_count"].as_u64().unwrap_or(0))
    }

    fn delete_topic(&self, topic: &str) {
        let path = format!("/topic/delete?topic={topic}");
        if let Err(e) = self
            .rt
            .block_on(http::request(self.nsqd.http_addr, "POST", &path))
        {
            eprintln!("warning: cannot delete topic {topic}: {e}");
        }
    }

    fn common_args(&self, sc: &Scenario, topic: &str, count: usize) -> Vec<String> {
        [
            "--nsqd",
            &self.nsqd.tcp_addr.to_string(),
            "--topic",
            topic,
            "--mode",
            sc.mode,
            "--callers",
            &sc.callers.to_string(),
            "--batch",
            &sc.batch.to_string(),
            "--window",
            &sc.window.to_string(),
            "--count",
            &count.to_string(),
            "--size",
            &self.opts.size.to_string(),
            "--channel",
            "bench",
        ]
        .map(str::to_owned)
        .to_vec()
    }

    /// One run of one client in one scenario, checked against nsqd's stats.
    fn run(&self, sc: &Scenario, client: Client, topic: &str) -> Result<Sample, String> {
        let program = &self.programs.0[&client];
        let sample = match client {
            Client::BenchWriter => {
                let out = Command::new(program)
                    .arg(format!("--nsqd-tcp-address={}", self.nsqd.tcp_addr))
                    .arg(format!("--topic={topic}"))
                    .arg(format!("--size={}", self.opts.size))
                    .arg(format!("--batch-size={}", sc.batch))
                    .arg(format!("--runfor={}s", self.opts.runfor))
                    .stdin(Stdio::null())
                    .output()
                    .map_err(|e| format!("{}: {e}", program.display()))?;
                let stderr = String::from_utf8_lossy(&out.stderr);
                if !out.status.success() {
                    return Err(format!("bench_writer: {}: {stderr}", out.status));
                }
                let seconds = bench_writer_seconds(&stderr)
                    .ok_or_else(|| format!("bench_writer: no duration in {stderr:?}"))?;
                // It reports no count of its own; nsqd's is the one to trust anyway.
                let messages = self.topic_message_count(topic)?;
                Sample {
                    messages,
                    seconds,
                    cpu_seconds: None,
                }
            }
            _ => {
                let count = if client == Client::TokioNsq && sc.mode == "awaited" {
                    self.opts.slow_count
                } else {
                    sc.count
                };
                let report = run_client(program, &self.common_args(sc, topic, count))?;
                let messages = report["messages"]
                    .as_u64()
                    .ok_or("report without messages")?;
                let sample = Sample {
                    messages,
                    seconds: report["seconds"].as_f64().ok_or("report without seconds")?,
                    cpu_seconds: report["cpu_seconds"].as_f64(),
                };
                if sc.mode == "consume" {
                    if messages < count as u64 {
                        return Err(format!("consumed {messages} of {count}"));
                    }
                    // nsqd may still be reading the last FINs of the client that just exited.
                    let mut left = self.channel_left(topic, "bench")?;
                    for _ in 0..20 {
                        if left == 0 {
                            break;
                        }
                        std::thread::sleep(std::time::Duration::from_millis(100));
                        left = self.channel_left(topic, "bench")?;
                    }
                    if left != 0 {
                        return Err(format!(
                            "{left} messages left in the channel (depth + in flight)"
                        ));
                    }
                } else {
                    let in_nsqd = self.topic_message_count(topic)?;
                    if in_nsqd != messages {
                        return Err(format!(
                            "client says {messages} messages, nsqd's /stats {in_nsqd}"
                        ));
                    }
                }
                sample
            }
        };
        Ok(sample)
    }

    /// Fills `topic` for a consume run, with our producer (MPUB 200).
    fn prefill(&self, topic: &str, count: usize) -> Result<(), String> {
        let fill = Scenario {
            key: "fill",
            title: String::new(),
            mode: "mpub",
            callers: 1,
            batch: 200,
            window: 8,
            count,
        };
        run_client(
            &self.programs.0[&Client::Ours],
            &self.common_args(&fill, topic, count),
        )?;
        let n = self.topic_message_count(topic)?;
        if n != count as u64 {
            return Err(format!("pre-fill: nsqd has {n} messages, want {count}"));
        }
        Ok(())
    }
}

fn median(mut v: Vec<f64>) -> Option<f64> {
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    let n = v.len();
    Some(if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    })
}

fn main() -> ExitCode {
    let opts = match parse_args() {
        Ok(o) => o,
        Err(why) => {
            if !why.is_empty() {
                eprintln!("nsq-client-bench: {why}");
            }
            eprintln!("{USAGE}");
            return ExitCode::from(2);
        }
    };
    let Some(nsqd_bin) = std::env::var_os("NSQD_BIN").filter(|v| !v.is_empty()) else {
        eprintln!(
            "skipping: NSQD_BIN is not set (run scripts/install-peers.sh and source its env file)"
        );
        return ExitCode::SUCCESS;
    };
    let programs = match Programs::find() {
        Ok(p) => p,
        Err(why) => {
            eprintln!("nsq-client-bench: {why}");
            return ExitCode::FAILURE;
        }
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    // A memory queue far above any one topic's messages: nothing goes to disk. Topics are
    // deleted after each run, so memory stays bounded.
    let nsqd = RealNsqd::start(
        PathBuf::from(nsqd_bin).as_path(),
        &["--mem-queue-size=100000000"],
    );
    let bench = Bench {
        nsqd,
        rt,
        programs,
        opts: opts.clone(),
    };
    let scenarios = scenarios(&opts);

    let mut results: BTreeMap<(usize, Client), Vec<Sample>> = BTreeMap::new();
    let mut failed = false;
    for run in 1..=opts.runs {
        for (i, sc) in scenarios.iter().enumerate() {
            for &client in bench.programs.0.keys() {
                if client == Client::BenchWriter && sc.mode != "mpub" {
                    continue;
                }
                let topic = format!(
                    "{}-{}-{run}",
                    sc.key,
                    client.name().split(' ').next().unwrap_or("c")
                );
                let topic = topic.replace(' ', "_");
                if sc.mode == "consume" {
                    if let Err(why) = bench.prefill(&topic, sc.count) {
                        eprintln!("{} / {}: {why}", sc.title, client.name());
                        failed = true;
                        bench.delete_topic(&topic);
                        continue;
                    }
                }
                match bench.run(sc, client, &topic) {
                    Ok(sample) => {
                        eprintln!(
                            "run {run} {} / {}: {} msgs in {:.3} s = {:.0} msgs/s, cpu {}",
                            sc.title,
                            client.name(),
                            sample.messages,
                            sample.seconds,
                            sample.messages as f64 / sample.seconds,
                            sample
                                .cpu_seconds
                                .map_or("n/a".into(), |c| format!("{c:.3} s")),
                        );
                        results.entry((i, client)).or_default().push(sample);
                    }
                    Err(why) => {
                        eprintln!("run {run} {} / {}: FAILED: {why}", sc.title, client.name());
                        failed = true;
                    }
                }
                bench.delete_topic(&topic);
            }
        }
    }

    println!("| Scenario | Client | msgs/s (median) | CPU s per 100k msgs (median) | msgs/s ÷ best peer | CPU ÷ best peer |");
    println!("|---|---|---:|---:|---:|---:|");
    for (i, sc) in scenarios.iter().enumerate() {
        let rows: Vec<(Client, f64, Option<f64>)> = results
            .range((i, Client::Ours)..=(i, Client::BenchWriter))
            .map(|(&(_, client), samples)| {
                let rate = median(
                    samples
                        .iter()
                        .map(|s| s.messages as f64 / s.seconds)
                        .collect(),
                );
                let cpu = median(
                    samples
                        .iter()
                        .filter_map(|s| s.cpu_seconds.map(|c| c * 100_000.0 / s.messages as f64))
                        .collect(),
                );
                (client, rate.unwrap_or(0.0), cpu)
            })
            .collect();
        let peers = rows.iter().filter(|r| r.0 != Client::Ours);
        let best_rate = peers.clone().map(|r| r.1).fold(0.0, f64::max);
        let best_cpu = peers.filter_map(|r| r.2).fold(f64::INFINITY, f64::min);
        for (client, rate, cpu) in &rows {
            let ratio = |v: f64, best: f64| {
                if best > 0.0 && best.is_finite() {
                    format!("{:.2}×", v / best)
                } else {
                    "–".into()
                }
            };
            println!(
                "| {} | {} | {:.0} | {} | {} | {} |",
                sc.title,
                client.name(),
                rate,
                cpu.map_or("n/a".into(), |c| format!("{c:.3}")),
                ratio(*rate, best_rate),
                cpu.map_or("–".into(), |c| ratio(c, best_cpu)),
            );
        }
    }
    if failed {
        eprintln!("some runs failed (see above)");
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}
