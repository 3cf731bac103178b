//! The written requests waiting for nsqd's answers, and the reader that matches each answer
//! to the oldest of them (nsqd answers commands in order).

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use nsq_proto::{ClientCodec, Command, Frame, Response};
use tokio::io::ReadHalf;
use tokio::sync::Notify;
use tokio::time::Instant;
use tokio_util::codec::FramedRead;
use tokio_util::sync::CancellationToken;

use super::stats::Counters;
use super::Request;
use crate::conn::Transport;
use crate::error::{DisconnectReason, PublishErrorKind};

/// A written command waiting for its answer: one request, or publishes merged into one MPUB,
/// which nsqd answers once for all of them.
pub(super) enum Pending {
    One(Request),
    Merged(Vec<Request>),
}

impl Pending {
    /// The requests it stands for, as they were queued.
    pub(super) fn into_requests(self) -> Vec<Request> {
        match self {
            Pending::One(request) => vec![request],
            Pending::Merged(requests) => requests,
        }
    }

    /// How many requests it answers.
    pub(super) fn requests(&self) -> usize {
        match self {
            Pending::One(_) => 1,
            Pending::Merged(requests) => requests.len(),
        }
    }

    /// How many messages an `OK` to it publishes (none for a command that publishes nothing).
    fn messages(&self) -> usize {
        match self {
            Pending::One(Request {
                cmd: Command::Mpub { bodies, .. },
                ..
            }) => bodies.len(),
            Pending::One(Request {
                cmd: Command::Pub { .. } | Command::Dpub { .. },
                ..
            }) => 1,
            Pending::One(_) => 0,
            Pending::Merged(requests) => requests.len(),
        }
    }

    /// Answers it, and counts the answer.
    fn answer_counted(self, answer: Result<(), PublishErrorKind>, counters: &Counters) {
        counters.release(self.requests());
        if answer.is_ok() {
            counters.published(self.messages());
        }
        self.answer(answer);
    }

    pub(super) fn answer(self, answer: Result<(), PublishErrorKind>) {
        match self {
            Pending::One(request) => request.answer(answer),
            Pending::Merged(requests) => {
                for request in requests {
                    request.answer(answer.clone());
                }
            }
        }
    }
}

/// The written requests, oldest first, shared by the writer (which appends before it writes)
/// and the reader (which takes the oldest for each answer). A plain locked queue rather than
/// a channel: the reader looks at it only when an answer arrives, so handing a request over
/// wakes nobody.
#[derive(Default)]
pub(super) struct Written {
    queue: std::sync::Mutex<WrittenQueue>,
}

#[derive(Default)]
pub(super) struct WrittenQueue {
    pub(super) pending: VecDeque<Pending>,
    /// Set by the writer when it writes nothing more.
    pub(super) writer_done: bool,
    /// Set by the reader when it stops, to why: nothing more will be answered.
    pub(super) reader_done: Option<DisconnectReason>,
}

impl Written {
    pub(super) fn lock(&self) -> std::sync::MutexGuard<'_, WrittenQueue> {
        // A panic while holding the lock leaves the queue consistent (push/pop only).
        self.queue.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Reads nsqd's answers and matches each to the oldest written request.
pub(super) struct AnswerReader {
    pub(super) reader: FramedRead<ReadHalf<Transport>, ClientCodec>,
    pub(super) written: Arc<Written>,
    /// Notified on each heartbeat, for the writer to answer with a NOP.
    pub(super) heartbeat: Arc<Notify>,
    /// Notified when the writer is done, so the reader can end once all is answered.
    pub(super) writer_done: Arc<Notify>,
    pub(super) stop: CancellationToken,
    pub(super) read_deadline: Duration,
    pub(super) counters: Arc<Counters>,
}

impl AnswerReader {
    /// Runs until the connection ends and returns why; every request still waiting then is
    /// answered `Disconnected`.
    pub(super) async fn run(mut self) -> DisconnectReason {
        let why = self.read().await;
        let waiting = {
            let mut queue = self.written.lock();
            queue.reader_done = Some(why.clone());
            std::mem::take(&mut queue.pending)
        };
        for p in waiting {
            p.answer_counted(
                Err(PublishErrorKind::Disconnected(why.clone())),
                &self.counters,
            );
        }
        why
    }

    async fn read(&mut self) -> DisconnectReason {
        let read_deadline = self.read_deadline;
        let mut last_read = Instant::now();
        // One timer for the read deadline, moved on only when it fires early: resetting it
        // for every answer would cost a timer update per publish.
        let mut deadline = std::pin::pin!(tokio::time::sleep_until(last_read + read_deadline));
        let stop = self.stop.clone();
        let mut stopped = std::pin::pin!(stop.cancelled());
        let writer_done = self.writer_done.clone();
        let mut writer_finished = std::pin::pin!(writer_done.notified());
        loop {
            {
                let queue = self.written.lock();
                if queue.writer_done && queue.pending.is_empty() {
                    // The writer is done and everything it wrote is answered.
                    return DisconnectReason::Closed;
                }
            }
            tokio::select! {
                biased;
                _ = stopped.as_mut() => return DisconnectReason::Closed,
                _ = writer_finished.as_mut() => {
                    // Checked at the top of the loop; wait for the next notification meanwhile.
                    writer_finished.set(writer_done.notified());
                }
                _ = deadline.as_mut() => {
                    let due = last_read + read_deadline;
                    if due > Instant::now() {
                        deadline.as_mut().reset(due);
                        continue;
                    }
                    return DisconnectReason::ReadTimeout(read_deadline);
                }
                frame = self.reader.next() => {
                    last_read = Instant::now();
                    let answer = match frame {
                        None => return DisconnectReason::ClosedByPeer,
                        Some(Err(e)) => return e.into(),
                        Some(Ok(Frame::Response(Response::Heartbeat))) => {
                            self.counters.heartbeat();
                            self.heartbeat.notify_one();
                            continue;
                        }
                        Some(Ok(Frame::Response(Response::Ok))) => Ok(()),
                        // nsqd answers a publish with `OK` or an error, nothing else: any other
                        // response (CLOSE_WAIT, data) means the connection is out of step.
                        Some(Ok(Frame::Response(_))) => {
                            return DisconnectReason::UnexpectedFrame(
                                "a response other than OK to a publish",
                            )
                        }
                        Some(Ok(Frame::Error(e))) => Err(e),
                        Some(Ok(Frame::Message(_))) => {
                            return DisconnectReason::UnexpectedFrame("message")
                        }
                    };
                    // The writer queues each request before writing it, so its entry is there
                    // by the time its answer can arrive.
                    let Some(p) = self.written.lock().pending.pop_front() else {
                        return DisconnectReason::UnexpectedFrame("an answer with no publish waiting");
                    };
                    let fatal = answer.as_ref().err().filter(|e| e.code.is_fatal()).cloned();
                    p.answer_counted(answer.map_err(PublishErrorKind::Server), &self.counters);
                    if let Some(error) = fatal {
                        // nsqd closes the connection after a fatal error; nothing after it
                        // is answered.
                        return DisconnectReason::Server(error);
                    }
                }
            }
        }
    }
}
