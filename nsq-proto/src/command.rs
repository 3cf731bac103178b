//! Client → server commands.
//!
//! ```text
//! <NAME>[ <param>...]\n                       every command
//! [u32 BE size][body]                         IDENTIFY, AUTH, PUB, DPUB
//! [u32 BE size][u32 count]([u32 len][body])*  MPUB (size counts everything after it)
//! ```

use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};

use crate::error::ProtocolError;
use crate::identify::Identify;
use crate::message::MessageId;
use crate::names::{Channel, Topic};

/// The name of a command nsqd knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Verb {
    /// `IDENTIFY`
    Identify,
    /// `AUTH`
    Auth,
    /// `SUB`
    Sub,
    /// `PUB`
    Pub,
    /// `MPUB`
    Mpub,
    /// `DPUB`
    Dpub,
    /// `RDY`
    Rdy,
    /// `FIN`
    Fin,
    /// `REQ`
    Req,
    /// `TOUCH`
    Touch,
    /// `CLS`
    Cls,
    /// `NOP`
    Nop,
}

impl Verb {
    /// Every command, in a fixed order.
    pub const ALL: [Verb; 12] = [
        Verb::Identify,
        Verb::Auth,
        Verb::Sub,
        Verb::Pub,
        Verb::Mpub,
        Verb::Dpub,
        Verb::Rdy,
        Verb::Fin,
        Verb::Req,
        Verb::Touch,
        Verb::Cls,
        Verb::Nop,
    ];

    /// The command's name on the wire.
    ///
    /// ```
    /// use nsq_proto::Verb;
    /// assert_eq!(Verb::Touch.as_str(), "TOUCH");
    /// ```
    pub const fn as_str(self) -> &'static str {
        match self {
            Verb::Identify => "IDENTIFY",
            Verb::Auth => "AUTH",
            Verb::Sub => "SUB",
            Verb::Pub => "PUB",
            Verb::Mpub => "MPUB",
            Verb::Dpub => "DPUB",
            Verb::Rdy => "RDY",
            Verb::Fin => "FIN",
            Verb::Req => "REQ",
            Verb::Touch => "TOUCH",
            Verb::Cls => "CLS",
            Verb::Nop => "NOP",
        }
    }

    /// Looks a command name up; nsqd matches names exactly (case-sensitive).
    ///
    /// ```
    /// use nsq_proto::Verb;
    /// assert_eq!(Verb::from_bytes(b"MPUB"), Some(Verb::Mpub));
    /// assert_eq!(Verb::from_bytes(b"mpub"), None);
    /// ```
    pub fn from_bytes(name: &[u8]) -> Option<Verb> {
        Self::ALL
            .into_iter()
            .find(|v| v.as_str().as_bytes() == name)
    }
}

impl std::fmt::Display for Verb {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A command from a client to nsqd.
///
/// Bodies are [`Bytes`], so building a command copies no payload.
///
/// ```
/// use bytes::{Bytes, BytesMut};
/// use nsq_proto::{Command, Topic};
///
/// let cmd = Command::Pub { topic: Topic::new("test")?, body: Bytes::from_static(b"hello") };
/// let mut buf = BytesMut::new();
/// cmd.encode(&mut buf)?;
/// assert_eq!(&buf[..], b"PUB test\n\x00\x00\x00\x05hello");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Command {
    /// Says who the client is and negotiates features; the first command.
    Identify(Box<Identify>),
    /// Presents a secret to the server's auth service.
    Auth(Bytes),
    /// Subscribes to a channel of a topic.
    Sub {
        /// The topic.
        topic: Topic,
        /// The channel.
        channel: Channel,
    },
    /// Publishes one message.
    Pub {
        /// The topic.
        topic: Topic,
        /// The message body (not empty).
        body: Bytes,
    },
    /// Publishes several messages atomically.
    Mpub {
        /// The topic.
        topic: Topic,
        /// The message bodies (at least one, none empty).
        bodies: Vec<Bytes>,
    },
    /// Publishes one message that becomes visible after `delay` (whole milliseconds).
    Dpub {
        /// The topic.
        topic: Topic,
        /// How long nsqd defers the message.
        delay: Duration,
        /// The message body (not empty).
        body: Bytes,
    },
    /// Lets nsqd keep up to this many messages in flight on the connection.
    Rdy(u32),
    /// Finishes a message.
    Fin(MessageId),
    /// Requeues a message, visible again after `delay` (whole milliseconds).
    Req {
        /// The message.
        id: MessageId,
        /// How long nsqd waits before redelivering it.
        delay: Duration,
    },
    /// Resets a message's in-flight timeout.
    Touch(MessageId),
    /// Asks nsqd to stop sending messages; it answers `CLOSE_WAIT`.
    Cls,
    /// No operation; the answer to a heartbeat.
    Nop,
}

/// Decimal digits of a `u64`, without allocating.
pub(crate) fn put_decimal(dst: &mut impl BufMut, mut n: u64) {
    let mut digits = [0u8; 20];
    let mut i = digits.len();
    loop {
        i -= 1;
        digits[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    dst.put_slice(&digits[i..]);
}

fn decimal_len(mut n: u64) -> usize {
    let mut len = 1;
    while n >= 10 {
        n /= 10;
        len += 1;
    }
    len
}

fn encode_error(command: &'static str, reason: impl Into<String>) -> ProtocolError {
    ProtocolError::Encode {
        command,
        reason: reason.into(),
    }
}

fn millis(command: &'static str, delay: Duration) -> Result<u64, ProtocolError> {
    u64::try_from(delay.as_millis())
        .map_err(|_| encode_error(command, format!("delay {delay:?} is out of range")))
}

/// A body's length as nsqd reads it: a positive int32.
fn body_len(command: &'static str, body: &[u8]) -> Result<u32, ProtocolError> {
    if body.is_empty() {
        return Err(encode_error(command, "nsqd refuses empty bodies"));
    }
    i32::try_from(body.len()).map(|n| n as u32).map_err(|_| {
        encode_error(
            command,
            format!("body of {} bytes is too large", body.len()),
        )
    })
}

/// IDs are echoed verbatim on a space-separated line: a space or newline in one
/// would change the command, so refuse it rather than corrupt the stream.
fn check_id(command: &'static str, id: &MessageId) -> Result<(), ProtocolError> {
    if id
        .as_bytes()
        .iter()
        .any(|b| matches!(b, b' ' | b'\n' | b'\r'))
    {
        return Err(encode_error(
            command,
            format!("message ID {id} holds a space or line break"),
        ));
    }
    Ok(())
}

impl Command {
    /// The command's verb.
    pub fn verb(&self) -> Verb {
        match self {
            Command::Identify(_) => Verb::Identify,
            Command::Auth(_) => Verb::Auth,
            Command::Sub { .. } => Verb::Sub,
            Command::Pub { .. } => Verb::Pub,
            Command::Mpub { .. } => Verb::Mpub,
            Command::Dpub { .. } => Verb::Dpub,
            Command::Rdy(_) => Verb::Rdy,
            Command::Fin(_) => Verb::Fin,
            Command::Req { .. } => Verb::Req,
            Command::Touch(_) => Verb::Touch,
            Command::Cls => Verb::Cls,
            Command::Nop => Verb::Nop,
        }
    }

    /// Writes `MPUB` of `bodies` to `topic`, as [`Command::Mpub`] would, from bodies held
    /// anywhere (no `Vec<Bytes>` needs to be built). The iterator is walked twice: once to
    /// size the command, once to write it.
    ///
    /// # Errors
    ///
    /// [`ProtocolError::Encode`] for no bodies, an empty body, or a total above an int32
    /// length. Nothing is written on error.
    ///
    /// ```
    /// use bytes::BytesMut;
    /// use nsq_proto::{Command, Topic};
    /// let topic = Topic::new("t")?;
    /// let mut buf = BytesMut::new();
    /// Command::encode_mpub(&topic, [&b"a"[..], &b"bc"[..]], &mut buf)?;
    /// assert_eq!(&buf[..], b"MPUB t\n\0\0\0\x0f\0\0\0\x02\0\0\0\x01a\0\0\0\x02bc");
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn encode_mpub<'a, I>(
        topic: &Topic,
        bodies: I,
        dst: &mut BytesMut,
    ) -> Result<(), ProtocolError>
    where
        I: IntoIterator<Item = &'a [u8]>,
        I::IntoIter: Clone,
    {
        let bodies = bodies.into_iter();
        let mut size: u64 = 4;
        let mut count: u64 = 0;
        for body in bodies.clone() {
            body_len("MPUB", body)?;
            size += 4 + body.len() as u64;
            count += 1;
        }
        if count == 0 {
            return Err(encode_error("MPUB", "no message bodies"));
        }
        let size = i32::try_from(size)
            .map_err(|_| encode_error("MPUB", format!("body of {size} bytes is too large")))?
            as u32;
        dst.reserve(6 + topic.len() + 4 + size as usize);
        dst.put_slice(b"MPUB ");
        dst.put_slice(topic.as_bytes());
        dst.put_u8(b'\n');
        dst.put_u32(size);
        // count < size / 4, so it fits.
        dst.put_u32(count as u32);
        for body in bodies {
            dst.put_u32(body.len() as u32);
            dst.put_slice(body);
        }
        Ok(())
    }

    /// Writes the command to `dst`, reserving the space it needs once.
    ///
    /// # Errors
    ///
    /// [`ProtocolError::Encode`] for what nsqd could never accept or what would
    /// corrupt the stream: an empty body, an MPUB without bodies, a body larger
    /// than an int32 length, a delay beyond `u64` milliseconds, a message ID
    /// holding a space or a line break. [`ProtocolError::Json`] if the IDENTIFY
    /// body cannot be serialised. Nothing is written on error.
    pub fn encode(&self, dst: &mut BytesMut) -> Result<(), ProtocolError> {
        match self {
            Command::Identify(identify) => {
                let json = serde_json::to_vec(identify)?;
                let len = body_len("IDENTIFY", &json)?;
                dst.reserve(9 + 4 + json.len());
                dst.put_slice(b"IDENTIFY\n");
                dst.put_u32(len);
                dst.put_slice(&json);
            }
            Command::Auth(secret) => {
                let len = body_len("AUTH", secret)?;
                dst.reserve(5 + 4 + secret.len());
                dst.put_slice(b"AUTH\n");
                dst.put_u32(len);
                dst.put_slice(secret);
            }
            Command::Sub { topic, channel } => {
                dst.reserve(6 + topic.len() + channel.len());
                dst.put_slice(b"SUB ");
                dst.put_slice(topic.as_bytes());
                dst.put_u8(b' ');
                dst.put_slice(channel.as_bytes());
                dst.put_u8(b'\n');
            }
            Command::Pub { topic, body } => {
                let len = body_len("PUB", body)?;
                dst.reserve(5 + topic.len() + 4 + body.len());
                dst.put_slice(b"PUB ");
                dst.put_slice(topic.as_bytes());
                dst.put_u8(b'\n');
                dst.put_u32(len);
                dst.put_slice(body);
            }
            Command::Mpub { topic, bodies } => {
                Self::encode_mpub(topic, bodies.iter().map(|b| &b[..]), dst)?;
            }
            Command::Dpub { topic, delay, body } => {
                let ms = millis("DPUB", *delay)?;
                let len = body_len("DPUB", body)?;
                dst.reserve(7 + topic.len() + decimal_len(ms) + 4 + body.len());
                dst.put_slice(b"DPUB ");
                dst.put_slice(topic.as_bytes());
                dst.put_u8(b' ');
                put_decimal(dst, ms);
                dst.put_u8(b'\n');
                dst.put_u32(len);
                dst.put_slice(body);
            }
            Command::Rdy(count) => {
                dst.reserve(15);
                dst.put_slice(b"RDY ");
                put_decimal(dst, u64::from(*count));
                dst.put_u8(b'\n');
            }
            Command::Fin(id) => {
                check_id("FIN", id)?;
                dst.reserve(21);
                dst.put_slice(b"FIN ");
                dst.put_slice(id.as_bytes());
                dst.put_u8(b'\n');
            }
            Command::Req { id, delay } => {
                check_id("REQ", id)?;
                let ms = millis("REQ", *delay)?;
                dst.reserve(22 + decimal_len(ms));
                dst.put_slice(b"REQ ");
                dst.put_slice(id.as_bytes());
                dst.put_u8(b' ');
                put_decimal(dst, ms);
                dst.put_u8(b'\n');
            }
            Command::Touch(id) => {
                check_id("TOUCH", id)?;
                dst.reserve(23);
                dst.put_slice(b"TOUCH ");
                dst.put_slice(id.as_bytes());
                dst.put_u8(b'\n');
            }
            Command::Cls => dst.put_slice(b"CLS\n"),
            Command::Nop => dst.put_slice(b"NOP\n"),
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn encoded(cmd: Command) -> Vec<u8> {
        let mut buf = BytesMut::new();
        cmd.encode(&mut buf).unwrap();
        buf.to_vec()
    }

    fn topic() -> Topic {
        Topic::new("test").unwrap()
    }

    #[test]
    fn spec_bytes_for_every_command() {
        assert_eq!(
            encoded(Command::Pub {
                topic: topic(),
                body: Bytes::from_static(b"hello")
            }),
            b"PUB test\n\x00\x00\x00\x05hello"
        );
        assert_eq!(
            encoded(Command::Mpub {
                topic: topic(),
                bodies: vec![Bytes::from_static(b"a"), Bytes::from_static(b"bc")]
            }),
            b"MPUB test\n\x00\x00\x00\x0f\x00\x00\x00\x02\x00\x00\x00\x01a\x00\x00\x00\x02bc"
        );
        assert_eq!(
            encoded(Command::Dpub {
                topic: topic(),
                delay: Duration::from_millis(1500),
                body: Bytes::from_static(b"x")
            }),
            b"DPUB test 1500\n\x00\x00\x00\x01x"
        );
        assert_eq!(
            encoded(Command::Sub {
                topic: topic(),
                channel: Channel::new("ch").unwrap()
            }),
            b"SUB test ch\n"
        );
        assert_eq!(encoded(Command::Rdy(2500)), b"RDY 2500\n");
        assert_eq!(encoded(Command::Rdy(0)), b"RDY 0\n");
        let id = MessageId::new(*b"0a1b2c3d4e5f6071");
        assert_eq!(encoded(Command::Fin(id)), b"FIN 0a1b2c3d4e5f6071\n");
        assert_eq!(
            encoded(Command::Req {
                id,
                delay: Duration::from_secs(90)
            }),
            b"REQ 0a1b2c3d4e5f6071 90000\n"
        );
        assert_eq!(encoded(Command::Touch(id)), b"TOUCH 0a1b2c3d4e5f6071\n");
        assert_eq!(encoded(Command::Cls), b"CLS\n");
        assert_eq!(encoded(Command::Nop), b"NOP\n");
        assert_eq!(
            encoded(Command::Auth(Bytes::from_static(b"s3cret"))),
            b"AUTH\n\x00\x00\x00\x06s3cret"
        );
        let identify = encoded(Command::Identify(Box::new(Identify::new("c", "h", "u"))));
        assert!(identify.starts_with(b"IDENTIFY\n"));
        let len = u32::from_be_bytes(identify[9..13].try_into().unwrap()) as usize;
        assert_eq!(identify.len(), 13 + len);
        let back: Identify = serde_json::from_slice(&identify[13..]).unwrap();
        assert_eq!(back, Identify::new("c", "h", "u"));
    }

    #[test]
    fn refuses_what_nsqd_cannot_take_and_writes_nothing() {
        let mut buf = BytesMut::new();
        let bad = [
            Command::Pub {
                topic: topic(),
                body: Bytes::new(),
            },
            Command::Dpub {
                topic: topic(),
                delay: Duration::ZERO,
                body: Bytes::new(),
            },
            Command::Mpub {
                topic: topic(),
                bodies: vec![],
            },
            Command::Mpub {
                topic: topic(),
                bodies: vec![Bytes::from_static(b"a"), Bytes::new()],
            },
            Command::Auth(Bytes::new()),
            Command::Fin(MessageId::new(*b"0a1b2c3d\nPUB x\n ")),
            Command::Req {
                id: MessageId::new(*b"0a1b2c3d4e5f607 "),
                delay: Duration::ZERO,
            },
            Command::Req {
                id: MessageId::from_u64(1),
                delay: Duration::MAX,
            },
        ];
        for cmd in bad {
            let err = cmd.encode(&mut buf).unwrap_err();
            assert!(
                matches!(err, ProtocolError::Encode { .. }),
                "{cmd:?}: {err}"
            );
            assert!(buf.is_empty(), "{cmd:?} wrote bytes");
        }
    }

    #[test]
    fn decimal_helpers_agree() {
        for n in [0, 9, 10, 99, 100, 12345, u64::MAX] {
            let mut buf = BytesMut::new();
            put_decimal(&mut buf, n);
            assert_eq!(buf, n.to_string().as_bytes());
            assert_eq!(decimal_len(n), n.to_string().len());
        }
    }
}
