//! A small nsqd-compatible broker and nsqlookupd service that run in-process, for tests and
//! local runs: no Go, no docker, one line to start.
//!
//! [`Nsqd`] speaks nsqd 1.3.0's TCP protocol (V2) and HTTP API, with its limits, defaults and
//! error texts; [`lookupd::Lookupd`] answers like nsqlookupd 1.3.0. A broker registers its topics
//! with any nsqlookupd (this crate's or a real one), so several brokers and a lookupd form a
//! cluster in one process. Everything is in memory and bounded (see
//! [`NsqdBuilder::mem_queue_size`]).
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use nsq_server_lite::{lookupd::Lookupd, Nsqd};
//!
//! let lookupd = Lookupd::builder().start().await?;
//! let nsqd = Nsqd::builder()
//!     .lookupd_tcp_address(lookupd.tcp_addr().to_string())
//!     .start()
//!     .await?;
//! // Point clients at nsqd.tcp_addr(), or at lookupd.http_addr() for discovery.
//! nsqd.shutdown().await;
//! lookupd.shutdown().await;
//! # Ok(())
//! # }
//! ```
#![deny(unsafe_code)]
#![warn(missing_docs)]

pub mod auth;
mod broker;
mod channel;
pub mod cli;
mod client;
mod conn;
mod http;
mod listener;
mod lookup_peer;
pub mod lookupd;
mod server;
pub mod stats;
pub mod tls;
mod topic;

pub use broker::TlsRequired;
pub use server::{Nsqd, NsqdBuilder, StartError};
