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
//!   user, as long as the key stays in the window: until `max_age` after the last copy was
//!   seen, or until `max_entries` newer keys pushed it out. A copy arriving after that
//!   reaches the user again.
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
/// Windows of 1,024 keys or more are kept in 16 shards, each remembering its share of
/// `max_entries`: "the oldest go first" holds within a shard.
///
/// Memory, from the layout: per remembered key a 48-byte table bucket and its control byte
/// (tables are kept at most 7/8 full and grow by doubling) and a 40-byte entry in the
/// eviction queue: 100 to 200 bytes (a user key of `n` bytes adds two allocations of `n`).
/// Each shard reserves room for its share of `max_entries` (up to 65,536 keys) up front, so
/// the default 100,000 keys take 10 to 20 MB. Size the window as
/// the message rate times the longest delay expected between copies of one message (an nsqd
/// that was down delivers its copies when it is back).
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
            // One write: the hasher below takes it in two multiplications.
            Key::Envelope(key) => state.write(key.as_bytes()),
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

    fn write_u8(&mut self, byte: u8) {
        self.state = fold(self.state ^ u64::from(byte), self.seed);
    }

    fn finish(&self) -> u64 {
        fold(self.state, self.seed ^ 0x9e37_79b9_7f4a_7c15)
    }
}

enum Entry {
    /// A copy is with the user; these copies wait for its answer.
    Handling { held: Vec<Message> },
    /// A copy was finished; the last copy was seen then.
    Done { seen: Instant },
}

struct State {
    entries: HashMap<Key, Entry, KeyHasher>,
    /// Done keys, oldest first, with the time each was last put here.
    order: VecDeque<(Key, Instant)>,
}

impl State {
    /// Room for `entries` keys from the start (up to 65,536 a shard), so that a filling
    /// window does not rehash as it grows.
    fn with_capacity(entries: usize) -> Self {
        let room = entries.min(1 << 16);
        Self {
            entries: HashMap::with_capacity_and_hasher(room, KeyHasher::default()),
            order: VecDeque::with_capacity(room),
        }
    }
}

/// Windows this large or larger are split into [`SHARDS`] shards, each with its own lock
/// and its share of `max_entries`, so that the connections deciding on new copies and the
/// user answering old ones seldom wait for each other. Smaller ones are one exact LRU.
const SHARDED_FROM: usize = 1024;
const SHARDS: usize = 16;

/// The window itself, shared by the consumer's connections and the messages they handed out.
pub(crate) struct Window {
    dedup: Dedup,
    shards: Box<[Mutex<State>]>,
    /// Finished keys each shard remembers at most.
    shard_entries: usize,
    /// Picks a key's shard (its own seed, so that the shard says nothing of the bucket).
    shard_of: KeyHasher,
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
        let shards = if dedup.max_entries >= SHARDED_FROM {
            SHARDS
        } else {
            1
        };
        Arc::new(Self {
            shard_entries: dedup.max_entries.div_ceil(shards),
            shards: (0..shards)
                .map(|_| Mutex::new(State::with_capacity(dedup.max_entries.div_ceil(shards))))
                .collect(),
            shard_of: KeyHasher::default(),
            dedup,
            requeue,
            counters,
        })
    }

    /// The key of `msg`, and how many bytes of envelope to take off its body.
    fn key_of(&self, msg: &Message) -> Option<(Key, usize)> {
        match &self.dedup.source {
            KeySource::Envelope => {
                envelope::key_of(msg.body()).map(|key| (Key::Envelope(key), envelope::HEADER_LEN))
            }
            KeySource::Extract(extract) => extract(msg.body())
                .filter(|key| key.len() <= MAX_KEY_LEN)
                .map(|key| (Key::User(key.into()), 0)),
        }
    }

    /// Decides what happens to each copy one socket read brought: the copies to hand to the
    /// user come back (claimed, and out of their envelope); the others are finished as
    /// duplicates or held.
    pub(crate) fn admit(&self, batch: Vec<Message>) -> Vec<Message> {
        let mut deliver = Vec::with_capacity(batch.len());
        let mut duplicates = Vec::new();
        let now = Instant::now();
        for mut msg in batch {
            let Some((key, header)) = self.key_of(&msg) else {
                self.counters.unkeyed.fetch_add(1, Ordering::Relaxed);
                deliver.push(msg);
                continue;
            };
            if header > 0 {
                msg.strip_header(header);
            }
            {
                let mut state = self.lock(&key);
                self.evict(&mut state, now);
                match state.entries.entry(key) {
                    std::collections::hash_map::Entry::Vacant(vacant) => {
                        msg.claim(vacant.key().clone());
                        vacant.insert(Entry::Handling { held: Vec::new() });
                        deliver.push(msg);
                    }
                    std::collections::hash_map::Entry::Occupied(mut occupied) => {
                        match occupied.get_mut() {
                            Entry::Handling { held } => {
                                held.push(msg);
                                self.counters
                                    .duplicates_held
                                    .fetch_add(1, Ordering::Relaxed);
                            }
                            Entry::Done { seen } => {
                                *seen = now;
                                duplicates.push(msg);
                            }
                        }
                    }
                }
            }
        }
        self.finish_duplicates(duplicates);
        deliver
    }

    fn finish_duplicates(&self, duplicates: Vec<Message>) {
        if duplicates.is_empty() {
            return;
        }
        self.counters
            .duplicates
            .fetch_add(duplicates.len() as u64, Ordering::Relaxed);
        for twin in duplicates {
            if let Err(err) = twin.finish_duplicate() {
                tracing::debug!(%err, "finishing a duplicate");
            }
        }
    }

    /// A claimed copy was answered: `finished` when with FIN, else it was requeued or
    /// dropped.
    pub(crate) fn resolve(&self, key: &Key, finished: bool) {
        let now = Instant::now();
        let mut state = self.lock(key);
        let Some(entry) = state.entries.get_mut(key) else {
            return;
        };
        let Entry::Handling { held: waiting } = entry else {
            return;
        };
        let mut held = std::mem::take(waiting);
        let next = if finished {
            *entry = Entry::Done { seen: now };
            state.order.push_back((key.clone(), now));
            self.evict(&mut state, now);
            None
        } else if held.is_empty() {
            // Forgotten: the requeued copy (or any other) is new again when it comes back.
            state.entries.remove(key);
            None
        } else {
            // Another copy takes the failed one's place; the rest stay held behind it.
            let next = held.remove(0);
            *waiting = std::mem::take(&mut held);
            Some(next)
        };
        drop(state);
        self.counters.duplicates_held.fetch_sub(
            held.len() as u64 + u64::from(next.is_some()),
            Ordering::Relaxed,
        );
        self.finish_duplicates(held);
        if let Some(mut next) = next {
            next.claim(key.clone());
            // The consumer's queue, as a new delivery (so max_attempts applies). With the
            // consumer gone, dropping it requeues it.
            if let Some(queue) = self.requeue.upgrade() {
                let _ = queue.send(vec![next]);
            }
        }
    }

    /// Drops the oldest finished keys while there are more than `max_entries`, and those not
    /// seen for `max_age`.
    fn evict(&self, state: &mut State, now: Instant) {
        let cutoff = now.checked_sub(self.dedup.max_age);
        while let Some((key, put)) = state.order.front().cloned() {
            let over = state.order.len() > self.shard_entries;
            let stale = cutoff.is_some_and(|cutoff| put <= cutoff);
            if !over && !stale {
                break;
            }
            state.order.pop_front();
            if !over {
                // Seen again since it was put here: it stays, moved to the back.
                if let Some(Entry::Done { seen }) = state.entries.get(&key) {
                    if cutoff.is_some_and(|cutoff| *seen > cutoff) {
                        let seen = *seen;
                        state.order.push_back((key, seen));
                        continue;
                    }
                }
            }
            if matches!(state.entries.get(&key), Some(Entry::Done { .. })) {
                state.entries.remove(&key);
            }
        }
    }

    /// Lets every held copy go unanswered (so nsqd requeues it at once), for a stopping
    /// consumer: the copies with the user are still answered as usual.
    pub(crate) fn release_held(&self) {
        let mut released = Vec::new();
        for shard in &self.shards {
            let mut state = shard
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            for entry in state.entries.values_mut() {
                if let Entry::Handling { held } = entry {
                    released.append(held);
                }
            }
        }
        self.counters
            .duplicates_held
            .fetch_sub(released.len() as u64, Ordering::Relaxed);
        drop(released);
    }

    /// The shard of `key`, locked.
    fn lock(&self, key: &Key) -> std::sync::MutexGuard<'_, State> {
        use std::hash::BuildHasher;
        let shard = match key {
            _ if self.shards.len() == 1 => 0,
            // Sequences count up: consecutive messages go to consecutive shards.
            Key::Envelope(key) => (key.sequence() ^ key.producer()) as usize % self.shards.len(),
            Key::User(_) => (self.shard_of.hash_one(key) >> 32) as usize % self.shards.len(),
        };
        self.shards[shard]
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// How many keys the window holds, over every shard.
    #[cfg(test)]
    fn len(&self) -> usize {
        self.shards
            .iter()
            .map(|shard| shard.lock().map_or(0, |state| state.entries.len()))
            .sum()
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
            let mut out = self.window.admit(vec![msg]);
            assert!(out.len() <= 1);
            out.pop()
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
    async fn copies_in_one_batch_are_decided_in_order() {
        let s = Setup::new(Dedup::envelope());
        let (a, mut a_acks) = s.copy(1, 10);
        let (b, mut b_acks) = s.copy(1, 20);
        let (c, mut c_acks) = s.copy(2, 30);
        let out = s.window.admit(vec![a, b, c]);
        let ids: Vec<_> = out.iter().map(Message::id).collect();
        assert_eq!(
            ids,
            [
                nsq_proto::MessageId::from_u64(10),
                nsq_proto::MessageId::from_u64(30)
            ]
        );
        assert_eq!(s.answer(&mut b_acks), None, "the twin is held");
        assert_eq!(s.counters.duplicates_held.load(Ordering::Relaxed), 1);
        for msg in out {
            msg.finish().unwrap();
        }
        assert_eq!(s.answer(&mut a_acks), Some(Ack::Finish));
        assert_eq!(s.answer(&mut c_acks), Some(Ack::Finish));
        assert_eq!(s.answer(&mut b_acks), Some(Ack::FinishDuplicate));
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

    #[tokio::test]
    async fn the_oldest_finished_keys_leave_first_when_the_window_is_full() {
        let s = Setup::new(Dedup::envelope().max_entries(2));
        for seq in 1..=3 {
            let (m, mut acks) = s.copy(seq, seq);
            s.delivered(m).finish().unwrap();
            assert_eq!(s.answer(&mut acks), Some(Ack::Finish));
        }
        assert_eq!(s.window.len(), 2);
        let (late, _acks) = s.copy(1, 100);
        drop(s.delivered(late)); // key 1 was pushed out
        let (recent, mut recent_acks) = s.copy(3, 101);
        s.absorbed(recent);
        assert_eq!(s.answer(&mut recent_acks), Some(Ack::FinishDuplicate));
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

    #[test]
    fn keys_differing_in_one_byte_hash_apart() {
        use std::hash::BuildHasher;
        let hasher = KeyHasher::default();
        let base = MessageKey::new(7, 7);
        let h = |k: &Key| hasher.hash_one(k);
        let mut seen = std::collections::HashSet::new();
        seen.insert(h(&Key::Envelope(base)));
        for byte in 0..16 {
            let mut bytes = *base.as_bytes();
            bytes[byte] ^= 1;
            let key = MessageKey::new(
                u64::from_be_bytes(bytes[..8].try_into().unwrap()),
                u64::from_be_bytes(bytes[8..].try_into().unwrap()),
            );
            assert!(seen.insert(h(&Key::Envelope(key))), "byte {byte}");
        }
    }
}
