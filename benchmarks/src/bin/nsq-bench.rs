//! End-to-end load generator: the same raw-protocol load against nsq-server-lite and real
//! nsqd 1.3.0, in one run.
//!
//! Like nsq's own `bench_writer` and `bench_reader`, the clients speak the wire protocol
//! directly (nsq-proto's `ClientCodec`), without a client library in between:
//!
//! * publish: N connections send `MPUB` of `--batch` messages of `--size` bytes, at most
//!   `--window` MPUBs in flight per connection (each `OK` frees a slot), until `--msgs`
//!   messages are acknowledged in total;
//! * consume: the topic that publish filled, K connections on one channel with `RDY --rdy`,
//!   `FIN` for every message (the FINs of one socket read go out in one write), until every
//!   published message has been received. Then the broker's `/stats` must show the channel
//!   with depth 0 and nothing in flight, and nothing may have been redelivered.
//!
//! nsq-server-lite runs in this process on its own two-thread tokio runtime; real nsqd runs as
//! its own process (`NSQD_BIN`) with a memory queue that holds every message, so nothing goes
//! to disk. The load generator has its own two-thread runtime, and shares the machine's cores
//! with the broker in both cases.
//!
//! ```sh
//! source ~/.cache/nsq-rs-peers/env.sh
//! cargo run --release -p nsq-benchmarks --bin nsq-bench -- --msgs 2000000 --runs 3
//! ```
// A benchmark reports on stdout: that is its output, not stray debugging.
#![allow(clippy::print_stdout)]

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use nsq_benchmarks::median;
use nsq_proto::{ClientCodec, Command, Frame, Identify, Message, Response, Topic, MAGIC_V2};
use nsq_tests::{http, peer_or_skip, RealNsqd};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::Barrier;
use tokio_util::codec::{Decoder, Encoder};
use tokio_util::sync::CancellationToken;

const CHANNEL: &str = "bench";

/// nsq-server-lite against nsqd 1.3.0, end to end: publishing, consuming, both at once.
#[derive(Debug, Clone, clap::Parser)]
struct Opts {
    /// Messages per scenario run.
    #[arg(long, default_value_t = 2_000_000, value_parser = clap::value_parser!(u64).range(1..))]
    msgs: u64,
    /// Message body size, bytes.
    #[arg(long, default_value_t = 100, value_parser = nsq_benchmarks::positive)]
    size: usize,
    /// Messages per MPUB.
    #[arg(long, default_value_t = 200, value_parser = nsq_benchmarks::positive)]
    batch: usize,
    /// MPUBs in flight per publisher connection.
    #[arg(long, default_value_t = 8, value_parser = nsq_benchmarks::positive)]
    window: usize,
    /// Publisher connection counts, comma separated.
    #[arg(long = "pub", value_delimiter = ',', default_values_t = [1, 4], value_parser = nsq_benchmarks::positive)]
    pub_conns: Vec<usize>,
    /// Consumer connection counts, comma separated.
    #[arg(long = "sub", value_delimiter = ',', default_values_t = [1, 4], value_parser = nsq_benchmarks::positive)]
    sub_conns: Vec<usize>,
    /// RDY count of each consumer.
    #[arg(long, default_value_t = 2500, value_parser = clap::value_parser!(u32).range(1..))]
    rdy: u32,
    /// Runs of every scenario; the table shows medians.
    #[arg(long, default_value_t = 3, value_parser = nsq_benchmarks::positive)]
    runs: usize,
    /// Brokers, comma separated.
    #[arg(long, value_delimiter = ',', default_values = ["lite", "nsqd"])]
    brokers: Vec<Kind>,
    /// Worker threads of the lite broker's runtime.
    #[arg(long, default_value_t = 2, value_parser = nsq_benchmarks::positive)]
    lite_threads: usize,
    /// Worker threads of the load generator's runtime.
    #[arg(long, default_value_t = 2, value_parser = nsq_benchmarks::positive)]
    gen_threads: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, clap::ValueEnum)]
enum Kind {
    Lite,
    Nsqd,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Lite => "nsq-server-lite",
            Kind::Nsqd => "nsqd 1.3.0",
        }
    }
}

/// A broker under load, with the runtime or process that keeps it alive.
enum Running {
    Lite {
        nsqd: nsq_server_lite::Nsqd,
        rt: tokio::runtime::Runtime,
    },
    Nsqd(RealNsqd),
}

impl Running {
    fn tcp_addr(&self) -> SocketAddr {
        match self {
            Running::Lite { nsqd, .. } => nsqd.tcp_addr(),
            Running::Nsqd(real) => real.tcp_addr,
        }
    }

    fn http_addr(&self) -> SocketAddr {
        match self {
            Running::Lite { nsqd, .. } => nsqd.http_addr(),
            Running::Nsqd(real) => real.http_addr,
        }
    }

    fn stop(self) {
        match self {
            Running::Lite { nsqd, rt } => {
                rt.block_on(nsqd.shutdown());
                rt.shutdown_timeout(Duration::from_secs(5));
            }
            Running::Nsqd(real) => drop(real),
        }
    }
}

/// A multi-thread runtime of `threads` workers named `name` (as `perf` shows them).
fn runtime(threads: usize, name: &str) -> Result<tokio::runtime::Runtime, String> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads)
        .thread_name(name)
        .enable_all()
        .build()
        .map_err(|e| format!("{name} runtime: {e}"))
}

/// Starts a broker whose memory queues hold `queue` messages.
fn start(kind: Kind, opts: &Opts, queue: u64) -> Result<Option<Running>, String> {
    match kind {
        Kind::Lite => {
            let rt = runtime(opts.lite_threads, "lite-broker")?;
            let nsqd = rt
                .block_on(
                    nsq_server_lite::Nsqd::builder()
                        .broadcast_address("127.0.0.1")
                        .mem_queue_size(queue as usize)
                        .start(),
                )
                .map_err(|e| format!("lite broker: {e}"))?;
            Ok(Some(Running::Lite { nsqd, rt }))
        }
        Kind::Nsqd => {
            let Some(bin) = peer_or_skip("NSQD_BIN") else {
                return Ok(None);
            };
            let queue = format!("--mem-queue-size={queue}");
            let real = RealNsqd::start(&bin, &[&queue]);
            Ok(Some(Running::Nsqd(real)))
        }
    }
}

/// Opens a connection: magic, IDENTIFY, and its reply.
async fn connect(addr: SocketAddr, name: &str) -> Result<(TcpStream, BytesMut), String> {
    let mut stream = TcpStream::connect(addr)
        .await
        .map_err(|e| format!("connect {addr}: {e}"))?;
    stream.set_nodelay(true).map_err(|e| e.to_string())?;
    let mut out = BytesMut::new();
    out.extend_from_slice(&MAGIC_V2);
    let identify = Identify::new(name, "nsq-bench", "nsq-bench/0.1");
    ClientCodec::new()
        .encode(Command::Identify(Box::new(identify)), &mut out)
        .map_err(|e| e.to_string())?;
    stream.write_all(&out).await.map_err(|e| e.to_string())?;
    let mut buf = BytesMut::with_capacity(64 * 1024);
    expect_response(&mut stream, &mut buf, "IDENTIFY").await?;
    Ok((stream, buf))
}

/// Reads one frame and wants it to be a response (IDENTIFY's JSON or `OK`).
async fn expect_response(
    stream: &mut TcpStream,
    buf: &mut BytesMut,
    what: &str,
) -> Result<(), String> {
    let mut codec = ClientCodec::new();
    loop {
        match codec.decode(buf).map_err(|e| format!("{what}: {e}"))? {
            Some(Frame::Response(_)) => return Ok(()),
            Some(other) => return Err(format!("{what}: unexpected reply {other:?}")),
            None => {}
        }
        if stream.read_buf(buf).await.map_err(|e| e.to_string())? == 0 {
            return Err(format!("{what}: connection closed"));
        }
    }
}

/// One publisher: `batches` MPUBs of the pre-encoded `mpub`, at most `window` unanswered.
async fn publisher(
    addr: SocketAddr,
    mpub: Bytes,
    batches: u64,
    window: u64,
    start: Arc<Barrier>,
) -> Result<(), String> {
    let (mut stream, mut buf) = connect(addr, "bench-writer").await?;
    let mut codec = ClientCodec::new();
    let mut out = BytesMut::with_capacity(mpub.len() * window as usize);
    let (mut sent, mut acked) = (0u64, 0u64);
    start.wait().await;
    while acked < batches {
        while sent < batches && sent - acked < window {
            out.extend_from_slice(&mpub);
            sent += 1;
        }
        if !out.is_empty() {
            stream.write_all(&out).await.map_err(|e| e.to_string())?;
            out.clear();
        }
        if stream.read_buf(&mut buf).await.map_err(|e| e.to_string())? == 0 {
            return Err("publisher: connection closed".to_owned());
        }
        while let Some(frame) = codec.decode(&mut buf).map_err(|e| e.to_string())? {
            match frame {
                Frame::Response(Response::Ok) => acked += 1,
                Frame::Response(Response::Heartbeat) => {
                    codec
                        .encode(Command::Nop, &mut out)
                        .map_err(|e| e.to_string())?;
                }
                other => return Err(format!("publisher: unexpected frame {other:?}")),
            }
        }
    }
    Ok(())
}

/// What consumers share: how many messages they have received, and the end.
struct Progress {
    received: AtomicU64,
    redelivered: AtomicU64,
    expected: u64,
    done: CancellationToken,
}

/// One consumer: SUB, then RDY once everyone is connected, FIN for every message.
async fn consumer(
    addr: SocketAddr,
    topic: Topic,
    rdy: u32,
    progress: Arc<Progress>,
    start: Arc<Barrier>,
) -> Result<TcpStream, String> {
    let (mut stream, mut buf) = connect(addr, "bench-reader").await?;
    let mut codec = ClientCodec::new();
    let mut out = BytesMut::with_capacity(64 * 1024);
    let channel = nsq_proto::Channel::new(CHANNEL).map_err(|e| e.to_string())?;
    codec
        .encode(Command::Sub { topic, channel }, &mut out)
        .map_err(|e| e.to_string())?;
    stream.write_all(&out).await.map_err(|e| e.to_string())?;
    out.clear();
    expect_response(&mut stream, &mut buf, "SUB").await?;
    start.wait().await;
    codec
        .encode(Command::Rdy(rdy), &mut out)
        .map_err(|e| e.to_string())?;
    stream.write_all(&out).await.map_err(|e| e.to_string())?;
    out.clear();
    loop {
        buf.reserve(64 * 1024);
        tokio::select! {
            read = stream.read_buf(&mut buf) => {
                if read.map_err(|e| e.to_string())? == 0 {
                    return Err("consumer: connection closed".to_owned());
                }
            }
            _ = progress.done.cancelled() => return Ok(stream),
        }
        let (mut got, mut again) = (0u64, 0u64);
        while let Some(frame) = codec.decode(&mut buf).map_err(|e| e.to_string())? {
            match frame {
                Frame::Message(Message { id, attempts, .. }) => {
                    codec
                        .encode(Command::Fin(id), &mut out)
                        .map_err(|e| e.to_string())?;
                    got += 1;
                    if attempts > 1 {
                        again += 1;
                    }
                }
                Frame::Response(Response::Heartbeat) => {
                    codec
                        .encode(Command::Nop, &mut out)
                        .map_err(|e| e.to_string())?;
                }
                Frame::Response(_) => {}
                Frame::Error(err) => return Err(format!("consumer: {err}")),
            }
        }
        if !out.is_empty() {
            stream.write_all(&out).await.map_err(|e| e.to_string())?;
            out.clear();
        }
        if again > 0 {
            progress.redelivered.fetch_add(again, Ordering::Relaxed);
        }
        if got > 0 {
            let total = progress.received.fetch_add(got, Ordering::AcqRel) + got;
            if total >= progress.expected {
                progress.done.cancel();
                return Ok(stream);
            }
        }
    }
}

/// The channel's entry in `/stats`, and its topic's depth.
async fn channel_stats(
    http_addr: SocketAddr,
    topic: &str,
) -> Result<(serde_json::Value, i64), String> {
    let path = format!("/stats?format=json&topic={topic}&channel={CHANNEL}");
    let mut stats = http::json(http_addr, "GET", &path).await?;
    if let Some(data) = stats.get_mut("data") {
        stats = data.take();
    }
    let topic_stats = named(&stats["topics"], "topic_name", topic)
        .ok_or_else(|| format!("no topic {topic} in /stats"))?;
    let channel = named(&topic_stats["channels"], "channel_name", CHANNEL)
        .ok_or_else(|| format!("no channel {topic}/{CHANNEL} in /stats"))?;
    Ok((channel.clone(), num(topic_stats, "depth")))
}

/// The entry of a JSON list whose `key` is `name`.
fn named<'a>(list: &'a serde_json::Value, key: &str, name: &str) -> Option<&'a serde_json::Value> {
    list.as_array()?.iter().find(|v| v[key] == name)
}

/// Polls `/stats` until `check` accepts the channel (and topic depth), for up to 30 s.
async fn wait_stats(
    http_addr: SocketAddr,
    topic: &str,
    what: &str,
    check: impl Fn(&serde_json::Value, i64) -> bool,
) -> Result<(), String> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (channel, topic_depth) = channel_stats(http_addr, topic).await?;
        if check(&channel, topic_depth) {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(format!(
                "{topic}: {what} not reached; topic depth {topic_depth}, channel {channel}"
            ));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn num(v: &serde_json::Value, key: &str) -> i64 {
    v[key].as_i64().unwrap_or(-1)
}

/// One publish scenario then one consume scenario on a fresh topic; messages per second of each.
async fn run_pair(
    tcp: SocketAddr,
    http_addr: SocketAddr,
    opts: &Opts,
    topic: &str,
    publishers: usize,
    consumers: usize,
) -> Result<(f64, f64), String> {
    for path in [
        format!("/topic/create?topic={topic}"),
        format!("/channel/create?topic={topic}&channel={CHANNEL}"),
    ] {
        match http::request(http_addr, "POST", &path).await? {
            (200, _) => {}
            (status, body) => return Err(format!("POST {path}: {status} {body}")),
        }
    }
    let topic_name = Topic::new(topic).map_err(|e| e.to_string())?;

    // Publish: the MPUB is encoded once and sent as often as needed.
    let body = Bytes::from(vec![b'x'; opts.size]);
    let mut mpub = BytesMut::new();
    ClientCodec::new()
        .encode(
            Command::Mpub {
                topic: topic_name.clone(),
                bodies: vec![body; opts.batch],
            },
            &mut mpub,
        )
        .map_err(|e| e.to_string())?;
    let mpub = mpub.freeze();
    let batches_total = opts.msgs.div_ceil(opts.batch as u64);
    let start = Arc::new(Barrier::new(publishers + 1));
    let mut tasks = Vec::new();
    for i in 0..publishers as u64 {
        let share =
            batches_total / publishers as u64 + u64::from(i < batches_total % publishers as u64);
        tasks.push(tokio::spawn(publisher(
            tcp,
            mpub.clone(),
            share,
            opts.window as u64,
            start.clone(),
        )));
    }
    start.wait().await;
    let began = Instant::now();
    for task in tasks {
        task.await.map_err(|e| e.to_string())??;
    }
    let pub_secs = began.elapsed().as_secs_f64();
    let published = batches_total * opts.batch as u64;

    // Every message must be in memory on the channel before consuming starts.
    let expect = published as i64;
    wait_stats(http_addr, topic, "full channel in memory", |c, td| {
        td == 0 && num(c, "depth") == expect && num(c, "backend_depth") == 0
    })
    .await?;

    // Consume.
    let progress = Arc::new(Progress {
        received: AtomicU64::new(0),
        redelivered: AtomicU64::new(0),
        expected: published,
        done: CancellationToken::new(),
    });
    let start = Arc::new(Barrier::new(consumers + 1));
    let mut tasks = Vec::new();
    for _ in 0..consumers {
        tasks.push(tokio::spawn(consumer(
            tcp,
            topic_name.clone(),
            opts.rdy,
            progress.clone(),
            start.clone(),
        )));
    }
    start.wait().await;
    let began = Instant::now();
    progress.done.cancelled().await;
    let sub_secs = began.elapsed().as_secs_f64();
    let mut streams = Vec::new();
    for task in tasks {
        streams.push(task.await.map_err(|e| e.to_string())??);
    }
    let received = progress.received.load(Ordering::Acquire);
    let redelivered = progress.redelivered.load(Ordering::Relaxed);
    if received != published || redelivered != 0 {
        return Err(format!(
            "{topic}: published {published}, received {received} ({redelivered} redelivered)"
        ));
    }
    wait_stats(http_addr, topic, "empty channel", |c, td| {
        td == 0 && num(c, "depth") == 0 && num(c, "in_flight_count") == 0
    })
    .await?;
    drop(streams);
    match http::request(http_addr, "POST", &format!("/topic/delete?topic={topic}")).await? {
        (200, _) => {}
        (status, body) => return Err(format!("delete {topic}: {status} {body}")),
    }
    Ok((published as f64 / pub_secs, published as f64 / sub_secs))
}

fn rate(v: f64) -> String {
    if v >= 1e6 {
        format!("{:.2} M", v / 1e6)
    } else {
        format!("{:.0} k", v / 1e3)
    }
}

fn main() -> ExitCode {
    let opts = <Opts as clap::Parser>::parse();
    match run(&opts) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("nsq-bench: {err}");
            ExitCode::FAILURE
        }
    }
}

/// Scenario name → broker → samples (messages per second).
type Samples = BTreeMap<(u8, usize), BTreeMap<Kind, Vec<f64>>>;

fn run(opts: &Opts) -> Result<(), String> {
    let gen = runtime(opts.gen_threads, "load-gen")?;
    // Twice the messages of one scenario, and never less than nsqd's default.
    let queue = (opts.msgs + opts.batch as u64) * 2;
    let mut brokers = Vec::new();
    for &kind in &opts.brokers {
        if let Some(running) = start(kind, opts, queue.max(10_000))? {
            brokers.push((kind, running));
        }
    }
    let pairs = opts.pub_conns.len().max(opts.sub_conns.len());
    let mut samples = Samples::new();
    for run in 0..opts.runs {
        // Alternate which broker goes first, so slow drift on a shared machine hits both.
        let mut order: Vec<usize> = (0..brokers.len()).collect();
        if run % 2 == 1 {
            order.reverse();
        }
        for &b in &order {
            let (kind, running) = &brokers[b];
            for j in 0..pairs {
                let p = opts.pub_conns[j % opts.pub_conns.len()];
                let k = opts.sub_conns[j % opts.sub_conns.len()];
                let topic = format!("bench_r{run}_p{p}_c{k}_{j}");
                let (pub_rate, sub_rate) = gen.block_on(run_pair(
                    running.tcp_addr(),
                    running.http_addr(),
                    opts,
                    &topic,
                    p,
                    k,
                ))?;
                eprintln!(
                    "run {} {:<16} publish x{p}: {:>10.0} msg/s   consume x{k}: {:>10.0} msg/s",
                    run + 1,
                    kind.name(),
                    pub_rate,
                    sub_rate
                );
                let pubs = samples.entry((0, p)).or_default();
                pubs.entry(*kind).or_default().push(pub_rate);
                let subs = samples.entry((1, k)).or_default();
                subs.entry(*kind).or_default().push(sub_rate);
            }
        }
    }
    for (_, running) in brokers {
        running.stop();
    }

    println!(
        "{} messages of {} B per scenario run, MPUB of {}, {} MPUBs in flight per publisher, \
         RDY {}; median of {} runs (all runs in brackets)\n",
        opts.msgs, opts.size, opts.batch, opts.window, opts.rdy, opts.runs
    );
    println!("| Scenario | Broker | msgs/s (median) | runs | lite / nsqd |");
    println!("|---|---|---:|---|---:|");
    for ((phase, conns), by_kind) in &mut samples {
        let scenario = match phase {
            0 => format!(
                "publish, {conns} conn{}",
                if *conns == 1 { "" } else { "s" }
            ),
            _ => format!(
                "consume, {conns} conn{}",
                if *conns == 1 { "" } else { "s" }
            ),
        };
        let medians: BTreeMap<Kind, f64> = by_kind
            .iter_mut()
            .map(|(k, v)| (*k, median(v.clone()).unwrap_or(f64::NAN)))
            .collect();
        let ratio = match (medians.get(&Kind::Lite), medians.get(&Kind::Nsqd)) {
            (Some(l), Some(n)) => format!("{:.2}×", l / n),
            _ => "–".to_owned(),
        };
        for (i, (kind, runs)) in by_kind.iter().enumerate() {
            let all: Vec<String> = runs.iter().map(|v| rate(*v)).collect();
            println!(
                "| {} | {} | {} | {} | {} |",
                if i == 0 { scenario.as_str() } else { "" },
                kind.name(),
                rate(medians[kind]),
                all.join(", "),
                if i == 0 { ratio.as_str() } else { "" },
            );
        }
    }
    Ok(())
}
