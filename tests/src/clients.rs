//! Runs the third-party NSQ client peers in `tests/peers/` (go-nsq, pynsq, nsqjs).
//!
//! All three take one command line (see `tests/peers/go/cmd/nsq-peer/main.go`) and print
//! one JSON report line on stdout, which [`PeerRun::run`] parses into a [`PeerReport`].
//! A `sub` run with [`PeerRun::hold`] reports first and keeps its connections until
//! [`RunningPeer::finish`], so a test can read the broker's per-client stats meanwhile.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, BufReader, Lines};
use tokio::process::{Child, ChildStdout, Command};

use crate::peer_or_skip;

/// How much longer than its own `--timeout` a peer may take before it is killed.
const GRACE: Duration = Duration::from_secs(10);
/// How many of a peer's last stderr lines go into error messages.
const STDERR_TAIL: usize = 30;

/// A third-party client peer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientPeer {
    /// go-nsq v1.1.0: `NSQ_GO_PEER` (built by `scripts/install-peers.sh`).
    GoNsq,
    /// pynsq 0.9.1: `tests/peers/python/peer.py` run by `NSQ_PYTHON`.
    Pynsq,
    /// nsqjs 0.13.0: `tests/peers/js/peer.js` run by `node` with `NSQ_NODE_PATH`.
    Nsqjs,
}

impl ClientPeer {
    /// Every peer.
    pub const ALL: [Self; 3] = [Self::GoNsq, Self::Pynsq, Self::Nsqjs];

    /// The name the peer reports as `client`.
    pub fn name(self) -> &'static str {
        match self {
            Self::GoNsq => "go-nsq",
            Self::Pynsq => "pynsq",
            Self::Nsqjs => "nsqjs",
        }
    }

    /// The `user_agent` prefix the client sends in IDENTIFY (as nsqd's stats show it).
    pub fn user_agent_prefix(self) -> &'static str {
        match self {
            Self::GoNsq => "go-nsq/",
            Self::Pynsq => "pynsq/",
            Self::Nsqjs => "nsqjs/",
        }
    }

    /// The command that runs the peer, or `None` (skip) when it is not installed; see
    /// [`peer_or_skip`].
    ///
    /// # Panics
    ///
    /// When the peer is missing under CI.
    pub fn command(self) -> Option<Command> {
        let peers = Path::new(env!("CARGO_MANIFEST_DIR")).join("peers");
        Some(match self {
            Self::GoNsq => Command::new(peer_or_skip("NSQ_GO_PEER")?),
            Self::Pynsq => {
                let mut cmd = Command::new(peer_or_skip("NSQ_PYTHON")?);
                cmd.arg(peers.join("python/peer.py"));
                cmd
            }
            Self::Nsqjs => {
                let mut cmd = Command::new("node");
                cmd.env("NODE_PATH", peer_or_skip("NSQ_NODE_PATH")?)
                    .arg(peers.join("js/peer.js"));
                cmd
            }
        })
    }
}

/// What a peer run does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PeerMode {
    /// Publish `count` numbered messages.
    Pub,
    /// Consume until `count` distinct messages were seen.
    Sub,
    /// Both, in that order.
    Both,
}

impl PeerMode {
    fn arg(self) -> &'static str {
        match self {
            Self::Pub => "pub",
            Self::Sub => "sub",
            Self::Both => "both",
        }
    }
}

/// The JSON line a peer prints at the end.
#[derive(Debug, Clone, PartialEq)]
pub struct PeerReport {
    /// `go-nsq`, `pynsq` or `nsqjs`.
    pub client: String,
    /// Messages acknowledged by the broker.
    pub published: u64,
    /// Messages delivered, duplicates included.
    pub received: u64,
    /// Distinct message indexes delivered.
    pub distinct: u64,
    /// Deliveries of an index seen before.
    pub duplicates: u64,
    /// The peer's own wall time.
    pub seconds: f64,
    /// The peer's failure message, if it failed.
    pub error: Option<String>,
}

impl PeerReport {
    fn parse(line: &str) -> Result<Self, String> {
        let v: serde_json::Value =
            serde_json::from_str(line).map_err(|e| format!("report {line:?}: {e}"))?;
        let count = |k: &str| {
            v[k].as_u64()
                .ok_or_else(|| format!("report {line:?}: no count {k:?}"))
        };
        Ok(Self {
            client: v["client"].as_str().unwrap_or_default().to_owned(),
            published: count("published")?,
            received: count("received")?,
            distinct: count("distinct")?,
            duplicates: count("duplicates")?,
            seconds: v["seconds"].as_f64().unwrap_or_default(),
            error: v["error"].as_str().map(str::to_owned),
        })
    }
}

/// TLS settings for a peer.
#[derive(Debug, Clone)]
pub struct PeerTls {
    /// PEM file of the CA that signed the broker's certificate.
    pub ca: PathBuf,
    /// The name to verify (only go-nsq can set it; see the peers' headers).
    pub server_name: Option<String>,
}

/// One run of a peer; build it, then [`run`](Self::run) or [`spawn`](Self::spawn) it.
#[derive(Debug, Clone)]
pub struct PeerRun {
    client: ClientPeer,
    mode: PeerMode,
    topic: String,
    channel: String,
    count: u64,
    nsqd_tcp: Vec<SocketAddr>,
    lookupd_http: Vec<SocketAddr>,
    body_size: usize,
    max_in_flight: u32,
    timeout: Duration,
    tls: Option<PeerTls>,
    snappy: bool,
    deflate: bool,
    hold: bool,
}

impl PeerRun {
    /// A run of `client` in `mode` for `count` messages on `topic`/`channel`; it
    /// connects to nothing until given [`nsqd`](Self::nsqd) or [`lookupd`](Self::lookupd).
    pub fn new(client: ClientPeer, mode: PeerMode, topic: &str, channel: &str, count: u64) -> Self {
        Self {
            client,
            mode,
            topic: topic.to_owned(),
            channel: channel.to_owned(),
            count,
            nsqd_tcp: Vec::new(),
            lookupd_http: Vec::new(),
            body_size: 16,
            max_in_flight: 200,
            timeout: Duration::from_secs(60),
            tls: None,
            snappy: false,
            deflate: false,
            hold: false,
        }
    }

    /// Adds an nsqd TCP address (publishers use the first).
    pub fn nsqd(mut self, addr: SocketAddr) -> Self {
        self.nsqd_tcp.push(addr);
        self
    }

    /// Adds an nsqlookupd HTTP address (consumers then discover nsqd through it).
    pub fn lookupd(mut self, addr: SocketAddr) -> Self {
        self.lookupd_http.push(addr);
        self
    }

    /// Message body size in bytes.
    pub fn body_size(mut self, bytes: usize) -> Self {
        self.body_size = bytes;
        self
    }

    /// Consumer max in flight.
    pub fn max_in_flight(mut self, n: u32) -> Self {
        self.max_in_flight = n;
        self
    }

    /// The peer's time limit (it is killed 10 s later if still running).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Negotiate TLS.
    pub fn tls(mut self, tls: Option<PeerTls>) -> Self {
        self.tls = tls;
        self
    }

    /// Negotiate snappy.
    pub fn snappy(mut self, on: bool) -> Self {
        self.snappy = on;
        self
    }

    /// Negotiate deflate.
    pub fn deflate(mut self, on: bool) -> Self {
        self.deflate = on;
        self
    }

    /// After the report, keep the connections until [`RunningPeer::finish`].
    pub fn hold(mut self, on: bool) -> Self {
        self.hold = on;
        self
    }

    /// The peer's arguments.
    pub fn args(&self) -> Vec<String> {
        let mut args = vec![self.mode.arg().to_owned()];
        let mut opt = |k: &str, v: String| args.extend([k.to_owned(), v]);
        opt("--topic", self.topic.clone());
        opt("--channel", self.channel.clone());
        opt("--count", self.count.to_string());
        opt("--body-size", self.body_size.to_string());
        opt("--max-in-flight", self.max_in_flight.to_string());
        opt("--timeout", self.timeout.as_secs_f64().to_string());
        for addr in &self.nsqd_tcp {
            opt("--nsqd-tcp", addr.to_string());
        }
        for addr in &self.lookupd_http {
            opt("--lookupd-http", addr.to_string());
        }
        if let Some(tls) = &self.tls {
            opt("--tls-ca", tls.ca.display().to_string());
            if let Some(name) = &tls.server_name {
                opt("--tls-server-name", name.clone());
            }
        }
        let flags = [
            ("--tls", self.tls.is_some()),
            ("--snappy", self.snappy),
            ("--deflate", self.deflate),
            ("--hold", self.hold),
        ];
        args.extend(flags.iter().filter(|f| f.1).map(|f| f.0.to_owned()));
        args
    }

    /// Starts the peer; `None` when it is not installed (skip).
    ///
    /// # Errors
    ///
    /// When the process cannot start.
    pub fn spawn(&self) -> Result<Option<RunningPeer>, String> {
        let Some(mut cmd) = self.client.command() else {
            return Ok(None);
        };
        let args = self.args();
        let what = format!("{} {}", self.client.name(), args.join(" "));
        let mut child = cmd
            .args(&args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| format!("start {what}: {e}"))?;
        // Keep the tail of stderr for error messages; draining it also keeps the peer going.
        let stderr = Arc::new(Mutex::new(Vec::new()));
        let mut lines = BufReader::new(child.stderr.take().expect("piped stderr")).lines();
        let tail = Arc::clone(&stderr);
        tokio::spawn(async move {
            while let Ok(Some(line)) = lines.next_line().await {
                let mut tail = tail.lock().expect("stderr tail");
                if tail.len() == STDERR_TAIL {
                    tail.remove(0);
                }
                tail.push(line);
            }
        });
        let stdout = BufReader::new(child.stdout.take().expect("piped stdout")).lines();
        Ok(Some(RunningPeer {
            what,
            child,
            stdout,
            stderr,
            deadline: tokio::time::Instant::now() + self.timeout + GRACE,
        }))
    }

    /// Runs the peer to the end and returns its report.
    ///
    /// `Ok(None)` means the peer is not installed (skip).
    ///
    /// # Errors
    ///
    /// When the peer fails, exits non-zero, prints no report or overruns its time.
    pub async fn run(&self) -> Result<Option<PeerReport>, String> {
        let Some(mut peer) = self.spawn()? else {
            return Ok(None);
        };
        let report = peer.report().await?;
        peer.finish().await?;
        Ok(Some(report))
    }
}

/// A started peer.
#[derive(Debug)]
pub struct RunningPeer {
    what: String,
    child: Child,
    stdout: Lines<BufReader<ChildStdout>>,
    stderr: Arc<Mutex<Vec<String>>>,
    deadline: tokio::time::Instant,
}

impl RunningPeer {
    /// Waits for the report line.
    ///
    /// # Errors
    ///
    /// When none comes in time or it says the run failed.
    pub async fn report(&mut self) -> Result<PeerReport, String> {
        let line = tokio::time::timeout_at(self.deadline, self.stdout.next_line()).await;
        let report = match line {
            Ok(Ok(Some(line))) => PeerReport::parse(&line).map_err(|e| self.failure(&e))?,
            Ok(Ok(None)) => return Err(self.failure("exited without a report")),
            Ok(Err(e)) => return Err(self.failure(&format!("reading its stdout: {e}"))),
            Err(_) => return Err(self.failure("no report in time")),
        };
        match &report.error {
            Some(error) => Err(self.failure(&format!("reported failure: {error}"))),
            None => Ok(report),
        }
    }

    /// Closes the peer's stdin (ending a hold) and waits for a zero exit.
    ///
    /// # Errors
    ///
    /// When it exits non-zero or overruns its time.
    pub async fn finish(mut self) -> Result<(), String> {
        drop(self.child.stdin.take());
        match tokio::time::timeout_at(self.deadline, self.child.wait()).await {
            Ok(Ok(status)) if status.success() => Ok(()),
            Ok(Ok(status)) => Err(self.failure(&format!("exited with {status}"))),
            Ok(Err(e)) => Err(self.failure(&format!("wait: {e}"))),
            Err(_) => Err(self.failure("did not exit in time")),
        }
    }

    fn failure(&self, why: &str) -> String {
        let tail = self.stderr.lock().expect("stderr tail").join("\n    ");
        format!(
            "{}: {why}\n  its stderr (last lines):\n    {tail}",
            self.what
        )
    }
}
