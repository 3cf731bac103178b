//! Messages as nsqd delivers them, and their 16-byte IDs.
//!
//! ```text
//! offset 0   8 bytes  i64 BE    timestamp, nanoseconds since the Unix epoch
//! offset 8   2 bytes  u16 BE    attempts (the first delivery is 1)
//! offset 10 16 bytes  ASCII hex message ID
//! offset 26  N bytes  body
//! ```

use std::fmt;

use bytes::{Buf, BufMut, Bytes};

use crate::error::ProtocolError;

/// The length of a message ID on the wire.
pub const MESSAGE_ID_LEN: usize = 16;

/// The length of the header in front of a message body: timestamp, attempts and ID.
pub const MESSAGE_HEADER_LEN: usize = 8 + 2 + MESSAGE_ID_LEN;

/// A message ID: 16 bytes that a client echoes back verbatim in FIN, REQ and TOUCH.
///
/// nsqd writes them as lowercase hex, but clients must treat them as opaque.
///
/// ```
/// use nsq_proto::MessageId;
///
/// let id = MessageId::from_u64(0x0a1b_2c3d_4e5f_6071);
/// assert_eq!(id.to_string(), "0a1b2c3d4e5f6071");
/// assert_eq!(MessageId::from_slice(id.as_bytes()), Some(id));
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct MessageId([u8; MESSAGE_ID_LEN]);

impl MessageId {
    /// Wraps 16 raw bytes.
    pub const fn new(bytes: [u8; MESSAGE_ID_LEN]) -> Self {
        Self(bytes)
    }

    /// Takes exactly 16 bytes; any other length gives `None`.
    pub fn from_slice(bytes: &[u8]) -> Option<Self> {
        <[u8; MESSAGE_ID_LEN]>::try_from(bytes).ok().map(Self)
    }

    /// Writes `n` as 16 lowercase hex digits, the way nsqd renders its GUIDs.
    pub fn from_u64(n: u64) -> Self {
        const HEX: &[u8; 16] = b"0123456789abcdef";
        let mut out = [0u8; MESSAGE_ID_LEN];
        for (i, byte) in out.iter_mut().enumerate() {
            let shift = (15 - i) * 4;
            *byte = HEX[((n >> shift) & 0xf) as usize];
        }
        Self(out)
    }

    /// The ID's bytes as sent on the wire.
    pub const fn as_bytes(&self) -> &[u8; MESSAGE_ID_LEN] {
        &self.0
    }
}

impl fmt::Display for MessageId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for chunk in self.0.utf8_chunks() {
            f.write_str(chunk.valid())?;
            for b in chunk.invalid() {
                write!(f, "\\x{b:02x}")?;
            }
        }
        Ok(())
    }
}

impl fmt::Debug for MessageId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "MessageId({self})")
    }
}

/// A message frame's content.
///
/// The body is a view into the buffer the frame was read into: decoding copies
/// no body bytes.
///
/// ```
/// use bytes::{Bytes, BytesMut};
/// use nsq_proto::{Message, MessageId};
///
/// let msg = Message {
///     timestamp: 1_700_000_000_000_000_000,
///     attempts: 1,
///     id: MessageId::from_u64(7),
///     body: Bytes::from_static(b"hello"),
/// };
/// let mut buf = BytesMut::new();
/// msg.encode(&mut buf);
/// assert_eq!(Message::parse(buf.freeze())?, msg);
/// # Ok::<(), nsq_proto::ProtocolError>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    /// Nanoseconds since the Unix epoch at which the message was published.
    pub timestamp: i64,
    /// How many times nsqd has delivered the message, this delivery included.
    pub attempts: u16,
    /// The ID to echo back in FIN, REQ and TOUCH.
    pub id: MessageId,
    /// The message body.
    pub body: Bytes,
}

impl Message {
    /// Parses a message frame's data (everything after the frame type).
    ///
    /// # Errors
    ///
    /// [`ProtocolError::MessageTooShort`] when the data cannot hold the 26-byte header.
    pub fn parse(mut data: Bytes) -> Result<Self, ProtocolError> {
        if data.len() < MESSAGE_HEADER_LEN {
            return Err(ProtocolError::MessageTooShort { len: data.len() });
        }
        let timestamp = data.get_i64();
        let attempts = data.get_u16();
        let mut id = [0u8; MESSAGE_ID_LEN];
        data.copy_to_slice(&mut id);
        Ok(Self {
            timestamp,
            attempts,
            id: MessageId(id),
            body: data,
        })
    }

    /// The length of the encoded message: header plus body.
    pub fn encoded_len(&self) -> usize {
        MESSAGE_HEADER_LEN + self.body.len()
    }

    /// Writes the message (without the frame size and type) to `dst`.
    pub fn encode(&self, dst: &mut impl BufMut) {
        dst.put_i64(self.timestamp);
        dst.put_u16(self.attempts);
        dst.put_slice(&self.id.0);
        dst.put_slice(&self.body);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_spec_layout() {
        let mut raw = Vec::new();
        raw.extend_from_slice(&1_234_567_890_i64.to_be_bytes());
        raw.extend_from_slice(&[0x00, 0x03]);
        raw.extend_from_slice(b"0a1b2c3d4e5f6071");
        raw.extend_from_slice(b"hello");
        let msg = Message::parse(Bytes::from(raw)).unwrap();
        assert_eq!(msg.timestamp, 1_234_567_890);
        assert_eq!(msg.attempts, 3);
        assert_eq!(msg.id.as_bytes(), b"0a1b2c3d4e5f6071");
        assert_eq!(&msg.body[..], b"hello");
    }

    #[test]
    fn header_only_message_has_empty_body_and_shorter_is_refused() {
        let msg = Message::parse(Bytes::from(vec![0u8; 26])).unwrap();
        assert!(msg.body.is_empty());
        let err = Message::parse(Bytes::from(vec![0u8; 25])).unwrap_err();
        assert!(matches!(err, ProtocolError::MessageTooShort { len: 25 }));
    }

    #[test]
    fn body_is_a_view_not_a_copy() {
        let mut raw = vec![0u8; 26];
        raw.extend_from_slice(&[7u8; 1000]);
        let data = Bytes::from(raw);
        let start = data.as_ptr() as usize;
        let msg = Message::parse(data).unwrap();
        assert_eq!(msg.body.as_ptr() as usize, start + 26);
    }

    #[test]
    fn ids_render_like_nsqd_guids() {
        assert_eq!(MessageId::from_u64(0).to_string(), "0000000000000000");
        assert_eq!(
            MessageId::from_u64(u64::MAX).to_string(),
            "ffffffffffffffff"
        );
        assert_eq!(MessageId::from_slice(b"short"), None);
        let odd = MessageId::new(*b"\xffabcdefghijklmno");
        assert_eq!(odd.to_string(), "\\xffabcdefghijklmno");
    }
}
