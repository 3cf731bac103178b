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

use bytes::Bytes;
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
/// Memory: about 120 bytes per remembered key for envelope keys (a user key of `n` bytes adds
/// two allocations of `n`), so the default 100,000 keys take about 12 MB. Size the window as
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
#[derive(Clone, PartialEq, Eq, Hash)]
enum Key {
    Envelope(MessageKey),
    User(Box<[u8]>),
}

enum Entry {
    /// A copy is with the user; these copies wait for its answer.
    Handling { held: Vec<Message> },
    /// A copy was finished; the last copy was seen then.
    Done { seen: Instant },
}

#[derive(Default)]
struct State {
    entries: HashMap<Key, Entry>,
    /// Done keys, oldest first, with the time each was last put here.
    order: VecDeque<(Key, Instant)>,
}

/// What the window decided for a delivered copy.
pub(crate) enum Admitted {
    /// Give it to the user.
    Deliver(Message),
    /// Taken care of here: finished as a duplicate, or held.
    Absorbed,
}

/// The window itself, shared by the consumer's inbox and the messages it handed out.
pub(crate) struct Window {
    dedup: Dedup,
    state: Mutex<State>,
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

/// The link from a delivered copy back to its key, resolved by the copy's answer.
pub(crate) struct Claim {
    window: Arc<Window>,
    key: Key,
}

impl std::fmt::Debug for Claim {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Claim")
    }
}

impl Claim {
    /// The copy was answered: `finished` when with FIN, else it was requeued or dropped.
    pub(crate) fn resolve(&self, finished: bool) {
        Window::resolve(&self.window, &self.key, finished);
    }
}

impl Window {
    pub(crate) fn new(
        dedup: Dedup,
        requeue: mpsc::WeakUnboundedSender<Vec<Message>>,
        counters: Arc<Counters>,
    ) -> Arc<Self> {
        Arc::new(Self {
            dedup,
            state: Mutex::new(State::default()),
            requeue,
            counters,
        })
    }

    /// The key of `msg`, and the body the user should see when it is not the delivered one.
    fn key_of(&self, msg: &Message) -> Option<(Key, Option<Bytes>)> {
        match &self.dedup.source {
            KeySource::Envelope => {
                envelope::open(msg.body()).map(|(key, body)| (Key::Envelope(key), Some(body)))
            }
            KeySource::Extract(extract) => extract(msg.body())
                .filter(|key| key.len() <= MAX_KEY_LEN)
                .map(|key| (Key::User(key.into()), None)),
        }
    }

    /// Decides what happens to a delivered copy.
    pub(crate) fn admit(self: &Arc<Self>, mut msg: Message) -> Admitted {
        if msg.is_claimed() {
            // A held copy taking the place of one that failed: already decided.
            return Admitted::Deliver(msg);
        }
        let Some((key, body)) = self.key_of(&msg) else {
            self.counters.unkeyed.fetch_add(1, Ordering::Relaxed);
            return Admitted::Deliver(msg);
        };
        if let Some(body) = body {
            msg.replace_body(body);
        }
        let now = Instant::now();
        let mut state = self.lock();
        self.evict(&mut state, now);
        match state.entries.get_mut(&key) {
            None => {
                state
                    .entries
                    .insert(key.clone(), Entry::Handling { held: Vec::new() });
                drop(state);
                msg.claim(Claim {
                    window: self.clone(),
                    key,
                });
                Admitted::Deliver(msg)
            }
            Some(Entry::Handling { held }) => {
                held.push(msg);
                self.counters
                    .duplicates_held
                    .fetch_add(1, Ordering::Relaxed);
                Admitted::Absorbed
            }
            Some(Entry::Done { seen }) => {
                *seen = now;
                drop(state);
                self.counters.duplicates.fetch_add(1, Ordering::Relaxed);
                if let Err(err) = msg.finish_duplicate() {
                    tracing::debug!(%err, "finishing a duplicate");
                }
                Admitted::Absorbed
            }
        }
    }

    fn resolve(self: &Arc<Self>, key: &Key, finished: bool) {
        let now = Instant::now();
        let mut state = self.lock();
        let Some(Entry::Handling { held }) = state.entries.get_mut(key) else {
            return;
        };
        let mut held = std::mem::take(held);
        let next = if finished {
            state.entries.insert(key.clone(), Entry::Done { seen: now });
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
            if let Some(Entry::Handling { held: rest }) = state.entries.get_mut(key) {
                *rest = std::mem::take(&mut held);
            }
            Some(next)
        };
        drop(state);
        self.counters.duplicates_held.fetch_sub(
            held.len() as u64 + u64::from(next.is_some()),
            Ordering::Relaxed,
        );
        for twin in held {
            self.counters.duplicates.fetch_add(1, Ordering::Relaxed);
            if let Err(err) = twin.finish_duplicate() {
                tracing::debug!(%err, "finishing a held duplicate");
            }
        }
        if let Some(next) = next {
            next.claim(Claim {
                window: self.clone(),
                key: key.clone(),
            });
            // The consumer's queue: it goes through the same path as a new delivery, so
            // max_attempts applies. With the consumer gone, dropping it requeues it.
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
            let over = state.order.len() > self.dedup.max_entries;
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
        {
            let mut state = self.lock();
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

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::consumer::message::tests::message_with;
    use crate::consumer::message::{Ack, AckCommand};

    struct Setup {
        window: Arc<Window>,
        queue: mpsc::UnboundedReceiver<Vec<Message>>,
        _queue_tx: mpsc::UnboundedSender<Vec<Message>>,
        counters: Arc<Counters>,
    }

    fn setup(dedup: Dedup) -> Setup {
        let (tx, rx) = mpsc::unbounded_channel();
        let counters = Arc::new(Counters::default());
        Setup {
            window: Window::new(dedup, tx.downgrade(), counters.clone()),
            queue: rx,
            _queue_tx: tx,
            counters,
        }
    }

    /// A copy of message `seq` (nsqd ID `id`) in its envelope.
    fn copy(seq: u64, id: u64) -> (Message, mpsc::UnboundedReceiver<AckCommand>) {
        let body = envelope::envelope(MessageKey::new(1, seq), format!("m{seq}").as_bytes());
        message_with(1, id, body)
    }

    fn delivered(admitted: Admitted) -> Message {
        match admitted {
            Admitted::Deliver(msg) => msg,
            Admitted::Absorbed => panic!("absorbed, not delivered"),
        }
    }

    fn absorbed(admitted: Admitted) {
        assert!(
            matches!(admitted, Admitted::Absorbed),
            "delivered, not absorbed"
        );
    }

    fn answer(acks: &mut mpsc::UnboundedReceiver<AckCommand>) -> Option<Ack> {
        acks.try_recv().ok().map(|a| a.ack)
    }

    #[tokio::test]
    async fn a_copy_after_a_finished_one_is_finished_without_reaching_the_user() {
        let s = setup(Dedup::envelope());
        let (first, mut first_acks) = copy(1, 10);
        let first = delivered(s.window.admit(first));
        assert_eq!(
            &first.body()[..],
            b"m1",
            "the user sees the body without the envelope"
        );
        first.finish().unwrap();
        assert_eq!(answer(&mut first_acks), Some(Ack::Finish));

        let (twin, mut twin_acks) = copy(1, 20);
        absorbed(s.window.admit(twin));
        assert_eq!(answer(&mut twin_acks), Some(Ack::FinishDuplicate));
        assert_eq!(s.counters.duplicates.load(Ordering::Relaxed), 1);

        let (other, _other_acks) = copy(2, 30);
        let other = delivered(s.window.admit(other));
        assert_eq!(&other.body()[..], b"m2", "another key is another message");
        drop(other);
    }

    #[tokio::test]
    async fn a_twin_arriving_during_handling_is_held_then_finished_with_the_first() {
        let s = setup(Dedup::envelope());
        let (first, _first_acks) = copy(1, 10);
        let first = delivered(s.window.admit(first));
        let (twin, mut twin_acks) = copy(1, 20);
        absorbed(s.window.admit(twin));
        assert_eq!(answer(&mut twin_acks), None, "held, not answered");
        assert_eq!(s.counters.duplicates_held.load(Ordering::Relaxed), 1);
        first.finish().unwrap();
        assert_eq!(answer(&mut twin_acks), Some(Ack::FinishDuplicate));
        assert_eq!(s.counters.duplicates_held.load(Ordering::Relaxed), 0);
    }

    #[tokio::test]
    async fn a_held_twin_takes_the_place_of_a_first_copy_that_is_requeued_or_dropped() {
        let mut s = setup(Dedup::envelope());
        let (first, mut first_acks) = copy(1, 10);
        let first = delivered(s.window.admit(first));
        let (twin, mut twin_acks) = copy(1, 20);
        absorbed(s.window.admit(twin));
        let (third, mut third_acks) = copy(1, 30);
        absorbed(s.window.admit(third));

        first.requeue(None).unwrap();
        assert!(matches!(answer(&mut first_acks), Some(Ack::Requeue { .. })));
        assert_eq!(answer(&mut twin_acks), None);
        let mut batch = s.queue.try_recv().expect("the twin goes to the user");
        let twin = delivered(s.window.admit(batch.pop().unwrap()));
        assert_eq!(twin.id(), nsq_proto::MessageId::from_u64(20));
        assert_eq!(&twin.body()[..], b"m1");

        drop(twin); // unanswered: requeued, and the third copy is next
        assert!(matches!(answer(&mut twin_acks), Some(Ack::Requeue { .. })));
        let mut batch = s.queue.try_recv().expect("the third copy goes to the user");
        let third = delivered(s.window.admit(batch.pop().unwrap()));
        third.finish().unwrap();
        assert_eq!(answer(&mut third_acks), Some(Ack::Finish));

        // The requeued first copy comes back: finished as a duplicate.
        let (again, mut again_acks) = copy(1, 10);
        absorbed(s.window.admit(again));
        assert_eq!(answer(&mut again_acks), Some(Ack::FinishDuplicate));
    }

    #[tokio::test]
    async fn a_requeued_message_without_twins_is_new_again() {
        let s = setup(Dedup::envelope());
        let (first, _acks) = copy(1, 10);
        delivered(s.window.admit(first)).requeue(None).unwrap();
        let (back, _back_acks) = copy(1, 10);
        delivered(s.window.admit(back)).finish().unwrap();
        assert_eq!(s.counters.duplicates.load(Ordering::Relaxed), 0);
    }

    #[tokio::test]
    async fn the_oldest_finished_keys_leave_first_when_the_window_is_full() {
        let s = setup(Dedup::envelope().max_entries(2));
        for seq in 1..=3 {
            let (m, _acks) = copy(seq, seq);
            delivered(s.window.admit(m)).finish().unwrap();
        }
        assert_eq!(s.window.lock().entries.len(), 2);
        let (late, _acks) = copy(1, 100);
        let late = delivered(s.window.admit(late)); // key 1 was pushed out
        drop(late);
        let (recent, mut recent_acks) = copy(3, 101);
        absorbed(s.window.admit(recent));
        assert_eq!(answer(&mut recent_acks), Some(Ack::FinishDuplicate));
    }

    #[tokio::test(start_paused = true)]
    async fn a_key_is_remembered_for_max_age_after_its_last_copy() {
        let s = setup(Dedup::envelope().max_age(Duration::from_secs(60)));
        let (m, _acks) = copy(1, 1);
        delivered(s.window.admit(m)).finish().unwrap();

        tokio::time::advance(Duration::from_secs(50)).await;
        let (twin, mut acks) = copy(1, 2);
        absorbed(s.window.admit(twin)); // seen again at 50 s: remembered until 110 s
        assert_eq!(answer(&mut acks), Some(Ack::FinishDuplicate));

        tokio::time::advance(Duration::from_secs(50)).await; // 100 s
        let (twin, mut acks) = copy(1, 3);
        absorbed(s.window.admit(twin));
        assert_eq!(answer(&mut acks), Some(Ack::FinishDuplicate));

        tokio::time::advance(Duration::from_secs(61)).await; // 161 s: 61 s after the last copy
        let (late, _acks) = copy(1, 4);
        drop(delivered(s.window.admit(late))); // forgotten: it reaches the user again
    }

    #[tokio::test]
    async fn messages_without_a_key_pass_untouched_and_are_counted() {
        let s = setup(Dedup::envelope());
        let (plain, _acks) = message_with(1, 1, Bytes::from_static(b"{\"plain\":true}"));
        let plain = delivered(s.window.admit(plain));
        assert_eq!(&plain.body()[..], b"{\"plain\":true}");
        assert_eq!(s.counters.unkeyed.load(Ordering::Relaxed), 1);
        drop(plain);
    }

    #[tokio::test]
    async fn a_key_function_leaves_the_body_as_it_is() {
        let s = setup(Dedup::key_from(|body| body.get(..4)));
        let (a, _a) = message_with(1, 1, Bytes::from_static(b"id-1 first"));
        let a = delivered(s.window.admit(a));
        assert_eq!(&a.body()[..], b"id-1 first");
        a.finish().unwrap();
        let (b, mut b_acks) = message_with(1, 2, Bytes::from_static(b"id-1 again"));
        absorbed(s.window.admit(b));
        assert_eq!(answer(&mut b_acks), Some(Ack::FinishDuplicate));
        let (long, _l) = message_with(1, 3, Bytes::from(vec![b'k'; 100]));
        let s2 = setup(Dedup::key_from(|body| Some(body)));
        drop(delivered(s2.window.admit(long)));
        assert_eq!(
            s2.counters.unkeyed.load(Ordering::Relaxed),
            1,
            "a key over 64 bytes"
        );
    }

    #[tokio::test]
    async fn a_stopping_consumer_lets_held_copies_go_back_to_nsqd() {
        let s = setup(Dedup::envelope());
        let (first, _first_acks) = copy(1, 10);
        let first = delivered(s.window.admit(first));
        let (twin, mut twin_acks) = copy(1, 20);
        absorbed(s.window.admit(twin));
        s.window.release_held();
        assert_eq!(
            answer(&mut twin_acks),
            Some(Ack::Requeue {
                delay: Duration::ZERO,
                backoff: false
            })
        );
        first.finish().unwrap();
        assert_eq!(answer(&mut twin_acks), None, "answered once");
    }
}
