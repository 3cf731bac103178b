//! The nsqd ↔ nsqlookupd TCP protocol "V1" (`nsqlookupd/lookup_protocol_v1.go`,
//! `nsqd/lookup.go`, `nsqd/lookup_peer.go`).
//!
//! ```text
//! client → lookupd   "  V1"                                   once, first
//!                    IDENTIFY\n [u32 BE size] [size bytes JSON]
//!                    REGISTER <topic>[ <channel>]\n
//!                    UNREGISTER <topic>[ <channel>]\n
//!                    PING\n
//! lookupd → client   [u32 BE size] [size bytes]               no frame type field
//!                    "OK" | IDENTIFY JSON | "E_<CODE> <text>" (every error closes the connection)
//! ```
//!
//! The server reads a command line with `ReadString('\n')`, applies `strings.TrimSpace`
//! and splits it on single spaces, so `"REGISTER t  c"` has an empty third word and
//! registers the topic alone. [`LookupCommand::parse`] does exactly that.
//!
//! nsqlookupd checks a command's *state* (IDENTIFY first, IDENTIFY once) before its
//! parameters. The codec has no state, so it only makes the parameter checks; a server
//! asks [`LookupVerb::state_error`] first, for decoded and for rejected commands alike:
//!
//! ```
//! use nsq_proto::lookup::{LookupServerCodec, LookupVerb};
//! use tokio_util::codec::Decoder;
//!
//! let mut codec = LookupServerCodec::new();
//! let mut src = bytes::BytesMut::from(&b"REGISTER\n"[..]);
//! let err = codec.decode(&mut src).unwrap_err();
//! let rejected = err.rejected().unwrap();
//! assert_eq!(rejected.error.to_string(), "E_INVALID REGISTER insufficient number of params");
//!
//! // Before IDENTIFY, lookupd reports the state instead.
//! let verb = LookupVerb::from_name(&rejected.name).unwrap();
//! let reply = verb.state_error(false).unwrap_or_else(|| rejected.error.clone());
//! assert_eq!(reply.to_string(), "E_INVALID client must IDENTIFY");
//! ```

use std::fmt;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use serde::{Deserialize, Serialize};

use super::null_default;
use crate::error::{ErrorCode, ProtocolError, ServerError};
use crate::names::{Channel, Topic};

pub use crate::codec::MAGIC_V1;

/// The default bound on a command line, newline included: 16 KiB.
///
/// nsqlookupd reads lines with an unbounded `ReadString('\n')`. The longest valid line,
/// `UNREGISTER <64-byte topic> <64-byte channel>\n`, is 141 bytes, so this bound only
/// refuses garbage while leaving room for words lookupd would ignore.
///
/// ```
/// assert_eq!(nsq_proto::lookup::DEFAULT_MAX_LINE_LEN, 16 * 1024);
/// ```
pub const DEFAULT_MAX_LINE_LEN: usize = 16 * 1024;

/// The default bound on an IDENTIFY body: 64 KiB.
///
/// nsqlookupd allocates whatever size the client declares (and panics on a negative
/// one); a real IDENTIFY body is about 120 bytes.
///
/// ```
/// assert_eq!(nsq_proto::lookup::DEFAULT_MAX_IDENTIFY_LEN, 64 * 1024);
/// ```
pub const DEFAULT_MAX_IDENTIFY_LEN: usize = 64 * 1024;

/// The default bound on a reply from nsqlookupd: 5 MiB, nsqd's default
/// `--max-body-size`, which nsqd's `readResponseBounded` applies to lookupd replies.
///
/// ```
/// assert_eq!(nsq_proto::lookup::DEFAULT_MAX_REPLY_LEN, 5 * 1024 * 1024);
/// ```
pub const DEFAULT_MAX_REPLY_LEN: usize = 5 * 1024 * 1024;

/// The length of the big-endian size in front of an IDENTIFY body and of every reply.
const SIZE_LEN: usize = 4;

/// The largest body Go's `int32` size fields can carry.
const MAX_WIRE_LEN: usize = i32::MAX as usize;

/// Checks the 4 bytes a connection opened with.
///
/// nsqlookupd answers anything other than [`MAGIC_V1`] with
/// [`LookupReply::bad_protocol`] and closes the connection.
///
/// # Errors
///
/// [`ProtocolError::BadMagic`] with the bytes received.
///
/// ```
/// use nsq_proto::lookup::check_magic;
/// assert!(check_magic(b"  V1").is_ok());
/// assert!(check_magic(b"  V2").is_err());
/// ```
pub fn check_magic(magic: &[u8; 4]) -> Result<(), ProtocolError> {
    if *magic == MAGIC_V1 {
        Ok(())
    } else {
        Err(ProtocolError::BadMagic(*magic))
    }
}

/// The name of a command nsqlookupd knows (matched case-sensitively, as lookupd does).
///
/// ```
/// use nsq_proto::lookup::LookupVerb;
/// assert_eq!(LookupVerb::from_name(b"PING"), Some(LookupVerb::Ping));
/// assert_eq!(LookupVerb::from_name(b"ping"), None);
/// assert_eq!(LookupVerb::Register.as_str(), "REGISTER");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LookupVerb {
    /// `IDENTIFY`, followed by a JSON body.
    Identify,
    /// `REGISTER <topic>[ <channel>]`
    Register,
    /// `UNREGISTER <topic>[ <channel>]`
    Unregister,
    /// `PING`
    Ping,
}

impl LookupVerb {
    /// Every command nsqlookupd 1.3.0 knows.
    pub const ALL: [LookupVerb; 4] = [
        LookupVerb::Identify,
        LookupVerb::Register,
        LookupVerb::Unregister,
        LookupVerb::Ping,
    ];

    /// The command's name on the wire.
    ///
    /// ```
    /// use nsq_proto::lookup::LookupVerb;
    /// assert_eq!(LookupVerb::Unregister.as_str(), "UNREGISTER");
    /// ```
    pub fn as_str(self) -> &'static str {
        match self {
            LookupVerb::Identify => "IDENTIFY",
            LookupVerb::Register => "REGISTER",
            LookupVerb::Unregister => "UNREGISTER",
            LookupVerb::Ping => "PING",
        }
    }

    /// The command with this exact name, if lookupd knows it.
    ///
    /// ```
    /// use nsq_proto::lookup::LookupVerb;
    /// assert_eq!(LookupVerb::from_name(b"IDENTIFY"), Some(LookupVerb::Identify));
    /// assert_eq!(LookupVerb::from_name(b"SUB"), None);
    /// ```
    pub fn from_name(name: &[u8]) -> Option<Self> {
        Self::ALL
            .into_iter()
            .find(|verb| verb.as_str().as_bytes() == name)
    }

    /// The error nsqlookupd sends for this command in this state, if any.
    ///
    /// lookupd makes this check before it looks at parameters or reads a body, so a
    /// server asks it first, both for a decoded command and for one the codec
    /// rejected (`LookupVerb::from_name(&rejected.name)`). `identified` is whether the
    /// connection has already sent a successful IDENTIFY.
    ///
    /// ```
    /// use nsq_proto::lookup::LookupVerb;
    /// let err = LookupVerb::Register.state_error(false).unwrap();
    /// assert_eq!(err.to_string(), "E_INVALID client must IDENTIFY");
    /// let err = LookupVerb::Identify.state_error(true).unwrap();
    /// assert_eq!(err.to_string(), "E_INVALID cannot IDENTIFY again");
    /// assert!(LookupVerb::Ping.state_error(false).is_none());
    /// ```
    pub fn state_error(self, identified: bool) -> Option<ServerError> {
        match (self, identified) {
            (LookupVerb::Identify, true) => Some(ServerError::new(
                ErrorCode::Invalid,
                "cannot IDENTIFY again",
            )),
            (LookupVerb::Register | LookupVerb::Unregister, false) => {
                Some(ServerError::new(ErrorCode::Invalid, "client must IDENTIFY"))
            }
            _ => None,
        }
    }
}

impl fmt::Display for LookupVerb {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The IDENTIFY body an nsqd sends to nsqlookupd: how consumers should reach it.
///
/// nsqlookupd 1.3.0 requires `broadcast_address`, `tcp_port`, `http_port` and `version`
/// to be non-empty and non-zero ([`PeerInfo::is_complete`]). It has no topology fields;
/// later versions read `topology_zone` and `topology_region`, which 1.3.0 ignores, so
/// they are sent only when set.
///
/// nsqd builds this body from a Go map, so its keys go out sorted; the fields here are
/// declared in that order, and [`LookupCommand::encode`] produces nsqd's exact bytes.
///
/// Decoding follows Go's `json.Unmarshal` where it matters: unknown fields are ignored,
/// missing fields and `null` give empty values. It is stricter in two ways: ports must
/// fit in `u16`, and keys match case-sensitively.
///
/// ```
/// use nsq_proto::lookup::PeerInfo;
///
/// let mut peer = PeerInfo::new("nsqd-1.example", 4150, 4151, "1.3.0");
/// peer.hostname = "nsqd-1".into();
/// assert_eq!(
///     serde_json::to_string(&peer)?,
///     r#"{"broadcast_address":"nsqd-1.example","hostname":"nsqd-1","http_port":4151,"tcp_port":4150,"version":"1.3.0"}"#
/// );
/// # Ok::<(), serde_json::Error>(())
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct PeerInfo {
    /// The address consumers connect to (nsqd's `--broadcast-address`). Required.
    #[serde(default, deserialize_with = "null_default")]
    pub broadcast_address: String,
    /// The nsqd host's name (informational).
    #[serde(default, deserialize_with = "null_default")]
    pub hostname: String,
    /// The HTTP port consumers and tools use (nsqd's broadcast HTTP port). Required.
    #[serde(default, deserialize_with = "null_default")]
    pub http_port: u16,
    /// The TCP port consumers connect to (nsqd's broadcast TCP port). Required.
    #[serde(default, deserialize_with = "null_default")]
    pub tcp_port: u16,
    /// The region, for lookupd versions after 1.3.0 (omitted when `None`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub topology_region: Option<String>,
    /// The zone, for lookupd versions after 1.3.0 (omitted when `None`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub topology_zone: Option<String>,
    /// The nsqd version, e.g. `1.3.0`. Required.
    #[serde(default, deserialize_with = "null_default")]
    pub version: String,
}

impl PeerInfo {
    /// A peer with the four fields nsqlookupd requires; the rest empty.
    ///
    /// ```
    /// use nsq_proto::lookup::PeerInfo;
    /// let peer = PeerInfo::new("10.0.0.5", 4150, 4151, "1.3.0");
    /// assert!(peer.is_complete());
    /// assert_eq!(peer.hostname, "");
    /// ```
    pub fn new(
        broadcast_address: impl Into<String>,
        tcp_port: u16,
        http_port: u16,
        version: impl Into<String>,
    ) -> Self {
        Self {
            broadcast_address: broadcast_address.into(),
            tcp_port,
            http_port,
            version: version.into(),
            ..Self::default()
        }
    }

    /// Whether nsqlookupd would accept this IDENTIFY: `broadcast_address` and `version`
    /// non-empty, both ports non-zero. Otherwise it answers
    /// `E_BAD_BODY IDENTIFY missing fields`.
    ///
    /// ```
    /// use nsq_proto::lookup::PeerInfo;
    /// assert!(!PeerInfo::new("", 4150, 4151, "1.3.0").is_complete());
    /// assert!(!PeerInfo::new("h", 4150, 0, "1.3.0").is_complete());
    /// ```
    pub fn is_complete(&self) -> bool {
        !self.broadcast_address.is_empty()
            && self.tcp_port != 0
            && self.http_port != 0
            && !self.version.is_empty()
    }

    /// Decodes an IDENTIFY body the way nsqlookupd does (see the type's docs), without
    /// checking [`Self::is_complete`]. A bare `null` gives an empty peer, as in Go.
    ///
    /// # Errors
    ///
    /// [`ProtocolError::Json`] when the body is not a JSON object of the right types.
    ///
    /// ```
    /// use nsq_proto::lookup::PeerInfo;
    /// let peer = PeerInfo::from_json(br#"{"tcp_port":4150,"extra":true,"hostname":null}"#)?;
    /// assert_eq!(peer.tcp_port, 4150);
    /// assert_eq!(peer.hostname, "");
    /// assert!(PeerInfo::from_json(b"").is_err());
    /// # Ok::<(), nsq_proto::ProtocolError>(())
    /// ```
    pub fn from_json(body: &[u8]) -> Result<Self, ProtocolError> {
        from_go_json(body)
    }
}

/// nsqlookupd's answer to IDENTIFY: where the lookupd itself can be reached.
///
/// lookupd builds it from a Go map, so the keys are sorted; the fields here are in that
/// order and serialising gives lookupd's exact bytes. nsqd keeps `broadcast_address`
/// and `http_port` (and ignores `hostname`).
///
/// ```
/// use nsq_proto::lookup::LookupdInfo;
///
/// let info = LookupdInfo::parse(
///     br#"{"broadcast_address":"lookupd-1","hostname":"lookupd-1","http_port":4161,"tcp_port":4160,"version":"1.3.0"}"#,
/// )?;
/// assert_eq!(info.http_port, 4161);
/// assert_eq!(info.version, "1.3.0");
/// # Ok::<(), nsq_proto::ProtocolError>(())
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct LookupdInfo {
    /// lookupd's `--broadcast-address` (its hostname by default).
    #[serde(default, deserialize_with = "null_default")]
    pub broadcast_address: String,
    /// lookupd's host name.
    #[serde(default, deserialize_with = "null_default")]
    pub hostname: String,
    /// lookupd's HTTP port.
    #[serde(default, deserialize_with = "null_default")]
    pub http_port: u16,
    /// lookupd's TCP port.
    #[serde(default, deserialize_with = "null_default")]
    pub tcp_port: u16,
    /// lookupd's version, e.g. `1.3.0`.
    #[serde(default, deserialize_with = "null_default")]
    pub version: String,
}

impl LookupdInfo {
    /// Decodes the IDENTIFY reply's data (see [`LookupReply::Data`]).
    ///
    /// # Errors
    ///
    /// [`ProtocolError::Json`] when the data is not such a JSON object; nsqd closes
    /// the connection in that case.
    ///
    /// ```
    /// use nsq_proto::lookup::LookupdInfo;
    /// assert!(LookupdInfo::parse(b"E_INVALID cannot IDENTIFY again").is_err());
    /// ```
    pub fn parse(data: &[u8]) -> Result<Self, ProtocolError> {
        from_go_json(data)
    }
}

/// A command from an nsqd to nsqlookupd.
///
/// ```
/// use bytes::BytesMut;
/// use nsq_proto::lookup::{LookupCommand, DEFAULT_MAX_IDENTIFY_LEN, DEFAULT_MAX_LINE_LEN};
/// use nsq_proto::{Channel, Topic};
///
/// let cmd = LookupCommand::Unregister {
///     topic: Topic::new("clicks")?,
///     channel: Some(Channel::new("archive")?),
/// };
/// let mut wire = BytesMut::new();
/// cmd.encode(&mut wire)?;
/// assert_eq!(&wire[..], b"UNREGISTER clicks archive\n");
///
/// let (parsed, used) =
///     LookupCommand::parse(&wire, DEFAULT_MAX_LINE_LEN, DEFAULT_MAX_IDENTIFY_LEN)?.unwrap();
/// assert_eq!((parsed, used), (cmd, wire.len()));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LookupCommand {
    /// `IDENTIFY\n[u32 size][JSON]`: who this nsqd is. Must come first, and only once.
    Identify(PeerInfo),
    /// `REGISTER <topic>[ <channel>]\n`: the topic (and the channel, if any) exist here.
    Register {
        /// The topic.
        topic: Topic,
        /// The channel; lookupd registers the topic too.
        channel: Option<Channel>,
    },
    /// `UNREGISTER <topic>[ <channel>]\n`: the channel, or the topic and all its
    /// channels, are gone from this nsqd.
    Unregister {
        /// The topic.
        topic: Topic,
        /// The channel; without one the whole topic is unregistered.
        channel: Option<Channel>,
    },
    /// `PING\n`: keeps the registrations alive (nsqd sends one every 15 s). Allowed
    /// before IDENTIFY.
    Ping,
}

/// One step of parsing a command from the front of a buffer.
enum Step {
    /// A whole command, and the bytes it took.
    Done(LookupCommand, usize),
    /// More bytes are needed; the first `scanned` bytes hold no newline, and at least
    /// `needed` bytes in total must be buffered before it can finish.
    Incomplete { scanned: usize, needed: usize },
}

/// A parse failure, and how many bytes the refused command occupied (0 when unknown).
type Failure = (ProtocolError, usize);

impl LookupCommand {
    /// The command's name.
    ///
    /// ```
    /// use nsq_proto::lookup::{LookupCommand, LookupVerb};
    /// assert_eq!(LookupCommand::Ping.verb(), LookupVerb::Ping);
    /// ```
    pub fn verb(&self) -> LookupVerb {
        match self {
            LookupCommand::Identify(_) => LookupVerb::Identify,
            LookupCommand::Register { .. } => LookupVerb::Register,
            LookupCommand::Unregister { .. } => LookupVerb::Unregister,
            LookupCommand::Ping => LookupVerb::Ping,
        }
    }

    /// Appends the command's wire form to `dst`, exactly as nsqd (go-nsq's `Command`)
    /// writes it. The IDENTIFY body is the JSON of [`PeerInfo`], keys sorted as Go's
    /// map gives them.
    ///
    /// The body is not checked with [`PeerInfo::is_complete`]; lookupd does that.
    ///
    /// # Errors
    ///
    /// [`ProtocolError::Encode`] when the IDENTIFY body is larger than Go's `int32`
    /// size field can carry; [`ProtocolError::Json`] if it cannot be serialised.
    ///
    /// ```
    /// use bytes::BytesMut;
    /// use nsq_proto::lookup::{LookupCommand, PeerInfo};
    ///
    /// let mut wire = BytesMut::new();
    /// LookupCommand::Identify(PeerInfo::new("h", 4150, 4151, "1.3.0")).encode(&mut wire)?;
    /// let json = br#"{"broadcast_address":"h","hostname":"","http_port":4151,"tcp_port":4150,"version":"1.3.0"}"#;
    /// assert_eq!(&wire[..9], b"IDENTIFY\n");
    /// assert_eq!(&wire[9..13], &(json.len() as u32).to_be_bytes());
    /// assert_eq!(&wire[13..], &json[..]);
    /// # Ok::<(), nsq_proto::ProtocolError>(())
    /// ```
    pub fn encode(&self, dst: &mut BytesMut) -> Result<(), ProtocolError> {
        match self {
            LookupCommand::Identify(peer) => {
                let body = serde_json::to_vec(peer)?;
                let size = wire_size(body.len()).ok_or_else(|| ProtocolError::Encode {
                    command: "IDENTIFY",
                    reason: format!(
                        "body of {} bytes exceeds the maximum of {MAX_WIRE_LEN} bytes",
                        body.len()
                    ),
                })?;
                dst.reserve(b"IDENTIFY\n".len() + SIZE_LEN + body.len());
                dst.put_slice(b"IDENTIFY\n");
                dst.put_u32(size);
                dst.put_slice(&body);
            }
            LookupCommand::Register { topic, channel }
            | LookupCommand::Unregister { topic, channel } => {
                let name = self.verb().as_str();
                let channel_len = channel.as_ref().map_or(0, |c| 1 + c.as_bytes().len());
                dst.reserve(name.len() + 1 + topic.as_bytes().len() + channel_len + 1);
                dst.put_slice(name.as_bytes());
                dst.put_u8(b' ');
                dst.put_slice(topic.as_bytes());
                if let Some(channel) = channel {
                    dst.put_u8(b' ');
                    dst.put_slice(channel.as_bytes());
                }
                dst.put_u8(b'\n');
            }
            LookupCommand::Ping => dst.put_slice(b"PING\n"),
        }
        Ok(())
    }

    /// Parses one command from the front of `src`, the way nsqlookupd reads it.
    ///
    /// Returns `Ok(None)` when `src` holds only part of a command, or the command and
    /// how many bytes of `src` it took. A line (newline included) may be at most
    /// `max_line_len` bytes and an IDENTIFY body at most `max_identify_len` bytes; both
    /// are checked before anything is allocated for them.
    ///
    /// # Errors
    ///
    /// * [`ProtocolError::LineTooLong`] when no newline comes within `max_line_len` bytes.
    /// * [`ProtocolError::Rejected`] with nsqlookupd's exact error text for a command it
    ///   would refuse for its parameters or body. Its `name` is the command word as
    ///   received; its `verb` is always `None` (that field names nsqd V2 commands, use
    ///   [`LookupVerb::from_name`]). The texts:
    ///   * `E_INVALID invalid command <word>`
    ///   * `E_INVALID REGISTER insufficient number of params` (and `UNREGISTER`)
    ///   * `E_BAD_TOPIC REGISTER topic name '<topic>' is not valid`
    ///   * `E_BAD_CHANNEL REGISTER channel name '<channel>' is not valid`
    ///   * `E_BAD_BODY IDENTIFY failed to decode JSON body`
    ///   * `E_BAD_BODY IDENTIFY missing fields`
    ///   * `E_BAD_BODY IDENTIFY body too big <size> > <max>`: ours (nsqd V2's wording),
    ///     lookupd has no bound.
    ///
    /// ```
    /// use nsq_proto::lookup::{LookupCommand, DEFAULT_MAX_IDENTIFY_LEN, DEFAULT_MAX_LINE_LEN};
    ///
    /// let parse = |src: &[u8]| LookupCommand::parse(src, DEFAULT_MAX_LINE_LEN, DEFAULT_MAX_IDENTIFY_LEN);
    /// assert_eq!(parse(b"PI")?, None);
    /// assert_eq!(parse(b" PING \r\nREG")?, Some((LookupCommand::Ping, 8)));
    /// let err = parse(b"REGISTER a:b\n").unwrap_err();
    /// assert_eq!(
    ///     err.rejected().unwrap().error.to_string(),
    ///     "E_BAD_TOPIC REGISTER topic name 'a:b' is not valid"
    /// );
    /// # Ok::<(), nsq_proto::ProtocolError>(())
    /// ```
    pub fn parse(
        src: &[u8],
        max_line_len: usize,
        max_identify_len: usize,
    ) -> Result<Option<(Self, usize)>, ProtocolError> {
        match Self::parse_from(src, 0, max_line_len, max_identify_len) {
            Ok(Step::Done(cmd, used)) => Ok(Some((cmd, used))),
            Ok(Step::Incomplete { .. }) => Ok(None),
            Err((err, _)) => Err(err),
        }
    }

    /// [`Self::parse`], resuming the newline search at `scan_from` (bytes before it are
    /// known to hold none).
    fn parse_from(
        src: &[u8],
        scan_from: usize,
        max_line_len: usize,
        max_identify_len: usize,
    ) -> Result<Step, Failure> {
        let window = &src[..src.len().min(max_line_len)];
        let scan_from = scan_from.min(window.len());
        let Some(newline) = memchr::memchr(b'\n', &window[scan_from..]).map(|i| scan_from + i)
        else {
            if !src.is_empty() && src.len() >= max_line_len {
                return Err((ProtocolError::LineTooLong { max: max_line_len }, 0));
            }
            return Ok(Step::Incomplete {
                scanned: src.len(),
                needed: src.len() + 1,
            });
        };
        let line_len = newline + 1;
        let line = go_trim_space(&src[..newline]);
        let mut params = line.split(|&b| b == b' ');
        let name = params.next().unwrap_or_default();
        let Some(verb) = LookupVerb::from_name(name) else {
            let text = format!("invalid command {}", String::from_utf8_lossy(name));
            return Err((
                ProtocolError::reject(name, None, ErrorCode::Invalid, text),
                line_len,
            ));
        };
        match verb {
            LookupVerb::Ping => Ok(Step::Done(LookupCommand::Ping, line_len)),
            LookupVerb::Register | LookupVerb::Unregister => {
                let (topic, channel) =
                    topic_channel(verb, params).map_err(|err| (err, line_len))?;
                let cmd = if verb == LookupVerb::Register {
                    LookupCommand::Register { topic, channel }
                } else {
                    LookupCommand::Unregister { topic, channel }
                };
                Ok(Step::Done(cmd, line_len))
            }
            LookupVerb::Identify => {
                let rest = &src[line_len..];
                let incomplete = |needed| {
                    Ok(Step::Incomplete {
                        scanned: newline,
                        needed,
                    })
                };
                let Some(size) = rest.get(..SIZE_LEN) else {
                    return incomplete(line_len + SIZE_LEN);
                };
                let mut size_bytes = [0u8; SIZE_LEN];
                size_bytes.copy_from_slice(size);
                let size = u32::from_be_bytes(size_bytes);
                let header_len = line_len + SIZE_LEN;
                let reject_identify = |description: String, used: usize| {
                    (
                        ProtocolError::reject(
                            name,
                            None,
                            ErrorCode::BadBody,
                            format!("IDENTIFY {description}"),
                        ),
                        used,
                    )
                };
                let body_len = match usize::try_from(size) {
                    Ok(len) if len <= max_identify_len && len <= MAX_WIRE_LEN => len,
                    _ => {
                        return Err(reject_identify(
                            format!("body too big {size} > {max_identify_len}"),
                            header_len,
                        ))
                    }
                };
                let Some(body) = rest[SIZE_LEN..].get(..body_len) else {
                    return incomplete(header_len + body_len);
                };
                let used = header_len + body_len;
                let refused = || reject_identify("failed to decode JSON body".to_owned(), used);
                if crate::json_depth::nested_deeper_than(body, crate::json_depth::GO_MAX_DEPTH) {
                    return Err(refused());
                }
                let peer = PeerInfo::from_json(body).map_err(|_| refused())?;
                if !peer.is_complete() {
                    return Err(reject_identify("missing fields".to_owned(), used));
                }
                Ok(Step::Done(LookupCommand::Identify(peer), used))
            }
        }
    }
}

/// Decodes a JSON object into a struct as Go's `json.Unmarshal` does: `null` leaves it
/// empty, and an array is refused (serde would fill a struct from one).
fn from_go_json<T: serde::de::DeserializeOwned + Default>(json: &[u8]) -> Result<T, ProtocolError> {
    if json.trim_ascii_start().starts_with(b"[") {
        return Err(ProtocolError::Json(serde::de::Error::custom(
            "expected a JSON object, found an array",
        )));
    }
    let value: Option<T> = serde_json::from_slice(json)?;
    Ok(value.unwrap_or_default())
}

/// lookupd's `getTopicChan`: the topic, and the channel when the second word is not empty.
fn topic_channel<'a>(
    verb: LookupVerb,
    mut params: impl Iterator<Item = &'a [u8]>,
) -> Result<(Topic, Option<Channel>), ProtocolError> {
    let command = verb.as_str();
    let reject = |code, description: String| {
        ProtocolError::reject(command.as_bytes(), None, code, description)
    };
    let Some(topic) = params.next() else {
        return Err(reject(
            ErrorCode::Invalid,
            format!("{command} insufficient number of params"),
        ));
    };
    let channel = params.next().filter(|channel| !channel.is_empty());
    let topic = Topic::from_bytes(Bytes::copy_from_slice(topic)).map_err(|_| {
        reject(
            ErrorCode::BadTopic,
            format!(
                "{command} topic name '{}' is not valid",
                String::from_utf8_lossy(topic)
            ),
        )
    })?;
    let channel = channel
        .map(|channel| {
            Channel::from_bytes(Bytes::copy_from_slice(channel)).map_err(|_| {
                reject(
                    ErrorCode::BadChannel,
                    format!(
                        "{command} channel name '{}' is not valid",
                        String::from_utf8_lossy(channel)
                    ),
                )
            })
        })
        .transpose()?;
    Ok((topic, channel))
}

/// Go's `strings.TrimSpace` on bytes: trims Unicode white space at both ends, and stops
/// at the first byte that is not valid UTF-8 (Go decodes it as U+FFFD, not a space).
fn go_trim_space(bytes: &[u8]) -> &[u8] {
    let mut start = bytes.len();
    let mut offset = 0;
    for chunk in bytes.utf8_chunks() {
        let valid = chunk.valid();
        let trimmed = valid.trim_start();
        if !trimmed.is_empty() || !chunk.invalid().is_empty() {
            start = offset + (valid.len() - trimmed.len());
            break;
        }
        offset += valid.len();
    }
    let rest = &bytes[start..];
    let mut end = 0;
    let mut offset = 0;
    for chunk in rest.utf8_chunks() {
        let valid = chunk.valid();
        let kept = valid.trim_end();
        if !kept.is_empty() {
            end = offset + kept.len();
        }
        offset += valid.len() + chunk.invalid().len();
        if !chunk.invalid().is_empty() {
            end = offset;
        }
    }
    &rest[..end]
}

/// A length as Go's `int32` size fields carry it.
fn wire_size(len: usize) -> Option<u32> {
    if len <= MAX_WIRE_LEN {
        u32::try_from(len).ok()
    } else {
        None
    }
}

/// A reply from nsqlookupd: `[u32 BE size][data]`, without V2's frame type.
///
/// There is no marker telling data from errors. nsqd itself only compares the IDENTIFY
/// reply with `E_INVALID` and otherwise tries it as JSON; [`LookupReply::parse`] reads
/// every reply that starts with `E_` as an error (JSON cannot start with `E`), `OK` as
/// [`LookupReply::Ok`], and anything else as data. Every lookupd error closes the
/// connection.
///
/// ```
/// use bytes::{Bytes, BytesMut};
/// use nsq_proto::lookup::LookupReply;
/// use nsq_proto::ErrorCode;
///
/// let reply = LookupReply::parse(Bytes::from_static(b"E_INVALID client must IDENTIFY"));
/// let LookupReply::Error(err) = &reply else { panic!() };
/// assert_eq!(err.code, ErrorCode::Invalid);
///
/// let mut wire = BytesMut::new();
/// reply.encode(&mut wire)?;
/// assert_eq!(&wire[..], b"\0\0\0\x1eE_INVALID client must IDENTIFY");
/// # Ok::<(), nsq_proto::ProtocolError>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LookupReply {
    /// `OK`: the answer to REGISTER, UNREGISTER and PING.
    Ok,
    /// Anything else that is not an error: the IDENTIFY reply's JSON ([`LookupdInfo`]).
    Data(Bytes),
    /// `E_<CODE> <description>`.
    Error(ServerError),
}

impl LookupReply {
    /// Classifies a reply's data (the bytes after the size).
    ///
    /// ```
    /// use bytes::Bytes;
    /// use nsq_proto::lookup::LookupReply;
    /// assert_eq!(LookupReply::parse(Bytes::from_static(b"OK")), LookupReply::Ok);
    /// assert!(matches!(LookupReply::parse(Bytes::from_static(b"{}")), LookupReply::Data(_)));
    /// assert!(matches!(LookupReply::parse(Bytes::from_static(b"E_BAD_PROTOCOL")), LookupReply::Error(_)));
    /// ```
    pub fn parse(data: Bytes) -> Self {
        if &data[..] == b"OK" {
            LookupReply::Ok
        } else if data.starts_with(b"E_") {
            LookupReply::Error(ServerError::parse(&data))
        } else {
            LookupReply::Data(data)
        }
    }

    /// The reply to IDENTIFY: `info` as lookupd's JSON.
    ///
    /// # Errors
    ///
    /// [`ProtocolError::Json`] if `info` cannot be serialised.
    ///
    /// ```
    /// use nsq_proto::lookup::{LookupReply, LookupdInfo};
    /// let reply = LookupReply::identify(&LookupdInfo::default())?;
    /// let LookupReply::Data(json) = reply else { panic!() };
    /// assert!(json.starts_with(b"{\"broadcast_address\":\"\""));
    /// # Ok::<(), nsq_proto::ProtocolError>(())
    /// ```
    pub fn identify(info: &LookupdInfo) -> Result<Self, ProtocolError> {
        Ok(LookupReply::Data(serde_json::to_vec(info)?.into()))
    }

    /// What lookupd sends, unframed, to a connection that opened with a wrong magic:
    /// `E_BAD_PROTOCOL`, with no description.
    ///
    /// ```
    /// use nsq_proto::lookup::LookupReply;
    /// let mut wire = bytes::BytesMut::new();
    /// LookupReply::bad_protocol().encode(&mut wire)?;
    /// assert_eq!(&wire[..], b"\0\0\0\x0eE_BAD_PROTOCOL");
    /// # Ok::<(), nsq_proto::ProtocolError>(())
    /// ```
    pub fn bad_protocol() -> Self {
        LookupReply::Error(ServerError::new(ErrorCode::BadProtocol, ""))
    }

    /// Appends `[u32 BE size][data]` to `dst`, as lookupd's `protocol.SendResponse` does.
    ///
    /// # Errors
    ///
    /// [`ProtocolError::Encode`] when the data is larger than Go's `int32` size field
    /// can carry.
    ///
    /// ```
    /// use nsq_proto::lookup::LookupReply;
    /// let mut wire = bytes::BytesMut::new();
    /// LookupReply::Ok.encode(&mut wire)?;
    /// assert_eq!(&wire[..], b"\0\0\0\x02OK");
    /// # Ok::<(), nsq_proto::ProtocolError>(())
    /// ```
    pub fn encode(&self, dst: &mut BytesMut) -> Result<(), ProtocolError> {
        let len = match self {
            LookupReply::Ok => 2,
            LookupReply::Data(data) => data.len(),
            LookupReply::Error(err) => err.wire_len(),
        };
        let size = wire_size(len).ok_or_else(|| ProtocolError::Encode {
            command: "reply",
            reason: format!("{len} bytes exceed the maximum of {MAX_WIRE_LEN} bytes"),
        })?;
        dst.reserve(SIZE_LEN + len);
        dst.put_u32(size);
        match self {
            LookupReply::Ok => dst.put_slice(b"OK"),
            LookupReply::Data(data) => dst.put_slice(data),
            LookupReply::Error(err) => err.write_to(dst),
        }
        Ok(())
    }
}

mod codec;
pub use codec::{LookupClientCodec, LookupServerCodec};

#[cfg(test)]
mod tests;
