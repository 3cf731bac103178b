//! The replication envelope: the identity a message carries in its body, so that its copies
//! on different nsqd can be recognised as one message.
//!
//! nsqd gives each copy its own message ID (each nsqd makes its own), so the key has to
//! travel inside the body. Version 1 of the envelope is 20 bytes in front of the
//! application's body:
//!
//! | offset | size | field |
//! |---|---|---|
//! | 0 | 4 | magic and version: `0x00 0x6E 0x71 0x01` (NUL, `n`, `q`, version 1) |
//! | 4 | 8 | producer id: random per [`ReplicatedProducer`](crate::ReplicatedProducer), big-endian |
//! | 12 | 8 | sequence: 1, 2, 3… per producer, big-endian |
//! | 20 | … | the body as the application gave it |
//!
//! The 16 bytes at offsets 4..20 are the message's [`MessageKey`]. A consumer in another
//! language de-duplicates by them and strips the first 20 bytes; one that does not care
//! strips them and may see a message more than once. The leading NUL keeps the envelope
//! apart from text and JSON bodies; a binary body that happens to begin with these four
//! bytes would be taken for an envelope, so de-duplicate by envelope only topics whose
//! producers all write it.

use std::fmt;

use bytes::{BufMut, Bytes, BytesMut};

/// The four bytes every version-1 envelope starts with.
pub const MAGIC_V1: [u8; 4] = [0x00, b'n', b'q', 0x01];

/// The envelope's length in front of the body.
pub const HEADER_LEN: usize = 20;

/// The identity of a replicated message: producer id and sequence, as the envelope carries
/// them.
///
/// ```
/// use nsq_client::replication::MessageKey;
/// let key = MessageKey::new(0xfeed, 7);
/// assert_eq!(key.producer(), 0xfeed);
/// assert_eq!(key.sequence(), 7);
/// assert_eq!(key.to_string(), "000000000000feed-0000000000000007");
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct MessageKey {
    producer: u64,
    sequence: u64,
}

impl MessageKey {
    /// The key of message `sequence` of producer `producer`.
    ///
    /// ```
    /// let key = nsq_client::replication::MessageKey::new(1, 2);
    /// assert_eq!(key.to_bytes()[15], 2);
    /// ```
    pub fn new(producer: u64, sequence: u64) -> Self {
        Self { producer, sequence }
    }

    /// The key in the envelope's 16 bytes (producer id, then sequence, big-endian).
    ///
    /// ```
    /// use nsq_client::replication::MessageKey;
    /// let key = MessageKey::from_bytes([0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 2]);
    /// assert_eq!(key, MessageKey::new(1, 2));
    /// ```
    pub fn from_bytes(bytes: [u8; 16]) -> Self {
        let (producer, sequence) = bytes.split_at(8);
        Self {
            producer: u64::from_be_bytes(producer.try_into().unwrap_or_default()),
            sequence: u64::from_be_bytes(sequence.try_into().unwrap_or_default()),
        }
    }

    /// The producer id.
    ///
    /// ```
    /// assert_eq!(nsq_client::replication::MessageKey::new(9, 1).producer(), 9);
    /// ```
    pub fn producer(&self) -> u64 {
        self.producer
    }

    /// The sequence number within the producer.
    ///
    /// ```
    /// assert_eq!(nsq_client::replication::MessageKey::new(9, 1).sequence(), 1);
    /// ```
    pub fn sequence(&self) -> u64 {
        self.sequence
    }

    /// The 16 bytes as the envelope carries them.
    ///
    /// ```
    /// assert_eq!(nsq_client::replication::MessageKey::new(0, 0).to_bytes(), [0; 16]);
    /// ```
    pub fn to_bytes(&self) -> [u8; 16] {
        let mut bytes = [0; 16];
        bytes[..8].copy_from_slice(&self.producer.to_be_bytes());
        bytes[8..].copy_from_slice(&self.sequence.to_be_bytes());
        bytes
    }
}

impl fmt::Display for MessageKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:016x}-{:016x}", self.producer(), self.sequence())
    }
}

impl fmt::Debug for MessageKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "MessageKey({self})")
    }
}

/// `body` with the envelope of `key` in front.
///
/// ```
/// use nsq_client::replication::{envelope, open, MessageKey};
/// let key = MessageKey::new(3, 4);
/// let wrapped = envelope(key, b"hello");
/// assert_eq!(open(&wrapped), Some((key, bytes::Bytes::from_static(b"hello"))));
/// ```
pub fn envelope(key: MessageKey, body: &[u8]) -> Bytes {
    let mut out = BytesMut::with_capacity(HEADER_LEN + body.len());
    out.put_slice(&MAGIC_V1);
    out.put_u64(key.producer);
    out.put_u64(key.sequence);
    out.put_slice(body);
    out.freeze()
}

/// The key of an enveloped message, or `None` when `wrapped` does not start with a
/// version-1 envelope.
///
/// ```
/// use nsq_client::replication::{envelope, key_of, MessageKey};
/// let key = MessageKey::new(3, 4);
/// assert_eq!(key_of(&envelope(key, b"hello")), Some(key));
/// assert_eq!(key_of(b"hello"), None);
/// ```
pub fn key_of(wrapped: &[u8]) -> Option<MessageKey> {
    let header = wrapped.get(..HEADER_LEN)?;
    if header[..4] != MAGIC_V1 {
        return None;
    }
    let word = |at: usize| u64::from_be_bytes(header[at..at + 8].try_into().unwrap_or_default());
    Some(MessageKey::new(word(4), word(12)))
}

/// The key and the application's body of an enveloped message (the body is a view of
/// `wrapped`, no copy), or `None` when `wrapped` does not start with a version-1 envelope.
///
/// ```
/// assert_eq!(nsq_client::replication::open(&bytes::Bytes::from_static(b"{\"plain\":1}")), None);
/// ```
pub fn open(wrapped: &Bytes) -> Option<(MessageKey, Bytes)> {
    key_of(wrapped).map(|key| (key, wrapped.slice(HEADER_LEN..)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn every_body_and_key_survive_the_envelope(producer: u64, sequence: u64, body: Vec<u8>) {
            let key = MessageKey::new(producer, sequence);
            let wrapped = envelope(key, &body);
            prop_assert_eq!(wrapped.len(), HEADER_LEN + body.len());
            let (k, b) = open(&wrapped).expect("an envelope");
            prop_assert_eq!(k, key);
            prop_assert_eq!(&b[..], &body[..]);
        }

        #[test]
        fn text_is_never_taken_for_an_envelope(text in "[^\\x00].*") {
            prop_assert_eq!(open(&Bytes::from(text)), None);
        }
    }

    #[test]
    fn a_short_or_foreign_header_is_not_an_envelope() {
        let key = MessageKey::new(1, 1);
        let wrapped = envelope(key, b"");
        assert!(open(&wrapped).is_some());
        assert_eq!(open(&wrapped.slice(..HEADER_LEN - 1)), None);
        let mut other_version = wrapped.to_vec();
        other_version[3] = 2;
        assert_eq!(open(&Bytes::from(other_version)), None);
    }
}
