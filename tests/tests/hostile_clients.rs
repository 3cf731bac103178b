//! nsq-server-lite and real nsqd 1.3.0 facing hostile clients (slowloris and kin): none may
//! starve the other clients, nor make the broker buffer without bound. What nsqd 1.3.0 does
//! (`nsqd/tcp.go`, `nsqd/protocol_v2.go`), and lite with it:
//!
//! * A client that connects and says nothing, not even the 4-byte magic, is kept for as long
//!   as it stays: nsqd reads the magic (`io.ReadFull` on the bare connection) with no deadline.
//! * From the magic on, each command, line and body, must arrive within two heartbeat
//!   intervals (the client's, from IDENTIFY; half of nsqd's 60 s client timeout before it):
//!   nsqd sets the read deadline before each command, so a client that dribbles one a byte at
//!   a time gets no more time for it. At the deadline the connection is closed, with nothing
//!   said but the heartbeats sent meanwhile.
//! * A command line is read into a 16 KiB buffer (`bufio.Reader.ReadSlice`): a line of up to
//!   16 384 bytes, newline included, is read (an unknown one is answered `E_INVALID`); 16 384
//!   bytes with no newline close the connection without a word ("bufio: buffer full").
//!
//! Each test runs against both brokers (the real one is skipped without `NSQD_BIN` and
//! `NSQLOOKUPD_BIN`, unless `CI` is set).

use std::time::{Duration, Instant};

use bytes::BytesMut;
use futures::StreamExt;
use nsq_proto::{ClientCodec, Command, ErrorCode, Frame, Identify, Response, Topic, MAGIC_V2};
use nsq_tests::broker::{Broker, BrokerKind, BrokerOpts};
use tokio::io::AsyncWriteExt;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;
use tokio_util::codec::FramedRead;

const WAIT: Duration = Duration::from_secs(10);
/// Slack on top of a deadline, for a loaded machine.
const SLACK: Duration = Duration::from_millis(1500);
/// How long a well-behaved client may wait for its `OK` while a hostile one is connected.
const SERVED_WITHIN: Duration = Duration::from_secs(1);

/// Runs `case` for every broker kind at once, within 30 s.
async fn each_kind<F, Fut>(case: F)
where
    F: Fn(BrokerKind) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    nsq_tests::broker::each_kind(Duration::from_secs(30), case).await;
}

/// A connection driven by hand: frames read with the codec, bytes written raw.
struct Raw {
    rd: FramedRead<OwnedReadHalf, ClientCodec>,
    wr: OwnedWriteHalf,
}

/// Connects, and sends the magic when asked to.
async fn raw(broker: &Broker, magic: bool) -> Raw {
    let mut stream = TcpStream::connect(broker.tcp_addr())
        .await
        .expect("connect");
    if magic {
        stream.write_all(&MAGIC_V2).await.expect("magic");
    }
    let (rd, wr) = stream.into_split();
    Raw {
        rd: FramedRead::new(rd, ClientCodec::new()),
        wr,
    }
}

fn wire(cmd: &Command) -> Vec<u8> {
    let mut buf = BytesMut::new();
    cmd.encode(&mut buf).expect("encodes");
    buf.to_vec()
}

fn publish(topic: &str, body: &'static str) -> Vec<u8> {
    wire(&Command::Pub {
        topic: Topic::new(topic).expect("valid"),
        body: body.into(),
    })
}

/// The next frame other than a heartbeat; `None` once the broker closed the connection.
async fn next_said(rd: &mut FramedRead<OwnedReadHalf, ClientCodec>) -> Option<Frame> {
    loop {
        match tokio::time::timeout(WAIT, rd.next())
            .await
            .expect("a frame or a close in time")
        {
            Some(Ok(Frame::Response(Response::Heartbeat))) => continue,
            Some(Ok(frame)) => return Some(frame),
            // A reset is a close too: the broker closed with our bytes unread.
            None | Some(Err(_)) => return None,
        }
    }
}

/// Waits for the broker to close the connection; panics on anything it says but heartbeats.
async fn until_closed(what: &str, rd: &mut FramedRead<OwnedReadHalf, ClientCodec>) {
    if let Some(frame) = next_said(rd).await {
        panic!("{what}: the broker said {frame:?} instead of closing without a word");
    }
}

/// Whether the connection stays open and silent (heartbeats aside) for `period`.
async fn quiet_for(period: Duration, rd: &mut FramedRead<OwnedReadHalf, ClientCodec>) -> bool {
    let end = tokio::time::Instant::now() + period;
    loop {
        match tokio::time::timeout_at(end, rd.next()).await {
            Err(_) => return true,
            Ok(Some(Ok(Frame::Response(Response::Heartbeat)))) => continue,
            Ok(_) => return false,
        }
    }
}

/// A well-behaved client: a fresh connection that publishes once; returns how long its `OK`
/// took.
async fn served(what: &str, broker: &Broker, topic: &str) -> Duration {
    let started = Instant::now();
    let mut c = raw(broker, true).await;
    c.wr.write_all(&publish(topic, "well behaved"))
        .await
        .expect("write");
    match next_said(&mut c.rd).await {
        Some(Frame::Response(Response::Ok)) => {}
        other => panic!("{what}: a fresh PUB got {other:?}"),
    }
    let took = started.elapsed();
    assert!(
        took <= SERVED_WITHIN,
        "{what}: a fresh PUB took {took:?} beside the hostile client"
    );
    took
}

async fn message_count(broker: &Broker, topic: &str) -> u64 {
    let t = broker.topic_stats(topic).await.expect("topic stats");
    t["message_count"].as_u64().expect("message_count")
}

// ---------------------------------------------------------------------------------------------
// Slowloris: a command dribbled a byte at a time
// ---------------------------------------------------------------------------------------------

/// The read deadline of a client that asked for 1 s heartbeats (nsqd's minimum).
const DEADLINE: Duration = Duration::from_secs(2);

/// Writes `bytes` one at a time, `every` apart; returns how many were written before a write
/// failed (the broker closed the connection).
async fn dribble(wr: &mut OwnedWriteHalf, bytes: &[u8], every: Duration) -> usize {
    for (i, b) in bytes.iter().enumerate() {
        if wr.write_all(std::slice::from_ref(b)).await.is_err() {
            return i;
        }
        tokio::time::sleep(every).await;
    }
    bytes.len()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_command_dribbled_a_byte_at_a_time_gets_two_heartbeats_and_no_more() {
    each_kind(dribbled).await;
}

async fn dribbled(kind: BrokerKind) {
    let what = kind.name();
    if !kind.available() {
        return;
    }
    let broker = Broker::start(kind, &BrokerOpts::default()).await.unwrap();
    let mut c = raw(&broker, true).await;
    let mut identify = Identify::new("dribbler", "host", "hostile");
    identify.heartbeat_interval = DEADLINE.as_millis() as i64 / 2;
    c.wr.write_all(&wire(&Command::Identify(Box::new(identify))))
        .await
        .expect("write");
    let reply = next_said(&mut c.rd).await;
    assert!(
        matches!(reply, Some(Frame::Response(_))),
        "{what}: IDENTIFY: {reply:?}"
    );

    // Within the deadline, a command put together from single bytes is served.
    let quick = publish("dribbled", "quick");
    dribble(&mut c.wr, &quick, Duration::from_millis(10)).await;
    let reply = next_said(&mut c.rd).await;
    assert!(
        matches!(reply, Some(Frame::Response(Response::Ok))),
        "{what}: a PUB dribbled within the deadline: {reply:?}"
    );
    // The next command's deadline runs from here.
    let answered = Instant::now();

    // One byte every 200 ms: the whole PUB would take over 5 s, but bytes arriving do not
    // move the deadline.
    let slow = publish("dribbled", "slow, slower than the deadline");
    let mut wr = c.wr;
    let dribbler = {
        let slow = slow.clone();
        tokio::spawn(async move { dribble(&mut wr, &slow, Duration::from_millis(200)).await })
    };
    let fresh = served(what, &broker, "others").await;
    until_closed(what, &mut c.rd).await;
    let closed = answered.elapsed();
    assert!(
        closed >= DEADLINE - Duration::from_millis(100) && closed <= DEADLINE + SLACK,
        "{what}: closed {closed:?} after the last command, not at the {DEADLINE:?} deadline"
    );
    let written = tokio::time::timeout(WAIT, dribbler)
        .await
        .expect("the dribbler's writes fail once closed")
        .unwrap();
    assert!(
        written < slow.len(),
        "{what}: the whole slow PUB got in ({written} bytes)"
    );
    assert_eq!(message_count(&broker, "dribbled").await, 1, "{what}");
    eprintln!(
        "{what}: a dribbled PUB was cut off {closed:?} after the last command, {written} of {} \
         bytes in; a fresh PUB meanwhile took {fresh:?}",
        slow.len()
    );
}

// ---------------------------------------------------------------------------------------------
// An endless command line
// ---------------------------------------------------------------------------------------------

/// nsqd's read buffer (`bufio.NewReaderSize(conn, 16 KiB)`): the longest command line,
/// newline included.
const LINE_BUFFER: usize = 16 * 1024;
/// What a client may write without a newline before the broker must have closed the
/// connection: far above the line buffer plus what the kernel's socket buffers hold.
const WRITTEN_AT_MOST: usize = 32 << 20;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_endless_line_is_refused_at_16_kib_without_a_word_while_others_are_served() {
    each_kind(endless_line).await;
}

async fn endless_line(kind: BrokerKind) {
    let what = kind.name();
    if !kind.available() {
        return;
    }
    let broker = Broker::start(kind, &BrokerOpts::default()).await.unwrap();

    // A line that just fits, newline included: all but the newline in, the broker waits for
    // the rest, and serves others meanwhile.
    let mut c = raw(&broker, true).await;
    let name = "A".repeat(LINE_BUFFER - 1);
    c.wr.write_all(name.as_bytes()).await.expect("write");
    assert!(
        quiet_for(Duration::from_millis(300), &mut c.rd).await,
        "{what}: {} bytes with no newline yet are waited on",
        name.len()
    );
    let fresh = served(what, &broker, "others").await;
    c.wr.write_all(b"\n").await.expect("write");
    match next_said(&mut c.rd).await {
        Some(Frame::Error(e)) => {
            assert_eq!(e.code, ErrorCode::Invalid, "{what}: {e}");
            assert_eq!(e.description, format!("invalid command {name}"), "{what}");
        }
        other => panic!("{what}: a {LINE_BUFFER}-byte line: {other:?}"),
    }
    // E_INVALID is fatal.
    until_closed(what, &mut c.rd).await;

    // One byte more with no newline: closed without a word, at once.
    let mut c = raw(&broker, true).await;
    let sent = Instant::now();
    c.wr.write_all(&vec![b'A'; LINE_BUFFER])
        .await
        .expect("write");
    until_closed(what, &mut c.rd).await;
    let refused = sent.elapsed();
    assert!(refused < SERVED_WITHIN, "{what}: closed after {refused:?}");

    // Written without end: the broker closes the connection rather than buffer it.
    let mut c = raw(&broker, true).await;
    let chunk = vec![b'A'; 64 * 1024];
    let mut written = 0;
    loop {
        match tokio::time::timeout(WAIT, c.wr.write_all(&chunk)).await {
            Ok(Ok(())) => written += chunk.len(),
            Ok(Err(_)) => break,
            Err(_) => panic!("{what}: the broker stopped reading but kept the connection"),
        }
        assert!(
            written <= WRITTEN_AT_MOST,
            "{what}: {written} bytes with no newline taken, and still open"
        );
    }
    eprintln!(
        "{what}: a line of {LINE_BUFFER} bytes with no newline was refused after {refused:?}; \
         one written without end was closed after {} KiB (kernel buffers included); a fresh PUB \
         meanwhile took {fresh:?}",
        written / 1024
    );
}

// ---------------------------------------------------------------------------------------------
// A client that says nothing
// ---------------------------------------------------------------------------------------------

/// The lite broker's client timeout here: its default heartbeat is half of it, so a client
/// that sent the magic and no IDENTIFY has 2 s per command (nsqd's, fixed, is 60 s).
const LITE_CLIENT_TIMEOUT: Duration = Duration::from_secs(2);
/// Longer than any read deadline in play: lite's client timeout, and the 2 s a client asking
/// for nsqd's shortest heartbeat (1 s) gets.
const SILENCE: Duration = Duration::from_secs(3);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_never_sends_the_magic_is_kept_and_others_are_served() {
    each_kind(silent).await;
}

async fn silent(kind: BrokerKind) {
    let what = kind.name();
    if !kind.available() {
        return;
    }
    let broker = match kind {
        BrokerKind::Lite => Broker::Lite(
            nsq_server_lite::Nsqd::builder()
                .broadcast_address("127.0.0.1")
                .client_timeout(LITE_CLIENT_TIMEOUT)
                .start()
                .await
                .unwrap(),
        ),
        BrokerKind::RealNsqd => Broker::start(kind, &BrokerOpts::default()).await.unwrap(),
    };
    let mut mute = raw(&broker, false).await;
    let fresh = served(what, &broker, "others").await;
    assert!(
        quiet_for(SILENCE, &mut mute.rd).await,
        "{what}: a client that has not sent the magic was closed (or spoken to) within {SILENCE:?}"
    );
    // Still a connection: the magic and a PUB, late as they are, are served.
    mute.wr.write_all(&MAGIC_V2).await.expect("write");
    mute.wr
        .write_all(&publish("late", "after a long silence"))
        .await
        .expect("write");
    let reply = next_said(&mut mute.rd).await;
    assert!(
        matches!(reply, Some(Frame::Response(Response::Ok))),
        "{what}: {reply:?}"
    );

    // With the magic sent, the read deadline runs: twice the default heartbeat. For nsqd that
    // is 60 s, too long to wait for here; the lite broker's is shortened to 2 s.
    if kind == BrokerKind::Lite {
        let mut c = raw(&broker, true).await;
        let started = Instant::now();
        until_closed(what, &mut c.rd).await;
        let closed = started.elapsed();
        assert!(
            closed >= LITE_CLIENT_TIMEOUT - Duration::from_millis(100)
                && closed <= LITE_CLIENT_TIMEOUT + SLACK,
            "{what}: a client silent after the magic was closed after {closed:?}"
        );
    }
    eprintln!(
        "{what}: a client silent for {SILENCE:?} before the magic was kept and then served; a \
         fresh PUB meanwhile took {fresh:?}"
    );
}
