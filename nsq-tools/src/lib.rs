//! Rust counterparts of NSQ's everyday command-line tools, on `nsq-client`:
//!
//! | binary | what it does |
//! |---|---|
//! | `nsq_tail` | prints a topic's messages to stdout ([`tail`]) |
//! | `to_nsq` | publishes stdin, one message per line ([`to_nsq`]) |
//! | `nsq_to_file` | archives topics to files, rotated and optionally gzipped ([`to_file`]) |
//! | `nsq_stat` | polls nsqd's `/stats` and shows a channel's depth and rates ([`stat`]) |
//!
//! They take nsq 1.3.0's flags, names and defaults (Go's one-dash spelling too, see
//! [`args`]), go-nsq's `--consumer-opt` / `--producer-opt` `key,value` options ([`opts`]),
//! and write what nsq's tools write: the same lines, the same file names, the same table.
//! Each stops gracefully on SIGINT or SIGTERM ([`signal`]); long runs show their rate on
//! stderr ([`rate`]).
//!
//! ```sh
//! nsq_tail --topic=events --lookupd-http-address=127.0.0.1:4161 -n 10
//! seq 1000 | to_nsq --topic=events --nsqd-tcp-address=127.0.0.1:4150 --rate=100
//! nsq_to_file --topic=events --lookupd-http-address=127.0.0.1:4161 --output-dir=/var/log/nsq --gzip
//! nsq_stat --topic=events --channel=archive --lookupd-http-address=127.0.0.1:4161
//! ```
#![deny(unsafe_code)]
#![warn(missing_docs)]

pub mod args;
pub mod cli;
pub mod consume;
pub mod duration;
pub mod http;
pub mod logging;
pub mod opts;
pub mod rate;
pub mod signal;
pub mod stat;
pub mod tail;
pub mod throttle;
pub mod tls;
pub mod to_file;
pub mod to_nsq;
