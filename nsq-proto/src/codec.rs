//! `tokio-util` codecs for both ends of an nsqd connection.
//!
//! [`ClientCodec`] encodes [`Command`]s and decodes [`Frame`]s; [`ServerCodec`]
//! decodes commands and encodes frames. Both check every length against their
//! limits before they allocate for it, and return `Ok(None)` on incomplete input
//! without consuming it. The 4-byte magic that opens a connection is not part of
//! either codec: see [`Magic`].

use std::time::Duration;

use bytes::{Buf, Bytes, BytesMut};
use tokio_util::codec::{Decoder, Encoder};

use crate::command::{Command, Verb};
use crate::error::{go_quote, ErrorCode, ProtocolError};
use crate::frame::Frame;
use crate::identify::Identify;
use crate::message::MessageId;
use crate::names::{is_valid, Channel, Topic};

/// The magic a client sends to open an nsqd (TCP protocol V2) connection.
pub const MAGIC_V2: [u8; 4] = *b"  V2";

/// The magic nsqd sends to open an nsqlookupd (protocol V1) connection.
pub const MAGIC_V1: [u8; 4] = *b"  V1";

/// The 4 bytes that open a connection.
///
/// ```
/// use nsq_proto::codec::Magic;
/// assert_eq!(Magic::parse(*b"  V2")?, Magic::V2);
/// assert!(Magic::parse(*b"GET ").is_err());
/// # Ok::<(), nsq_proto::ProtocolError>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Magic {
    /// `"  V1"`: nsqlookupd's registration protocol.
    V1,
    /// `"  V2"`: nsqd's client protocol.
    V2,
}

impl Magic {
    /// Recognises a magic.
    ///
    /// # Errors
    ///
    /// [`ProtocolError::BadMagic`] for anything else; nsqd answers it with
    /// `E_BAD_PROTOCOL` and closes.
    pub fn parse(bytes: [u8; 4]) -> Result<Self, ProtocolError> {
        match bytes {
            MAGIC_V1 => Ok(Magic::V1),
            MAGIC_V2 => Ok(Magic::V2),
            other => Err(ProtocolError::BadMagic(other)),
        }
    }

    /// The magic's bytes.
    pub const fn as_bytes(self) -> [u8; 4] {
        match self {
            Magic::V1 => MAGIC_V1,
            Magic::V2 => MAGIC_V2,
        }
    }
}

/// The size limits a server enforces, with nsqd's defaults.
///
/// ```
/// use nsq_proto::codec::Limits;
/// let limits = Limits { max_msg_size: 64 * 1024, ..Limits::default() };
/// assert_eq!(limits.max_body_size, 5 * 1024 * 1024);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// The longest command line, newline included (nsqd's 16 KiB read buffer).
    pub max_line_len: usize,
    /// `--max-msg-size`: the largest PUB or DPUB body, and each MPUB message.
    pub max_msg_size: u32,
    /// `--max-body-size`: the largest IDENTIFY, AUTH or whole MPUB body.
    pub max_body_size: u32,
    /// `--max-rdy-count`: the largest RDY count.
    pub max_rdy_count: u32,
    /// `--max-req-timeout`: the longest DPUB delay (REQ is clamped to it by the broker).
    pub max_req_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_line_len: 16 * 1024,
            max_msg_size: 1024 * 1024,
            max_body_size: 5 * 1024 * 1024,
            max_rdy_count: 2500,
            max_req_timeout: Duration::from_secs(60 * 60),
        }
    }
}

/// The size field nsqd would never send but an HTTP server does: `"HTTP"`.
const HTTP_AS_SIZE: u32 = u32::from_be_bytes(*b"HTTP");

/// The client's codec: encodes commands, decodes frames.
///
/// ```
/// use bytes::BytesMut;
/// use nsq_proto::{codec::ClientCodec, Frame, Response};
/// use tokio_util::codec::Decoder;
///
/// let mut codec = ClientCodec::new();
/// let mut buf = BytesMut::from(&b"\x00\x00\x00\x06\x00\x00\x00\x00OK\x00\x00"[..]);
/// assert_eq!(codec.decode(&mut buf)?, Some(Frame::Response(Response::Ok)));
/// assert_eq!(codec.decode(&mut buf)?, None); // two bytes of the next frame
/// # Ok::<(), nsq_proto::ProtocolError>(())
/// ```
#[derive(Debug, Clone)]
pub struct ClientCodec {
    max_frame_size: usize,
}

impl ClientCodec {
    /// The default bound on a frame's size: nsqd's default `--max-body-size`
    /// (5 MiB), which is above its default largest message (1 MiB plus header).
    pub const DEFAULT_MAX_FRAME_SIZE: usize = 5 * 1024 * 1024;

    /// A codec with the default frame bound.
    pub fn new() -> Self {
        Self {
            max_frame_size: Self::DEFAULT_MAX_FRAME_SIZE,
        }
    }

    /// Sets the largest frame size (frame type plus data) accepted; raise it
    /// when nsqd runs with a `--max-msg-size` above 5 MiB.
    ///
    /// ```
    /// use nsq_proto::codec::ClientCodec;
    /// let codec = ClientCodec::new().with_max_frame_size(16 << 20);
    /// assert_eq!(codec.max_frame_size(), 16 << 20);
    /// ```
    pub fn with_max_frame_size(mut self, max: usize) -> Self {
        self.max_frame_size = max;
        self
    }

    /// The largest frame size accepted.
    pub fn max_frame_size(&self) -> usize {
        self.max_frame_size
    }
}

impl Default for ClientCodec {
    fn default() -> Self {
        Self::new()
    }
}

impl Decoder for ClientCodec {
    type Item = Frame;
    type Error = ProtocolError;

    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<Frame>, ProtocolError> {
        let Some(size) = src.get(..4) else {
            return Ok(None);
        };
        let size = u32::from_be_bytes([size[0], size[1], size[2], size[3]]);
        if size == HTTP_AS_SIZE {
            return Err(ProtocolError::HttpResponse);
        }
        if size < 4 {
            return Err(ProtocolError::FrameTooSmall { len: size });
        }
        if size as usize > self.max_frame_size {
            return Err(ProtocolError::FrameTooLarge {
                len: u64::from(size),
                max: self.max_frame_size,
            });
        }
        let total = 4 + size as usize;
        if src.len() < total {
            src.reserve(total - src.len());
            return Ok(None);
        }
        let mut frame = src.split_to(total).freeze();
        frame.advance(4);
        Frame::parse(frame).map(Some)
    }
}

impl Encoder<&Command> for ClientCodec {
    type Error = ProtocolError;

    fn encode(&mut self, cmd: &Command, dst: &mut BytesMut) -> Result<(), ProtocolError> {
        cmd.encode(dst)
    }
}

impl Encoder<Command> for ClientCodec {
    type Error = ProtocolError;

    fn encode(&mut self, cmd: Command, dst: &mut BytesMut) -> Result<(), ProtocolError> {
        cmd.encode(dst)
    }
}

/// The server's codec: decodes commands, encodes frames.
///
/// A command nsqd would refuse for its form alone (a missing parameter, a bad
/// name, a body size out of range) is returned as [`ProtocolError::Rejected`]
/// carrying nsqd's exact error, which the broker sends before it closes. Checks
/// that depend on the connection's state are the broker's; the rejection names
/// the command so the broker can make those first, in nsqd's order.
///
/// MPUB is read the way nsqd reads it, by its message count and lengths; its
/// declared body size is checked but not required to match. The total read is
/// still bounded by `max_body_size`, so the codec holds at most one line plus one
/// body in memory (plus one 32-byte handle per MPUB message).
///
/// ```
/// use bytes::{Bytes, BytesMut};
/// use nsq_proto::{codec::ServerCodec, Command, Topic};
/// use tokio_util::codec::Decoder;
///
/// let mut codec = ServerCodec::new();
/// let mut buf = BytesMut::from(&b"PUB test\n\x00\x00\x00\x05hel"[..]);
/// assert_eq!(codec.decode(&mut buf)?, None);
/// buf.extend_from_slice(b"lo");
/// let cmd = codec.decode(&mut buf)?;
/// assert_eq!(cmd, Some(Command::Pub { topic: Topic::new("test")?, body: Bytes::from_static(b"hello") }));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone)]
pub struct ServerCodec {
    limits: Limits,
    /// Where the search for the pending command's newline resumes.
    searched: usize,
    /// The pending command's newline, once found.
    newline: Option<usize>,
    /// How far the pending MPUB's messages have been walked: (offset, messages seen).
    mpub: Option<(usize, u32)>,
}

impl ServerCodec {
    /// A codec with nsqd's default limits.
    pub fn new() -> Self {
        Self::with_limits(Limits::default())
    }

    /// A codec with the given limits.
    ///
    /// ```
    /// use nsq_proto::codec::{Limits, ServerCodec};
    /// let codec = ServerCodec::with_limits(Limits { max_rdy_count: 100, ..Limits::default() });
    /// assert_eq!(codec.limits().max_rdy_count, 100);
    /// ```
    pub fn with_limits(limits: Limits) -> Self {
        Self {
            limits,
            searched: 0,
            newline: None,
            mpub: None,
        }
    }

    /// The limits in force.
    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    fn find_newline(&mut self, src: &BytesMut) -> Result<Option<usize>, ProtocolError> {
        if let Some(nl) = self.newline {
            return Ok(Some(nl));
        }
        let max = self.limits.max_line_len;
        let end = src.len().min(max);
        match memchr::memchr(b'\n', &src[self.searched.min(end)..end]) {
            Some(i) => {
                let nl = self.searched + i;
                self.newline = Some(nl);
                Ok(Some(nl))
            }
            None if src.len() >= max => Err(ProtocolError::LineTooLong { max }),
            None => {
                self.searched = end;
                Ok(None)
            }
        }
    }

    /// Consumes the pending command's `total` bytes and resets the resume state.
    fn take(&mut self, src: &mut BytesMut, total: usize) -> Bytes {
        self.searched = 0;
        self.newline = None;
        self.mpub = None;
        src.split_to(total).freeze()
    }
}

impl Default for ServerCodec {
    fn default() -> Self {
        Self::new()
    }
}

/// The space-separated parameters of a command line, as ranges into it.
struct Params {
    ranges: [(usize, usize); 3],
    count: usize,
}

impl Params {
    fn split(line: &[u8]) -> Self {
        let mut ranges = [(0, 0); 3];
        let mut count = 0;
        let mut start = 0;
        for end in memchr::memchr_iter(b' ', line).chain(std::iter::once(line.len())) {
            if count < ranges.len() {
                ranges[count] = (start, end);
            }
            count += 1;
            start = end + 1;
        }
        Self { ranges, count }
    }

    fn get<'a>(&self, line: &'a [u8], i: usize) -> &'a [u8] {
        let (start, end) = self.ranges[i];
        &line[start..end]
    }
}

/// nsqd's `ByteToBase10`: ASCII digits only (an empty string is 0); overflow is refused.
fn parse_decimal(digits: &[u8]) -> Option<u64> {
    digits.iter().try_fold(0u64, |n, &d| {
        if d.is_ascii_digit() {
            n.checked_mul(10)?.checked_add(u64::from(d - b'0'))
        } else {
            None
        }
    })
}

/// The command line that ends with the newline at `nl`, without it (and without a `\r`
/// before it, as nsqd drops one).
fn command_line(src: &[u8], nl: usize) -> &[u8] {
    let end = if nl > 0 && src[nl - 1] == b'\r' {
        nl - 1
    } else {
        nl
    };
    &src[..end]
}

/// The int32 body length nsqd reads after a command line, once it has arrived.
fn read_len(src: &[u8], at: usize) -> Option<i32> {
    let b = src.get(at..at + 4)?;
    Some(i32::from_be_bytes([b[0], b[1], b[2], b[3]]))
}

fn lossy(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

impl ServerCodec {
    /// At the end of the stream, with `src` holding the start of a command (every check that
    /// its bytes allow already passed): nsqd's refusal of the size or body it could not read,
    /// or `None` for a command line cut short, which nsqd leaves unanswered.
    fn cut_short(src: &[u8]) -> Option<ProtocolError> {
        let nl = memchr::memchr(b'\n', src)?;
        let head = nl + 1;
        let line = command_line(src, nl);
        let params = Params::split(line);
        let name = params.get(line, 0);
        let verb = Verb::from_bytes(name)?;
        let has = |at: usize, n: usize| src.len() >= at.saturating_add(n);
        let (code, text) = match verb {
            Verb::Pub | Verb::Dpub if !has(head, 4) => (
                ErrorCode::BadMessage,
                format!("{verb} failed to read message body size"),
            ),
            Verb::Pub | Verb::Dpub => (
                ErrorCode::BadMessage,
                format!("{verb} failed to read message body"),
            ),
            Verb::Identify | Verb::Auth if !has(head, 4) => (
                ErrorCode::BadBody,
                format!("{verb} failed to read body size"),
            ),
            Verb::Identify | Verb::Auth => {
                (ErrorCode::BadBody, format!("{verb} failed to read body"))
            }
            Verb::Mpub if !has(head, 4) => {
                (ErrorCode::BadBody, "MPUB failed to read body size".into())
            }
            Verb::Mpub if !has(head + 4, 4) => (
                ErrorCode::BadBody,
                "MPUB failed to read message count".into(),
            ),
            Verb::Mpub => {
                // Walk the messages as far as they arrived: the first size or body missing.
                let mut at = head + 8;
                let mut i = 0u32;
                loop {
                    let Some(size) = read_len(src, at) else {
                        break (
                            ErrorCode::BadMessage,
                            format!("MPUB failed to read message({i}) body size"),
                        );
                    };
                    let end = at.saturating_add(4).saturating_add(size.max(0) as usize);
                    if src.len() < end {
                        break (
                            ErrorCode::BadMessage,
                            "MPUB failed to read message body".into(),
                        );
                    }
                    at = end;
                    i += 1;
                }
            }
            _ => return None,
        };
        Some(ProtocolError::reject(name, Some(verb), code, text))
    }
}

impl Decoder for ServerCodec {
    type Item = Command;
    type Error = ProtocolError;

    /// As [`decode`](Self::decode); at the end of the stream, a command whose size or body
    /// was cut short is refused with nsqd's error for it (`E_BAD_MESSAGE PUB failed to read
    /// message body`, ...), and a command line cut short ends the stream quietly, as nsqd
    /// does.
    fn decode_eof(&mut self, src: &mut BytesMut) -> Result<Option<Command>, ProtocolError> {
        match self.decode(src)? {
            Some(cmd) => Ok(Some(cmd)),
            None if src.is_empty() => Ok(None),
            None => {
                let refused = Self::cut_short(src);
                src.clear();
                match refused {
                    Some(err) => Err(err),
                    None => Ok(None),
                }
            }
        }
    }

    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<Command>, ProtocolError> {
        let Some(nl) = self.find_newline(src)? else {
            return Ok(None);
        };
        let head = nl + 1;
        let line = command_line(src, nl);
        let params = Params::split(line);
        let name = params.get(line, 0);
        let verb = Verb::from_bytes(name);
        let reject =
            |code: ErrorCode, text: String| Err(ProtocolError::reject(name, verb, code, text));
        let limits = self.limits;

        let Some(verb) = verb else {
            return reject(
                ErrorCode::Invalid,
                format!("invalid command {}", lossy(name)),
            );
        };

        // Checks shared by the commands that carry a topic.
        let topic_param = |what: &str| -> Result<(usize, usize), ProtocolError> {
            let topic = params.get(line, 1);
            if !is_valid(topic) {
                let prefix = if verb == Verb::Mpub {
                    "E_BAD_TOPIC "
                } else {
                    ""
                };
                return Err(ProtocolError::reject(
                    name,
                    Some(verb),
                    ErrorCode::BadTopic,
                    format!("{prefix}{what} topic name {} is not valid", go_quote(topic)),
                ));
            }
            Ok(params.ranges[1])
        };
        let message_id = |i: usize| -> Result<MessageId, ProtocolError> {
            MessageId::from_slice(params.get(line, i)).ok_or_else(|| {
                ProtocolError::reject(name, Some(verb), ErrorCode::Invalid, "invalid message ID")
            })
        };

        match verb {
            Verb::Nop => {
                self.take(src, head);
                Ok(Some(Command::Nop))
            }
            Verb::Cls => {
                self.take(src, head);
                Ok(Some(Command::Cls))
            }
            Verb::Rdy => {
                let count = if params.count > 1 {
                    let raw = params.get(line, 1);
                    match parse_decimal(raw) {
                        Some(n) => n,
                        None => {
                            return reject(
                                ErrorCode::Invalid,
                                format!("RDY could not parse count {}", lossy(raw)),
                            )
                        }
                    }
                } else {
                    1
                };
                if count > u64::from(limits.max_rdy_count) {
                    return reject(
                        ErrorCode::Invalid,
                        format!("RDY count {count} out of range 0-{}", limits.max_rdy_count),
                    );
                }
                self.take(src, head);
                Ok(Some(Command::Rdy(count as u32)))
            }
            Verb::Fin | Verb::Touch => {
                if params.count < 2 {
                    return reject(
                        ErrorCode::Invalid,
                        format!("{verb} insufficient number of params"),
                    );
                }
                let id = message_id(1)?;
                self.take(src, head);
                Ok(Some(if verb == Verb::Fin {
                    Command::Fin(id)
                } else {
                    Command::Touch(id)
                }))
            }
            Verb::Req => {
                if params.count < 3 {
                    return reject(
                        ErrorCode::Invalid,
                        "REQ insufficient number of params".into(),
                    );
                }
                let id = message_id(1)?;
                let raw = params.get(line, 2);
                let Some(ms) = parse_decimal(raw) else {
                    return reject(
                        ErrorCode::Invalid,
                        format!("REQ could not parse timeout {}", lossy(raw)),
                    );
                };
                self.take(src, head);
                Ok(Some(Command::Req {
                    id,
                    delay: Duration::from_millis(ms),
                }))
            }
            Verb::Sub => {
                if params.count < 3 {
                    return reject(
                        ErrorCode::Invalid,
                        "SUB insufficient number of parameters".into(),
                    );
                }
                let topic = topic_param("SUB")?;
                let channel = params.ranges[2];
                let raw_channel = params.get(line, 2);
                if !is_valid(raw_channel) {
                    return reject(
                        ErrorCode::BadChannel,
                        format!("SUB channel name {} is not valid", go_quote(raw_channel)),
                    );
                }
                let buf = self.take(src, head);
                Ok(Some(Command::Sub {
                    topic: Topic::from_validated(buf.slice(topic.0..topic.1)),
                    channel: Channel::from_validated(buf.slice(channel.0..channel.1)),
                }))
            }
            Verb::Identify | Verb::Auth => {
                if verb == Verb::Auth && params.count != 1 {
                    return reject(
                        ErrorCode::Invalid,
                        "AUTH invalid number of parameters".into(),
                    );
                }
                let Some(len) = read_len(src, head) else {
                    return Ok(None);
                };
                if i64::from(len) > i64::from(limits.max_body_size) {
                    return reject(
                        ErrorCode::BadBody,
                        format!("{verb} body too big {len} > {}", limits.max_body_size),
                    );
                }
                if len <= 0 {
                    return reject(
                        ErrorCode::BadBody,
                        format!("{verb} invalid body size {len}"),
                    );
                }
                let total = head + 4 + len as usize;
                if src.len() < total {
                    src.reserve(total - src.len());
                    return Ok(None);
                }
                if verb == Verb::Identify {
                    let body = &src[head + 4..total];
                    let parsed: Result<Identify, _> = if crate::json_depth::nested_deeper_than(
                        body,
                        crate::json_depth::GO_MAX_DEPTH,
                    ) {
                        Err(())
                    } else {
                        serde_json::from_slice(body).map_err(|_| ())
                    };
                    let Ok(identify) = parsed else {
                        return reject(
                            ErrorCode::BadBody,
                            "IDENTIFY failed to decode JSON body".into(),
                        );
                    };
                    self.take(src, total);
                    return Ok(Some(Command::Identify(Box::new(identify))));
                }
                let buf = self.take(src, total);
                Ok(Some(Command::Auth(buf.slice(head + 4..))))
            }
            Verb::Pub | Verb::Dpub => {
                let need = if verb == Verb::Pub { 2 } else { 3 };
                if params.count < need {
                    return reject(
                        ErrorCode::Invalid,
                        format!("{verb} insufficient number of parameters"),
                    );
                }
                let topic = topic_param(verb.as_str())?;
                let mut delay = Duration::ZERO;
                if verb == Verb::Dpub {
                    let raw = params.get(line, 2);
                    let Some(ms) = parse_decimal(raw) else {
                        return reject(
                            ErrorCode::Invalid,
                            format!("DPUB could not parse timeout {}", lossy(raw)),
                        );
                    };
                    delay = Duration::from_millis(ms);
                    if delay > limits.max_req_timeout {
                        return reject(
                            ErrorCode::Invalid,
                            format!(
                                "DPUB timeout {ms} out of range 0-{}",
                                limits.max_req_timeout.as_millis()
                            ),
                        );
                    }
                }
                let Some(len) = read_len(src, head) else {
                    return Ok(None);
                };
                if len <= 0 {
                    return reject(
                        ErrorCode::BadMessage,
                        format!("{verb} invalid message body size {len}"),
                    );
                }
                if i64::from(len) > i64::from(limits.max_msg_size) {
                    return reject(
                        ErrorCode::BadMessage,
                        format!("{verb} message too big {len} > {}", limits.max_msg_size),
                    );
                }
                let total = head + 4 + len as usize;
                if src.len() < total {
                    src.reserve(total - src.len());
                    return Ok(None);
                }
                let buf = self.take(src, total);
                let topic = Topic::from_validated(buf.slice(topic.0..topic.1));
                let body = buf.slice(head + 4..);
                Ok(Some(if verb == Verb::Pub {
                    Command::Pub { topic, body }
                } else {
                    Command::Dpub { topic, delay, body }
                }))
            }
            Verb::Mpub => {
                if params.count < 2 {
                    return reject(
                        ErrorCode::Invalid,
                        "MPUB insufficient number of parameters".into(),
                    );
                }
                let topic = topic_param("MPUB")?;
                let Some(len) = read_len(src, head) else {
                    return Ok(None);
                };
                if len <= 0 {
                    return reject(ErrorCode::BadBody, format!("MPUB invalid body size {len}"));
                }
                let max_body = i64::from(limits.max_body_size);
                if i64::from(len) > max_body {
                    return reject(
                        ErrorCode::BadBody,
                        format!("MPUB body too big {len} > {max_body}"),
                    );
                }
                let Some(count) = read_len(src, head + 4) else {
                    return Ok(None);
                };
                if count <= 0 || i64::from(count) > (max_body - 4) / 5 {
                    return reject(
                        ErrorCode::BadBody,
                        format!("MPUB invalid message count {count}"),
                    );
                }
                let count = count as u32;
                let body_start = head + 4;
                let (mut offset, mut seen) = self.mpub.unwrap_or((body_start + 4, 0));
                while seen < count {
                    let Some(size) = read_len(src, offset) else {
                        self.mpub = Some((offset, seen));
                        src.reserve(offset + 4 - src.len());
                        return Ok(None);
                    };
                    if size <= 0 {
                        return reject(
                            ErrorCode::BadMessage,
                            format!("MPUB invalid message({seen}) body size {size}"),
                        );
                    }
                    if i64::from(size) > i64::from(limits.max_msg_size) {
                        return reject(
                            ErrorCode::BadMessage,
                            format!("MPUB message too big {size} > {}", limits.max_msg_size),
                        );
                    }
                    // nsqd reads by count and lengths alone; bound what that reads.
                    let read = (offset + 4 + size as usize - body_start) as i64;
                    if read > max_body {
                        return reject(
                            ErrorCode::BadBody,
                            format!("MPUB body too big {read} > {max_body}"),
                        );
                    }
                    offset += 4 + size as usize;
                    seen += 1;
                }
                if src.len() < offset {
                    self.mpub = Some((offset, seen));
                    src.reserve(offset - src.len());
                    return Ok(None);
                }
                let buf = self.take(src, offset);
                let mut bodies = Vec::with_capacity(count as usize);
                let mut at = body_start + 4;
                while at < buf.len() {
                    let size = u32::from_be_bytes([buf[at], buf[at + 1], buf[at + 2], buf[at + 3]])
                        as usize;
                    bodies.push(buf.slice(at + 4..at + 4 + size));
                    at += 4 + size;
                }
                Ok(Some(Command::Mpub {
                    topic: Topic::from_validated(buf.slice(topic.0..topic.1)),
                    bodies,
                }))
            }
        }
    }
}

impl Encoder<&Frame> for ServerCodec {
    type Error = ProtocolError;

    fn encode(&mut self, frame: &Frame, dst: &mut BytesMut) -> Result<(), ProtocolError> {
        frame.encode(dst)
    }
}

impl Encoder<Frame> for ServerCodec {
    type Error = ProtocolError;

    fn encode(&mut self, frame: Frame, dst: &mut BytesMut) -> Result<(), ProtocolError> {
        frame.encode(dst)
    }
}
