//! A topic: it copies every message to each of its channels.
//!
//! Until a topic has its first channel (or while it is paused) its messages wait at the topic,
//! as in nsqd, and go to the channels that exist when fan-out resumes.

use std::collections::{BTreeMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use nsq_proto::{Channel as ChannelName, Message, Topic as TopicName};

use crate::channel::{Channel, ChannelLimits};
use crate::stats::TopicStats;

/// Why a publish was refused; the text follows nsqd's `<CMD> failed <reason>`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum PutError {
    /// The topic is being deleted.
    #[error("exiting")]
    Exiting,
    /// A queue is at its `mem_queue_size` bound (nsqd would spill to disk here).
    #[error("queue full ({0} messages)")]
    Full(usize),
}

#[derive(Debug, Default)]
struct TopicState {
    channels: BTreeMap<ChannelName, Arc<Channel>>,
    /// Messages (with their defer time) waiting for a first channel or for unpause.
    held: VecDeque<(Message, Duration)>,
    paused: bool,
    deleted: bool,
    /// False until the channels nsqlookupd knows for this topic exist (nsqd's `Start`).
    started: bool,
}

/// What creating a channel did, so the broker can tell nsqlookupd.
#[derive(Debug)]
pub(crate) struct GotChannel {
    pub(crate) channel: Arc<Channel>,
    pub(crate) created: bool,
}

#[derive(Debug)]
pub(crate) struct Topic {
    pub(crate) name: TopicName,
    pub(crate) ephemeral: bool,
    limits: ChannelLimits,
    message_count: AtomicU64,
    message_bytes: AtomicU64,
    state: Mutex<TopicState>,
}

impl Topic {
    pub(crate) fn new(name: TopicName, limits: ChannelLimits) -> Self {
        Self {
            ephemeral: name.is_ephemeral(),
            name,
            limits,
            message_count: AtomicU64::new(0),
            message_bytes: AtomicU64::new(0),
            state: Mutex::new(TopicState::default()),
        }
    }

    fn lock(&self) -> MutexGuard<'_, TopicState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Publishes messages atomically: either every one is accepted, or none is.
    pub(crate) fn put(&self, msgs: Vec<Message>, defer: Duration) -> Result<(), PutError> {
        let mut st = self.lock();
        if st.deleted {
            return Err(PutError::Exiting);
        }
        let n = msgs.len();
        let bytes: usize = msgs.iter().map(|m| m.body.len()).sum();
        if st.channels.is_empty() || st.paused || !st.started {
            if st.held.len() + n > self.limits.mem_queue_size {
                return Err(PutError::Full(self.limits.mem_queue_size));
            }
            st.held.extend(msgs.into_iter().map(|m| (m, defer)));
        } else {
            if st.channels.values().any(|c| c.room() < n) {
                return Err(PutError::Full(self.limits.mem_queue_size));
            }
            fan_out(&st.channels, msgs.into_iter().map(|m| (m, defer)));
        }
        self.message_count.fetch_add(n as u64, Ordering::Relaxed);
        self.message_bytes
            .fetch_add(bytes as u64, Ordering::Relaxed);
        Ok(())
    }

    /// The channel, created if it does not exist. `None` when the topic is being deleted.
    pub(crate) fn get_or_create_channel(&self, name: &ChannelName) -> Option<GotChannel> {
        let mut st = self.lock();
        if st.deleted {
            return None;
        }
        if let Some(channel) = st.channels.get(name) {
            return Some(GotChannel {
                channel: channel.clone(),
                created: false,
            });
        }
        let channel = Arc::new(Channel::new(self.name.clone(), name.clone(), self.limits));
        st.channels.insert(name.clone(), channel.clone());
        if !st.paused && st.started {
            let held: Vec<_> = st.held.drain(..).collect();
            fan_out(&st.channels, held);
        }
        Some(GotChannel {
            channel,
            created: true,
        })
    }

    pub(crate) fn channel(&self, name: &str) -> Option<Arc<Channel>> {
        self.lock().channels.get(name).cloned()
    }

    pub(crate) fn channels(&self) -> Vec<Arc<Channel>> {
        self.lock().channels.values().cloned().collect()
    }

    /// Removes a channel. Returns it, and whether this emptied an ephemeral topic.
    pub(crate) fn remove_channel(&self, name: &str) -> Option<(Arc<Channel>, bool)> {
        let mut st = self.lock();
        let channel = st.channels.remove(name)?;
        channel.delete();
        Some((channel, self.ephemeral && st.channels.is_empty()))
    }

    /// Starts fan-out, once the channels known to nsqlookupd have been created.
    pub(crate) fn start(&self) {
        let mut st = self.lock();
        st.started = true;
        if !st.paused && !st.channels.is_empty() {
            let held: Vec<_> = st.held.drain(..).collect();
            fan_out(&st.channels, held);
        }
    }

    pub(crate) fn set_paused(&self, paused: bool) {
        let mut st = self.lock();
        st.paused = paused;
        if !paused && st.started && !st.channels.is_empty() {
            let held: Vec<_> = st.held.drain(..).collect();
            fan_out(&st.channels, held);
        }
    }

    /// Drops the messages waiting at the topic (nsqd's `/topic/empty`).
    pub(crate) fn empty(&self) {
        self.lock().held.clear();
    }

    /// Marks the topic deleted and deletes its channels, returning them.
    pub(crate) fn delete(&self) -> Vec<Arc<Channel>> {
        let mut st = self.lock();
        st.deleted = true;
        st.held.clear();
        let channels: Vec<_> = std::mem::take(&mut st.channels).into_values().collect();
        for c in &channels {
            c.delete();
        }
        channels
    }

    pub(crate) fn stats(&self, channel: Option<&str>, include_clients: bool) -> TopicStats {
        let (channels, depth, paused) = {
            let st = self.lock();
            let channels: Vec<_> = st
                .channels
                .values()
                .filter(|c| channel.is_none_or(|name| c.name.as_str() == name))
                .cloned()
                .collect();
            (channels, st.held.len(), st.paused)
        };
        TopicStats {
            topic_name: self.name.to_string(),
            channels: channels.iter().map(|c| c.stats(include_clients)).collect(),
            depth: depth as i64,
            backend_depth: 0,
            message_count: self.message_count.load(Ordering::Relaxed),
            message_bytes: self.message_bytes.load(Ordering::Relaxed),
            paused,
            e2e_processing_latency: Default::default(),
        }
    }
}

/// Copies messages to every channel; the last channel takes the originals.
fn fan_out(
    channels: &BTreeMap<ChannelName, Arc<Channel>>,
    msgs: impl IntoIterator<Item = (Message, Duration)>,
) {
    let msgs: Vec<_> = msgs.into_iter().collect();
    if msgs.is_empty() {
        return;
    }
    let mut iter = channels.values().peekable();
    while let Some(channel) = iter.next() {
        if iter.peek().is_some() {
            channel.put(msgs.iter().cloned());
        } else {
            channel.put(msgs);
            return;
        }
    }
}
