//! Errors: nsqd's error frames ([`ServerError`], [`ErrorCode`]) and the codecs'
//! own failures ([`ProtocolError`]).

use std::fmt;

use bytes::{BufMut, Bytes, BytesMut};

use crate::command::Verb;

/// The code at the front of an nsqd error frame, e.g. `E_BAD_TOPIC`.
///
/// Every code nsqd 1.3.0 and nsqlookupd send is a variant; anything else is kept
/// in [`ErrorCode::Other`].
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorCode {
    /// `E_INVALID`: a malformed command, a bad parameter or a command in the wrong state.
    Invalid,
    /// `E_BAD_PROTOCOL`: the connection did not start with a known magic.
    BadProtocol,
    /// `E_BAD_TOPIC`: the topic name is not valid.
    BadTopic,
    /// `E_BAD_CHANNEL`: the channel name is not valid.
    BadChannel,
    /// `E_BAD_BODY`: an IDENTIFY, AUTH or MPUB body is malformed or too large.
    BadBody,
    /// `E_BAD_MESSAGE`: a message body is empty or too large.
    BadMessage,
    /// `E_PUB_FAILED`: the topic could not take the message.
    PubFailed,
    /// `E_MPUB_FAILED`: the topic could not take the messages.
    MpubFailed,
    /// `E_DPUB_FAILED`: the topic could not take the deferred message.
    DpubFailed,
    /// `E_FIN_FAILED`: the message is not in flight for this connection (not fatal).
    FinFailed,
    /// `E_REQ_FAILED`: the message is not in flight for this connection (not fatal).
    ReqFailed,
    /// `E_TOUCH_FAILED`: the message is not in flight for this connection (not fatal).
    TouchFailed,
    /// `E_SUB_FAILED`: the subscription was refused.
    SubFailed,
    /// `E_IDENTIFY_FAILED`: feature negotiation or a stream upgrade failed.
    IdentifyFailed,
    /// `E_AUTH_DISABLED`: AUTH was sent to an nsqd without an auth server.
    AuthDisabled,
    /// `E_AUTH_FAILED`: the auth server refused or could not be reached.
    AuthFailed,
    /// `E_AUTH_FIRST`: a command that needs AUTH came before it.
    AuthFirst,
    /// `E_AUTH_ERROR`: the auth server's answer could not be used.
    AuthError,
    /// `E_UNAUTHORIZED`: the identity lacks the permission for this command.
    Unauthorized,
    /// A code this crate does not know, kept as sent.
    Other(String),
}

impl ErrorCode {
    /// Every code nsqd 1.3.0 and nsqlookupd send, in the order of `nsq`'s source.
    pub const KNOWN: [ErrorCode; 19] = [
        ErrorCode::AuthDisabled,
        ErrorCode::AuthError,
        ErrorCode::AuthFailed,
        ErrorCode::AuthFirst,
        ErrorCode::BadBody,
        ErrorCode::BadChannel,
        ErrorCode::BadMessage,
        ErrorCode::BadProtocol,
        ErrorCode::BadTopic,
        ErrorCode::DpubFailed,
        ErrorCode::FinFailed,
        ErrorCode::IdentifyFailed,
        ErrorCode::Invalid,
        ErrorCode::MpubFailed,
        ErrorCode::PubFailed,
        ErrorCode::ReqFailed,
        ErrorCode::SubFailed,
        ErrorCode::TouchFailed,
        ErrorCode::Unauthorized,
    ];

    /// The code as it appears on the wire.
    ///
    /// ```
    /// use nsq_proto::ErrorCode;
    /// assert_eq!(ErrorCode::FinFailed.as_str(), "E_FIN_FAILED");
    /// ```
    pub fn as_str(&self) -> &str {
        match self {
            ErrorCode::Invalid => "E_INVALID",
            ErrorCode::BadProtocol => "E_BAD_PROTOCOL",
            ErrorCode::BadTopic => "E_BAD_TOPIC",
            ErrorCode::BadChannel => "E_BAD_CHANNEL",
            ErrorCode::BadBody => "E_BAD_BODY",
            ErrorCode::BadMessage => "E_BAD_MESSAGE",
            ErrorCode::PubFailed => "E_PUB_FAILED",
            ErrorCode::MpubFailed => "E_MPUB_FAILED",
            ErrorCode::DpubFailed => "E_DPUB_FAILED",
            ErrorCode::FinFailed => "E_FIN_FAILED",
            ErrorCode::ReqFailed => "E_REQ_FAILED",
            ErrorCode::TouchFailed => "E_TOUCH_FAILED",
            ErrorCode::SubFailed => "E_SUB_FAILED",
            ErrorCode::IdentifyFailed => "E_IDENTIFY_FAILED",
            ErrorCode::AuthDisabled => "E_AUTH_DISABLED",
            ErrorCode::AuthFailed => "E_AUTH_FAILED",
            ErrorCode::AuthFirst => "E_AUTH_FIRST",
            ErrorCode::AuthError => "E_AUTH_ERROR",
            ErrorCode::Unauthorized => "E_UNAUTHORIZED",
            ErrorCode::Other(code) => code,
        }
    }

    /// Parses a code as sent on the wire; unknown codes become [`ErrorCode::Other`].
    ///
    /// ```
    /// use nsq_proto::ErrorCode;
    /// assert_eq!(ErrorCode::parse("E_BAD_TOPIC"), ErrorCode::BadTopic);
    /// assert_eq!(ErrorCode::parse("E_NEW"), ErrorCode::Other("E_NEW".into()));
    /// ```
    pub fn parse(code: &str) -> ErrorCode {
        Self::KNOWN
            .into_iter()
            .find(|known| known.as_str() == code)
            .unwrap_or_else(|| ErrorCode::Other(code.to_owned()))
    }

    /// Whether nsqd closes the connection after sending this error.
    ///
    /// nsqd sends every error as fatal except `E_FIN_FAILED`, `E_REQ_FAILED` and
    /// `E_TOUCH_FAILED` (`nsqd/protocol_v2.go`: `NewClientErr` versus
    /// `NewFatalClientErr`). Unknown codes count as fatal.
    ///
    /// ```
    /// use nsq_proto::ErrorCode;
    /// assert!(!ErrorCode::FinFailed.is_fatal());
    /// assert!(ErrorCode::BadTopic.is_fatal());
    /// ```
    pub fn is_fatal(&self) -> bool {
        !matches!(
            self,
            ErrorCode::FinFailed | ErrorCode::ReqFailed | ErrorCode::TouchFailed
        )
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An error frame from nsqd (or an unframed error from nsqlookupd): `<CODE> <description>`.
///
/// ```
/// use nsq_proto::{ErrorCode, ServerError};
///
/// let err = ServerError::parse(b"E_FIN_FAILED FIN 0a1b2c3d4e5f6071 failed ID not in flight");
/// assert_eq!(err.code, ErrorCode::FinFailed);
/// assert_eq!(err.description, "FIN 0a1b2c3d4e5f6071 failed ID not in flight");
/// assert!(!err.is_fatal());
/// ```
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ServerError {
    /// The code before the first space.
    pub code: ErrorCode,
    /// The text after the first space (may be empty).
    pub description: String,
}

impl ServerError {
    /// Builds an error from its parts.
    ///
    /// ```
    /// use nsq_proto::{ErrorCode, ServerError};
    /// let err = ServerError::new(ErrorCode::Invalid, "cannot CLS in current state");
    /// assert_eq!(err.to_string(), "E_INVALID cannot CLS in current state");
    /// ```
    pub fn new(code: ErrorCode, description: impl Into<String>) -> Self {
        Self {
            code,
            description: description.into(),
        }
    }

    /// Parses an error frame's data: the code is everything before the first space.
    ///
    /// Invalid UTF-8 is replaced rather than refused: an error is always reported.
    pub fn parse(data: &[u8]) -> Self {
        let text = String::from_utf8_lossy(data);
        match text.split_once(' ') {
            Some((code, description)) => Self::new(ErrorCode::parse(code), description),
            None => Self::new(ErrorCode::parse(&text), String::new()),
        }
    }

    /// Whether nsqd closes the connection after this error (see [`ErrorCode::is_fatal`]).
    pub fn is_fatal(&self) -> bool {
        self.code.is_fatal()
    }

    /// The error's wire text, `<CODE> <description>`.
    ///
    /// ```
    /// use nsq_proto::{ErrorCode, ServerError};
    /// let err = ServerError::new(ErrorCode::BadProtocol, "");
    /// assert_eq!(&err.to_bytes()[..], b"E_BAD_PROTOCOL");
    /// ```
    pub fn to_bytes(&self) -> Bytes {
        let mut buf = BytesMut::with_capacity(self.wire_len());
        self.write_to(&mut buf);
        buf.freeze()
    }

    pub(crate) fn wire_len(&self) -> usize {
        let code = self.code.as_str().len();
        if self.description.is_empty() {
            code
        } else {
            code + 1 + self.description.len()
        }
    }

    pub(crate) fn write_to(&self, dst: &mut impl BufMut) {
        dst.put_slice(self.code.as_str().as_bytes());
        if !self.description.is_empty() {
            dst.put_u8(b' ');
            dst.put_slice(self.description.as_bytes());
        }
    }
}

impl fmt::Display for ServerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.description.is_empty() {
            f.write_str(self.code.as_str())
        } else {
            write!(f, "{} {}", self.code, self.description)
        }
    }
}

/// A command the server codec refused, with nsqd's exact error for it.
///
/// nsqd checks a command's state before its parameters; the broker does that
/// after decoding, so the refusal names the command it was about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RejectedCommand {
    /// The command's first token as received (e.g. `PUB`, or an unknown word).
    pub name: Bytes,
    /// The command, when the name is one nsqd knows.
    pub verb: Option<Verb>,
    /// The error nsqd sends for it. Every refusal the codec makes is fatal.
    pub error: ServerError,
}

/// A failure to decode or encode the NSQ wire protocol.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ProtocolError {
    /// The underlying stream failed.
    #[error("i/o error: {0}")]
    Io(#[from] std::io::Error),
    /// A frame's declared size is above the configured maximum; nothing was allocated for it.
    #[error("frame of {len} bytes exceeds the maximum of {max} bytes")]
    FrameTooLarge {
        /// The declared size.
        len: u64,
        /// The configured maximum.
        max: usize,
    },
    /// A frame's declared size cannot even hold its frame type.
    #[error("frame size {len} is smaller than the 4-byte frame type")]
    FrameTooSmall {
        /// The declared size.
        len: u32,
    },
    /// A frame type other than response (0), error (1) or message (2).
    #[error("unknown frame type {0}")]
    UnknownFrameType(i32),
    /// A message frame shorter than the 26-byte message header.
    #[error("message frame of {len} bytes is shorter than the 26-byte header")]
    MessageTooShort {
        /// The length of the message data.
        len: usize,
    },
    /// The peer answered with HTTP: the address is an HTTP port, not a TCP port.
    #[error("received an HTTP response: this address is an HTTP endpoint, connect to the TCP port (nsqd's default is 4150)")]
    HttpResponse,
    /// The connection did not start with a known protocol magic.
    #[error("bad protocol magic {0:?}")]
    BadMagic([u8; 4]),
    /// A command line longer than the configured maximum, with no newline in it.
    #[error("command line longer than {max} bytes")]
    LineTooLong {
        /// The configured maximum, newline included.
        max: usize,
    },
    /// The server codec refused a command; the broker sends `error` and closes.
    #[error("rejected command: {}", .0.error)]
    Rejected(Box<RejectedCommand>),
    /// A command could not be encoded: its body is empty, too large, or it has no bodies.
    #[error("cannot encode {command}: {reason}")]
    Encode {
        /// The command's name.
        command: &'static str,
        /// What is wrong with it.
        reason: String,
    },
    /// A JSON body (IDENTIFY, AUTH or a lookupd reply) could not be decoded.
    #[error("malformed JSON body: {0}")]
    Json(#[from] serde_json::Error),
}

impl ProtocolError {
    /// The nsqd error for a rejected command, if this is one.
    pub fn rejected(&self) -> Option<&RejectedCommand> {
        match self {
            ProtocolError::Rejected(r) => Some(r),
            _ => None,
        }
    }

    pub(crate) fn reject(
        name: &[u8],
        verb: Option<Verb>,
        code: ErrorCode,
        description: impl Into<String>,
    ) -> Self {
        ProtocolError::Rejected(Box::new(RejectedCommand {
            name: Bytes::copy_from_slice(name),
            verb,
            error: ServerError::new(code, description),
        }))
    }
}

/// Quotes bytes the way Go's `%q` verb does, for error texts that must match nsqd's.
// Used by the nsqd V2 server codec; nsqlookupd's texts quote with '%s' instead.
pub(crate) fn go_quote(bytes: &[u8]) -> String {
    use fmt::Write;
    let mut out = String::with_capacity(bytes.len() + 2);
    out.push('"');
    for chunk in bytes.utf8_chunks() {
        for c in chunk.valid().chars() {
            match c {
                '"' => out.push_str("\\\""),
                '\\' => out.push_str("\\\\"),
                '\x07' => out.push_str("\\a"),
                '\x08' => out.push_str("\\b"),
                '\x0c' => out.push_str("\\f"),
                '\n' => out.push_str("\\n"),
                '\r' => out.push_str("\\r"),
                '\t' => out.push_str("\\t"),
                '\x0b' => out.push_str("\\v"),
                c if (c as u32) < 0x20 || c == '\x7f' => {
                    let _ = write!(out, "\\x{:02x}", c as u32);
                }
                c if c.is_control() => {
                    let _ = write!(out, "\\u{:04x}", c as u32);
                }
                c => out.push(c),
            }
        }
        for b in chunk.invalid() {
            let _ = write!(out, "\\x{b:02x}");
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_fin_req_touch_failures_are_not_fatal() {
        for code in ErrorCode::KNOWN {
            let expected = !matches!(
                code,
                ErrorCode::FinFailed | ErrorCode::ReqFailed | ErrorCode::TouchFailed
            );
            assert_eq!(code.is_fatal(), expected, "{code}");
        }
        assert!(ErrorCode::Other("E_SOMETHING_NEW".into()).is_fatal());
    }

    #[test]
    fn every_known_code_roundtrips_through_its_wire_text() {
        for code in ErrorCode::KNOWN {
            assert_eq!(ErrorCode::parse(code.as_str()), code);
            assert!(code.as_str().starts_with("E_"));
        }
    }

    #[test]
    fn parses_code_before_first_space_only() {
        // nsqd's own quirk: the MPUB topic error repeats its code in the text.
        let err =
            ServerError::parse(b"E_BAD_TOPIC E_BAD_TOPIC MPUB topic name \"a b\" is not valid");
        assert_eq!(err.code, ErrorCode::BadTopic);
        assert_eq!(
            err.description,
            "E_BAD_TOPIC MPUB topic name \"a b\" is not valid"
        );
        let bare = ServerError::parse(b"E_BAD_PROTOCOL");
        assert_eq!(bare.code, ErrorCode::BadProtocol);
        assert_eq!(bare.description, "");
        assert_eq!(&bare.to_bytes()[..], b"E_BAD_PROTOCOL");
    }

    #[test]
    fn error_text_roundtrips() {
        let text = b"E_REQ_FAILED REQ 0123456789abcdef failed client does not own message";
        let err = ServerError::parse(text);
        assert_eq!(&err.to_bytes()[..], text);
        assert_eq!(err.to_string().as_bytes(), text);
    }

    #[test]
    fn go_quote_matches_go() {
        assert_eq!(go_quote(b"a b"), r#""a b""#);
        assert_eq!(go_quote(b"q\"\\"), r#""q\"\\""#);
        assert_eq!(go_quote(b"\n\t\x01\x7f"), r#""\n\t\x01\x7f""#);
        assert_eq!(go_quote(b"\xff\xfe"), r#""\xff\xfe""#);
        assert_eq!(go_quote("é".as_bytes()), "\"é\"");
    }
}
