//! The writing side of a connection: nsqd's `messagePump` minus the channel reads (the
//! channel pushes instead). It encodes what it is sent, buffers message frames by the
//! negotiated output buffer size and timeout, beats the heartbeat, and gives its half of the
//! stream up for an upgrade when asked.

use std::time::Duration;

use bytes::{Bytes, BytesMut};
use nsq_proto::{Frame, Response, ServerError};
use tokio::io::{AsyncWriteExt, WriteHalf};
use tokio::sync::{mpsc, oneshot};
use tokio::time::{timeout, Instant, Interval};
use tokio_util::sync::CancellationToken;

use super::BoxedIo;

/// What a connection's writer is asked to send, in order.
#[derive(Debug)]
pub(crate) enum Outbound {
    /// A response frame; flushed at once.
    Response(Response),
    /// An error frame; flushed at once.
    Error(ServerError),
    /// Encoded message frames, in order; buffered, flushed after the last when `flush` (the
    /// client's window is now full), when the output buffer fills, or on the output buffer
    /// timer.
    Messages { frames: Bytes, flush: bool },
    /// New heartbeat and buffering settings after IDENTIFY, optionally with a hand-over of the
    /// write half so the reader can upgrade the stream (TLS, compression).
    Reconfigure {
        writer: WriterConfig,
        handover: Option<Handover>,
    },
    /// Flush what is pending and close the connection.
    Close,
}

/// The writer gives its half back on `give` and waits for the upgraded one on `take`.
pub(crate) struct Handover {
    pub(crate) give: oneshot::Sender<WriteHalf<BoxedIo>>,
    pub(crate) take: oneshot::Receiver<WriteHalf<BoxedIo>>,
}

impl std::fmt::Debug for Handover {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Handover")
    }
}

/// How a connection's writer buffers and beats.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct WriterConfig {
    pub(crate) heartbeat_interval: Option<Duration>,
    pub(crate) output_buffer_size: usize,
    pub(crate) output_buffer_timeout: Option<Duration>,
}

/// Outbound items encoded in one go before the buffer is looked at again.
const BATCH: usize = 512;

/// What the writer does after a batch of outbound items.
enum Next {
    Continue,
    /// Give the write half away and wait for the upgraded one.
    HandOver(Handover),
    /// Flush, shut the stream down and stop.
    Close,
}

/// The writer task of one connection.
pub(super) struct OutputWriter {
    wr: WriteHalf<BoxedIo>,
    rx: mpsc::UnboundedReceiver<Outbound>,
    cfg: WriterConfig,
    buf: BytesMut,
    heartbeat: Option<Interval>,
    /// When buffered messages must go out (the output buffer timeout); `None` when nothing waits.
    flush_at: Option<Instant>,
    /// Where the output buffer timer's ticks count from: nsqd's `messagePump` runs a ticker of
    /// the timeout, started with the connection and again after IDENTIFY, and flushes a dirty
    /// buffer on each tick. A message is flushed at the next tick, not a whole timeout after it
    /// was buffered.
    ticks_from: Instant,
}

impl OutputWriter {
    pub(super) fn new(
        wr: WriteHalf<BoxedIo>,
        rx: mpsc::UnboundedReceiver<Outbound>,
        cfg: WriterConfig,
    ) -> Self {
        Self {
            wr,
            rx,
            buf: BytesMut::with_capacity(cfg.output_buffer_size.max(4096)),
            heartbeat: heartbeat_timer(cfg.heartbeat_interval),
            flush_at: None,
            ticks_from: Instant::now(),
            cfg,
        }
    }

    /// Writes until the connection closes or a write fails, then cancels `done`.
    pub(super) async fn run(self, done: CancellationToken) {
        if let Err(err) = self.serve().await {
            tracing::debug!(%err, "writer stopped");
        }
        done.cancel();
    }

    async fn serve(mut self) -> std::io::Result<()> {
        loop {
            let next = tokio::select! {
                item = self.rx.recv() => match item {
                    Some(item) => self.on_outbound(item).await?,
                    None => return self.write_out().await,
                },
                _ = next_tick(&mut self.heartbeat) => {
                    self.on_heartbeat().await?;
                    Next::Continue
                }
                _ = sleep_until_some(self.flush_at) => {
                    self.write_out().await?;
                    self.flush_at = None;
                    Next::Continue
                }
            };
            match next {
                Next::Continue => {}
                Next::HandOver(Handover { give, take }) => {
                    if give.send(self.wr).is_err() {
                        return Ok(());
                    }
                    self.wr = match take.await {
                        Ok(wr) => wr,
                        Err(_) => return Ok(()),
                    };
                }
                Next::Close => {
                    self.write_out().await?;
                    return self.wr.shutdown().await;
                }
            }
        }
    }

    /// Encodes `item` and whatever else is already queued (up to [`BATCH`] items), then
    /// flushes if any of them asked for it.
    async fn on_outbound(&mut self, mut item: Outbound) -> std::io::Result<Next> {
        let mut flush_now = false;
        let mut budget = BATCH;
        loop {
            match item {
                Outbound::Response(r) => {
                    self.encode(&Frame::Response(r))?;
                    flush_now = true;
                }
                Outbound::Error(e) => {
                    self.encode(&Frame::Error(e))?;
                    flush_now = true;
                }
                Outbound::Messages { frames, flush } => {
                    self.buf.extend_from_slice(&frames);
                    match self.cfg.output_buffer_timeout {
                        _ if flush => flush_now = true,
                        None => flush_now = true,
                        Some(t) => {
                            let ticks_from = self.ticks_from;
                            self.flush_at.get_or_insert_with(|| {
                                next_tick_after(ticks_from, t, Instant::now())
                            });
                        }
                    }
                }
                Outbound::Reconfigure { writer, handover } => {
                    self.write_out().await?;
                    self.cfg = writer;
                    self.heartbeat = heartbeat_timer(self.cfg.heartbeat_interval);
                    self.ticks_from = Instant::now();
                    if let Some(handover) = handover {
                        // Everything before is written out; what follows waits for the
                        // upgraded stream.
                        return Ok(Next::HandOver(handover));
                    }
                }
                Outbound::Close => return Ok(Next::Close),
            }
            if self.buf.len() >= self.cfg.output_buffer_size {
                // The output buffer is full: nsqd's bufio writer flushes here.
                self.write_out().await?;
                self.flush_at = None;
            }
            budget -= 1;
            if budget == 0 {
                break;
            }
            match self.rx.try_recv() {
                Ok(next) => item = next,
                Err(_) => break,
            }
        }
        if flush_now {
            self.write_out().await?;
            self.flush_at = None;
        }
        Ok(Next::Continue)
    }

    async fn on_heartbeat(&mut self) -> std::io::Result<()> {
        self.encode(&Frame::Response(Response::Heartbeat))?;
        self.write_out().await?;
        self.flush_at = None;
        Ok(())
    }

    fn encode(&mut self, frame: &Frame) -> std::io::Result<()> {
        frame.encode(&mut self.buf).map_err(std::io::Error::other)
    }

    /// Writes the buffer out and flushes, within the write deadline nsqd sets (the heartbeat
    /// interval).
    async fn write_out(&mut self) -> std::io::Result<()> {
        let (wr, buf) = (&mut self.wr, &mut self.buf);
        let write = async {
            if !buf.is_empty() {
                wr.write_all(buf).await?;
                buf.clear();
            }
            wr.flush().await
        };
        match self.cfg.heartbeat_interval {
            Some(d) => timeout(d, write)
                .await
                .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "write deadline"))?,
            None => write.await,
        }
    }
}

/// The next heartbeat tick; never, without heartbeats.
async fn next_tick(timer: &mut Option<Interval>) {
    match timer {
        Some(timer) => {
            timer.tick().await;
        }
        None => std::future::pending().await,
    }
}

/// Sleeps until `at`; forever when there is nothing to flush.
/// The first tick after `now` of a ticker of `period` started at `from`.
fn next_tick_after(from: Instant, period: Duration, now: Instant) -> Instant {
    let period_ns = period.as_nanos().max(1);
    let ticks = now.saturating_duration_since(from).as_nanos() / period_ns + 1;
    let ticks = u32::try_from(ticks).unwrap_or(u32::MAX);
    from + period.saturating_mul(ticks)
}

async fn sleep_until_some(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

fn heartbeat_timer(interval: Option<Duration>) -> Option<Interval> {
    interval.map(|d| {
        let mut timer = tokio::time::interval_at(Instant::now() + d, d);
        timer.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        timer
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncReadExt;

    #[test]
    fn ticks_count_from_the_start_of_the_timer() {
        let from = Instant::now();
        let period = Duration::from_millis(250);
        let at = |ms| next_tick_after(from, period, from + Duration::from_millis(ms));
        assert_eq!(at(0), from + period);
        assert_eq!(at(10), from + period);
        assert_eq!(at(249), from + period);
        assert_eq!(
            at(250),
            from + 2 * period,
            "a tick that has just passed is gone"
        );
        assert_eq!(at(1_100), from + 5 * period);
    }

    /// A message buffered 30 ms into a 100 ms timer goes out at its first tick, 70 ms later,
    /// as nsqd's ticker has it, and one buffered after it waits only for the next tick.
    #[tokio::test(start_paused = true)]
    async fn buffered_messages_go_out_on_the_timer_s_next_tick() {
        let (ours, mut client) = tokio::io::duplex(1 << 16);
        let (_rd, wr) = tokio::io::split(Box::new(ours) as BoxedIo);
        let (tx, rx) = mpsc::unbounded_channel();
        let cfg = WriterConfig {
            heartbeat_interval: None,
            output_buffer_size: 16 * 1024,
            output_buffer_timeout: Some(Duration::from_millis(100)),
        };
        let started = Instant::now();
        let writer = tokio::spawn(OutputWriter::new(wr, rx, cfg).run(CancellationToken::new()));
        let mut buf = [0u8; 16];
        for (sent_at, flushed_at) in [(30, 100), (120, 200), (290, 300)] {
            tokio::time::sleep_until(started + Duration::from_millis(sent_at)).await;
            tx.send(Outbound::Messages {
                frames: Bytes::from_static(b"frame"),
                flush: false,
            })
            .unwrap();
            let n = client.read(&mut buf).await.unwrap();
            assert_eq!(&buf[..n], b"frame");
            assert_eq!(
                Instant::now() - started,
                Duration::from_millis(flushed_at),
                "buffered at {sent_at} ms"
            );
        }
        drop(tx);
        writer.await.unwrap();
    }
}
