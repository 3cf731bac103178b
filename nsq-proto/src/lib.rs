//! The NSQ wire protocol, exact to nsqd 1.3.0, as types and `tokio-util` codecs.
//!
//! Both ends of every conversation are here: a client encodes [`Command`]s and
//! decodes [`Frame`]s with [`ClientCodec`]; a broker does the opposite with
//! [`ServerCodec`], which refuses bad input with nsqd's own error codes and
//! texts. The nsqd↔nsqlookupd protocol and the lookupd HTTP types are in
//! [`lookup`]; the TLS, snappy and deflate upgrades are stream layers in
//! `stream`. No runtime is started here: the crate uses tokio only for its IO
//! traits.
//!
//! ```text
//! client → nsqd    "  V2"                                    magic, once
//!                  NAME[ param]*\n                            every command
//!                  [u32 size][body]                          IDENTIFY AUTH PUB DPUB
//!                  [u32 size][u32 n]([u32 len][body])*n      MPUB
//! nsqd → client    [u32 size][i32 type][data]                size = 4 + len(data)
//!                    type 0 response   OK | CLOSE_WAIT | _heartbeat_ | JSON
//!                    type 1 error      "E_CODE description"
//!                    type 2 message    [i64 ns timestamp][u16 attempts][16-byte id][body]
//! ```
//!
//! Every length is checked against a limit before anything is allocated for it,
//! incomplete input yields `Ok(None)`, and message bodies are views into the
//! read buffer: decoding copies no payload.
//!
//! ```
//! use bytes::{Bytes, BytesMut};
//! use nsq_proto::{ClientCodec, Command, ServerCodec, Topic};
//! use tokio_util::codec::{Decoder, Encoder};
//!
//! // A client encodes a publish...
//! let publish = Command::Pub { topic: Topic::new("events")?, body: Bytes::from_static(b"hi") };
//! let mut wire = BytesMut::new();
//! ClientCodec::new().encode(&publish, &mut wire)?;
//! assert_eq!(&wire[..], b"PUB events\n\x00\x00\x00\x02hi");
//!
//! // ...and a server decodes exactly that command back.
//! assert_eq!(ServerCodec::new().decode(&mut wire)?, Some(publish));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
#![deny(unsafe_code)]
#![warn(missing_docs)]

pub mod codec;
pub mod command;
pub mod error;
pub mod frame;
pub mod identify;
pub mod json_depth;
pub mod lookup;
pub mod message;
pub mod names;
pub mod stream;

pub use codec::{ClientCodec, Limits, Magic, ServerCodec, MAGIC_V1, MAGIC_V2};
pub use command::{Command, Verb};
pub use error::{ErrorCode, ProtocolError, RejectedCommand, ServerError};
pub use frame::{Frame, Response};
pub use identify::{
    AuthResponse, Compression, Identify, IdentifyResponse, Negotiated, ServerOptions, NSQD_VERSION,
};
pub use message::{Message, MessageId, MESSAGE_HEADER_LEN, MESSAGE_ID_LEN};
pub use names::{Channel, NameError, Topic, EPHEMERAL_SUFFIX, MAX_NAME_LEN};
