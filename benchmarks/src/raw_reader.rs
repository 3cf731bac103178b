//! The floor of consuming over many connections: the protocol and nothing else.
//!
//! One tokio task per nsqd, on the same runtime as the consumer it is compared with. Each
//! sends the magic, `SUB` and one `RDY` (`max_in_flight` split over the connections, as nsq's
//! own `bench_reader` does for one), then, for every socket read, parses the whole frames it
//! holds and answers them in one write: `FIN` for each message, `NOP` for a heartbeat. No
//! IDENTIFY, no RDY after the first, no backoff, no stats, no channel to user code. What it
//! costs per message over N connections is what reading and writing N sockets costs on this
//! machine; a client cannot spend less.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::{Buf, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::Notify;

/// Frames larger than this are refused: the benches' messages are a few hundred bytes.
const MAX_FRAME: usize = 16 << 20;

/// Room kept free in a connection's input buffer before each read, so that a read is never
/// cut short by the buffer (what frames were parsed off its front is reclaimed).
const READ_ROOM: usize = 64 * 1024;

/// What the readers share: messages answered, and when the counted middle began and ended.
struct Progress {
    answered: AtomicUsize,
    /// `(count / 10, count − count / 10)`: the middle 80 % is timed.
    marks: (usize, usize),
    times: Mutex<(Option<Instant>, Option<Instant>)>,
    all: Notify,
    target: usize,
}

impl Progress {
    /// `n` more messages were answered (their FINs written).
    fn add(&self, n: usize) {
        let before = self.answered.fetch_add(n, Ordering::AcqRel);
        let after = before + n;
        let crossed = |mark: usize| before < mark && after >= mark;
        if crossed(self.marks.0) || crossed(self.marks.1) {
            let now = Instant::now();
            let mut times = self.times.lock().unwrap_or_else(|e| e.into_inner());
            if crossed(self.marks.0) {
                times.0 = Some(now);
            }
            if crossed(self.marks.1) {
                times.1 = Some(now);
            }
        }
        if crossed(self.target) {
            self.all.notify_one();
        }
    }
}

/// Consumes and finishes `count` messages of `topic`/`channel` from every address in `addrs`
/// at once, with `max_in_flight` split over them, and returns how long the middle 80 % took.
///
/// # Errors
///
/// When `count` is below 10 (there is no middle to time), when a connection fails or nsqd
/// answers with an error frame, or when no message arrives for 30 s.
///
/// ```no_run
/// # async fn run() -> Result<(), String> {
/// let middle = nsq_benchmarks::raw_reader::consume(
///     &["127.0.0.1:4150".to_owned()],
///     "bench",
///     "c",
///     2500,
///     100_000,
/// )
/// .await?;
/// println!("{:.0} msgs/s", 80_000.0 / middle.as_secs_f64());
/// # Ok(())
/// # }
/// ```
pub async fn consume(
    addrs: &[String],
    topic: &str,
    channel: &str,
    max_in_flight: u32,
    count: usize,
) -> Result<Duration, String> {
    if count < 10 {
        return Err(format!(
            "{count} messages: at least 10 are needed to time the middle"
        ));
    }
    let progress = Arc::new(Progress {
        answered: AtomicUsize::new(0),
        marks: (count / 10, count - count / 10),
        times: Mutex::new((None, None)),
        all: Notify::new(),
        target: count,
    });
    let n = u32::try_from(addrs.len().max(1)).unwrap_or(u32::MAX);
    let mut readers = tokio::task::JoinSet::new();
    for (i, addr) in addrs.iter().enumerate() {
        // The first `max_in_flight % n` connections take one more, and each at least one.
        let extra = u32::from(u32::try_from(i).unwrap_or(u32::MAX) < max_in_flight % n);
        let rdy = (max_in_flight / n + extra).max(1);
        let sub = format!("SUB {topic} {channel}\n");
        readers.spawn(read(addr.clone(), sub, rdy, progress.clone()));
    }
    let mut seen = 0;
    loop {
        tokio::select! {
            () = progress.all.notified() => break,
            ended = readers.join_next() => match ended {
                Some(Ok(Ok(()))) | None => return Err("a reader ended early".to_owned()),
                Some(Ok(Err(why))) => return Err(why),
                Some(Err(e)) => return Err(e.to_string()),
            },
            () = tokio::time::sleep(Duration::from_secs(30)) => {
                let now = progress.answered.load(Ordering::Acquire);
                if now == seen {
                    return Err(format!("stalled after {now} of {count} messages"));
                }
                seen = now;
            }
        }
    }
    readers.shutdown().await;
    let times = *progress.times.lock().unwrap_or_else(|e| e.into_inner());
    match times {
        (Some(from), Some(to)) => Ok(to - from),
        _ => Err("the middle of the run was not seen".to_owned()),
    }
}

/// One connection: SUB, RDY, then FIN every message it is sent, a read at a time.
async fn read(addr: String, sub: String, rdy: u32, progress: Arc<Progress>) -> Result<(), String> {
    let fail = |e: std::io::Error| format!("{addr}: {e}");
    let mut socket = TcpStream::connect(&addr).await.map_err(fail)?;
    socket.set_nodelay(true).map_err(fail)?;
    let hello = format!("  V2{sub}RDY {rdy}\n");
    socket.write_all(hello.as_bytes()).await.map_err(fail)?;
    let mut input = BytesMut::with_capacity(READ_ROOM);
    let mut answers = Vec::with_capacity(16 * 1024);
    loop {
        input.reserve(READ_ROOM);
        if socket.read_buf(&mut input).await.map_err(fail)? == 0 {
            return Err(format!("{addr}: closed"));
        }
        let mut finished = 0;
        while input.len() >= 4 {
            let size = u32::from_be_bytes([input[0], input[1], input[2], input[3]]) as usize;
            if !(4..=MAX_FRAME).contains(&size) {
                return Err(format!("{addr}: a frame of {size} bytes"));
            }
            if input.len() < 4 + size {
                input.reserve(4 + size - input.len());
                break;
            }
            input.advance(4);
            let frame = input.split_to(size);
            match u32::from_be_bytes([frame[0], frame[1], frame[2], frame[3]]) {
                0 if &frame[4..] == b"_heartbeat_" => answers.extend_from_slice(b"NOP\n"),
                0 => {}
                // Timestamp (8), attempts (2), then the 16-byte id.
                2 if frame.len() >= 30 => {
                    answers.extend_from_slice(b"FIN ");
                    answers.extend_from_slice(&frame[14..30]);
                    answers.push(b'\n');
                    finished += 1;
                }
                kind => {
                    let text = String::from_utf8_lossy(&frame[4..]);
                    return Err(format!("{addr}: frame type {kind}: {text}"));
                }
            }
        }
        if !answers.is_empty() {
            socket.write_all(&answers).await.map_err(fail)?;
            answers.clear();
        }
        if finished > 0 {
            progress.add(finished);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use nsq_client::{Producer, ProducerConfig, Topic};
    use nsq_server_lite::Nsqd;
    use nsq_tests::{eventually, http};

    /// Every message of both brokers is received and finished: once `consume` returns, the
    /// brokers' channels drain to nothing queued and nothing in flight.
    #[tokio::test]
    async fn finishes_every_message_of_every_broker() {
        let brokers = [Nsqd::start().await.unwrap(), Nsqd::start().await.unwrap()];
        let topic = Topic::new("raw").unwrap();
        for b in &brokers {
            let producer =
                Producer::new(b.tcp_addr().to_string(), ProducerConfig::default()).unwrap();
            producer
                .multi_publish(&topic, vec![bytes::Bytes::from_static(b"body"); 300])
                .await
                .unwrap();
            producer.stop().await;
        }
        let addrs: Vec<String> = brokers.iter().map(|b| b.tcp_addr().to_string()).collect();
        let middle = super::consume(&addrs, "raw", "c", 7, 600).await.unwrap();
        assert!(middle > Duration::ZERO);
        for b in &brokers {
            let addr = b.http_addr();
            eventually(
                "the channel drained",
                Duration::from_secs(10),
                || async move {
                    let stats =
                        http::json(addr, "GET", "/stats?format=json&topic=raw&channel=c").await?;
                    let channel = &stats["topics"][0]["channels"][0];
                    let (depth, in_flight) = (&channel["depth"], &channel["in_flight_count"]);
                    match (depth.as_u64(), in_flight.as_u64()) {
                        (Some(0), Some(0)) => Ok(()),
                        _ => Err(format!("depth {depth}, in flight {in_flight}")),
                    }
                },
            )
            .await;
        }
    }

    /// A broker's error frame ends the run with its text, not a hang.
    #[tokio::test]
    async fn an_error_frame_is_reported() {
        let broker = Nsqd::start().await.unwrap();
        let addrs = [broker.tcp_addr().to_string()];
        let why = super::consume(&addrs, "bad!", "c", 1, 10)
            .await
            .unwrap_err();
        assert!(why.contains("E_BAD_TOPIC"), "{why}");
    }
}
