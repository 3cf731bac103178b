//! One connection through the proxy. Each direction is a reader and a writer joined by a
//! queue of chunks (the reader stamps each chunk with the time it may leave, the writer waits
//! for that time, for held replies to be let go and for the rate limit's tokens); a watcher
//! ends the connection when a fault says so: killed, reset, dropped long enough, or truncated
//! to nothing.

use std::io;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{ReadHalf, WriteHalf};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, watch};
use tokio::time::{sleep_until, Instant};
use tokio_util::sync::CancellationToken;

use super::bucket::TokenBucket;
use super::{Faults, Mode, Way};

/// The most bytes one read takes from a socket.
const CHUNK: usize = 64 * 1024;
/// Chunks read one way and not yet written: under latency the reader runs at most this far
/// ahead of the writer, then waits (and TCP pushes back on the sender).
const QUEUE: usize = 256;

/// What a connection had seen of the one-shot faults when it was accepted: only calls made
/// after that are its own.
#[derive(Debug, Clone, Copy)]
pub(super) struct Seen {
    resets: u64,
    truncations: u64,
}

impl Seen {
    pub(super) fn of(faults: &Faults) -> Self {
        Self {
            resets: faults.resets,
            truncations: faults.truncations,
        }
    }
}

/// How a connection ends.
#[derive(Debug, PartialEq, Eq)]
enum End {
    /// A FIN each side.
    Close,
    /// An RST each side.
    Reset,
}

/// What the two directions of one connection share.
#[derive(Debug, Default)]
struct Shared {
    /// Set once bytes were swallowed: from then on both ways drop everything (the stream
    /// has a hole in it, so nothing after it can make sense).
    lost: AtomicBool,
    /// How many more bytes the broker-to-client way may forward before the connection
    /// closes, once [`Proxy::truncate_after`](super::Proxy::truncate_after) armed it.
    budget: Mutex<Option<u64>>,
}

impl Shared {
    /// Whether bytes read in `mode` vanish.
    fn swallowed(&self, mode: Mode) -> bool {
        if mode.swallows() {
            self.lost.store(true, Ordering::Relaxed);
        }
        self.lost.load(Ordering::Relaxed)
    }

    /// The part of `chunk` the truncation budget lets through, and whether that uses it up.
    fn spend(&self, mut chunk: Bytes) -> (Bytes, bool) {
        let mut budget = self.budget.lock().expect("budget lock");
        let Some(left) = budget.as_mut() else {
            return (chunk, false);
        };
        let n = usize::try_from(*left)
            .unwrap_or(usize::MAX)
            .min(chunk.len());
        chunk.truncate(n);
        *left -= n as u64;
        (chunk, *left == 0)
    }
}

/// Copies bytes both ways under the faults until either side closes, a fault ends the
/// connection, or the proxy stops.
pub(super) async fn pipe(
    mut client: TcpStream,
    mut server: TcpStream,
    faults: watch::Receiver<Faults>,
    seen: Seen,
    stop: CancellationToken,
) {
    let _ = client.set_nodelay(true);
    let _ = server.set_nodelay(true);
    let shared = Shared::default();
    let end = {
        let (client_rd, client_wr) = client.split();
        let (server_rd, server_wr) = server.split();
        // Either direction ending closes both sockets. A fault is looked at first, so that
        // bytes woken by the same change (held replies let go just after a reset, say) are
        // not written before it takes effect.
        tokio::select! {
            biased;
            () = stop.cancelled() => End::Close,
            end = watch_faults(faults.clone(), seen, &shared) => end,
            () = forward(Way::Up, client_rd, server_wr, faults.clone(), &shared) => End::Close,
            () = forward(Way::Down, server_rd, client_wr, faults, &shared) => End::Close,
        }
    };
    if end == End::Reset {
        for stream in [&client, &server] {
            // Closing a socket whose linger is zero sends an RST instead of a FIN. Tokio
            // deprecates `set_linger` because a non-zero linger blocks the thread that
            // drops the socket; a zero one never does (its `set_zero_linger` is this call,
            // from tokio 1.50, above the workspace's minimum).
            #[allow(deprecated)]
            let _ = stream.set_linger(Some(Duration::ZERO));
        }
    }
}

/// Ends the connection when a fault says so.
async fn watch_faults(mut faults: watch::Receiver<Faults>, seen: Seen, shared: &Shared) -> End {
    let mut truncations = seen.truncations;
    let mut close_at = None;
    loop {
        {
            let f = faults.borrow_and_update();
            if f.mode == Mode::Dead {
                return End::Close;
            }
            if f.resets != seen.resets {
                return End::Reset;
            }
            if f.truncations != truncations {
                truncations = f.truncations;
                if f.truncate_after == 0 {
                    return End::Close;
                }
                *shared.budget.lock().expect("budget lock") = Some(f.truncate_after);
            }
            if let Mode::Dropping { close_after } = f.mode {
                close_at.get_or_insert(Instant::now() + close_after);
            }
        }
        tokio::select! {
            changed = faults.changed() => {
                if changed.is_err() {
                    return End::Close;
                }
            }
            () = sleep_until_some(close_at) => return End::Close,
        }
    }
}

async fn sleep_until_some(deadline: Option<Instant>) {
    match deadline {
        Some(at) => sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// Forwards one way until the reader meets the end of the stream (and the writer has written
/// what was queued) or the writer fails.
async fn forward(
    way: Way,
    mut rd: ReadHalf<'_>,
    mut wr: WriteHalf<'_>,
    faults: watch::Receiver<Faults>,
    shared: &Shared,
) {
    let (tx, mut rx) = mpsc::channel::<(Instant, Bytes)>(QUEUE);
    let read = {
        let faults = faults.clone();
        async move {
            let mut buf = BytesMut::new();
            loop {
                buf.reserve(CHUNK);
                match rd.read_buf(&mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(_) => {}
                }
                let chunk = buf.split().freeze();
                let (mode, latency) = {
                    let f = faults.borrow();
                    (f.mode, f.latency[way as usize])
                };
                if shared.swallowed(mode) {
                    continue;
                }
                if tx.send((Instant::now() + latency, chunk)).await.is_err() {
                    break;
                }
            }
            // The broker's close (its own heartbeat timeout, say) vanishes in a blackhole
            // too: the client is left to notice on its own.
            if way == Way::Down && shared.swallowed(faults.borrow().mode) {
                return std::future::pending().await;
            }
            // Closing the queue lets the writer finish what is queued, then end.
            drop(tx);
            std::future::pending().await
        }
    };
    let write = async move {
        let mut faults = faults;
        let mut bucket = TokenBucket::new(Instant::now());
        while let Some((due, chunk)) = rx.recv().await {
            sleep_until(due).await;
            // Held replies wait here until the proxy opens (or dies).
            if way == Way::Down
                && faults
                    .wait_for(|f| f.mode != Mode::HoldReplies)
                    .await
                    .is_err()
            {
                return;
            }
            if shared.swallowed(faults.borrow().mode) {
                continue;
            }
            let (chunk, used_up) = match way {
                Way::Down => shared.spend(chunk),
                Way::Up => (chunk, false),
            };
            if write_capped(&mut wr, &chunk, way, &mut faults, &mut bucket)
                .await
                .is_err()
                || used_up
            {
                return;
            }
        }
    };
    tokio::select! {
        () = read => {}
        () = write => {}
    }
}

/// Writes `chunk` no faster than the rate limit in force one way lets it, a burst at a time.
async fn write_capped(
    wr: &mut WriteHalf<'_>,
    mut chunk: &[u8],
    way: Way,
    faults: &mut watch::Receiver<Faults>,
    bucket: &mut TokenBucket,
) -> io::Result<()> {
    while !chunk.is_empty() {
        let n = loop {
            let Some(rate) = faults.borrow().rate[way as usize] else {
                break chunk.len();
            };
            let n = chunk.len().min(TokenBucket::burst(rate));
            match bucket.take(n, rate, Instant::now()) {
                Ok(()) => break n,
                Err(wait) => tokio::select! {
                    () = tokio::time::sleep(wait) => {}
                    // A new rate (or none) applies at once.
                    changed = faults.changed() => {
                        if changed.is_err() {
                            return Err(io::Error::other("the proxy stopped"));
                        }
                    }
                },
            }
        };
        wr.write_all(&chunk[..n]).await?;
        chunk = &chunk[n..];
    }
    Ok(())
}
