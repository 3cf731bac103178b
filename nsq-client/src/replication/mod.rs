//! No message lost when an nsqd dies: each message published to several nsqd, and the
//! copies de-duplicated by the consumer.
//!
//! NSQ keeps each message on one nsqd. When that nsqd dies (or its disk does), the messages
//! it held and had not delivered are gone; nsqd has no replication. This module adds it on
//! the client side, with stock nsqd and nothing changed on the wire:
//!
//! * [`ReplicatedProducer`] publishes every message to `copies` distinct nsqd (default 2)
//!   and reports success once `quorum` of them (default all) answered `OK`. Each message
//!   carries a key in a 20-byte [envelope](envelope()) in front of its body.
//! * A consumer built with [`deduplicate(Dedup::envelope())`](crate::ConsumerBuilder::deduplicate)
//!   reads every nsqd of the topic as usual and hands each message to the user once: later
//!   copies are finished without reaching the stream or handler, for as long as the window
//!   remembers the key.
//!
//! # What is guaranteed
//!
//! * A publish that returned `Ok` is held by `quorum` nsqd. While at least one of them
//!   lives, the message reaches the consumer.
//! * A copy is finished as a duplicate only after another copy of the same message was
//!   finished by the user. A copy that arrives while another is with the user is held until
//!   that one is answered; if it is requeued (or dropped), a held copy takes its place. So a
//!   failing first copy never takes its twins down with it.
//! * No probabilistic filter: a key is compared in full, so two messages are never taken for
//!   one.
//!
//! # What is not
//!
//! * The window is in memory, bounded by [`Dedup::max_entries`] and [`Dedup::max_age`]: a
//!   copy arriving after its key left the window (an nsqd back after a long outage, a copy
//!   deferred longer than the window) reaches the user again. A restarted consumer starts
//!   with an empty window. Handlers must still be idempotent where a duplicate would harm.
//! * De-duplication is per consumer: two consumers of one channel may each receive a copy
//!   of the same message, and different channels receive every message by design.
//! * An nsqd's `OK` is not an fsync: a message in nsqd's memory dies with the process. Two
//!   copies survive one nsqd's death, not all of them at once.
//! * Ordering across copies is nsqd's: none.
//!
//! # Costs
//!
//! `copies` times the publish traffic, nsqd memory and deliveries (each copy is delivered
//! and finished); the consumer connects to every nsqd of the topic, as it would anyway.
//! BENCHMARKS.md has the measured throughput and CPU of replicated against plain publishing
//! and of de-duplicated against plain consuming.

pub mod envelope;
mod producer;
pub(crate) mod window;

pub use envelope::{envelope, key_of, open, MessageKey};
pub use producer::{Receipt, ReplicatedProducer, Replication, ReplicationError};
pub use window::{Dedup, MAX_KEY_LEN};
