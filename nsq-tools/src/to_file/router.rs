//! One topic's consumer into its [`OutputFile`] (nsq's `FileLogger.router`): every message is
//! written, and finished only once a sync made it durable. A sync comes when as many messages
//! wait as may be in flight, when the consumer is starved, every `--sync-interval`, at a
//! rotation, and after every batch once the tool is stopping (so that the connections can
//! close). A stop ends with the file synced, closed and moved.

use std::time::Duration;

use futures::StreamExt;
use nsq_client::{Consumer, Message};
use tokio::sync::mpsc;

use super::output::OutputFile;
use crate::consume::ready;
use crate::rate::Counter;

/// What the tool tells a topic's router.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Control {
    /// SIGHUP: sync and close the file; the next message opens a new one.
    Reopen,
    /// Stop consuming, write what is still delivered, sync, close.
    Stop,
}

/// How a router syncs.
#[derive(Debug, Clone, Copy)]
pub(crate) struct RouterOptions {
    /// `--sync-interval`.
    pub(crate) sync_interval: Duration,
    /// `--skip-empty-files`.
    pub(crate) skip_empty_files: bool,
    /// The consumer's max in flight: this many waiting messages force a sync.
    pub(crate) max_in_flight: usize,
}

/// Runs `topic`'s consumer into `file` until it stops. Returns the file error that ended it,
/// if any; the messages not yet synced then are not finished (nsqd delivers them again).
pub(crate) async fn route(
    topic: String,
    mut consumer: Consumer,
    mut file: OutputFile,
    opts: RouterOptions,
    mut control: mpsc::UnboundedReceiver<Control>,
    written: Counter,
) -> std::io::Result<()> {
    let handle = consumer.handle();
    let mut pending: Vec<Message> = Vec::with_capacity(opts.max_in_flight);
    let start = tokio::time::Instant::now() + opts.sync_interval;
    let mut ticker = tokio::time::interval_at(start, opts.sync_interval);
    let mut stopping = false;
    let result = loop {
        let sync;
        let mut close = false;
        tokio::select! {
            biased;
            ctl = control.recv(), if !stopping => match ctl {
                Some(Control::Reopen) => {
                    sync = true;
                    close = true;
                }
                Some(Control::Stop) | None => {
                    drop(handle.stop());
                    stopping = true;
                    sync = true;
                }
            },
            _ = ticker.tick(), if !stopping => {
                let now = chrono::Local::now();
                if file.needs_rotation(now) {
                    if opts.skip_empty_files {
                        close = true;
                    } else if let Err(e) = blocking(|| file.rotate(now)) {
                        break Err(e);
                    }
                }
                sync = true;
            }
            first = consumer.next() => {
                let Some(first) = first else {
                    // Every connection closed: the consumer stopped.
                    break finish(&mut file, &mut pending, &written, &topic);
                };
                let (mut batch, _) = ready(&mut consumer, opts.max_in_flight);
                batch.insert(0, first);
                let now = chrono::Local::now();
                let mut failed = None;
                for msg in batch {
                    if failed.is_some() {
                        drop(msg); // back to nsqd
                        continue;
                    }
                    if file.needs_rotation(now) {
                        // Rotating closes (and syncs) the file the waiting messages are in.
                        if let Err(e) = blocking(|| file.rotate(now)) {
                            failed = Some(e);
                            drop(msg);
                            continue;
                        }
                        finish_all(&mut pending, &written);
                    }
                    match file.write(msg.body(), now) {
                        Ok(()) => pending.push(msg),
                        Err(e) => failed = Some(e),
                    }
                }
                if let Some(e) = failed {
                    break Err(e);
                }
                sync = stopping || pending.len() >= opts.max_in_flight || consumer.stats().starved;
            }
        }
        if sync && !pending.is_empty() {
            tracing::debug!("[{topic}] syncing {} records to disk", pending.len());
            if let Err(e) = blocking(|| file.sync()) {
                break Err(e);
            }
            finish_all(&mut pending, &written);
        }
        if close {
            if let Err(e) = blocking(|| file.close()) {
                break Err(e);
            }
            finish_all(&mut pending, &written);
        }
    };
    if result.is_err() {
        // Unsynced messages go back to nsqd: dropping them requeues them.
        pending.clear();
        handle.stop().await;
    }
    result
}

/// The consumer stopped: syncs and closes the file, then finishes what waited for it.
fn finish(
    file: &mut OutputFile,
    pending: &mut Vec<Message>,
    written: &Counter,
    topic: &str,
) -> std::io::Result<()> {
    if !pending.is_empty() {
        tracing::debug!("[{topic}] syncing {} records to disk", pending.len());
    }
    blocking(|| file.sync().and_then(|()| file.close()))?;
    finish_all(pending, written);
    Ok(())
}

/// Finishes messages that are durable now.
fn finish_all(pending: &mut Vec<Message>, written: &Counter) {
    written.add(pending.len() as u64);
    for msg in pending.drain(..) {
        if let Err(e) = msg.finish() {
            // The connection is gone; nsqd delivers it again, and it is written twice.
            tracing::warn!("{e}");
        }
    }
}

/// Runs file I/O that may block for a while (fsync, rename) off the runtime's event loop.
fn blocking<T>(f: impl FnOnce() -> T) -> T {
    tokio::task::block_in_place(f)
}
