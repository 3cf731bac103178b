//! The NSQ wire protocol.
#![deny(unsafe_code)]
#![warn(missing_docs)]

pub mod command;
pub mod error;
pub mod lookup;
pub mod message;
pub mod names;
#[cfg(any(feature = "tls", feature = "snappy", feature = "deflate"))]
pub mod stream;

pub use command::Verb;
pub use error::{ErrorCode, ProtocolError, RejectedCommand, ServerError};
pub use message::{Message, MessageId, MESSAGE_HEADER_LEN, MESSAGE_ID_LEN};
pub use names::{Channel, NameError, Topic, EPHEMERAL_SUFFIX, MAX_NAME_LEN};
