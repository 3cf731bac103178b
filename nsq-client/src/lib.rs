//! An async NSQ client for tokio.
//!
//! * [`Producer`] publishes to one nsqd: pipelined on one connection, every publish resolved
//!   by nsqd's own answer, bounded by a timeout and cancellable by dropping it.
//!   [`ProducerPool`] spreads publishes over several nsqd and fails over between them.
//! * [`Consumer`] consumes a channel from every nsqd that holds its topic (given directly or
//!   found through nsqlookupd), splits its `max_in_flight` across them (rotating when it is
//!   smaller than the number of nsqd, so none starves), backs off on failures, and stops
//!   gracefully. Messages come as a [`futures::Stream`] or go to a [`Handler`]
//!   ([`Consumer::run`]); both take the same path, so `max_attempts`, the give-up hook and
//!   auto-touch mean the same in each.
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! # let nsqd = nsq_server_lite::Nsqd::start().await?;
//! use futures::StreamExt;
//! use nsq_client::{Channel, Consumer, Producer, ProducerConfig, Topic};
//! use std::time::Duration;
//!
//! let topic = Topic::new("events")?;
//! let producer = Producer::new(nsqd.tcp_addr().to_string(), ProducerConfig::default())?;
//! producer.publish(&topic, "hello").await?;
//!
//! let mut consumer = Consumer::builder(topic, Channel::new("archive")?)
//!     .nsqd(nsqd.tcp_addr().to_string())
//!     .build()?;
//! consumer.connected(Duration::from_secs(5)).await?;
//! let msg = consumer.next().await.expect("a message");
//! assert_eq!(&msg.body()[..], b"hello");
//! msg.finish()?;
//! consumer.stop().await;
//! # Ok(())
//! # }
//! ```
//!
//! # Handling messages concurrently
//!
//! [`Consumer::run`] takes a [`Handler`] (an async closure or a type implementing it) and
//! the number of messages it works on at once. `Ok` finishes a message, an error requeues it
//! with backoff; [`ConsumerConfig::max_in_flight`] must be at least the concurrency.
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! # let nsqd = nsq_server_lite::Nsqd::start().await?;
//! use nsq_client::{Channel, Consumer, ConsumerConfig, HandlerError, Message, Topic};
//! # let topic = Topic::new("jobs")?;
//! # let producer = nsq_client::Producer::new(nsqd.tcp_addr().to_string(), Default::default())?;
//! # producer.publish(&topic, "job").await?;
//!
//! let consumer = Consumer::builder(Topic::new("jobs")?, Channel::new("workers")?)
//!     .nsqd(nsqd.tcp_addr().to_string())
//!     .config(ConsumerConfig::default().max_in_flight(8))
//!     .build()?;
//! let handle = consumer.handle();
//! consumer
//!     .run(8, move |msg: Message| {
//!         let handle = handle.clone();
//!         async move {
//!             let job = std::str::from_utf8(msg.body())?; // not UTF-8: requeued
//!             assert_eq!(job, "job");
//!             drop(handle.stop()); // this sketch stops after one; a service runs on
//!             Ok::<_, HandlerError>(())
//!         }
//!     })
//!     .await; // returns once the stop is complete
//! # Ok(())
//! # }
//! ```
//!
//! # TLS and AUTH
//!
//! [`TlsConfig::builder`] reads a CA file, a client certificate and key, and the name to
//! verify; [`ConnectionConfig::auth_secret`] is sent only over TLS (or a unix socket).
//!
//! ```no_run
//! use nsq_client::{ConnectionConfig, ConsumerConfig, TlsConfig};
//!
//! let tls = TlsConfig::builder().ca_file("/etc/nsq/ca.pem").build()?;
//! let connection = ConnectionConfig::default().tls(tls).auth_secret("s3cret");
//! let config = ConsumerConfig::default().connection(connection);
//! # let _ = config;
//! # Ok::<(), nsq_client::TlsConfigError>(())
//! ```
//!
//! # Testing your service
//!
//! `nsq-server-lite` is an nsqd in your test process: add it as a dev-dependency, start one
//! broker per test (`nsq_server_lite::Nsqd::start()` binds free loopback ports), point the
//! service at its address and assert on what it published and on the broker's `stats()`.
//! The `testing` example of the repository's `examples/` is a complete one.
//!
//! # Latency
//!
//! nsqd buffers the messages it sends a consumer: up to 16 KiB, or until 250 ms have passed
//! (its `output_buffer_size` and `output_buffer_timeout`, which every connection asks for in
//! IDENTIFY). At a few thousand messages a second or less, a message can wait there up to
//! the whole 250 ms. For a consumer that must see each message at once, turn the buffering
//! off for its connections:
//!
//! ```
//! use nsq_client::{ConnectionConfig, ConsumerConfig};
//!
//! let low_latency = ConsumerConfig::default()
//!     .max_in_flight(100)
//!     .connection(ConnectionConfig::default().output_buffer(None));
//! # let _ = low_latency;
//! ```
//!
//! Measured on a 2-core machine at 1,000 messages a second (BENCHMARKS.md, "Latency"):
//! publish-to-stream p99 0.6 ms through nsqd 1.3.0 instead of 121 ms, for about 9 % of a
//! core in the client instead of 6 %, and 13 % of one in nsqd instead of 8 % (each message is
//! a write of its own). `output_buffer(Some((bytes, timeout)))` with a timeout of 25 ms (the
//! least nsqd accepts) bounds the wait at that for less CPU. Producers need nothing: a
//! publish is written at once.
//!
//! # Failures
//!
//! What the user can act on arrives as a typed value: [`Consumer::connected`] waits for a
//! subscription and returns the last attempt's error ([`ConnectError`], [`LookupdError`]),
//! early when a retry cannot help ([`ConnectError::is_permanent`]); [`Consumer::events`]
//! streams [`ConsumerEvent`]s (connected, connect failed, disconnected with a
//! [`DisconnectReason`], backoff entered and left, lookupd failed, nsqd listed and unlisted);
//! a [`PublishError`] says what happened to a publish and hands its bodies back.
//!
//! # Cargo features
//!
//! All on by default; with `default-features = false` a build has none of them, and with it
//! none of their dependencies: a producer or a consumer of nsqd given by address needs only
//! tokio.
//!
//! | feature | gives | pulls in |
//! |---|---|---|
//! | `tls` | [`TlsConfig`], [`ConnectionConfig::tls`], `https://` nsqlookupd | rustls (ring), rustls-native-certs |
//! | `snappy` | [`Compression::Snappy`] | snap |
//! | `deflate` | [`Compression::Deflate`] | flate2 |
//! | `lookupd` | [`ConsumerBuilder::lookupd`], [`ProducerPool::with_lookupd`] | reqwest |
//!
//! Asking for a compression whose feature is off fails when the consumer or producer is
//! built, with a [`ConfigError`] that names the feature.
//!
//! ```toml
//! # A producer-only service: no HTTP client, no TLS, no compression.
//! nsq-client = { git = "...", default-features = false }
//! ```
//!
//! # Logging
//!
//! The crate logs with [`tracing`]. Spans: `nsq_consumer{topic, channel}` around a
//! consumer's supervisor, `nsqd{addr, conn}` around each of its connections, and
//! `nsq_producer{addr}` around a producer's connection. Levels: `info` for connections made
//! and lost, `warn` for failures (fields `error`, and `permanent` for connect errors),
//! `debug` for protocol detail. To see them:
//!
//! ```no_run
//! // tracing-subscriber, with its "env-filter" feature: connections and failures on stderr.
//! tracing_subscriber::fmt().with_env_filter("nsq_client=info").init();
//! ```
//!
//! With a `log` logger instead, enable `tracing`'s `log` feature: every event is then also a
//! `log` record (target `nsq_client::...`).
#![deny(unsafe_code)]
#![warn(missing_docs)]
#![cfg_attr(docsrs, feature(doc_cfg))]

mod config;
mod conn;
mod consumer;
mod error;
#[cfg(feature = "lookupd")]
mod lookupd;
mod producer;
pub mod replication;
#[cfg(feature = "tls")]
mod tls;

pub use config::{Compression, ConnectionConfig};
pub use consumer::{
    AckError, BackoffStrategy, ConnectedError, Consumer, ConsumerBuilder, ConsumerConfig,
    ConsumerEvent, ConsumerFailure, ConsumerHandle, ConsumerStats, Events, Handler, HandlerError,
    Message,
};
pub use error::{
    ConfigError, ConnectError, DisconnectReason, InvalidPublish, LookupdError, PublishError,
    PublishErrorKind,
};
pub use producer::{
    NodeStats, PoolStats, Producer, ProducerConfig, ProducerPool, ProducerStats, Strategy,
};
pub use replication::{Dedup, Receipt, ReplicatedProducer, Replication, ReplicationError};
/// The TLS library under [`TlsConfig`], for [`TlsConfig::new`] with a configuration of
/// one's own.
#[cfg(feature = "tls")]
pub use rustls;
#[cfg(feature = "tls")]
pub use tls::{TlsConfig, TlsConfigBuilder, TlsConfigError};

/// The NSQ wire protocol ([`nsq_proto`]).
pub use nsq_proto as proto;
/// The names every user needs, from [`nsq_proto`].
pub use nsq_proto::{Channel, MessageId, ServerError, Topic};
