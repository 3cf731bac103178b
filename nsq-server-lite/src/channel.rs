//! A channel: its queue, its deferred messages, its in-flight window and its consumers.
//!
//! Everything about one channel lives under one lock, so that delivering a message, counting it
//! against a consumer's RDY and starting its in-flight timeout happen together, and FIN, REQ and
//! TOUCH see a consistent state. Delivery is push-based: whenever a message becomes available or a
//! consumer gains room in its window, [`ChannelState::dispatch`] hands messages to ready consumers
//! in turn and queues them on each consumer's outbound queue, which its connection's writer
//! drains.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, VecDeque};
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use bytes::{BufMut, BytesMut};
use nsq_proto::{Channel as ChannelName, Message, MessageId, Topic as TopicName};
use tokio::sync::mpsc;
use tokio::time::Instant;

use crate::client::ClientInfo;
use crate::conn::Outbound;
use crate::stats::{ChannelStats, ClientStats};

/// Why FIN, REQ or TOUCH failed; the text is nsqd's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum OwnershipError {
    NotInFlight,
    NotOwner,
}

impl OwnershipError {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            OwnershipError::NotInFlight => "ID not in flight",
            OwnershipError::NotOwner => "client does not own message",
        }
    }
}

/// A subscribed connection, as the channel sees it.
#[derive(Debug)]
pub(crate) struct Consumer {
    pub(crate) info: Arc<ClientInfo>,
    pub(crate) tx: mpsc::UnboundedSender<Outbound>,
    /// The message frames given to this consumer by the dispatch under way, encoded, and how
    /// many; sent to its writer together.
    pub(crate) outbox: BytesMut,
    pub(crate) outbox_count: u64,
    pub(crate) ready: u32,
    pub(crate) in_flight: u32,
    pub(crate) sample_rate: u8,
    pub(crate) msg_timeout: Duration,
}

impl Consumer {
    fn is_ready(&self) -> bool {
        self.ready > 0 && self.in_flight < self.ready
    }
}

#[derive(Debug)]
struct InFlight {
    msg: Message,
    client: u64,
    /// This message's live entry in `timeouts`.
    deadline: (Instant, u64),
    delivered: Instant,
}

#[derive(Debug)]
struct Deferred {
    at: Instant,
    seq: u64,
    msg: Message,
}

impl PartialEq for Deferred {
    fn eq(&self, other: &Self) -> bool {
        (self.at, self.seq) == (other.at, other.seq)
    }
}
impl Eq for Deferred {}
impl PartialOrd for Deferred {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Deferred {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        (self.at, self.seq).cmp(&(other.at, other.seq))
    }
}

/// Hashes the broker's own message IDs: they are unique by construction, so a fast mix of
/// their bytes spreads them well. A client only looks IDs up (FIN, REQ, TOUCH) and cannot add
/// any, so it cannot crowd the table with colliding keys.
#[derive(Debug, Default, Clone, Copy)]
struct IdHasher(u64);

impl Hasher for IdHasher {
    fn write(&mut self, bytes: &[u8]) {
        const K: u64 = 0x9e37_79b9_7f4a_7c15;
        for chunk in bytes.chunks(8) {
            let mut word = [0u8; 8];
            word[..chunk.len()].copy_from_slice(chunk);
            self.0 = (self.0.rotate_left(26) ^ u64::from_le_bytes(word)).wrapping_mul(K);
        }
    }

    fn write_usize(&mut self, n: usize) {
        self.write(&n.to_le_bytes());
    }

    fn finish(&self) -> u64 {
        // hashbrown takes its control bits from the top: fold the low bits in.
        self.0 ^ (self.0 >> 29)
    }
}

/// An in-flight deadline: when, a sequence number that makes it unique, and whose.
type Deadline = Reverse<((Instant, u64), MessageId)>;

#[derive(Debug, Default)]
struct ChannelState {
    queue: VecDeque<Message>,
    deferred: BinaryHeap<Reverse<Deferred>>,
    in_flight: HashMap<MessageId, InFlight, BuildHasherDefault<IdHasher>>,
    /// In-flight deadlines, earliest first. FIN, REQ and TOUCH leave the old entry behind: an
    /// entry counts only while it matches its message's `InFlight::deadline`, and the stale
    /// ones are dropped when they come due or when they outnumber the live ones.
    timeouts: BinaryHeap<Deadline>,
    consumers: Vec<(u64, Consumer)>,
    cursor: usize,
    seq: u64,
    paused: bool,
    deleted: bool,
    requeue_count: u64,
    timeout_count: u64,
}

/// Limits and timeouts a channel applies; copied from the broker's options.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ChannelLimits {
    pub(crate) mem_queue_size: usize,
    pub(crate) max_msg_timeout: Duration,
    pub(crate) max_channel_consumers: usize,
}

/// One channel of a topic.
#[derive(Debug)]
pub(crate) struct Channel {
    pub(crate) topic: TopicName,
    pub(crate) name: ChannelName,
    pub(crate) ephemeral: bool,
    limits: ChannelLimits,
    /// Messages copied to this channel (nsqd's `message_count`).
    message_count: AtomicU64,
    state: Mutex<ChannelState>,
}

impl Channel {
    pub(crate) fn new(topic: TopicName, name: ChannelName, limits: ChannelLimits) -> Self {
        Self {
            ephemeral: name.is_ephemeral(),
            topic,
            name,
            limits,
            message_count: AtomicU64::new(0),
            state: Mutex::new(ChannelState::default()),
        }
    }

    fn lock(&self) -> MutexGuard<'_, ChannelState> {
        // A panic while holding the lock leaves counters, not invariants that matter for safety.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// How many more messages the channel can hold before a publish must be refused.
    /// Ephemeral channels drop instead, so they never refuse.
    pub(crate) fn room(&self) -> usize {
        if self.ephemeral {
            return usize::MAX;
        }
        let st = self.lock();
        self.limits
            .mem_queue_size
            .saturating_sub(st.queue.len() + st.deferred.len())
    }

    /// Adds messages (each with its defer time) and delivers what it can.
    pub(crate) fn put(&self, msgs: impl IntoIterator<Item = (Message, Duration)>) {
        let now = Instant::now();
        let mut st = self.lock();
        if st.deleted {
            return;
        }
        let mut count = 0;
        for (msg, defer) in msgs {
            count += 1;
            if self.ephemeral && st.queue.len() + st.deferred.len() >= self.limits.mem_queue_size {
                // nsqd drops what does not fit in an ephemeral channel's memory queue. Other
                // channels never drop: publishes are refused before the bound instead
                // (`Topic::put` checks `room`), and what the topic held for them is bounded.
                tracing::debug!(topic = %self.topic, channel = %self.name, "ephemeral queue full, message dropped");
                continue;
            }
            if defer.is_zero() {
                st.queue.push_back(msg);
            } else {
                st.defer(msg, now + defer);
            }
        }
        self.message_count.fetch_add(count, Ordering::Relaxed);
        st.dispatch(now);
    }

    /// Adds a consumer. Fails with nsqd's text when the channel is being deleted or full.
    pub(crate) fn add_consumer(&self, id: u64, consumer: Consumer) -> Result<(), String> {
        let mut st = self.lock();
        if st.deleted {
            return Err("exiting".to_owned());
        }
        let max = self.limits.max_channel_consumers;
        if max != 0 && st.consumers.len() >= max {
            return Err(format!(
                "consumers for {}:{} exceeds limit of {max}",
                self.topic, self.name
            ));
        }
        st.consumers.push((id, consumer));
        Ok(())
    }

    /// Removes a consumer; its in-flight messages stay until they time out, as in nsqd.
    /// Returns whether the channel is now an ephemeral channel without consumers.
    pub(crate) fn remove_consumer(&self, id: u64) -> bool {
        let mut st = self.lock();
        let before = st.consumers.len();
        st.consumers.retain(|(cid, _)| *cid != id);
        let removed = st.consumers.len() != before;
        removed && self.ephemeral && st.consumers.is_empty() && !st.deleted
    }

    pub(crate) fn set_ready(&self, id: u64, count: u32) {
        let mut st = self.lock();
        if let Some(c) = st.consumer_mut(id) {
            c.ready = count;
        }
        st.dispatch(Instant::now());
    }

    /// Finishes messages in order under one lock, then delivers into the freed room once.
    /// Returns the failures, in order, with their IDs; finishing goes on past a failure, as a
    /// failed FIN is not fatal.
    pub(crate) fn finish_many(
        &self,
        id: u64,
        msg_ids: &[MessageId],
    ) -> Vec<(MessageId, OwnershipError)> {
        let mut failed = Vec::new();
        let mut st = self.lock();
        for &msg_id in msg_ids {
            if let Err(e) = st.take_in_flight(id, msg_id) {
                failed.push((msg_id, e));
            }
        }
        st.compact_timeouts();
        st.dispatch(Instant::now());
        failed
    }

    pub(crate) fn requeue(
        &self,
        id: u64,
        msg_id: MessageId,
        delay: Duration,
    ) -> Result<(), OwnershipError> {
        let now = Instant::now();
        let mut st = self.lock();
        let entry = st.take_in_flight(id, msg_id)?;
        st.compact_timeouts();
        st.requeue_count += 1;
        if delay.is_zero() {
            st.queue.push_back(entry.msg);
        } else {
            st.defer(entry.msg, now + delay);
        }
        st.dispatch(now);
        Ok(())
    }

    pub(crate) fn touch(&self, id: u64, msg_id: MessageId) -> Result<(), OwnershipError> {
        let now = Instant::now();
        let mut st = self.lock();
        let msg_timeout = st
            .consumer_mut(id)
            .map_or(Duration::ZERO, |c| c.msg_timeout);
        let seq = st.next_seq();
        let entry = st.owned_mut(id, msg_id)?;
        let cap = entry.delivered + self.limits.max_msg_timeout;
        let new_deadline = (now + msg_timeout).min(cap);
        entry.deadline = (new_deadline, seq);
        st.timeouts.push(Reverse(((new_deadline, seq), msg_id)));
        st.compact_timeouts();
        Ok(())
    }

    /// Times out in-flight messages and releases deferred ones that are due.
    pub(crate) fn scan(&self, now: Instant) {
        let mut st = self.lock();
        let mut changed = false;
        while st.timeouts.peek().is_some_and(|d| d.0 .0 .0 <= now) {
            let Some(Reverse((key, msg_id))) = st.timeouts.pop() else {
                break;
            };
            let live = st
                .in_flight
                .get(&msg_id)
                .is_some_and(|entry| entry.deadline == key);
            if !live {
                continue;
            }
            if let Some(entry) = st.in_flight.remove(&msg_id) {
                if let Some(c) = st.consumer_mut(entry.client) {
                    c.in_flight = c.in_flight.saturating_sub(1);
                }
                st.timeout_count += 1;
                st.queue.push_back(entry.msg);
                changed = true;
            }
        }
        while st.deferred.peek().is_some_and(|d| d.0.at <= now) {
            if let Some(Reverse(d)) = st.deferred.pop() {
                st.queue.push_back(d.msg);
                changed = true;
            }
        }
        if changed {
            st.dispatch(now);
        }
    }

    pub(crate) fn set_paused(&self, paused: bool) {
        let mut st = self.lock();
        st.paused = paused;
        st.dispatch(Instant::now());
    }

    /// Drops every queued, deferred and in-flight message (nsqd's `/channel/empty`).
    pub(crate) fn empty(&self) {
        let mut st = self.lock();
        st.queue.clear();
        st.deferred.clear();
        st.in_flight.clear();
        st.timeouts.clear();
        for (_, c) in &mut st.consumers {
            c.in_flight = 0;
        }
        st.dispatch(Instant::now());
    }

    /// Marks the channel deleted and closes its consumers' connections.
    pub(crate) fn delete(&self) {
        let mut st = self.lock();
        st.deleted = true;
        st.queue.clear();
        st.deferred.clear();
        st.in_flight.clear();
        st.timeouts.clear();
        for (_, c) in st.consumers.drain(..) {
            let _ = c.tx.send(Outbound::Close);
        }
    }

    pub(crate) fn stats(&self, include_clients: bool) -> ChannelStats {
        let st = self.lock();
        let clients = if include_clients {
            st.consumers
                .iter()
                .map(|(_, c)| ClientStats::new(&c.info, c.ready, c.in_flight))
                .collect()
        } else {
            Vec::new()
        };
        ChannelStats {
            channel_name: self.name.to_string(),
            depth: (st.queue.len()) as i64,
            backend_depth: 0,
            in_flight_count: st.in_flight.len(),
            deferred_count: st.deferred.len(),
            message_count: self.message_count.load(Ordering::Relaxed),
            requeue_count: st.requeue_count,
            timeout_count: st.timeout_count,
            client_count: st.consumers.len(),
            clients,
            paused: st.paused,
            e2e_processing_latency: Default::default(),
        }
    }
}

/// nsqd's frame type of a message frame.
const FRAME_TYPE_MESSAGE: i32 = 2;

/// Appends a message frame (size, type, message) as `Frame::encode` writes it.
fn encode_message(dst: &mut BytesMut, msg: &Message) {
    // Bodies are bounded by the codec's limits, far below 4 GiB.
    let size = 4 + msg.encoded_len();
    dst.reserve(4 + size);
    dst.put_u32(size as u32);
    dst.put_i32(FRAME_TYPE_MESSAGE);
    msg.encode(dst);
}

impl ChannelState {
    fn next_seq(&mut self) -> u64 {
        self.seq += 1;
        self.seq
    }

    fn defer(&mut self, msg: Message, at: Instant) {
        let seq = self.next_seq();
        self.deferred.push(Reverse(Deferred { at, seq, msg }));
    }

    fn consumer_mut(&mut self, id: u64) -> Option<&mut Consumer> {
        self.consumers
            .iter_mut()
            .find(|(cid, _)| *cid == id)
            .map(|(_, c)| c)
    }

    fn owned_mut(&mut self, id: u64, msg_id: MessageId) -> Result<&mut InFlight, OwnershipError> {
        match self.in_flight.get_mut(&msg_id) {
            None => Err(OwnershipError::NotInFlight),
            Some(entry) if entry.client != id => Err(OwnershipError::NotOwner),
            Some(entry) => Ok(entry),
        }
    }

    /// Removes an in-flight message this consumer owns and frees its slot in the window.
    /// Its entry in `timeouts` goes stale.
    fn take_in_flight(&mut self, id: u64, msg_id: MessageId) -> Result<InFlight, OwnershipError> {
        let entry = match self.in_flight.entry(msg_id) {
            std::collections::hash_map::Entry::Vacant(_) => {
                return Err(OwnershipError::NotInFlight)
            }
            std::collections::hash_map::Entry::Occupied(e) if e.get().client != id => {
                return Err(OwnershipError::NotOwner)
            }
            std::collections::hash_map::Entry::Occupied(e) => e.remove(),
        };
        if let Some(c) = self.consumer_mut(id) {
            c.in_flight = c.in_flight.saturating_sub(1);
        }
        Ok(entry)
    }

    /// Drops the stale entries of `timeouts` once they outnumber the live ones (plus some
    /// slack), so the heap stays within a constant factor of the in-flight count.
    fn compact_timeouts(&mut self) {
        if self.timeouts.len() <= 2 * self.in_flight.len() + 4096 {
            return;
        }
        let in_flight = &self.in_flight;
        self.timeouts.retain(|Reverse((key, msg_id))| {
            in_flight
                .get(msg_id)
                .is_some_and(|entry| entry.deadline == *key)
        });
    }

    /// Hands queued messages to ready consumers, one each in turn, then gives each consumer's
    /// writer its share in one piece.
    fn dispatch(&mut self, now: Instant) {
        if self.paused || self.consumers.is_empty() {
            return;
        }
        self.deliver(now);
        for (client, consumer) in &mut self.consumers {
            if consumer.outbox_count == 0 {
                continue;
            }
            let frames = consumer.outbox.split().freeze();
            consumer.info.message_count.fetch_add(
                std::mem::take(&mut consumer.outbox_count),
                Ordering::Relaxed,
            );
            // The window is full after the last of them: the writer flushes at once.
            let flush = !consumer.is_ready();
            if consumer
                .tx
                .send(Outbound::Messages { frames, flush })
                .is_err()
            {
                // The connection is gone; the messages wait out their timeout like any other
                // in-flight message of a dropped connection.
                tracing::debug!(client, "delivery to a closed connection");
            }
        }
    }

    /// The choosing part of [`ChannelState::dispatch`]: fills the consumers' outboxes.
    fn deliver(&mut self, now: Instant) {
        while !self.queue.is_empty() {
            let n = self.consumers.len();
            let Some(i) = (0..n)
                .map(|k| (self.cursor + k) % n)
                .find(|&i| self.consumers[i].1.is_ready())
            else {
                return;
            };
            self.cursor = (i + 1) % n;
            let Some(mut msg) = self.queue.pop_front() else {
                return;
            };
            let sample_rate = self.consumers[i].1.sample_rate;
            if sample_rate > 0 && fastrand::u8(0..100) > sample_rate {
                // nsqd's sampling: the message is consumed from the channel and not delivered.
                continue;
            }
            msg.attempts = msg.attempts.saturating_add(1);
            let seq = self.next_seq();
            let (id, consumer) = &mut self.consumers[i];
            let deadline = (now + consumer.msg_timeout, seq);
            consumer.in_flight += 1;
            let client = *id;
            // Encoded here, so that the body's shared buffer is not reference-counted from two
            // threads (this one and the writer's) for every message.
            encode_message(&mut consumer.outbox, &msg);
            consumer.outbox_count += 1;
            self.timeouts.push(Reverse((deadline, msg.id)));
            self.in_flight.insert(
                msg.id,
                InFlight {
                    msg,
                    client,
                    deadline,
                    delivered: now,
                },
            );
        }
    }
}
