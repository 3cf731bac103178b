//! One set of raw-protocol scenarios, run against nsq-server-lite and against a real nsqd 1.3.0,
//! asserting that both give the same observable replies.
//!
//! Each scenario drives connections through nsq-proto's `ClientCodec` and writes what it sees
//! into a transcript: frames (message IDs, timestamps and ports normalised away), HTTP statuses
//! and bodies, `/stats` figures and timing checks (a line saying whether a delay fell within its
//! bounds). The lite broker's transcript must equal the expected one, which was taken from real
//! nsqd; when `NSQD_BIN` is set the real nsqd's transcript must equal it too. Scenarios of one
//! test run concurrently, each with its own brokers.
//!
//! Set `CONFORM_PRINT=1` to print every transcript.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::future::BoxFuture;
use futures::{FutureExt, SinkExt, StreamExt};
use nsq_proto::{
    Channel, ClientCodec, Command, Frame, Identify, Message, MessageId, Response, Topic,
};
use nsq_server_lite::auth::{AuthState, Authorization, Permission, StaticAuth};
use nsq_tests::broker::{Broker, BrokerKind, BrokerOpts};
use nsq_tests::http;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio::time::{timeout, Instant};
use tokio_util::codec::Framed;

mod commands;
mod delivery;
mod http_auth;
mod timing;
mod transcripts;

use commands::*;
use delivery::*;
use http_auth::*;
use timing::*;
use transcripts::*;

/// How long any single expected event may take before the scenario gives up on it.
/// (nsqd may take 5 s to start scanning a new channel: see [`until_scanned`].)
const WAIT: Duration = Duration::from_secs(8);

type Conn = Framed<TcpStream, ClientCodec>;
type Log = Vec<String>;
type Run = fn(Broker) -> BoxFuture<'static, Log>;
type Change = fn(&mut Identify);

// ---------------------------------------------------------------------------------------------
// Running a scenario against both brokers
// ---------------------------------------------------------------------------------------------

/// A scenario: its name, its broker settings per kind, its body and the transcript nsqd gives.
struct Case {
    name: &'static str,
    opts: Box<dyn Fn(BrokerKind) -> BrokerOpts + Send + Sync>,
    run: Run,
    want: &'static [&'static str],
}

fn case(name: &'static str, opts: BrokerOpts, run: Run, want: &'static [&'static str]) -> Case {
    Case {
        name,
        opts: Box::new(move |_| opts.clone()),
        run,
        want,
    }
}

async fn transcript(kind: BrokerKind, case: &Case) -> Option<Log> {
    let broker = Broker::start(kind, &(case.opts)(kind)).await?;
    let log = match std::panic::AssertUnwindSafe((case.run)(broker))
        .catch_unwind()
        .await
    {
        Ok(log) => log,
        Err(panic) => {
            let why = panic_text(panic);
            panic!("{} on {}: {why}", case.name, kind.name())
        }
    };
    if std::env::var_os("CONFORM_PRINT").is_some() {
        // One write, so concurrent scenarios do not interleave.
        let lines: String = log.iter().map(|l| format!("    {l:?},\n")).collect();
        eprint!("--- {} on {}:\n{lines}", case.name, kind.name());
    }
    Some(log)
}

/// Runs `case` on both brokers at once and compares their transcripts with the expected one.
async fn conform(case: Case) {
    let (lite, real) = tokio::join!(
        transcript(BrokerKind::Lite, &case),
        transcript(BrokerKind::RealNsqd, &case)
    );
    let lite = lite.expect("the lite broker always runs");
    if let Some(real) = real {
        assert_eq!(real, case.want, "{}: nsqd's transcript", case.name);
    }
    assert_eq!(lite, case.want, "{}: lite's transcript", case.name);
}

fn panic_text(panic: Box<dyn std::any::Any + Send>) -> String {
    panic
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| panic.downcast_ref::<&str>().map(|s| (*s).to_owned()))
        .unwrap_or_default()
}

/// Runs every case concurrently and reports all failures together.
async fn run_all(cases: Vec<Case>) {
    let tasks: Vec<_> = cases
        .into_iter()
        .map(|c| (c.name, tokio::spawn(conform(c))))
        .collect();
    let mut failed = Vec::new();
    for (name, task) in tasks {
        if let Err(err) = task.await {
            let why = match err.try_into_panic() {
                Ok(panic) => panic_text(panic),
                Err(e) => e.to_string(),
            };
            failed.push(format!("{name}: {why}"));
        }
    }
    assert!(
        failed.is_empty(),
        "{} scenario(s) failed:\n{}",
        failed.len(),
        failed.join("\n\n")
    );
}

// ---------------------------------------------------------------------------------------------
// Driving connections
// ---------------------------------------------------------------------------------------------

async fn connect(b: &Broker) -> Conn {
    let mut stream = TcpStream::connect(b.tcp_addr()).await.expect("connect");
    stream.write_all(b"  V2").await.expect("send magic");
    Framed::new(stream, ClientCodec::new())
}

/// Writes raw bytes, past the codec's own checks.
async fn raw(c: &mut Conn, bytes: &[u8]) {
    c.get_mut().write_all(bytes).await.expect("write");
}

async fn send(c: &mut Conn, cmd: Command) {
    c.send(cmd).await.expect("send");
}

/// The next frame: `None` at end of stream (or a reset), panics when none comes in time.
async fn next(c: &mut Conn) -> Option<Frame> {
    match timeout(WAIT, c.next()).await {
        Ok(Some(Ok(frame))) => Some(frame),
        Ok(Some(Err(e))) if is_reset(&e) => None,
        Ok(Some(Err(e))) => panic!("undecodable frame: {e}"),
        Ok(None) => None,
        Err(_) => panic!("no frame within {WAIT:?}"),
    }
}

fn is_reset(e: &nsq_proto::ProtocolError) -> bool {
    matches!(e, nsq_proto::ProtocolError::Io(io) if io.kind() == std::io::ErrorKind::ConnectionReset)
}

/// Renders a frame without what legitimately differs between brokers (IDs, timestamps).
fn render(frame: Option<Frame>) -> String {
    match frame {
        None => "EOF".to_owned(),
        Some(Frame::Response(Response::Ok)) => "OK".to_owned(),
        Some(Frame::Response(Response::CloseWait)) => "CLOSE_WAIT".to_owned(),
        Some(Frame::Response(Response::Heartbeat)) => "_heartbeat_".to_owned(),
        Some(Frame::Response(Response::Data(data))) => {
            format!("DATA {}", String::from_utf8_lossy(&data))
        }
        Some(Frame::Error(err)) => format!("ERR {}", without_ids(&err.to_string())),
        Some(Frame::Message(msg)) => render_msg(&msg),
    }
}

fn render_msg(msg: &Message) -> String {
    format!(
        "MSG attempts={} {}",
        msg.attempts,
        String::from_utf8_lossy(&msg.body)
    )
}

/// Replaces 16-hex-digit message IDs in an error text.
fn without_ids(text: &str) -> String {
    text.split(' ')
        .map(|w| {
            if w.len() == 16 && w.bytes().all(|b| b.is_ascii_hexdigit()) {
                "<id>"
            } else {
                w
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// Sends `cmd` and renders the reply.
async fn reply(c: &mut Conn, cmd: Command) -> String {
    send(c, cmd).await;
    render(next(c).await)
}

/// Writes raw bytes and renders the reply.
async fn reply_raw(c: &mut Conn, bytes: &[u8]) -> String {
    raw(c, bytes).await;
    render(next(c).await)
}

/// The next frame, which must be a message.
async fn message(c: &mut Conn) -> Message {
    match next(c).await {
        Some(Frame::Message(msg)) => msg,
        other => panic!("wanted a message, got {}", render(other)),
    }
}

/// Asserts that nothing arrives for `period`; renders what did otherwise.
async fn quiet(c: &mut Conn, period: Duration) -> String {
    match timeout(period, c.next()).await {
        Err(_) => "quiet".to_owned(),
        Ok(Some(Ok(frame))) => format!("not quiet: {}", render(Some(frame))),
        Ok(_) => "not quiet: EOF".to_owned(),
    }
}

/// Whether the connection still takes commands: a PUB to a side topic answers OK, or EOF.
async fn alive(c: &mut Conn) -> String {
    let topic = Topic::new("probe").expect("valid name");
    format!(
        "probe: {}",
        reply(
            c,
            Command::Pub {
                topic,
                body: Bytes::from_static(b"p")
            }
        )
        .await
    )
}

fn topic(name: &str) -> Topic {
    Topic::new(name).expect("valid topic")
}

fn sub(t: &str, ch: &str) -> Command {
    Command::Sub {
        topic: topic(t),
        channel: Channel::new(ch).expect("valid channel"),
    }
}

fn publish(t: &str, body: &str) -> Command {
    Command::Pub {
        topic: topic(t),
        body: Bytes::from(body.to_owned()),
    }
}

fn mpub(t: &str, bodies: &[&str]) -> Command {
    Command::Mpub {
        topic: topic(t),
        bodies: bodies
            .iter()
            .map(|b| Bytes::from((*b).to_owned()))
            .collect(),
    }
}

fn identify(change: impl FnOnce(&mut Identify)) -> Command {
    let mut id = Identify::new("conformance", "host", "nsq-tests");
    change(&mut id);
    Command::Identify(Box::new(id))
}

/// A command line with a size-prefixed body.
fn with_body(line: &str, body: &[u8]) -> Vec<u8> {
    let len = u32::try_from(body.len()).expect("small body");
    [line.as_bytes(), &len.to_be_bytes(), body].concat()
}

/// A connection subscribed to `t/ch` (after a negotiating IDENTIFY changed by `change`).
async fn consumer(
    b: &Broker,
    t: &str,
    ch: &str,
    change: impl FnOnce(&mut Identify),
    log: &mut Log,
) -> Conn {
    let mut c = connect(b).await;
    let identified = reply(&mut c, identify(change)).await;
    assert!(identified.starts_with("DATA "), "IDENTIFY: {identified}");
    log.push(format!("SUB {t} {ch}: {}", reply(&mut c, sub(t, ch)).await));
    c
}

/// Publishes on a fresh connection and logs the reply.
async fn publish_all(b: &Broker, cmd: Command, log: &mut Log) {
    let mut p = connect(b).await;
    log.push(format!(
        "{}: {}",
        cmd.verb().as_str(),
        reply(&mut p, cmd).await
    ));
}

/// `elapsed` within `[lo, hi]`, as a transcript line.
fn within(what: &str, elapsed: Duration, lo: Duration, hi: Duration) -> String {
    if elapsed >= lo && elapsed <= hi {
        format!("{what}: within [{lo:?}, {hi:?}]")
    } else {
        format!("{what}: {elapsed:?} outside [{lo:?}, {hi:?}]")
    }
}

/// Polls `check` (every 20 ms) until it holds; whether it did within [`WAIT`].
async fn eventually<F, Fut>(mut check: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let poll = async {
        let mut tick = tokio::time::interval(Duration::from_millis(20));
        loop {
            tick.tick().await;
            if check().await {
                return;
            }
        }
    };
    timeout(WAIT, poll).await.is_ok()
}

// ---------------------------------------------------------------------------------------------
// Stats
// ---------------------------------------------------------------------------------------------

/// The figures of `/stats?format=json` both brokers must agree on, for one topic.
async fn stats_of(b: &Broker, t: &str) -> Log {
    let stats = b.stats().await.expect("stats");
    let Some(topic) = stats.topic(t) else {
        return vec![format!("topic {t}: absent")];
    };
    let mut out = vec![format!(
        "topic {} depth={} messages={} bytes={} paused={}",
        topic.topic_name, topic.depth, topic.message_count, topic.message_bytes, topic.paused
    )];
    for ch in &topic.channels {
        out.push(format!(
            "  channel {} depth={} in_flight={} deferred={} messages={} requeued={} timed_out={} clients={} paused={}",
            ch.channel_name,
            ch.depth,
            ch.in_flight_count,
            ch.deferred_count,
            ch.message_count,
            ch.requeue_count,
            ch.timeout_count,
            ch.client_count,
            ch.paused
        ));
        let mut clients: Vec<String> = ch
            .clients
            .iter()
            .map(|c| {
                format!(
                    "    client {} state={} ready={} in_flight={} messages={} finished={} requeued={} authed={}",
                    c.client_id,
                    c.state,
                    c.ready_count,
                    c.in_flight_count,
                    c.message_count,
                    c.finish_count,
                    c.requeue_count,
                    c.authed
                )
            })
            .collect();
        clients.sort();
        out.extend(clients);
    }
    out
}

// ---------------------------------------------------------------------------------------------
// The tests
// ---------------------------------------------------------------------------------------------

fn limits() -> BrokerOpts {
    BrokerOpts {
        max_msg_size: Some(100),
        max_body_size: Some(1000),
        max_rdy_count: Some(10),
        ..BrokerOpts::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commands_answer_like_nsqd() {
    run_all(vec![
        case(
            "bad magic",
            BrokerOpts::default(),
            |b| bad_magic(b).boxed(),
            BAD_MAGIC,
        ),
        case(
            "IDENTIFY",
            BrokerOpts::default(),
            |b| identify_replies(b).boxed(),
            IDENTIFY,
        ),
        case(
            "IDENTIFY JSON depth",
            BrokerOpts::default(),
            |b| identify_json_depth(b).boxed(),
            IDENTIFY_JSON_DEPTH,
        ),
        case(
            "truncated commands",
            BrokerOpts::default(),
            |b| truncated_commands(b).boxed(),
            TRUNCATED,
        ),
        case(
            "hostile sizes and parameters",
            BrokerOpts::default(),
            |b| hostile_sizes(b).boxed(),
            HOSTILE_SIZES,
        ),
        case(
            "SUB",
            BrokerOpts::default(),
            |b| sub_commands(b).boxed(),
            SUB,
        ),
        case(
            "PUB, MPUB, DPUB",
            limits(),
            |b| publish_commands(b).boxed(),
            PUBLISH,
        ),
        case("RDY", limits(), |b| rdy_commands(b).boxed(), RDY),
        case(
            "FIN, REQ, TOUCH",
            BrokerOpts::default(),
            |b| fin_req_touch(b).boxed(),
            FIN_REQ_TOUCH,
        ),
        case("CLS", BrokerOpts::default(), |b| cls(b).boxed(), CLS),
        case(
            "NOP and unknown",
            BrokerOpts::default(),
            |b| nop_and_unknown(b).boxed(),
            NOP_UNKNOWN,
        ),
    ])
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delivery_matches_nsqd() {
    run_all(vec![
        case(
            "RDY window",
            BrokerOpts::default(),
            |b| rdy_window(b).boxed(),
            RDY_WINDOW,
        ),
        case(
            "shared channel",
            BrokerOpts::default(),
            |b| consumers_share_a_channel(b).boxed(),
            SHARED,
        ),
        case(
            "fan-out",
            BrokerOpts::default(),
            |b| channels_each_get_everything(b).boxed(),
            FANOUT,
        ),
        case(
            "topic holds",
            BrokerOpts::default(),
            |b| topic_holds_until_first_channel(b).boxed(),
            HOLDS,
        ),
        case(
            "stats",
            BrokerOpts::default(),
            |b| stats_after_a_conversation(b).boxed(),
            STATS,
        ),
        case(
            "ephemeral",
            BrokerOpts::default(),
            |b| ephemeral(b).boxed(),
            EPHEMERAL,
        ),
        case(
            "pause, empty, delete",
            BrokerOpts::default(),
            |b| pause_empty_delete(b).boxed(),
            PAUSE,
        ),
    ])
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn timing_matches_nsqd() {
    run_all(vec![
        case(
            "requeue",
            BrokerOpts::default(),
            |b| requeue(b).boxed(),
            REQUEUE,
        ),
        case(
            "msg timeout",
            BrokerOpts::default(),
            |b| msg_timeout(b).boxed(),
            MSG_TIMEOUT,
        ),
        case("TOUCH", BrokerOpts::default(), |b| touch(b).boxed(), TOUCH),
        case(
            "heartbeats",
            BrokerOpts::default(),
            |b| heartbeats(b).boxed(),
            HEARTBEATS,
        ),
        case(
            "TOUCH capped",
            BrokerOpts {
                max_msg_timeout: Some(ms(1200)),
                ..BrokerOpts::default()
            },
            |b| touch_capped(b).boxed(),
            TOUCH_CAPPED,
        ),
        case(
            "DPUB",
            BrokerOpts::default(),
            |b| dpub_timing(b).boxed(),
            DPUB,
        ),
    ])
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_api_matches_nsqd() {
    run_all(vec![case(
        "HTTP API",
        limits(),
        |b| http_api(b).boxed(),
        HTTP_API,
    )])
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auth_matches_nsqd() {
    let service = auth_service().await;
    let lite_auth = Arc::new(StaticAuth::new().with_secret(SECRET, grants()));
    let required = Case {
        name: "AUTH required",
        opts: Box::new(move |kind| match kind {
            BrokerKind::Lite => BrokerOpts {
                lite_auth: Some(lite_auth.clone()),
                ..BrokerOpts::default()
            },
            BrokerKind::RealNsqd => BrokerOpts {
                auth_http_address: Some(service.to_string()),
                ..BrokerOpts::default()
            },
        }),
        run: |b| auth_required(b).boxed(),
        want: AUTH_REQUIRED,
    };
    run_all(vec![
        case(
            "AUTH disabled",
            BrokerOpts::default(),
            |b| auth_disabled(b).boxed(),
            AUTH_DISABLED,
        ),
        required,
    ])
    .await;
}
