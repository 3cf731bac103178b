//! The producer's connection actor: one task that owns the connection to nsqd, connects
//! when there is something to send, writes every queued request it has at hand in one
//! write, and reconnects with backoff after a failure.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use nsq_proto::{ClientCodec, Command};
use tokio::io::{AsyncWriteExt, WriteHalf};
use tokio::sync::{mpsc, Notify};
use tokio_util::codec::{Encoder, FramedRead};
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use super::answers::{AnswerReader, Pending, Written};
use super::stats::Counters;
use super::{merge, ProducerConfig, Request};
use crate::conn::{self, Transport};
use crate::error::{ConnectError, DisconnectReason, PublishErrorKind};

/// The most requests taken from the queue for one write.
const MAX_BATCH: usize = 1024;

/// The task that owns the connection to one nsqd.
pub(super) struct ProducerConnection {
    pub(super) addr: String,
    pub(super) config: ProducerConfig,
    pub(super) rx: mpsc::Receiver<Request>,
    /// Requests taken from the queue for a connection that died before they were written:
    /// nsqd never saw them, so they go first on the next connection (held, in the stats).
    pub(super) carried: VecDeque<Request>,
    pub(super) cancel: CancellationToken,
    pub(super) counters: Arc<Counters>,
}

impl ProducerConnection {
    pub(super) async fn run(mut self) {
        let mut failures = 0u32;
        let mut connections = 0u64;
        loop {
            // Connect only when there is something to send.
            // Queued requests go first (`biased`), so stopping lets them finish.
            let first = match self.carried.pop_front() {
                Some(request) => {
                    self.counters.release(1);
                    request
                }
                None => tokio::select! {
                    biased;
                    request = self.rx.recv() => match request {
                        Some(request) => request,
                        None => return,
                    },
                    _ = self.cancel.cancelled() => return,
                },
            };
            if first.respond.is_closed() {
                continue;
            }
            // Held while connecting: out of the queue, not written yet.
            self.counters.hold(1);
            let connected = conn::connect(&self.addr, &self.config.connection).await;
            self.counters.release(1);
            match connected {
                Ok(connected) => {
                    failures = 0;
                    tracing::info!(
                        max_rdy_count = connected.identify.max_rdy_count,
                        "connected"
                    );
                    self.counters.connected(true, connections > 0);
                    connections += 1;
                    let lost = self.serve(connected, first).await;
                    self.counters.connected(false, false);
                    if let Err(why) = lost {
                        tracing::warn!(%why, "connection lost");
                    } else {
                        return;
                    }
                }
                Err(err) => {
                    failures += 1;
                    tracing::warn!(error = %err, failures, "cannot connect");
                    let why = Arc::new(err);
                    first.fail(PublishErrorKind::Connect(why.clone()));
                    // Everything already queued would wait for the same nsqd: fail it now,
                    // so callers can go elsewhere.
                    self.counters.release(self.carried.len());
                    for request in self.carried.drain(..) {
                        request.fail(PublishErrorKind::Connect(why.clone()));
                    }
                    while let Ok(request) = self.rx.try_recv() {
                        request.fail(PublishErrorKind::Connect(why.clone()));
                    }
                    if self.backoff(failures, &why).await.is_err() {
                        return;
                    }
                }
            }
        }
    }

    /// Waits out the reconnect backoff; `Err` when the producer stops meanwhile.
    ///
    /// Requests that arrive meanwhile fail at once with the connect error `why` (bodies handed
    /// back), as a connect attempt would: waiting out the backoff could outlast their timeout,
    /// and a pool could have sent them to another nsqd instead.
    async fn backoff(&mut self, failures: u32, why: &Arc<ConnectError>) -> Result<(), ()> {
        let wait =
            conn::reconnect_delay(failures, self.config.backoff_min, self.config.backoff_max);
        let until = tokio::time::sleep(wait);
        tokio::pin!(until);
        loop {
            tokio::select! {
                biased;
                _ = self.cancel.cancelled() => return Err(()),
                _ = &mut until => return Ok(()),
                request = self.rx.recv() => match request {
                    Some(request) => request.fail(PublishErrorKind::Connect(why.clone())),
                    None => return Err(()),
                },
            }
        }
    }

    /// Runs one connection. `Ok` when the producer stopped cleanly, `Err` when the connection
    /// failed (every request it held has been answered with an error).
    async fn serve(
        &mut self,
        connected: conn::Connected,
        first: Request,
    ) -> Result<(), DisconnectReason> {
        // What the handshake read past its last answer (a heartbeat, say) goes back in front
        // of the stream: put in a new `FramedRead`'s buffer instead, it would wait there
        // undecoded until nsqd sent more.
        let codec = connected.framed.codec().clone();
        let (read_half, write_half) = tokio::io::split(conn::rewound(connected.framed));
        let reader = FramedRead::new(read_half, codec);

        let written = Arc::new(Written::default());
        let heartbeat = Arc::new(Notify::new());
        let reader_stop = CancellationToken::new();
        let writer_done = Arc::new(Notify::new());
        let answers = AnswerReader {
            reader,
            written: written.clone(),
            heartbeat: heartbeat.clone(),
            writer_done: writer_done.clone(),
            stop: reader_stop.clone(),
            read_deadline: self.config.connection.read_deadline(),
            counters: self.counters.clone(),
        };
        let reader_task = tokio::spawn(answers.run().in_current_span());
        let mut reader_task = std::pin::pin!(reader_task);
        let mut reader_ended = false;
        let mut writer = Writer {
            write_half,
            written: written.clone(),
            buf: BytesMut::with_capacity(64 * 1024),
            staged: Vec::with_capacity(64),
            pings: Vec::new(),
            merge: self.config.merge_publishes,
            write_timeout: self.config.connection.write_timeout,
            counters: self.counters.clone(),
        };
        // Reused from batch to batch.
        let mut batch: Vec<Request> = Vec::with_capacity(64);
        let mut next = Some(first);
        let mut closing = false;
        // Made once and polled again on every turn, not made anew per turn (each would
        // register with its notifier again).
        let cancel = self.cancel.clone();
        let mut cancelled = std::pin::pin!(cancel.cancelled());
        let mut heartbeat_due = std::pin::pin!(heartbeat.notified());
        let result: Result<(), DisconnectReason> = loop {
            if closing && next.is_none() {
                // No more waiting for requests, but those already queued still go out.
                next = self.rx.try_recv().ok();
            }
            if let Some(request) = next.take() {
                // Coalesce every request at hand into one write.
                batch.push(request);
                while batch.len() < MAX_BATCH {
                    if let Some(request) = self.carried.pop_front() {
                        self.counters.release(1);
                        batch.push(request);
                        continue;
                    }
                    match self.rx.try_recv() {
                        Ok(request) => batch.push(request),
                        Err(_) => break,
                    }
                }
                if let Err(why) = writer.write_batch(&mut batch, &mut self.carried).await {
                    break Err(why);
                }
                continue;
            }
            if closing && self.rx.is_empty() {
                break Ok(());
            }
            tokio::select! {
                biased;
                ended = &mut reader_task => {
                    reader_ended = true;
                    break Err(match ended {
                        Ok(why) => why,
                        // The reader panicked (or the runtime is shutting down).
                        Err(e) => std::io::Error::from(e).into(),
                    });
                }
                _ = heartbeat_due.as_mut() => {
                    heartbeat_due.set(heartbeat.notified());
                    if let Err(why) = writer.write_nop().await {
                        break Err(why);
                    }
                }
                request = self.rx.recv(), if !closing => match request {
                    Some(request) => next = Some(request),
                    None => closing = true,
                },
                _ = cancelled.as_mut(), if !closing => closing = true,
            }
        };
        // Requests taken from the queue but not written (the write failed): the reader's
        // final sweep answers what was written; these are answered here.
        if let Err(why) = &result {
            for request in batch.drain(..) {
                request.fail(PublishErrorKind::Disconnected(why.clone()));
            }
        }
        // Let the reader collect the answers to what was written (bounded by the timeout),
        // then stop it; whatever is left is answered `Disconnected` with its bodies.
        written.lock().writer_done = true;
        writer_done.notify_one();
        if !reader_ended && result.is_ok() {
            let wait = self
                .config
                .publish_timeout
                .unwrap_or(Duration::from_secs(10));
            reader_ended = tokio::time::timeout(wait, &mut reader_task).await.is_ok();
        }
        reader_stop.cancel();
        if !reader_ended {
            let _ = reader_task.await;
        }
        let _ = writer.write_half.shutdown().await;
        result
    }
}

/// The connection's write side.
struct Writer {
    write_half: WriteHalf<Transport>,
    /// Where written requests wait for their answers.
    written: Arc<Written>,
    buf: BytesMut,
    /// Reused from batch to batch.
    staged: Vec<Pending>,
    pings: Vec<Request>,
    merge: Option<usize>,
    write_timeout: Duration,
    counters: Arc<Counters>,
}

impl Writer {
    /// Answers a heartbeat.
    async fn write_nop(&mut self) -> Result<(), DisconnectReason> {
        self.buf.clear();
        ClientCodec::new().encode(&Command::Nop, &mut self.buf)?;
        self.flush().await
    }

    /// Encodes the batch (see [`merge::encode_batch`]), hands each command to the reader in
    /// order, and writes it all at once. When the reader has already seen the connection
    /// end, nothing is written: the batch's requests go to `carried`, for the next
    /// connection, and its pings fail.
    async fn write_batch(
        &mut self,
        batch: &mut Vec<Request>,
        carried: &mut VecDeque<Request>,
    ) -> Result<(), DisconnectReason> {
        self.buf.clear();
        self.staged.clear();
        merge::encode_batch(
            batch,
            self.merge,
            &mut self.buf,
            &mut self.staged,
            &mut self.pings,
        );
        // Encoded without the lock (the reader may be taking answers meanwhile); handed over
        // in one short lock, before the write.
        {
            let mut queue = self.written.lock();
            if let Some(why) = &queue.reader_done {
                let why = why.clone();
                drop(queue);
                let before = carried.len();
                for p in self.staged.drain(..) {
                    carried.extend(p.into_requests());
                }
                self.counters.hold(carried.len() - before);
                for ping in self.pings.drain(..) {
                    ping.fail(PublishErrorKind::Disconnected(why.clone()));
                }
                return Err(why);
            } else {
                self.counters
                    .hold(self.staged.iter().map(Pending::requests).sum());
                queue.pending.extend(self.staged.drain(..));
            }
        }
        if self.buf.is_empty() {
            return Ok(());
        }
        let flushed = self.flush().await;
        // A ping is answered once its NOP is written, or fails with the write.
        for ping in self.pings.drain(..) {
            match &flushed {
                Ok(()) => ping.answer(Ok(())),
                Err(why) => ping.fail(PublishErrorKind::Disconnected(why.clone())),
            }
        }
        flushed
    }

    async fn flush(&mut self) -> Result<(), DisconnectReason> {
        let (buf, write_half) = (&mut self.buf, &mut self.write_half);
        let write = async {
            write_half.write_all(buf).await?;
            write_half.flush().await
        };
        let mut write = std::pin::pin!(write);
        // Most writes complete at once: only one that has to wait for the socket arms the
        // timer (arming and clearing it costs more than the write's bookkeeping).
        let done = match futures::poll!(write.as_mut()) {
            std::task::Poll::Ready(done) => Ok(done),
            std::task::Poll::Pending => tokio::time::timeout(self.write_timeout, write).await,
        };
        match done {
            Ok(Ok(())) => {
                self.buf.clear();
                Ok(())
            }
            Ok(Err(e)) => Err(e.into()),
            Err(_) => Err(DisconnectReason::WriteTimeout(self.write_timeout)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use nsq_proto::Topic;
    use tokio::io::AsyncReadExt;
    use tokio::sync::oneshot;

    fn publish(body: &'static str) -> (Request, oneshot::Receiver<super::super::Answer>) {
        let (respond, answer) = oneshot::channel();
        let cmd = Command::Pub {
            topic: Topic::new("t").unwrap(),
            body: Bytes::from_static(body.as_bytes()),
        };
        (Request { cmd, respond }, answer)
    }

    /// The reader saw the connection end while the writer took a batch from the queue: the
    /// batch was never written, so it must wait for the next connection, not fail.
    #[tokio::test]
    async fn a_batch_for_a_connection_that_already_ended_is_carried_not_failed() {
        let (ours, mut theirs) = tokio::io::duplex(1024);
        let (read_half, write_half) = tokio::io::split(Box::new(ours) as Transport);
        let written = Arc::new(Written::default());
        written.lock().reader_done = Some(DisconnectReason::ClosedByPeer);
        let counters = Arc::new(Counters::default());
        let mut writer = Writer {
            write_half,
            written: written.clone(),
            buf: BytesMut::new(),
            staged: Vec::new(),
            pings: Vec::new(),
            merge: Some(16 * 1024),
            write_timeout: Duration::from_secs(1),
            counters: counters.clone(),
        };
        let (a, mut a_answer) = publish("a");
        let (b, mut b_answer) = publish("b");
        let mut batch = vec![a, b];
        let mut carried = VecDeque::new();
        let result = writer.write_batch(&mut batch, &mut carried).await;
        assert!(
            matches!(result, Err(DisconnectReason::ClosedByPeer)),
            "{result:?}"
        );
        let bodies: Vec<_> = carried
            .iter()
            .map(|r| match &r.cmd {
                Command::Pub { body, .. } => body.clone(),
                other => panic!("{other:?}"),
            })
            .collect();
        assert_eq!(bodies, ["a", "b"], "both carried, in order (unmerged)");
        assert!(
            a_answer.try_recv().is_err() && b_answer.try_recv().is_err(),
            "not answered"
        );
        assert_eq!(counters.snapshot(0).in_flight, 2, "held while carried");
        assert!(
            written.lock().pending.is_empty(),
            "nothing handed to the reader"
        );
        drop((writer, read_half));
        let mut wire = Vec::new();
        theirs.read_to_end(&mut wire).await.unwrap();
        assert!(wire.is_empty(), "nothing written: {wire:?}");
    }
}
