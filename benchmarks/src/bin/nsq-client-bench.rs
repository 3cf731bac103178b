//! Client against client: nsq-client's `Producer`, go-nsq and tokio-nsq (each with its default
//! configuration) under the same loads, against one real nsqd 1.3.0 in one run.
//!
//! Every client is its own process with one command line (`--nsqd --topic --mode --callers
//! --batch --count --size [--window] [--channel]`) that prints one JSON line
//! `{"client","mode","messages","seconds","cpu_seconds"}`:
//!
//! * nsq-client: `nsq-producer-client` (this package; built next to this binary); in the
//!   pipelined PUB scenarios also with `--merge off` (`ProducerConfig::merge_publishes(None)`,
//!   one PUB per publish), shown as "nsq-client, merging off" and not counted as a peer,
//! * go-nsq: `NSQ_GO_BENCH` (tests/peers/go/cmd/nsq-bench-client),
//! * tokio-nsq: `NSQ_TOKIO_NSQ_BENCH` (tests/peers/rust/tokio-nsq-bench),
//!
//! and two of nsq's own programs as references, each in its own scenario only:
//!
//! * MPUB: `bench_writer` (`NSQ_BENCH_WRITER`): raw protocol, one connection per core, each
//!   waiting for every MPUB's answer. Its count is the topic's `message_count` in nsqd.
//! * consume: `bench_reader` (`NSQ_BENCH_READER`): raw protocol, one connection per core with
//!   `RDY 2500` each, FINishing every message. Its count is its own (ops/s × duration, from its
//!   log). Its topic is pre-filled with twice `--consume-count` so that it cannot run dry; a run
//!   that counts every pre-filled message fails. It leaves the messages it had no time for, and
//!   the FINs it had not sent when its time was up, in the channel.
//!
//! Both run for a time (`--runfor`, `--reader-runfor`) instead of a count, measure that time
//! themselves and report no CPU time. `scripts/install-peers.sh` builds all these peers; one
//! that is missing is skipped with a message.
//!
//! In the awaited scenario, `nsq-producer-client --mode raw-awaited` gives the floor: one
//! blocking socket that writes each PUB and reads its answer, with no runtime and no client
//! around it. It is shown, with its ratio to the best peer, but is no peer itself.
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
//! clients, so a slow spell of the machine spreads over all of them). After each publishing run
//! the topic's `message_count` in nsqd's `/stats` must equal what the client reports, and after
//! each consuming run (but bench_reader's) its channel must be empty; then the topic is deleted.
//! The table shows medians, and divides each client's by the best of the others ("÷ best
//! peer"; the references count as peers for msgs/s, and have no CPU to compare).
//!
//! ```sh
//! source ~/.cache/nsq-rs-peers/env.sh
//! cargo run --release -p nsq-benchmarks --bin nsq-client-bench -- --runs 3
//! ```
// A benchmark reports on stdout: that is its output, not stray debugging.
#![allow(clippy::print_stdout)]

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::ExitCode;

use nsq_benchmarks::{median, run_client, run_program, sibling_binary};
use nsq_tests::{http, RealNsqd};

/// nsq-client against go-nsq and tokio-nsq on real nsqd 1.3.0, with nsq's raw `bench_writer`
/// and `bench_reader` and a blocking socket as references.
#[derive(Debug, Clone, clap::Parser)]
struct Opts {
    /// Runs of every scenario and client; the table shows medians.
    #[arg(long, default_value_t = 3, value_parser = nsq_benchmarks::positive)]
    runs: usize,
    /// Message body size, bytes.
    #[arg(long, default_value_t = 100, value_parser = nsq_benchmarks::positive)]
    size: usize,
    /// Messages of the awaited scenario.
    #[arg(long, default_value_t = 20_000, value_parser = nsq_benchmarks::positive)]
    awaited_count: usize,
    /// Messages of the awaited scenario for tokio-nsq, whose every write waits for its
    /// 250 ms flush timer.
    #[arg(long, default_value_t = 20, value_parser = nsq_benchmarks::positive)]
    slow_count: usize,
    /// Messages of the pipelined PUB scenarios.
    #[arg(long, default_value_t = 500_000, value_parser = nsq_benchmarks::positive)]
    pub_count: usize,
    /// Outstanding publishes per caller when pipelined.
    #[arg(long, default_value_t = 1000, value_parser = nsq_benchmarks::positive)]
    window: usize,
    /// Messages of the MPUB scenarios.
    #[arg(long, default_value_t = 2_000_000, value_parser = nsq_benchmarks::positive)]
    mpub_count: usize,
    /// Messages of the consume scenario, 0 to leave it out.
    #[arg(long, default_value_t = 1_000_000)]
    consume_count: usize,
    /// Seconds bench_writer runs in the MPUB scenarios.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u64).range(1..))]
    runfor: u64,
    /// Seconds bench_reader runs in the consume scenario; its topic holds 2 ×
    /// --consume-count messages, which it must not use up.
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u64).range(1..))]
    reader_runfor: u64,
    /// Scenarios to run, comma separated: awaited, pub1, pub8, mpub100, mpub200, consume
    /// (default all).
    #[arg(long, value_delimiter = ',')]
    only: Option<Vec<String>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Client {
    Ours,
    /// Ours with `ProducerConfig::merge_publishes(None)`: one PUB per publish.
    OursUnmerged,
    GoNsq,
    TokioNsq,
    BenchWriter,
    BenchReader,
    /// A blocking socket writing each PUB and reading its answer: the floor of awaited PUB.
    RawAwaited,
}

impl Client {
    fn name(self) -> &'static str {
        match self {
            Client::Ours => "nsq-client",
            Client::OursUnmerged => "nsq-client, merging off",
            Client::GoNsq => "go-nsq 1.1.0",
            Client::TokioNsq => "tokio-nsq 0.14.0",
            Client::BenchWriter => "nsq bench_writer",
            Client::BenchReader => "nsq bench_reader",
            Client::RawAwaited => "blocking socket, no client (floor)",
        }
    }

    /// The one scenario mode a reference program runs in; `None` for the clients, which run in
    /// every scenario.
    fn only_mode(self) -> Option<&'static str> {
        match self {
            Client::BenchWriter => Some("mpub"),
            Client::BenchReader => Some("consume"),
            Client::OursUnmerged => Some("pipelined"),
            Client::RawAwaited => Some("awaited"),
            Client::Ours | Client::GoNsq | Client::TokioNsq => None,
        }
    }

    /// A name for topics: letters, digits, `-` and `_` only.
    fn key(self) -> &'static str {
        match self {
            Client::Ours => "ours",
            Client::OursUnmerged => "ours-unmerged",
            Client::GoNsq => "go-nsq",
            Client::TokioNsq => "tokio-nsq",
            Client::BenchWriter => "bench_writer",
            Client::BenchReader => "bench_reader",
            Client::RawAwaited => "raw",
        }
    }

    /// Whether nsq-client is compared with it: not nsq-client itself (in any configuration)
    /// and not the floor, which is no client.
    fn is_peer(self) -> bool {
        !matches!(
            self,
            Client::Ours | Client::OursUnmerged | Client::RawAwaited
        )
    }

    /// How many messages a consume run of this client starts with: bench_reader stops on time,
    /// not on a count, and must not run out before then.
    fn consume_fill(self, count: usize) -> usize {
        if self == Client::BenchReader {
            2 * count
        } else {
            count
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
        let ours = sibling_binary("nsq-benchmarks", "nsq-producer-client")?;
        found.insert(Client::OursUnmerged, ours.clone());
        found.insert(Client::RawAwaited, ours.clone());
        found.insert(Client::Ours, ours);
        for (client, var) in [
            (Client::GoNsq, "NSQ_GO_BENCH"),
            (Client::TokioNsq, "NSQ_TOKIO_NSQ_BENCH"),
            (Client::BenchWriter, "NSQ_BENCH_WRITER"),
            (Client::BenchReader, "NSQ_BENCH_READER"),
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
/// The measure bench_writer and bench_reader take of their own run: their last log line,
/// `duration: 1.006302955s - 40.135mb/s - 420841.455ops/s - 2.376us/op`.
#[derive(Debug, Clone, Copy, PartialEq)]
struct BenchLog {
    seconds: f64,
    ops_per_second: f64,
}

fn parse_bench_log(stderr: &str) -> Option<BenchLog> {
    let line = stderr.rsplit_once("duration: ")?.1.lines().next()?;
    let mut fields = line.split(" - ");
    let seconds = go_duration_seconds(fields.next()?.trim())?;
    let ops_per_second = fields
        .find_map(|f| f.trim().strip_suffix("ops/s"))?
        .parse()
        .ok()?;
    Some(BenchLog {
        seconds,
        ops_per_second,
    })
}

/// A Go `time.Duration` as its `String()` prints it (`3.001932571s`, `416.370956ms`,
/// `1m2.5s`, `0s`), in seconds.
fn go_duration_seconds(d: &str) -> Option<f64> {
    if d.is_empty() {
        return None;
    }
    let mut rest = d;
    let mut seconds = 0.0;
    while !rest.is_empty() {
        let number_end = rest.find(|c: char| c != '.' && !c.is_ascii_digit())?;
        let (number, tail) = rest.split_at(number_end);
        let unit_end = tail
            .find(|c: char| c.is_ascii_digit())
            .unwrap_or(tail.len());
        let (unit, next) = tail.split_at(unit_end);
        let scale = match unit {
            "h" => 3600.0,
            "m" => 60.0,
            "s" => 1.0,
            "ms" => 1e-3,
            "us" | "µs" => 1e-6,
            "ns" => 1e-9,
            _ => return None,
        };
        seconds += number.parse::<f64>().ok()? * scale;
        rest = next;
    }
    Some(seconds)
}

/// Runs bench_writer or bench_reader; its measure of the run, or why it failed.
fn run_nsq_bench(program: &std::path::Path, args: &[String]) -> Result<BenchLog, String> {
    let (_, stderr) = run_program(program, args)?;
    parse_bench_log(&stderr).ok_or_else(|| {
        format!(
            "{}: no `duration: ... ops/s` line in {stderr:?}",
            program.display()
        )
    })
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
                let log = run_nsq_bench(
                    program,
                    &[
                        format!("--nsqd-tcp-address={}", self.nsqd.tcp_addr),
                        format!("--topic={topic}"),
                        format!("--size={}", self.opts.size),
                        format!("--batch-size={}", sc.batch),
                        format!("--runfor={}s", self.opts.runfor),
                    ],
                )?;
                // Its ops/s times its duration is its count, but nsqd's count is the one to
                // trust.
                let messages = self.topic_message_count(topic)?;
                Sample {
                    messages,
                    seconds: log.seconds,
                    cpu_seconds: None,
                }
            }
            Client::BenchReader => {
                let log = run_nsq_bench(
                    program,
                    &[
                        format!("--nsqd-tcp-address={}", self.nsqd.tcp_addr),
                        format!("--topic={topic}"),
                        "--channel=bench".to_owned(),
                        format!("--size={}", self.opts.size),
                        "--rdy=2500".to_owned(),
                        format!("--runfor={}s", self.opts.reader_runfor),
                    ],
                )?;
                // It prints ops/s with three decimals over a duration in nanoseconds, so the
                // product rounds back to the count of messages it received. nsqd cannot give
                // that count: its per-client counts go with the connections, and the channel
                // keeps both what was not sent and what was received but not FINished when the
                // connections closed.
                let messages = (log.ops_per_second * log.seconds).round() as u64;
                let filled = client.consume_fill(sc.count) as u64;
                if messages >= filled {
                    return Err(format!(
                        "bench_reader received all {filled} pre-filled messages within {} s, so \
                         its rate is not its own: raise --consume-count (it gets twice that) or \
                         lower --reader-runfor",
                        self.opts.reader_runfor
                    ));
                }
                Sample {
                    messages,
                    seconds: log.seconds,
                    cpu_seconds: None,
                }
            }
            _ => {
                let count = if client == Client::TokioNsq && sc.mode == "awaited" {
                    self.opts.slow_count
                } else {
                    sc.count
                };
                let mut args = self.common_args(sc, topic, count);
                if client == Client::OursUnmerged {
                    args.extend(["--merge".to_owned(), "off".to_owned()]);
                }
                if client == Client::RawAwaited {
                    if let Some(mode) = args.iter().position(|a| a == "--mode") {
                        args[mode + 1] = "raw-awaited".to_owned();
                    }
                }
                let report = run_client(program, &args)?;
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

/// nsqd's `--mem-queue-size`: room for the most messages any one topic or channel of these
/// scenarios holds, so nothing goes to disk, and no more. nsqd allocates a buffer of that many
/// pointers for every topic and every channel it creates (zeroing reused memory for it), so a
/// queue far too large makes each new topic and SUB stall, for a second or more at 10^8.
fn mem_queue_size(scenarios: &[Scenario], o: &Opts) -> usize {
    scenarios
        .iter()
        .map(|sc| match sc.mode {
            // bench_reader's topic holds twice the consume count.
            "consume" => sc.count.saturating_mul(2),
            // bench_writer runs for a time, not a count; it has not passed 3 M msgs/s here.
            "mpub" => sc.count.max(
                usize::try_from(o.runfor)
                    .unwrap_or(usize::MAX)
                    .saturating_mul(3_000_000),
            ),
            _ => sc.count,
        })
        .max()
        .unwrap_or(0)
        .saturating_add(10_000)
}

fn main() -> ExitCode {
    let opts = <Opts as clap::Parser>::parse();
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
    let scenarios = scenarios(&opts);
    let queue = format!("--mem-queue-size={}", mem_queue_size(&scenarios, &opts));
    let nsqd = RealNsqd::start(PathBuf::from(nsqd_bin).as_path(), &[queue.as_str()]);
    let bench = Bench {
        nsqd,
        rt,
        programs,
        opts: opts.clone(),
    };

    let mut results: BTreeMap<(usize, Client), Vec<Sample>> = BTreeMap::new();
    let mut failed = false;
    for run in 1..=opts.runs {
        for (i, sc) in scenarios.iter().enumerate() {
            for &client in bench.programs.0.keys() {
                if client.only_mode().is_some_and(|mode| mode != sc.mode) {
                    continue;
                }
                let topic = format!("{}-{}-{run}", sc.key, client.key());
                if sc.mode == "consume" {
                    if let Err(why) = bench.prefill(&topic, client.consume_fill(sc.count)) {
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
            .range((i, Client::Ours)..(i + 1, Client::Ours))
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
        let peers = rows.iter().filter(|r| r.0.is_peer());
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_bench_reader_and_bench_writer_logs() {
        // Real stderr of nsq 1.3.0's bench_reader and bench_writer (runfor 1 s, 100 bytes).
        let reader = "[bench_reader] 2026/11/24 21:18:59 duration: 1.006302955s - 40.135mb/s - \
                      420841.455ops/s - 2.376us/op\n";
        let log = parse_bench_log(reader).expect("bench_reader line");
        assert!((log.seconds - 1.006302955).abs() < 1e-12);
        assert!((log.ops_per_second - 420841.455).abs() < 1e-9);
        assert_eq!((log.ops_per_second * log.seconds).round() as u64, 423494);

        let writer = "[bench_writer] 2026/11/24 21:18:58 duration: 1.000501084s - 112.592mb/s - \
                      1180608.416ops/s - 0.847us/op\n";
        let log = parse_bench_log(writer).expect("bench_writer line");
        assert!((log.seconds - 1.000501084).abs() < 1e-12);
        assert!((log.ops_per_second - 1180608.416).abs() < 1e-9);
        // nsqd's /stats gave that run's topic a message_count of 1181200.
        assert_eq!((log.ops_per_second * log.seconds).round() as u64, 1181200);

        // A reader that received nothing: under a second, Go prints milliseconds.
        let empty = "[bench_reader] 2026/11/24 21:18:59 duration: 416.370956ms - 0.000mb/s - \
                     0.000ops/s - +Infus/op\n";
        let log = parse_bench_log(empty).expect("empty run");
        assert!((log.seconds - 0.416370956).abs() < 1e-12);
        assert_eq!(log.ops_per_second, 0.0);

        // Only the last report counts; a line without one is no report.
        let two = format!("[bench_reader] sleeping until ...\n{empty}{reader}");
        assert!((parse_bench_log(&two).expect("last line").seconds - 1.006302955).abs() < 1e-12);
        assert_eq!(
            parse_bench_log("panic: dial tcp: connection refused\n"),
            None
        );
    }

    #[test]
    fn parses_go_durations() {
        assert_eq!(go_duration_seconds("3s"), Some(3.0));
        assert_eq!(go_duration_seconds("0s"), Some(0.0));
        assert_eq!(go_duration_seconds("1m2.5s"), Some(62.5));
        assert_eq!(go_duration_seconds("1h0m0s"), Some(3600.0));
        let close = |d: &str, want: f64| {
            let got = go_duration_seconds(d).expect(d);
            assert!((got - want).abs() < want * 1e-12, "{d}: {got} != {want}");
        };
        close("750µs", 750e-6);
        close("750us", 750e-6);
        close("12ns", 12e-9);
        assert_eq!(go_duration_seconds(""), None);
        assert_eq!(go_duration_seconds("3"), None);
        assert_eq!(go_duration_seconds("3x"), None);
    }
}
