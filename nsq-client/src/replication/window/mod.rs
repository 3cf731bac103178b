//! The consumer's de-duplication window: which message keys it has seen, bounded by count
//! and by age, and what became of each.
//!
//! A key is in one of two states:
//!
//! * **handling**: one copy is with the user (stream or handler) and not yet answered.
//!   Copies that arrive meanwhile are *held* here, unanswered, until it is: a `FIN` of the
//!   first finishes them too; a requeue (or a drop) of the first hands one held copy to the
//!   user in its place, because the first may be the copy that fails.
//! * **done**: a copy was finished. Later copies are finished at once, without reaching the
//!   user, as long as the key's slot stays in the window (an envelope key shares its slot
//!   with the 63 sequences around it; a user key has one of its own): at least `max_age`
//!   after the last copy of a key of the slot was seen, and until newer slots push it out
//!   (`max_entries` keys' worth). A copy arriving after that reaches the user again.
//!
//! Keys being handled are never evicted (there are at most `max_in_flight` of them), so a
//! copy is never finished unless a copy of it was finished first.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};

use tokio::sync::mpsc;
use tokio::time::Instant;

use crate::consumer::message::Message;
use crate::consumer::stats::Counters;
use crate::replication::envelope::{self, MessageKey};

mod dedup;
mod key;
#[cfg(test)]
mod tests;

use dedup::KeySource;
pub use dedup::{Dedup, MAX_KEY_LEN};
pub(crate) use key::Key;
use key::KeyHasher;

/// What the window remembers of finished keys: which of a slot's keys were finished, and
/// when a copy of one was last seen.
#[derive(Clone, Copy)]
struct Slot {
    finished: u64,
    seen: Instant,
}

/// The slot a key is remembered in, and its bit there. Envelope keys share a slot with the
/// 63 sequences around them (the slot's key is the first of the 64), so that consecutive
/// messages of a producer cost one table entry and one cache line; a user key has a slot
/// of its own.
fn slot_of(key: &Key) -> (std::borrow::Cow<'_, Key>, u64) {
    match key {
        Key::Envelope(key) => {
            let first = MessageKey::new(key.producer(), key.sequence() & !(SLOT_KEYS - 1));
            (
                std::borrow::Cow::Owned(Key::Envelope(first)),
                1 << (key.sequence() % SLOT_KEYS),
            )
        }
        Key::User(_) => (std::borrow::Cow::Borrowed(key), 1),
    }
}

/// Envelope keys per slot.
const SLOT_KEYS: u64 = 64;

struct State {
    /// Keys with a copy at the user, each with the copies that wait for its answer. At most
    /// the consumer's messages in flight, so it stays small.
    handling: HashMap<Key, Vec<Message>, KeyHasher>,
    /// Finished keys, by slot.
    finished: HashMap<Key, Slot, KeyHasher>,
    /// The slots of `finished`, oldest first, with the time each was put here.
    order: VecDeque<(Key, Instant)>,
}

/// The window itself, shared by the consumer's connections and the messages they handed out.
/// One lock: it is taken once per socket read and once per run of answers, and held for a
/// few table operations per message on tables that stay in the caches.
pub(crate) struct Window {
    dedup: Dedup,
    state: Mutex<State>,
    /// Slots `finished` holds at most.
    max_slots: usize,
    /// Where a held copy goes when it must reach the user after all: the consumer's own
    /// queue (weak, so the window does not keep the queue open after the connections end).
    requeue: mpsc::WeakUnboundedSender<Vec<Message>>,
    counters: Arc<Counters>,
}

impl std::fmt::Debug for Window {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Window")
            .field("dedup", &self.dedup)
            .finish_non_exhaustive()
    }
}

impl Window {
    pub(crate) fn new(
        dedup: Dedup,
        requeue: mpsc::WeakUnboundedSender<Vec<Message>>,
        counters: Arc<Counters>,
    ) -> Arc<Self> {
        let max_slots = match dedup.source {
            KeySource::Envelope => dedup.max_entries.div_ceil(SLOT_KEYS as usize),
            KeySource::Extract(_) => dedup.max_entries,
        };
        // Room for the whole window from the start (up to 65,536 slots), so that a filling
        // window does not rehash as it grows.
        let room = max_slots.min(1 << 16);
        Arc::new(Self {
            state: Mutex::new(State {
                handling: HashMap::with_hasher(KeyHasher::default()),
                finished: HashMap::with_capacity_and_hasher(room, KeyHasher::default()),
                order: VecDeque::with_capacity(room),
            }),
            max_slots,
            dedup,
            requeue,
            counters,
        })
    }

    /// Decides on a copy as it is read, while its bytes are still in the caches (one socket
    /// read brings many, and the user's task may be on another core): `Some` when it goes to
    /// the user (claimed, and out of its envelope); else it was finished as a duplicate or is
    /// held. `now` is when it was read.
    pub(crate) fn admit(&self, mut msg: Message, now: Instant) -> Option<Message> {
        let key = match &self.dedup.source {
            KeySource::Envelope => envelope::key_of(msg.body()).map(|key| {
                msg.strip_header(envelope::HEADER_LEN);
                Key::Envelope(key)
            }),
            KeySource::Extract(extract) => extract(msg.body())
                .filter(|key| key.len() <= MAX_KEY_LEN)
                .map(|key| Key::User(key.into())),
        };
        let Some(key) = key else {
            self.counters.unkeyed.fetch_add(1, Ordering::Relaxed);
            return Some(msg);
        };
        let (slot, bit) = slot_of(&key);
        let mut state = self.lock();
        self.evict(&mut state, now);
        if let Some(slot) = state.finished.get_mut(&*slot) {
            if slot.finished & bit != 0 {
                slot.seen = now;
                drop(state);
                self.finish_duplicates([msg]);
                return None;
            }
        }
        match state.handling.entry(key) {
            std::collections::hash_map::Entry::Vacant(vacant) => {
                msg.claim(vacant.key().clone());
                vacant.insert(Vec::new());
                Some(msg)
            }
            std::collections::hash_map::Entry::Occupied(mut occupied) => {
                occupied.get_mut().push(msg);
                self.counters
                    .duplicates_held
                    .fetch_add(1, Ordering::Relaxed);
                None
            }
        }
    }

    /// Finishes copies of finished keys, outside the lock.
    fn finish_duplicates(&self, duplicates: impl IntoIterator<Item = Message>) {
        for twin in duplicates {
            self.counters.duplicates.fetch_add(1, Ordering::Relaxed);
            if let Err(err) = twin.finish_duplicate() {
                tracing::debug!(%err, "finishing a duplicate");
            }
        }
    }

    /// Claimed copies were answered: each `(key, true)` with FIN, each `(key, false)`
    /// requeued or dropped.
    pub(crate) fn resolve<'k>(&self, answers: impl IntoIterator<Item = (&'k Key, bool)>) {
        let now = Instant::now();
        let (mut duplicates, mut promoted) = (Vec::new(), Vec::new());
        let mut state = self.lock();
        let mut resolved: u64 = 0;
        for (key, finished) in answers {
            let Some(waiting) = state.handling.get_mut(key) else {
                continue;
            };
            if !finished && !waiting.is_empty() {
                // Another copy takes the failed one's place; the rest stay held behind it.
                let mut next = waiting.remove(0);
                next.claim(key.clone());
                promoted.push(next);
                resolved += 1;
                continue;
            }
            let held = state.handling.remove(key).unwrap_or_default();
            resolved += held.len() as u64;
            duplicates.extend(held);
            if finished {
                self.remember(&mut state, key, now);
            }
            // Else forgotten: the requeued copy (or any other) is new again when it comes back.
        }
        if resolved > 0 {
            self.counters
                .duplicates_held
                .fetch_sub(resolved, Ordering::Relaxed);
        }
        self.evict(&mut state, now);
        drop(state);
        self.finish_duplicates(duplicates);
        if !promoted.is_empty() {
            // The consumer's queue, as new deliveries (so max_attempts applies). With the
            // consumer gone, dropping them requeues them.
            if let Some(queue) = self.requeue.upgrade() {
                let _ = queue.send(promoted);
            }
        }
    }

    /// Remembers `key` as finished.
    fn remember(&self, state: &mut State, key: &Key, now: Instant) {
        let (slot, bit) = slot_of(key);
        if let Some(slot) = state.finished.get_mut(&*slot) {
            slot.finished |= bit;
            slot.seen = now;
            return;
        }
        let slot = slot.into_owned();
        state.order.push_back((slot.clone(), now));
        state.finished.insert(
            slot,
            Slot {
                finished: bit,
                seen: now,
            },
        );
    }

    /// Drops the oldest slots while there are more than the window holds, and those not
    /// seen for `max_age`.
    fn evict(&self, state: &mut State, now: Instant) {
        let cutoff = now.checked_sub(self.dedup.max_age);
        while let Some((_, put)) = state.order.front() {
            let over = state.order.len() > self.max_slots;
            let stale = cutoff.is_some_and(|cutoff| *put <= cutoff);
            if !over && !stale {
                break;
            }
            let Some((slot, _)) = state.order.pop_front() else {
                break;
            };
            if !over {
                // Seen again since it was put here: it stays, moved to the back.
                if let Some(seen) = state.finished.get(&slot).map(|kept| kept.seen) {
                    if cutoff.is_some_and(|cutoff| seen > cutoff) {
                        state.order.push_back((slot, seen));
                        continue;
                    }
                }
            }
            state.finished.remove(&slot);
        }
    }

    /// Lets every held copy go unanswered (so nsqd requeues it at once), for a stopping
    /// consumer: the copies with the user are still answered as usual.
    pub(crate) fn release_held(&self) {
        let mut released = Vec::new();
        for held in self.lock().handling.values_mut() {
            released.append(held);
        }
        self.counters
            .duplicates_held
            .fetch_sub(released.len() as u64, Ordering::Relaxed);
        drop(released);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// How many slots of finished keys the window holds.
    #[cfg(test)]
    fn slots(&self) -> usize {
        self.lock().finished.len()
    }
}
