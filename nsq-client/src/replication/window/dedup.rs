//! How a consumer de-duplicates: the key source and the window's bounds.

use std::sync::Arc;
use std::time::Duration;

/// The longest key a key extractor may return; longer ones are not de-duplicated.
pub const MAX_KEY_LEN: usize = 64;

pub(super) type Extractor = dyn Fn(&[u8]) -> Option<&[u8]> + Send + Sync;

/// Where a message's key comes from.
#[derive(Clone)]
pub(super) enum KeySource {
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
    pub(super) source: KeySource,
    pub(super) max_entries: usize,
    pub(super) max_age: Duration,
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
