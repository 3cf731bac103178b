//! The NSQ wire protocol.
#![deny(unsafe_code)]
#![warn(missing_docs)]

pub mod codec;
pub mod command;
pub mod error;
pub mod frame;
pub mod identify;
pub mod lookup;
pub mod message;
pub mod names;
#[cfg(any(feature = "tls", feature = "snappy", feature = "deflate"))]
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
