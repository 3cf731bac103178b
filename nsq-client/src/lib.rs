//! An async NSQ client for tokio.
//!
//! [`Producer`] publishes to one nsqd: pipelined on one connection, every publish resolved by
//! nsqd's own answer, bounded by a timeout and cancellable by dropping it.
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! # let nsqd = nsq_server_lite::Nsqd::start().await?;
//! use nsq_client::{proto::Topic, Producer, ProducerConfig};
//!
//! let producer = Producer::new(nsqd.tcp_addr().to_string(), ProducerConfig::default())?;
//! producer.publish(&Topic::new("events")?, "hello").await?;
//! # Ok(())
//! # }
//! ```
#![deny(unsafe_code)]
#![warn(missing_docs)]

mod config;
mod conn;
mod consumer;
mod error;
mod message;
mod pool;
mod producer;
mod rdy;

pub use config::{Compression, ConnectionConfig, TlsConfig};
pub use consumer::{Consumer, ConsumerBuilder, ConsumerConfig, ConsumerStats, StopHandle};
pub use error::{ConfigError, ConnectError, PublishError, PublishErrorKind};
pub use message::{AckError, Message};
pub use pool::{ProducerPool, Strategy};
pub use producer::{Producer, ProducerConfig};

/// The NSQ wire protocol ([`nsq_proto`]).
pub use nsq_proto as proto;
