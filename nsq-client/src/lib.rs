//! An async NSQ client for tokio.
//!
//! The `Producer` (pipelined, acknowledged publishing with failover) and the
//! `Consumer` (nsqlookupd discovery and RDY flow control across every nsqd) are
//! not written yet. Until they are, this crate re-exports the wire protocol they
//! are built on, so the name resolves to something real:
//!
//! ```
//! use nsq_client::proto::{Command, Topic};
//!
//! let publish = Command::Pub { topic: Topic::new("events")?, body: "hi".into() };
//! assert_eq!(publish.verb().as_str(), "PUB");
//! # Ok::<(), nsq_client::proto::NameError>(())
//! ```
#![deny(unsafe_code)]
#![warn(missing_docs)]

/// The NSQ wire protocol ([`nsq_proto`]).
pub use nsq_proto as proto;
