//! A small nsqd-compatible broker and nsqlookupd endpoint that run in-process,
//! for tests and local runs.
//!
//! The broker is not written yet. It will speak the server side of the
//! protocol that [`nsq_proto`] already implements: [`ServerCodec`] to read
//! commands with nsqd's limits and error texts, and [`ServerOptions::negotiate`]
//! for IDENTIFY.
//!
//! ```
//! use nsq_server_lite::{ServerCodec, ServerOptions};
//!
//! let codec = ServerCodec::new();
//! assert_eq!(codec.limits().max_rdy_count, ServerOptions::default().max_rdy_count);
//! ```
#![deny(unsafe_code)]
#![warn(missing_docs)]

pub use nsq_proto::{ServerCodec, ServerOptions};

#[allow(dead_code)] // Used by the broker, which is being written.
mod lookup_peer;
pub mod lookupd;
