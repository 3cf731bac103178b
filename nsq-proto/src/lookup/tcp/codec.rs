//! The V1 codecs: [`LookupClientCodec`] for nsqd (commands out, replies in) and
//! [`LookupServerCodec`] for nsqlookupd (commands in, replies out), over the types of the
//! parent module.

use bytes::BytesMut;
use tokio_util::codec::{Decoder, Encoder};

use super::*;

/// The nsqd side of V1: encodes [`LookupCommand`]s, decodes [`LookupReply`]s.
///
/// Write [`MAGIC_V1`] before the first command (for example into
/// `Framed::write_buffer_mut()`). A reply's size is checked against the maximum
/// ([`DEFAULT_MAX_REPLY_LEN`] unless set) before any room is reserved for it.
///
/// ```
/// use bytes::BytesMut;
/// use nsq_proto::lookup::{LookupClientCodec, LookupCommand, LookupReply};
/// use tokio_util::codec::{Decoder, Encoder};
///
/// let mut codec = LookupClientCodec::new();
/// let mut out = BytesMut::new();
/// codec.encode(LookupCommand::Ping, &mut out)?;
/// assert_eq!(&out[..], b"PING\n");
///
/// let mut input = BytesMut::from(&b"\0\0\0\x02O"[..]);
/// assert_eq!(codec.decode(&mut input)?, None);
/// input.extend_from_slice(b"K");
/// assert_eq!(codec.decode(&mut input)?, Some(LookupReply::Ok));
/// # Ok::<(), nsq_proto::ProtocolError>(())
/// ```
#[derive(Debug, Clone)]
pub struct LookupClientCodec {
    max_reply_len: usize,
}

impl LookupClientCodec {
    /// A codec that accepts replies up to [`DEFAULT_MAX_REPLY_LEN`] bytes.
    ///
    /// ```
    /// let codec = nsq_proto::lookup::LookupClientCodec::new();
    /// assert_eq!(codec.max_reply_len(), 5 * 1024 * 1024);
    /// ```
    pub fn new() -> Self {
        Self::with_max_reply_len(DEFAULT_MAX_REPLY_LEN)
    }

    /// A codec that refuses replies longer than `max_reply_len` bytes.
    ///
    /// ```
    /// let codec = nsq_proto::lookup::LookupClientCodec::with_max_reply_len(1024);
    /// assert_eq!(codec.max_reply_len(), 1024);
    /// ```
    pub fn with_max_reply_len(max_reply_len: usize) -> Self {
        Self { max_reply_len }
    }

    /// The largest reply this codec accepts, in bytes (the size prefix not counted).
    ///
    /// ```
    /// let codec = nsq_proto::lookup::LookupClientCodec::with_max_reply_len(64);
    /// assert_eq!(codec.max_reply_len(), 64);
    /// ```
    pub fn max_reply_len(&self) -> usize {
        self.max_reply_len
    }
}

impl Default for LookupClientCodec {
    fn default() -> Self {
        Self::new()
    }
}

impl Decoder for LookupClientCodec {
    type Item = LookupReply;
    type Error = ProtocolError;

    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<LookupReply>, ProtocolError> {
        let Some(size) = src.get(..SIZE_LEN) else {
            return Ok(None);
        };
        let mut size_bytes = [0u8; SIZE_LEN];
        size_bytes.copy_from_slice(size);
        let size = u32::from_be_bytes(size_bytes);
        let len = match usize::try_from(size) {
            Ok(len) if len <= self.max_reply_len => len,
            _ => {
                return Err(ProtocolError::FrameTooLarge {
                    len: u64::from(size),
                    max: self.max_reply_len,
                })
            }
        };
        let total = SIZE_LEN + len;
        if src.len() < total {
            src.reserve(total - src.len());
            return Ok(None);
        }
        src.advance(SIZE_LEN);
        Ok(Some(LookupReply::parse(src.split_to(len).freeze())))
    }
}

impl Encoder<LookupCommand> for LookupClientCodec {
    type Error = ProtocolError;

    fn encode(&mut self, item: LookupCommand, dst: &mut BytesMut) -> Result<(), ProtocolError> {
        item.encode(dst)
    }
}

/// The nsqlookupd side of V1: decodes [`LookupCommand`]s, encodes [`LookupReply`]s.
///
/// The `"  V1"` magic comes before the codec's stream: read it and pass it to
/// [`check_magic`]. Command lines are bounded ([`DEFAULT_MAX_LINE_LEN`]) and the
/// newline search resumes where it stopped; an IDENTIFY body's declared size is
/// checked ([`DEFAULT_MAX_IDENTIFY_LEN`]) before anything is reserved for it. An
/// incomplete command is left in the buffer untouched. A refused command's bytes are
/// consumed (when its extent is known) before the error is returned. See
/// [`LookupCommand::parse`] for the errors, and the [module docs](super) for state checks.
///
/// ```
/// use bytes::BytesMut;
/// use nsq_proto::lookup::{LookupCommand, LookupReply, LookupServerCodec};
/// use tokio_util::codec::{Decoder, Encoder};
///
/// let mut codec = LookupServerCodec::new();
/// let mut input = BytesMut::from(&b"PING\nREGISTER t"[..]);
/// assert_eq!(codec.decode(&mut input)?, Some(LookupCommand::Ping));
/// assert_eq!(codec.decode(&mut input)?, None);
/// assert_eq!(&input[..], b"REGISTER t");
///
/// let mut out = BytesMut::new();
/// codec.encode(LookupReply::Ok, &mut out)?;
/// assert_eq!(&out[..], b"\0\0\0\x02OK");
/// # Ok::<(), nsq_proto::ProtocolError>(())
/// ```
#[derive(Debug, Clone)]
pub struct LookupServerCodec {
    max_line_len: usize,
    max_identify_len: usize,
    /// How many bytes at the front of the buffer are known to hold no newline.
    scanned: usize,
}

impl LookupServerCodec {
    /// A codec with [`DEFAULT_MAX_LINE_LEN`] and [`DEFAULT_MAX_IDENTIFY_LEN`].
    ///
    /// ```
    /// let codec = nsq_proto::lookup::LookupServerCodec::new();
    /// assert_eq!(codec.max_line_len(), 16 * 1024);
    /// ```
    pub fn new() -> Self {
        Self::with_limits(DEFAULT_MAX_LINE_LEN, DEFAULT_MAX_IDENTIFY_LEN)
    }

    /// A codec with the given bounds: a command line's length, newline included, and
    /// an IDENTIFY body's length.
    ///
    /// ```
    /// let codec = nsq_proto::lookup::LookupServerCodec::with_limits(256, 4096);
    /// assert_eq!((codec.max_line_len(), codec.max_identify_len()), (256, 4096));
    /// ```
    pub fn with_limits(max_line_len: usize, max_identify_len: usize) -> Self {
        Self {
            max_line_len,
            max_identify_len,
            scanned: 0,
        }
    }

    /// The longest command line accepted, newline included.
    ///
    /// ```
    /// let codec = nsq_proto::lookup::LookupServerCodec::with_limits(200, 100);
    /// assert_eq!(codec.max_line_len(), 200);
    /// ```
    pub fn max_line_len(&self) -> usize {
        self.max_line_len
    }

    /// The longest IDENTIFY body accepted.
    ///
    /// ```
    /// let codec = nsq_proto::lookup::LookupServerCodec::with_limits(200, 100);
    /// assert_eq!(codec.max_identify_len(), 100);
    /// ```
    pub fn max_identify_len(&self) -> usize {
        self.max_identify_len
    }
}

impl Default for LookupServerCodec {
    fn default() -> Self {
        Self::new()
    }
}

impl Decoder for LookupServerCodec {
    type Item = LookupCommand;
    type Error = ProtocolError;

    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<LookupCommand>, ProtocolError> {
        match LookupCommand::parse_from(src, self.scanned, self.max_line_len, self.max_identify_len)
        {
            Ok(Step::Done(cmd, used)) => {
                src.advance(used);
                self.scanned = 0;
                Ok(Some(cmd))
            }
            Ok(Step::Incomplete { scanned, needed }) => {
                self.scanned = scanned;
                src.reserve(needed.saturating_sub(src.len()));
                Ok(None)
            }
            Err((err, used)) => {
                src.advance(used.min(src.len()));
                self.scanned = 0;
                Err(err)
            }
        }
    }
}

impl Encoder<LookupReply> for LookupServerCodec {
    type Error = ProtocolError;

    fn encode(&mut self, item: LookupReply, dst: &mut BytesMut) -> Result<(), ProtocolError> {
        item.encode(dst)
    }
}
