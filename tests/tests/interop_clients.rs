//! Third-party NSQ clients against the broker: go-nsq, pynsq and nsqjs each publish and
//! consume 10,000 messages, plain, with TLS, with snappy and with deflate, connecting to
//! the broker directly and discovering it through nsqlookupd.
//!
//! Each cell: start the broker (and nsqlookupd), create the channel over HTTP, `pub`
//! 10,000 numbered messages with the client's producer, `sub` them back with the client's
//! consumer (held connected), then poll the broker's `/stats` until the channel shows
//! every message finished exactly once by clients that negotiated the cell's features.
//!
//! Every cell runs against both brokers: nsq-server-lite (with its lookupd) and real nsqd
//! (with real nsqlookupd). One test per client and broker runs its eight cells concurrently
//! (at most [`JOBS`] cells at once across tests), and a failure lists every failed cell by
//! name.
//!
//! Needs the peers (`NSQ_GO_PEER`, `NSQ_PYTHON`, `NSQ_NODE_PATH`) from
//! `scripts/install-peers.sh`, and for the real broker `NSQD_BIN` and `NSQLOOKUPD_BIN`;
//! skipped without them unless `CI` is set.
//! `NSQ_INTEROP_CASES=substring` runs only the matching cells, e.g. `pynsq/deflate`.
//!
//! What each client can do was checked in its source: all three negotiate TLS (with a CA
//! file), snappy (pynsq via python-snappy, nsqjs via the optional `snappystream`) and
//! deflate, so no cell is skipped. Only go-nsq can set the TLS server name; pynsq and
//! nsqjs verify the connect host (pynsq checks the chain only), hence the certificate
//! names both `localhost` and `127.0.0.1`. pynsq needs a one-line shim to read compressed
//! streams at all (see `tests/peers/python/peer.py`).

use std::time::{Duration, Instant};

use nsq_tests::broker::{Broker, BrokerKind, BrokerOpts, BrokerTls, Lookupd};
use nsq_tests::clients::{ClientPeer, PeerMode, PeerRun, PeerTls};
use nsq_tests::http;
use nsq_tests::tls::{TestCerts, SERVER_NAME};
use serde_json::Value;
use tokio::sync::Semaphore;

/// Messages per cell.
const COUNT: u64 = 10_000;
/// Each peer run's own time limit.
const PEER_TIMEOUT: Duration = Duration::from_secs(60);
/// How long the broker's stats (or nsqlookupd's registration) may take to settle.
const SETTLE_TIMEOUT: Duration = Duration::from_secs(15);
/// How often stats are polled while waiting for them to settle.
const POLL: Duration = Duration::from_millis(20);
/// Cells running at once, across all tests of this binary (2 cores: the peers are mostly
/// waiting on each other, so a little more than one per core).
const JOBS: usize = 4;
static SLOTS: Semaphore = Semaphore::const_new(JOBS);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Feature {
    Plain,
    Tls,
    Snappy,
    Deflate,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Discovery {
    Direct,
    Lookupd,
}

#[derive(Debug, Clone, Copy)]
struct Case {
    broker: BrokerKind,
    client: ClientPeer,
    feature: Feature,
    discovery: Discovery,
}

impl Case {
    fn name(&self) -> String {
        format!(
            "{}/{}/{}/{}",
            self.broker.name(),
            self.client.name(),
            format!("{:?}", self.feature).to_lowercase(),
            format!("{:?}", self.discovery).to_lowercase()
        )
    }

    /// Why this client cannot run this cell, if it cannot. Every cell is supported today
    /// (see the module docs); a client limitation goes here, with its reason.
    fn unsupported(&self) -> Option<&'static str> {
        None
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn go_nsq_with_lite() {
    run_client(BrokerKind::Lite, ClientPeer::GoNsq).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pynsq_with_lite() {
    run_client(BrokerKind::Lite, ClientPeer::Pynsq).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nsqjs_with_lite() {
    run_client(BrokerKind::Lite, ClientPeer::Nsqjs).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn go_nsq_with_real_nsqd() {
    run_client(BrokerKind::RealNsqd, ClientPeer::GoNsq).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pynsq_with_real_nsqd() {
    run_client(BrokerKind::RealNsqd, ClientPeer::Pynsq).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nsqjs_with_real_nsqd() {
    run_client(BrokerKind::RealNsqd, ClientPeer::Nsqjs).await;
}

/// Runs the client's eight cells concurrently; panics listing every failed cell.
async fn run_client(broker: BrokerKind, client: ClientPeer) {
    // Check every prerequisite up front, so a skip is one message, not eight.
    if !broker.available() || client.command().is_none() {
        return;
    }
    let filter = std::env::var("NSQ_INTEROP_CASES").unwrap_or_default();
    let certs = std::sync::Arc::new(TestCerts::generate());
    let mut cells = Vec::new();
    for feature in [
        Feature::Plain,
        Feature::Tls,
        Feature::Snappy,
        Feature::Deflate,
    ] {
        for discovery in [Discovery::Direct, Discovery::Lookupd] {
            let case = Case {
                broker,
                client,
                feature,
                discovery,
            };
            if !case.name().contains(&filter) {
                continue;
            }
            if let Some(reason) = case.unsupported() {
                eprintln!("{}: SKIPPED: {reason}", case.name());
                continue;
            }
            let certs = std::sync::Arc::clone(&certs);
            cells.push((
                case.name(),
                tokio::spawn(async move {
                    let _slot = SLOTS.acquire().await.expect("semaphore open");
                    run_case(case, &certs).await
                }),
            ));
        }
    }
    let mut failures = Vec::new();
    for (name, cell) in cells {
        match cell.await {
            Ok(Ok(summary)) => eprintln!("{name}: ok: {summary}"),
            Ok(Err(e)) => failures.push(format!("{name}: {e}")),
            Err(e) => failures.push(format!("{name}: panicked: {e}")),
        }
    }
    assert!(
        failures.is_empty(),
        "{} cell(s) failed:\n\n{}",
        failures.len(),
        failures.join("\n\n")
    );
}

/// One cell; returns a one-line summary, or what went wrong.
async fn run_case(case: Case, certs: &TestCerts) -> Result<String, String> {
    let t0 = Instant::now();
    let lookupd = match case.discovery {
        Discovery::Direct => None,
        Discovery::Lookupd => Some(
            Lookupd::start(case.broker)
                .await
                .ok_or("NSQLOOKUPD_BIN vanished")?,
        ),
    };
    let tls = case.feature == Feature::Tls;
    let opts = BrokerOpts {
        tls: tls.then(|| BrokerTls::server(certs)),
        lookupd_tcp: lookupd.iter().map(Lookupd::tcp_addr).collect(),
        ..BrokerOpts::default()
    };
    let broker = Broker::start(case.broker, &opts)
        .await
        .ok_or("broker binary vanished")?;
    let (topic, channel) = ("interop", "interop-ch");
    broker.create_channel(topic, channel).await?;

    let peer = |mode| {
        PeerRun::new(case.client, mode, topic, channel, COUNT)
            .timeout(PEER_TIMEOUT)
            .tls(tls.then(|| PeerTls {
                ca: certs.ca_cert.clone(),
                server_name: Some(SERVER_NAME.to_owned()),
            }))
            .snappy(case.feature == Feature::Snappy)
            .deflate(case.feature == Feature::Deflate)
    };
    let published = peer(PeerMode::Pub)
        .nsqd(broker.tcp_addr())
        .run()
        .await?
        .ok_or("peer vanished")?;
    if published.published != COUNT {
        return Err(format!("published {} of {COUNT}", published.published));
    }
    let t_pub = t0.elapsed();

    let sub = match &lookupd {
        None => peer(PeerMode::Sub).nsqd(broker.tcp_addr()),
        Some(lookupd) => {
            wait_registered(lookupd, topic, &broker).await?;
            peer(PeerMode::Sub).lookupd(lookupd.http_addr())
        }
    };
    let mut consumer = sub.hold(true).spawn()?.ok_or("peer vanished")?;
    let received = consumer.report().await?;
    if (received.received, received.distinct) != (COUNT, COUNT) {
        return Err(format!(
            "received {} ({} distinct, {} duplicates), want {COUNT} distinct, no duplicates",
            received.received, received.distinct, received.duplicates
        ));
    }
    let stats = wait_all_finished(&broker, topic, channel, case).await?;
    consumer.finish().await?;
    Ok(format!(
        "pub {:.2}s, sub {:.2}s (peer-reported), cell {:.2}s (pub done at {:.2}s); {}",
        published.seconds,
        received.seconds,
        t0.elapsed().as_secs_f64(),
        t_pub.as_secs_f64(),
        stats
    ))
}

/// Waits until nsqlookupd lists the broker as a producer of `topic`.
async fn wait_registered(lookupd: &Lookupd, topic: &str, broker: &Broker) -> Result<(), String> {
    let path = format!("/lookup?topic={topic}");
    let port = broker.tcp_addr().port();
    let mut last = String::new();
    let deadline = Instant::now() + SETTLE_TIMEOUT;
    let mut tick = tokio::time::interval(POLL);
    while Instant::now() < deadline {
        tick.tick().await;
        match http::json(lookupd.http_addr(), "GET", &path).await {
            Ok(v) => {
                let producers = v["producers"].as_array().cloned().unwrap_or_default();
                if producers.iter().any(|p| p["tcp_port"] == port) {
                    return Ok(());
                }
                last = v.to_string();
            }
            // 404 TOPIC_NOT_FOUND until nsqd's registration arrives.
            Err(e) => last = e,
        }
    }
    Err(format!(
        "nsqlookupd did not list the broker (tcp port {port}) for {topic} within {SETTLE_TIMEOUT:?}; last: {last}"
    ))
}

/// Polls the channel's stats until every message was finished once with nothing left
/// over, and checks that the consumer negotiated the cell's features. Returns a summary.
async fn wait_all_finished(
    broker: &Broker,
    topic: &str,
    channel: &str,
    case: Case,
) -> Result<String, String> {
    let deadline = Instant::now() + SETTLE_TIMEOUT;
    let mut tick = tokio::time::interval(POLL);
    let mut problems;
    loop {
        tick.tick().await;
        let ch = broker.channel_stats(topic, channel).await?;
        problems = channel_problems(&ch, case);
        if problems.is_empty() {
            let clients = ch["clients"].as_array().cloned().unwrap_or_default();
            let agents: Vec<&str> = clients
                .iter()
                .filter_map(|c| c["user_agent"].as_str())
                .collect();
            return Ok(format!("stats ok, consumer user agent {agents:?}"));
        }
        if Instant::now() >= deadline {
            return Err(format!(
                "broker stats did not settle within {SETTLE_TIMEOUT:?}: {}\n  channel stats: {ch}",
                problems.join("; ")
            ));
        }
    }
}

/// What is wrong with the channel stats, if anything.
fn channel_problems(ch: &Value, case: Case) -> Vec<String> {
    let mut problems = Vec::new();
    let mut want = |field: &str, value: u64| {
        if ch[field].as_u64() != Some(value) {
            problems.push(format!("{field} = {}, want {value}", ch[field]));
        }
    };
    want("message_count", COUNT);
    want("depth", 0);
    want("in_flight_count", 0);
    want("deferred_count", 0);
    want("requeue_count", 0);
    want("timeout_count", 0);
    let clients = ch["clients"].as_array().cloned().unwrap_or_default();
    let finished: u64 = clients
        .iter()
        .filter_map(|c| c["finish_count"].as_u64())
        .sum();
    if finished != COUNT {
        problems.push(format!(
            "clients' finish_count sum = {finished}, want {COUNT}"
        ));
    }
    if clients.is_empty() {
        problems.push("no consumer connected".to_owned());
    }
    for c in &clients {
        let agent = c["user_agent"].as_str().unwrap_or_default();
        if !agent.starts_with(case.client.user_agent_prefix()) {
            problems.push(format!("a client with user agent {agent:?} is connected"));
        }
        for (flag, on) in [
            ("tls", case.feature == Feature::Tls),
            ("snappy", case.feature == Feature::Snappy),
            ("deflate", case.feature == Feature::Deflate),
        ] {
            if c[flag].as_bool() != Some(on) {
                problems.push(format!("client {agent}: {flag} = {}, want {on}", c[flag]));
            }
        }
    }
    problems
}
