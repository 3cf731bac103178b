//! What the tools' end-to-end tests share: brokers (lite and real nsqd, through the
//! `nsq-tests` harness), the binaries under test and nsq's Go tools as child processes,
//! publishing, signals, and waiting on the brokers' `/stats`.

#![allow(dead_code)] // each test file uses its own part

use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use bytes::Bytes;
use nsq_client::proto::Topic;
use nsq_client::{Producer, ProducerConfig};
use nsq_tests::broker::{Broker, BrokerKind, BrokerOpts, Lookupd};
use nsq_tests::{eventually, http};
use tokio::io::AsyncWriteExt;
use tokio::process::{Child, Command};

/// How long one tool run or one condition may take.
pub(crate) const WITHIN: Duration = Duration::from_secs(30);
/// How long the cases of one test (every broker kind) may take together.
pub(crate) const CASES_WITHIN: Duration = Duration::from_secs(120);

/// One of this crate's binaries.
pub(crate) fn ours(name: &str) -> PathBuf {
    PathBuf::from(match name {
        "nsq_tail" => env!("CARGO_BIN_EXE_nsq_tail"),
        "to_nsq" => env!("CARGO_BIN_EXE_to_nsq"),
        "nsq_to_file" => env!("CARGO_BIN_EXE_nsq_to_file"),
        "nsq_stat" => env!("CARGO_BIN_EXE_nsq_stat"),
        other => panic!("no binary {other}"),
    })
}

/// A command for `bin` with `args`: no stdin unless asked, stdout and stderr captured, killed
/// when dropped.
pub(crate) fn command(bin: &Path, args: &[String]) -> Command {
    let mut cmd = Command::new(bin);
    cmd.args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    cmd
}

/// What a finished child said.
#[derive(Debug)]
pub(crate) struct Ran {
    pub(crate) status: ExitStatus,
    pub(crate) stdout: String,
    pub(crate) stderr: String,
}

impl Ran {
    pub(crate) fn code(&self) -> Option<i32> {
        self.status.code()
    }

    /// stdout's lines.
    pub(crate) fn lines(&self) -> Vec<String> {
        self.stdout.lines().map(str::to_owned).collect()
    }
}

/// Runs `bin` with `args` and `input` on stdin to its end, within [`WITHIN`].
pub(crate) async fn run(bin: &Path, args: &[String], input: &[u8]) -> Ran {
    let mut cmd = command(bin, args);
    cmd.stdin(Stdio::piped());
    let mut child = cmd
        .spawn()
        .unwrap_or_else(|e| panic!("start {}: {e}", bin.display()));
    let mut stdin = child.stdin.take().expect("piped stdin");
    let input = input.to_vec();
    let writer = tokio::spawn(async move {
        // The tool may stop reading (a failure): a broken pipe is not the test's concern.
        let _ = stdin.write_all(&input).await;
    });
    let ran = wait(child).await;
    let _ = writer.await;
    ran
}

/// Waits for `child` to exit within [`WITHIN`] and collects what it printed.
pub(crate) async fn wait(child: Child) -> Ran {
    let output = tokio::time::timeout(WITHIN, child.wait_with_output())
        .await
        .unwrap_or_else(|_| panic!("the tool did not exit within {WITHIN:?}"))
        .expect("wait for the tool");
    Ran {
        status: output.status,
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

/// Sends `signal` (`INT`, `TERM`, `KILL`, `HUP`) to `child`.
pub(crate) fn signal(child: &Child, signal: &str) {
    let pid = child.id().expect("the child still runs");
    let status = std::process::Command::new("kill")
        .arg(format!("-{signal}"))
        .arg(pid.to_string())
        .status()
        .expect("run kill");
    assert!(status.success(), "kill -{signal} {pid}: {status}");
}

/// A broker of `kind` with `opts`, or `None` when its peer is missing (skip).
pub(crate) async fn broker(kind: BrokerKind, opts: &BrokerOpts) -> Option<Broker> {
    Broker::start(kind, opts).await
}

/// A lookupd and `n` brokers of `kind` registered with it.
pub(crate) async fn cluster(kind: BrokerKind, n: usize) -> Option<(Lookupd, Vec<Broker>)> {
    let lookupd = Lookupd::start(kind).await?;
    let opts = BrokerOpts {
        lookupd_tcp: vec![lookupd.tcp_addr()],
        ..BrokerOpts::default()
    };
    let mut brokers = Vec::new();
    for _ in 0..n {
        brokers.push(Broker::start(kind, &opts).await?);
    }
    Some((lookupd, brokers))
}

/// Creates `topic` on each broker and waits until `lookupd` lists all of them for it.
pub(crate) async fn register_topic(lookupd: &Lookupd, brokers: &[Broker], topic: &str) {
    for broker in brokers {
        let (status, body) = http::request(
            broker.http_addr(),
            "POST",
            &format!("/topic/create?topic={topic}"),
        )
        .await
        .expect("create the topic");
        assert_eq!(status, 200, "{body}");
    }
    let want = brokers.len();
    eventually("nsqlookupd lists the topic's nsqd", WITHIN, || async {
        let answer = http::json(
            lookupd.http_addr(),
            "GET",
            &format!("/lookup?topic={topic}"),
        )
        .await?;
        let found = answer["producers"].as_array().map_or(0, Vec::len);
        if found >= want {
            Ok(())
        } else {
            Err(format!("{found} of {want} listed: {answer}"))
        }
    })
    .await;
}

/// Publishes `bodies` to `topic` on `broker` (MPUB, in order).
pub(crate) async fn publish(broker: &Broker, topic: &str, bodies: &[String]) {
    let producer = Producer::new(broker.tcp_addr().to_string(), ProducerConfig::default())
        .expect("producer config");
    let topic = Topic::new(topic).expect("topic name");
    for chunk in bodies.chunks(500) {
        let batch: Vec<Bytes> = chunk.iter().map(|b| Bytes::from(b.clone())).collect();
        producer
            .multi_publish(&topic, batch)
            .await
            .expect("publish");
    }
    producer.stop().await;
}

/// Publishes `bodies` to `topic` over `broker`'s HTTP API (`/mpub`, newline-separated), for
/// brokers whose TCP port requires TLS.
pub(crate) async fn publish_http(broker: &Broker, topic: &str, bodies: &[String]) {
    let body = bodies.join("\n");
    let (status, answer) = http::request_with_body(
        broker.http_addr(),
        "POST",
        &format!("/mpub?topic={topic}"),
        body.as_bytes(),
    )
    .await
    .expect("POST /mpub");
    assert_eq!(status, 200, "{answer}");
}

/// `n` distinct message bodies, `prefix-0`, `prefix-1`, ...
pub(crate) fn bodies(prefix: &str, n: usize) -> Vec<String> {
    (0..n).map(|i| format!("{prefix}-{i}")).collect()
}

/// The channel's stats on `broker` as JSON (`depth`, `in_flight_count`, `client_count`, ...).
pub(crate) async fn channel(broker: &Broker, topic: &str, channel: &str) -> serde_json::Value {
    broker
        .channel_stats(topic, channel)
        .await
        .unwrap_or_else(|e| panic!("stats of {topic}/{channel}: {e}"))
}

/// Waits until some channel of `topic` on `broker` has a consumer (the tool subscribed), and
/// returns that channel's name.
pub(crate) async fn subscribed(broker: &Broker, topic: &str) -> String {
    eventually("the tool subscribes", WITHIN, || async {
        let stats = broker.topic_stats(topic).await?;
        stats["channels"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|c| {
                c["client_count"].as_u64().unwrap_or(0) > 0
                    || !c["clients"].as_array().is_none_or(Vec::is_empty)
            })
            .and_then(|c| c["channel_name"].as_str().map(str::to_owned))
            .ok_or_else(|| format!("no consumer on {topic}: {stats}"))
    })
    .await
}

/// Waits until the channel holds nothing: no depth, nothing in flight, nothing deferred.
pub(crate) async fn drained(broker: &Broker, topic: &str, chan: &str) {
    eventually("the channel is drained", WITHIN, || async {
        let c = broker.channel_stats(topic, chan).await?;
        let left = c["depth"].as_i64().unwrap_or(-1)
            + c["in_flight_count"].as_i64().unwrap_or(-1)
            + c["deferred_count"].as_i64().unwrap_or(-1);
        if left == 0 {
            Ok(())
        } else {
            Err(format!("{c}"))
        }
    })
    .await;
}

/// A fresh empty directory under the system temp dir, removed on drop.
#[derive(Debug)]
pub(crate) struct TempDir(pub(crate) PathBuf);

impl TempDir {
    pub(crate) fn new(name: &str) -> Self {
        static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("nsq-tools-{name}-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("create a temp dir");
        Self(dir)
    }

    pub(crate) fn path(&self) -> &Path {
        &self.0
    }

    /// The names of the files in it, sorted.
    pub(crate) fn files(&self) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(&self.0)
            .expect("read the dir")
            .map(|e| {
                e.expect("a dir entry")
                    .file_name()
                    .to_string_lossy()
                    .into_owned()
            })
            .collect();
        names.sort();
        names
    }

    /// The lines of every file in it (gzip files decompressed, members concatenated).
    pub(crate) fn lines(&self) -> Vec<String> {
        let mut lines = Vec::new();
        for name in self.files() {
            lines.extend(read_lines(&self.0.join(name)));
        }
        lines
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A file's lines; a `.gz` file is decompressed (all its members).
pub(crate) fn read_lines(path: &Path) -> Vec<String> {
    let raw = std::fs::read(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    let text = if path.extension().is_some_and(|e| e == "gz") {
        use std::io::Read;
        let mut out = String::new();
        flate2::read::MultiGzDecoder::new(&raw[..])
            .read_to_string(&mut out)
            .unwrap_or_else(|e| panic!("gunzip {}: {e}", path.display()));
        out
    } else {
        String::from_utf8(raw).expect("utf-8 lines")
    };
    text.lines().map(str::to_owned).collect()
}

/// `items`, sorted.
pub(crate) fn sorted(mut items: Vec<String>) -> Vec<String> {
    items.sort();
    items
}

/// A TCP port nothing listens on.
pub(crate) fn closed_port() -> u16 {
    nsq_tests::free_port()
}
