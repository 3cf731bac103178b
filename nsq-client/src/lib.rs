//! An async NSQ client for tokio.
//!
//! * [`Producer`] publishes to one nsqd: pipelined on one connection, every publish resolved
//!   by nsqd's own answer, bounded by a timeout and cancellable by dropping it.
//!   [`ProducerPool`] spreads publishes over several nsqd and fails over between them.
//! * [`Consumer`] consumes a channel from every nsqd that holds its topic (given directly or
//!   found through nsqlookupd), splits its `max_in_flight` across them (rotating when it is
//!   smaller than the number of nsqd, so none starves), backs off on failures, and stops
//!   gracefully. Messages come as a [`futures::Stream`] or go to a handler
//!   ([`Consumer::run`]).
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! # let nsqd = nsq_server_lite::Nsqd::start().await?;
//! use futures::StreamExt;
//! use nsq_client::proto::{Channel, Topic};
//! use nsq_client::{Consumer, Producer, ProducerConfig};
//!
//! let topic = Topic::new("events")?;
//! let producer = Producer::new(nsqd.tcp_addr().to_string(), ProducerConfig::default())?;
//! producer.publish(&topic, "hello").await?;
//!
//! let mut consumer = Consumer::builder(topic, Channel::new("archive")?)
//!     .nsqd(nsqd.tcp_addr().to_string())
//!     .build()?;
//! let msg = consumer.next().await.expect("a message");
//! assert_eq!(&msg.body()[..], b"hello");
//! msg.finish()?;
//! consumer.stop().await;
//! # Ok(())
//! # }
//! ```
#![deny(unsafe_code)]
#![warn(missing_docs)]

mod config;
mod conn;
mod consumer;
mod error;
mod lookupd;
mod message;
mod producer;
mod rdy;

pub use config::{Compression, ConnectionConfig, TlsConfig};
pub use consumer::{Consumer, ConsumerBuilder, ConsumerConfig, ConsumerStats, StopHandle};
pub use error::{
    ConfigError, ConnectError, DisconnectReason, InvalidPublish, LookupdError, PublishError,
    PublishErrorKind,
};
pub use message::{AckError, Message};
pub use producer::{
    NodeStats, PoolStats, Producer, ProducerConfig, ProducerPool, ProducerStats, Strategy,
};

/// The NSQ wire protocol ([`nsq_proto`]).
pub use nsq_proto as proto;
