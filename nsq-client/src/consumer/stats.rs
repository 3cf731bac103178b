//! What a consumer counts, and the snapshot of its connections that `stats()` reads.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use crate::consumer::rdy::Outcome;

/// What the consumer's counters say.
///
/// ```
/// # fn show(consumer: &nsq_client::Consumer) {
/// let stats = consumer.stats();
/// println!("{} received, {} finished", stats.received, stats.finished);
/// # }
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ConsumerStats {
    /// Messages delivered.
    pub received: u64,
    /// Messages finished.
    pub finished: u64,
    /// Messages requeued.
    pub requeued: u64,
    /// Messages given up on after `max_attempts` (and finished); counted in `finished` too.
    pub given_up: u64,
    /// Open nsqd connections.
    pub connections: usize,
    /// Per connection, sorted by address: nsqd address, RDY and messages in flight. The
    /// connections are always current; their RDY and in-flight figures may be up to 1 ms
    /// older than `total_rdy` (they are gathered at most once a millisecond, so that a
    /// consumer of many nsqd does not walk every connection for every message).
    pub per_connection: Vec<(String, u32, u32)>,
    /// The sum of every connection's RDY (never above max_in_flight).
    pub total_rdy: u32,
    /// The backoff level; 0 when not backing off.
    pub backoff_level: u32,
    /// Whether some connection is close to its RDY (go-nsq's `IsStarved`).
    pub starved: bool,
    /// Under [`deduplicate`](crate::ConsumerBuilder::deduplicate): copies finished without
    /// reaching the user, because a copy of the same message was finished before.
    pub duplicates: u64,
    /// Under `deduplicate`: copies held now, waiting for the answer to a copy of the same
    /// message that is with the user.
    pub held_copies: u64,
    /// Under `deduplicate`: messages without a key (no envelope, or the key function said
    /// `None`), delivered without de-duplication.
    pub unkeyed: u64,
}

#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub(crate) received: AtomicU64,
    pub(crate) finished: AtomicU64,
    pub(crate) requeued: AtomicU64,
    pub(crate) given_up: AtomicU64,
    pub(crate) duplicates: AtomicU64,
    pub(crate) duplicates_held: AtomicU64,
    pub(crate) unkeyed: AtomicU64,
    pub(crate) snapshot: Mutex<Snapshot>,
}

impl Counters {
    pub(crate) fn count_done(&self, outcome: Outcome, count: u32) {
        let counter = match outcome {
            Outcome::Finished => &self.finished,
            // Counted by the de-duplication window when it decides.
            Outcome::Duplicate => return,
            Outcome::Requeued { .. } => &self.requeued,
        };
        counter.fetch_add(u64::from(count), Ordering::Relaxed);
    }
}

#[derive(Debug, Default, Clone)]
pub(crate) struct Snapshot {
    /// Unsorted: [`Counters::stats`] sorts.
    pub(crate) per_connection: Vec<(Arc<str>, u32, u32)>,
    pub(crate) total_rdy: u32,
    pub(crate) backoff_level: u32,
    pub(crate) starved: bool,
}

impl Counters {
    /// The counters and the latest snapshot, as the user sees them.
    pub(crate) fn stats(&self) -> ConsumerStats {
        let snapshot = self
            .snapshot
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        let mut per_connection: Vec<_> = snapshot
            .per_connection
            .iter()
            .map(|(addr, rdy, in_flight)| (addr.to_string(), *rdy, *in_flight))
            .collect();
        per_connection.sort();
        ConsumerStats {
            received: self.received.load(Ordering::Relaxed),
            finished: self.finished.load(Ordering::Relaxed),
            requeued: self.requeued.load(Ordering::Relaxed),
            given_up: self.given_up.load(Ordering::Relaxed),
            connections: per_connection.len(),
            per_connection,
            total_rdy: snapshot.total_rdy,
            backoff_level: snapshot.backoff_level,
            starved: snapshot.starved,
            duplicates: self.duplicates.load(Ordering::Relaxed),
            held_copies: self.duplicates_held.load(Ordering::Relaxed),
            unkeyed: self.unkeyed.load(Ordering::Relaxed),
        }
    }

    /// Publishes new totals, keeping the per-connection figures.
    pub(crate) fn set_totals(&self, total_rdy: u32, backoff_level: u32, starved: bool) {
        let mut snapshot = self.snapshot.lock().unwrap_or_else(|e| e.into_inner());
        snapshot.total_rdy = total_rdy;
        snapshot.backoff_level = backoff_level;
        snapshot.starved = starved;
    }

    /// Publishes `snapshot` and returns the one it replaces (whose buffers the caller reuses).
    pub(crate) fn set_snapshot(&self, snapshot: Snapshot) -> Snapshot {
        std::mem::replace(
            &mut *self.snapshot.lock().unwrap_or_else(|e| e.into_inner()),
            snapshot,
        )
    }
}
