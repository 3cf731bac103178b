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
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::time::Instant;

use crate::consumer::message::Message;
use crate::consumer::stats::Counters;
use crate::replication::envelope::{self, MessageKey};

/// The longest key a key extractor may return; longer ones are not de-duplicated.
pub const MAX_KEY_LEN: usize = 64;

type Extractor = dyn Fn(&[u8]) -> Option<&[u8]> + Send + Sync;

/// Where a message's key comes from.
#[derive(Clone)]
enum KeySource {
    /// The replication envelope, stripped from the body the user sees.
    Envelope,
    /// The user's function of the body, which is left as it is.
    Extract(Arc<Extractor>),
}

/// De-duplication for a consumer ([`ConsumerBuilder::deduplicate`]): which key identifies
/// a message, and how long and how many keys are remembered.
///
/// Envelope keys are remembered in slots of 64 consecutive sequences of one producer, and the
/// window holds `max_entries / 64` slots: the latest `max_entries` messages of a
/// [`ReplicatedProducer`](crate::ReplicatedProducer), whose sequences count up, fill them
/// exactly; keys scattered over many producers or far-apart sequences fill them less, down to
/// one key a slot. A key from [`Dedup::key_from`] has a slot of its own, and the window holds
/// `max_entries` of them. Age is kept per slot: a key is remembered at least `max_age` after
/// its last copy was seen, longer when another key of its slot was seen since.
///
/// Memory, from the layout: per slot a 48-byte table bucket and its control byte (tables are
/// kept at most 7/8 full and grow by doubling) and a 40-byte entry in the eviction queue, 100
/// to 200 bytes; so 1.5 to 3 bytes per envelope key, and 100 to 200 bytes per user key (plus
/// two allocations of its length). Room for the whole window (up to 65,536 slots) is reserved
/// up front: the default 100,000 envelope keys take 150 to 300 kB. Keys being handled (at most
/// `max_in_flight`) take a bucket each besides. Size the window as the message rate times the
/// longest delay expected between copies of one message (an nsqd that was down delivers its
/// copies when it is back).
///
/// A held copy keeps its place in flight until the copy with the user is answered. A
/// consumer that waits for several messages before answering any (a batch) should keep
/// `max_in_flight` above its batch size, or held copies may fill the difference until nsqd's
/// message timeout returns them.
///
/// ```
/// use std::time::Duration;
/// use nsq_client::Dedup;
///
/// let by_envelope = Dedup::envelope().max_entries(500_000).max_age(Duration::from_secs(600));
/// // Messages that already carry an id: the first 36 bytes of the body, say.
/// let by_own_id = Dedup::key_from(|body| body.get(..36));
/// # let _ = (by_envelope, by_own_id);
/// ```
///
/// [`ConsumerBuilder::deduplicate`]: crate::ConsumerBuilder::deduplicate
#[derive(Clone)]
pub struct Dedup {
    source: KeySource,
    max_entries: usize,
    max_age: Duration,
}

impl Dedup {
    /// Keys from the replication envelope that
    /// [`ReplicatedProducer`](crate::ReplicatedProducer) writes; the user sees the body
    /// without it. A message without an envelope reaches the user as it is, not
    /// de-duplicated (counted in [`ConsumerStats::unkeyed`](crate::ConsumerStats::unkeyed)).
    ///
    /// ```
    /// let dedup = nsq_client::Dedup::envelope();
    /// # let _ = dedup;
    /// ```
    pub fn envelope() -> Self {
        Self::with(KeySource::Envelope)
    }

    /// Keys taken from the body by `key` (an id the application already puts in its
    /// messages); the body is left as it is, so other clients read it unchanged. `None`, or
    /// a key longer than 64 bytes, leaves the message not de-duplicated.
    ///
    /// ```
    /// // JSON bodies that start with {"id":"<uuid>" ...
    /// let dedup = nsq_client::Dedup::key_from(|body| body.get(7..43));
    /// # let _ = dedup;
    /// ```
    pub fn key_from(key: impl Fn(&[u8]) -> Option<&[u8]> + Send + Sync + 'static) -> Self {
        Self::with(KeySource::Extract(Arc::new(key)))
    }

    fn with(source: KeySource) -> Self {
        Self {
            source,
            max_entries: 100_000,
            max_age: Duration::from_secs(300),
        }
    }

    /// How many finished keys are remembered at most (default 100,000); the oldest go first.
    /// Envelope keys are counted in slots of 64 (see [`Dedup`]).
    ///
    /// ```
    /// let dedup = nsq_client::Dedup::envelope().max_entries(1_000_000);
    /// # let _ = dedup;
    /// ```
    pub fn max_entries(mut self, entries: usize) -> Self {
        self.max_entries = entries;
        self
    }

    /// How long a finished key is remembered after its last copy was seen (default 5 min).
    ///
    /// ```
    /// let dedup = nsq_client::Dedup::envelope().max_age(std::time::Duration::from_secs(3600));
    /// # let _ = dedup;
    /// ```
    pub fn max_age(mut self, age: Duration) -> Self {
        self.max_age = age;
        self
    }

    pub(crate) fn validate(&self) -> Result<(), crate::ConfigError> {
        if self.max_entries == 0 || self.max_age.is_zero() {
            return Err(crate::ConfigError::new(
                "deduplicate needs max_entries and max_age above zero",
            ));
        }
        Ok(())
    }
}

impl std::fmt::Debug for Dedup {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let source = match self.source {
            KeySource::Envelope => "envelope",
            KeySource::Extract(_) => "key_from",
        };
        f.debug_struct("Dedup")
            .field("key", &source)
            .field("max_entries", &self.max_entries)
            .field("max_age", &self.max_age)
            .finish()
    }
}

/// A key as remembered: the envelope's 16 bytes inline, or a copy of the user's key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Key {
    Envelope(MessageKey),
    User(Box<[u8]>),
}

impl std::hash::Hash for Key {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        match self {
            // One write: the hasher below takes it in one multiplication.
            Key::Envelope(key) => {
                state.write_u128(u128::from(key.producer()) << 64 | u128::from(key.sequence()))
            }
            Key::User(bytes) => {
                state.write_u8(0xff);
                state.write(bytes);
            }
        }
    }
}

/// The window's hasher: a folded multiply with a random seed per window, much cheaper than
/// SipHash for 16-byte keys. Keys are compared in full, so a collision costs time, never a
/// wrong answer; the seed keeps a publisher from choosing keys that collide on purpose.
#[derive(Clone)]
struct KeyHasher {
    seed: (u64, u64),
}

impl Default for KeyHasher {
    fn default() -> Self {
        Self {
            seed: (fastrand::u64(..), fastrand::u64(..)),
        }
    }
}

impl std::hash::BuildHasher for KeyHasher {
    type Hasher = FoldHasher;

    fn build_hasher(&self) -> FoldHasher {
        FoldHasher {
            state: self.seed.0,
            seed: self.seed.1,
        }
    }
}

/// The hasher of [`KeyHasher`].
struct FoldHasher {
    state: u64,
    seed: u64,
}

/// The high and low halves of the full product, folded together.
fn fold(a: u64, b: u64) -> u64 {
    let full = u128::from(a) * u128::from(b);
    (full as u64) ^ ((full >> 64) as u64)
}

impl std::hash::Hasher for FoldHasher {
    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(16);
        for chunk in &mut chunks {
            let (lo, hi) = chunk.split_at(8);
            let lo = u64::from_le_bytes(lo.try_into().unwrap_or_default());
            let hi = u64::from_le_bytes(hi.try_into().unwrap_or_default());
            self.state = fold(lo ^ self.state, hi ^ self.seed);
        }
        let rest = chunks.remainder();
        if !rest.is_empty() {
            let mut tail = [0u8; 16];
            tail[..rest.len()].copy_from_slice(rest);
            let lo = u64::from_le_bytes(tail[..8].try_into().unwrap_or_default());
            let hi = u64::from_le_bytes(tail[8..].try_into().unwrap_or_default());
            self.state = fold(lo ^ self.state, hi ^ self.seed ^ rest.len() as u64);
        }
    }

    fn write_u128(&mut self, word: u128) {
        self.state = fold(
            (word as u64) ^ self.state,
            ((word >> 64) as u64) ^ self.seed,
        );
    }

    fn write_u8(&mut self, byte: u8) {
        self.state = fold(self.state ^ u64::from(byte), self.seed);
    }

    fn finish(&self) -> u64 {
        fold(self.state, self.seed ^ 0x9e37_79b9_7f4a_7c15)
    }
}

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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::consumer::message::tests::message_in;
    use crate::consumer::message::{Ack, AckCommand};
    use bytes::Bytes;

    struct Setup {
        window: Arc<Window>,
        queue: mpsc::UnboundedReceiver<Vec<Message>>,
        _queue_tx: mpsc::UnboundedSender<Vec<Message>>,
        counters: Arc<Counters>,
    }

    type Answers = mpsc::UnboundedReceiver<AckCommand>;

    impl Setup {
        fn new(dedup: Dedup) -> Self {
            let (tx, rx) = mpsc::unbounded_channel();
            let counters = Arc::new(Counters::default());
            Self {
                window: Window::new(dedup, tx.downgrade(), counters.clone()),
                queue: rx,
                _queue_tx: tx,
                counters,
            }
        }

        /// A copy of message `seq` (nsqd ID `id`) in its envelope, from a connection of
        /// this consumer.
        fn copy(&self, seq: u64, id: u64) -> (Message, Answers) {
            let body = envelope::envelope(MessageKey::new(1, seq), format!("m{seq}").as_bytes());
            self.raw(id, body)
        }

        /// A message with this body, from a connection of this consumer.
        fn raw(&self, id: u64, body: Bytes) -> (Message, Answers) {
            message_in(Some(self.window.clone()), 1, id, body)
        }

        /// Admits `msg` alone; `Some` when it goes to the user.
        fn admit(&self, msg: Message) -> Option<Message> {
            self.window.admit(msg, Instant::now())
        }

        fn delivered(&self, msg: Message) -> Message {
            self.admit(msg).expect("delivered, not absorbed")
        }

        fn absorbed(&self, msg: Message) {
            assert!(self.admit(msg).is_none(), "delivered, not absorbed");
        }

        /// The next answer sent for a message, taken as its connection takes it: resolving
        /// the window entry it answers for.
        fn answer(&self, acks: &mut Answers) -> Option<Ack> {
            let cmd = acks.try_recv().ok()?;
            cmd.resolve(Some(&self.window));
            Some(cmd.ack)
        }
    }

    #[tokio::test]
    async fn a_copy_after_a_finished_one_is_finished_without_reaching_the_user() {
        let s = Setup::new(Dedup::envelope());
        let (first, mut first_acks) = s.copy(1, 10);
        let first = s.delivered(first);
        assert_eq!(
            &first.body()[..],
            b"m1",
            "the user sees the body without the envelope"
        );
        first.finish().unwrap();
        assert_eq!(s.answer(&mut first_acks), Some(Ack::Finish));

        let (twin, mut twin_acks) = s.copy(1, 20);
        s.absorbed(twin);
        assert_eq!(s.answer(&mut twin_acks), Some(Ack::FinishDuplicate));
        assert_eq!(s.counters.duplicates.load(Ordering::Relaxed), 1);

        let (other, _other_acks) = s.copy(2, 30);
        let other = s.delivered(other);
        assert_eq!(&other.body()[..], b"m2", "another key is another message");
        drop(other);
    }

    #[tokio::test]
    async fn a_twin_arriving_during_handling_is_held_then_finished_with_the_first() {
        let s = Setup::new(Dedup::envelope());
        let (first, mut first_acks) = s.copy(1, 10);
        let first = s.delivered(first);
        let (twin, mut twin_acks) = s.copy(1, 20);
        s.absorbed(twin);
        assert_eq!(s.answer(&mut twin_acks), None, "held, not answered");
        assert_eq!(s.counters.duplicates_held.load(Ordering::Relaxed), 1);
        first.finish().unwrap();
        assert_eq!(
            s.answer(&mut twin_acks),
            None,
            "until the FIN reaches the connection"
        );
        assert_eq!(s.answer(&mut first_acks), Some(Ack::Finish));
        assert_eq!(s.answer(&mut twin_acks), Some(Ack::FinishDuplicate));
        assert_eq!(s.counters.duplicates_held.load(Ordering::Relaxed), 0);
    }

    #[tokio::test]
    async fn a_held_twin_takes_the_place_of_a_first_copy_that_is_requeued_or_dropped() {
        let mut s = Setup::new(Dedup::envelope());
        let (first, mut first_acks) = s.copy(1, 10);
        let first = s.delivered(first);
        let (twin, mut twin_acks) = s.copy(1, 20);
        s.absorbed(twin);
        let (third, mut third_acks) = s.copy(1, 30);
        s.absorbed(third);

        first.requeue(None).unwrap();
        assert!(matches!(
            s.answer(&mut first_acks),
            Some(Ack::Requeue { .. })
        ));
        assert_eq!(s.answer(&mut twin_acks), None);
        let twin = s
            .queue
            .try_recv()
            .expect("the twin goes to the user")
            .pop()
            .unwrap();
        assert_eq!(twin.id(), nsq_proto::MessageId::from_u64(20));
        assert_eq!(&twin.body()[..], b"m1");

        drop(twin); // unanswered: requeued, and the third copy is next
        assert!(matches!(
            s.answer(&mut twin_acks),
            Some(Ack::Requeue { .. })
        ));
        let third = s
            .queue
            .try_recv()
            .expect("the third copy goes to the user")
            .pop()
            .unwrap();
        third.finish().unwrap();
        assert_eq!(s.answer(&mut third_acks), Some(Ack::Finish));

        // The requeued first copy comes back: finished as a duplicate.
        let (again, mut again_acks) = s.copy(1, 10);
        s.absorbed(again);
        assert_eq!(s.answer(&mut again_acks), Some(Ack::FinishDuplicate));
    }

    #[tokio::test]
    async fn a_requeued_message_without_twins_is_new_again() {
        let s = Setup::new(Dedup::envelope());
        let (first, mut acks) = s.copy(1, 10);
        s.delivered(first).requeue(None).unwrap();
        assert!(matches!(s.answer(&mut acks), Some(Ack::Requeue { .. })));
        let (back, mut back_acks) = s.copy(1, 10);
        s.delivered(back).finish().unwrap();
        assert_eq!(s.answer(&mut back_acks), Some(Ack::Finish));
        assert_eq!(s.counters.duplicates.load(Ordering::Relaxed), 0);
    }

    /// Delivers and finishes message `seq` (nsqd ID `id`).
    fn finish_one(s: &Setup, seq: u64, id: u64) {
        let (m, mut acks) = s.copy(seq, id);
        s.delivered(m).finish().unwrap();
        assert_eq!(s.answer(&mut acks), Some(Ack::Finish));
    }

    #[tokio::test]
    async fn the_oldest_finished_keys_leave_first_when_the_window_is_full() {
        // Two slots of 64 envelope keys.
        let s = Setup::new(Dedup::envelope().max_entries(128));
        for seq in [1, 65, 129] {
            finish_one(&s, seq, seq);
        }
        assert_eq!(s.window.slots(), 2);
        let (late, _acks) = s.copy(1, 1000);
        drop(s.delivered(late)); // the slot of key 1 was pushed out
        let (recent, mut recent_acks) = s.copy(129, 1001);
        s.absorbed(recent);
        assert_eq!(s.answer(&mut recent_acks), Some(Ack::FinishDuplicate));

        // User keys have a slot each: exactly the last `max_entries`.
        let s = Setup::new(Dedup::key_from(|body| body.get(..4)).max_entries(2));
        for (id, body) in [b"key1", b"key2", b"key3"].into_iter().enumerate() {
            let (m, mut acks) = s.raw(id as u64, Bytes::from_static(body));
            s.delivered(m).finish().unwrap();
            assert_eq!(s.answer(&mut acks), Some(Ack::Finish));
        }
        assert_eq!(s.window.slots(), 2);
        let (late, _acks) = s.raw(10, Bytes::from_static(b"key1"));
        drop(s.delivered(late));
        let (recent, mut recent_acks) = s.raw(11, Bytes::from_static(b"key2"));
        s.absorbed(recent);
        assert_eq!(s.answer(&mut recent_acks), Some(Ack::FinishDuplicate));
    }

    #[tokio::test]
    async fn consecutive_sequences_share_a_slot_yet_are_told_apart() {
        let s = Setup::new(Dedup::envelope());
        for seq in (0..64).step_by(2) {
            finish_one(&s, seq, seq + 1);
        }
        assert_eq!(s.window.slots(), 1, "64 consecutive sequences, one slot");
        for seq in 0..64 {
            let (copy, mut acks) = s.copy(seq, 100 + seq);
            if seq % 2 == 0 {
                s.absorbed(copy);
                assert_eq!(s.answer(&mut acks), Some(Ack::FinishDuplicate), "{seq}");
            } else {
                // Its neighbours were finished, not it: it reaches the user.
                s.delivered(copy).finish().unwrap();
                assert_eq!(s.answer(&mut acks), Some(Ack::Finish), "{seq}");
            }
        }
        finish_one(&s, 64, 1000);
        assert_eq!(s.window.slots(), 2, "sequence 64 starts the next slot");
        // Another producer's sequences have slots of their own.
        let body = envelope::envelope(MessageKey::new(2, 3), b"other");
        let (other, _acks) = s.raw(2000, body);
        drop(s.delivered(other));
    }

    #[tokio::test(start_paused = true)]
    async fn a_key_is_remembered_for_max_age_after_its_last_copy() {
        let s = Setup::new(Dedup::envelope().max_age(Duration::from_secs(60)));
        let (m, mut acks) = s.copy(1, 1);
        s.delivered(m).finish().unwrap();
        assert_eq!(s.answer(&mut acks), Some(Ack::Finish));

        tokio::time::advance(Duration::from_secs(50)).await;
        let (twin, mut acks) = s.copy(1, 2);
        s.absorbed(twin); // seen again at 50 s: remembered until 110 s
        assert_eq!(s.answer(&mut acks), Some(Ack::FinishDuplicate));

        tokio::time::advance(Duration::from_secs(50)).await; // 100 s
        let (twin, mut acks) = s.copy(1, 3);
        s.absorbed(twin);
        assert_eq!(s.answer(&mut acks), Some(Ack::FinishDuplicate));

        tokio::time::advance(Duration::from_secs(61)).await; // 161 s: 61 s after the last copy
        let (late, _acks) = s.copy(1, 4);
        drop(s.delivered(late)); // forgotten: it reaches the user again
    }

    #[tokio::test]
    async fn messages_without_a_key_pass_untouched_and_are_counted() {
        let s = Setup::new(Dedup::envelope());
        let (plain, _acks) = s.raw(1, Bytes::from_static(b"{\"plain\":true}"));
        let plain = s.delivered(plain);
        assert_eq!(&plain.body()[..], b"{\"plain\":true}");
        assert_eq!(s.counters.unkeyed.load(Ordering::Relaxed), 1);
        drop(plain);
    }

    #[tokio::test]
    async fn a_key_function_leaves_the_body_as_it_is() {
        let s = Setup::new(Dedup::key_from(|body| body.get(..4)));
        let (a, mut a_acks) = s.raw(1, Bytes::from_static(b"id-1 first"));
        let a = s.delivered(a);
        assert_eq!(&a.body()[..], b"id-1 first");
        a.finish().unwrap();
        assert_eq!(s.answer(&mut a_acks), Some(Ack::Finish));
        let (b, mut b_acks) = s.raw(2, Bytes::from_static(b"id-1 again"));
        s.absorbed(b);
        assert_eq!(s.answer(&mut b_acks), Some(Ack::FinishDuplicate));

        let whole = Setup::new(Dedup::key_from(|body| Some(body)));
        let (long, _l) = whole.raw(3, Bytes::from(vec![b'k'; 100]));
        drop(whole.delivered(long));
        assert_eq!(
            whole.counters.unkeyed.load(Ordering::Relaxed),
            1,
            "a key over 64 bytes"
        );
    }

    #[tokio::test]
    async fn a_stopping_consumer_lets_held_copies_go_back_to_nsqd() {
        let s = Setup::new(Dedup::envelope());
        let (first, _first_acks) = s.copy(1, 10);
        let first = s.delivered(first);
        let (twin, mut twin_acks) = s.copy(1, 20);
        s.absorbed(twin);
        s.window.release_held();
        assert_eq!(
            s.answer(&mut twin_acks),
            Some(Ack::Requeue {
                delay: Duration::ZERO,
                backoff: false
            })
        );
        first.finish().unwrap();
        assert_eq!(s.answer(&mut twin_acks), None, "answered once");
    }

    mod model {
        use super::*;
        use proptest::prelude::*;

        #[derive(Debug, Clone)]
        enum Op {
            /// A copy of (producer, sequence) arrives.
            Arrive(u64, u64),
            /// The user answers one of the copies it holds: FIN when `true`, else REQ.
            Answer(usize, bool),
        }

        fn op() -> impl Strategy<Value = Op> {
            prop_oneof![
                (0..3u64, 0..150u64).prop_map(|(p, seq)| Op::Arrive(p, seq)),
                (any::<usize>(), any::<bool>()).prop_map(|(i, fin)| Op::Answer(i, fin)),
            ]
        }

        /// What an exact, unbounded window would say of each key.
        enum Expect {
            Handling { held: Vec<(u64, Answers)> },
            Finished,
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(256))]

            /// The window (slots, bits and all) decides every copy as an exact set of keys
            /// would, while nothing is old enough to leave it.
            #[test]
            fn the_window_decides_as_an_exact_set_of_keys_would(
                ops in proptest::collection::vec(op(), 1..300),
            ) {
                let mut s = Setup::new(Dedup::envelope());
                let mut expect: HashMap<(u64, u64), Expect> = HashMap::new();
                let mut at_user: Vec<((u64, u64), Message, Answers)> = Vec::new();
                let (mut duplicates, mut next_id) = (0u64, 0u64);
                for op in ops {
                    match op {
                        Op::Arrive(producer, seq) => {
                            next_id += 1;
                            let key = (producer, seq);
                            let body = envelope::envelope(
                                MessageKey::new(producer, seq),
                                format!("m{seq}").as_bytes(),
                            );
                            let (copy, mut acks) = s.raw(next_id, body);
                            let out = s.admit(copy);
                            match expect.get_mut(&key) {
                                Some(Expect::Finished) => {
                                    prop_assert!(out.is_none(), "{key:?} delivered twice");
                                    prop_assert_eq!(s.answer(&mut acks), Some(Ack::FinishDuplicate));
                                    duplicates += 1;
                                }
                                Some(Expect::Handling { held }) => {
                                    prop_assert!(out.is_none(), "{key:?} delivered while handled");
                                    prop_assert_eq!(s.answer(&mut acks), None);
                                    held.push((next_id, acks));
                                }
                                None => {
                                    let msg = out.expect("a new key is delivered");
                                    prop_assert_eq!(&msg.body()[..], format!("m{seq}").into_bytes());
                                    expect.insert(key, Expect::Handling { held: Vec::new() });
                                    at_user.push((key, msg, acks));
                                }
                            }
                        }
                        Op::Answer(pick, finish) => {
                            if at_user.is_empty() {
                                continue;
                            }
                            let (key, msg, mut acks) = at_user.remove(pick % at_user.len());
                            if finish {
                                msg.finish().unwrap();
                                prop_assert_eq!(s.answer(&mut acks), Some(Ack::Finish));
                            } else {
                                msg.requeue(None).unwrap();
                                let requeued = matches!(s.answer(&mut acks), Some(Ack::Requeue { .. }));
                                prop_assert!(requeued, "a REQ");
                            }
                            let Some(Expect::Handling { held }) = expect.get_mut(&key) else {
                                panic!("{key:?} was with the user");
                            };
                            if finish {
                                for (_, mut twin) in std::mem::take(held) {
                                    prop_assert_eq!(s.answer(&mut twin), Some(Ack::FinishDuplicate));
                                    duplicates += 1;
                                }
                                expect.insert(key, Expect::Finished);
                            } else if held.is_empty() {
                                expect.remove(&key);
                            } else {
                                let (id, twin_acks) = held.remove(0);
                                let mut promoted = s.queue.try_recv().expect("a held copy is handed on");
                                prop_assert_eq!(promoted.len(), 1);
                                let next = promoted.pop().unwrap();
                                prop_assert_eq!(next.id(), nsq_proto::MessageId::from_u64(id));
                                at_user.push((key, next, twin_acks));
                            }
                        }
                    }
                    let held: usize = expect
                        .values()
                        .map(|e| match e {
                            Expect::Handling { held } => held.len(),
                            Expect::Finished => 0,
                        })
                        .sum();
                    prop_assert_eq!(s.counters.duplicates.load(Ordering::Relaxed), duplicates);
                    prop_assert_eq!(s.counters.duplicates_held.load(Ordering::Relaxed), held as u64);
                    prop_assert!(s.queue.try_recv().is_err(), "nothing handed on unasked");
                }
                // Finish what the user holds, so every message is answered.
                for (_, msg, _) in at_user {
                    msg.finish().unwrap();
                }
            }
        }
    }

    #[test]
    fn keys_differing_in_one_byte_hash_apart() {
        use std::hash::BuildHasher;
        let hasher = KeyHasher::default();
        let base = MessageKey::new(7, 7);
        let h = |k: &Key| hasher.hash_one(k);
        let mut seen = std::collections::HashSet::new();
        seen.insert(h(&Key::Envelope(base)));
        for byte in 0..16 {
            let mut bytes = base.to_bytes();
            bytes[byte] ^= 1;
            let key = MessageKey::from_bytes(bytes);
            assert!(seen.insert(h(&Key::Envelope(key))), "byte {byte}");
        }
    }
}
