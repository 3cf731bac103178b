//! The broker under test behind one small interface, so that interop tests can run
//! against real `nsqd` now and `nsq-server-lite` later by adding a [`BrokerKind`]
//! variant and its arms here.

use std::net::SocketAddr;
use std::path::PathBuf;

use serde_json::Value;

use crate::{http, peer_or_skip, RealNsqd};

/// Which broker to start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BrokerKind {
    /// A real `nsqd` 1.3.0 process (`NSQD_BIN`).
    RealNsqd,
}

/// TLS files for the broker.
#[derive(Debug, Clone)]
pub struct BrokerTls {
    /// PEM certificate chain.
    pub cert: PathBuf,
    /// PEM private key.
    pub key: PathBuf,
}

/// Broker settings the interop tests need.
#[derive(Debug, Clone, Default)]
pub struct BrokerOpts {
    /// Offer TLS with these files and refuse TCP clients that do not upgrade (HTTP stays
    /// plain, so stats can be read).
    pub tls: Option<BrokerTls>,
    /// nsqlookupd TCP addresses to register with.
    pub lookupd_tcp: Vec<SocketAddr>,
}

/// A running broker; stopped on drop.
#[derive(Debug)]
pub enum Broker {
    /// See [`BrokerKind::RealNsqd`].
    RealNsqd(RealNsqd),
}

impl Broker {
    /// Starts a broker of `kind` with `opts`.
    ///
    /// Returns `None` when its binary is missing and the test should be skipped (see
    /// [`peer_or_skip`]). Blocks until the broker listens.
    ///
    /// # Panics
    ///
    /// When the broker cannot start, or a peer is missing under CI.
    pub fn start(kind: BrokerKind, opts: &BrokerOpts) -> Option<Self> {
        match kind {
            BrokerKind::RealNsqd => {
                let bin = peer_or_skip("NSQD_BIN")?;
                let mut flags = Vec::new();
                if let Some(tls) = &opts.tls {
                    flags.push(format!("--tls-cert={}", tls.cert.display()));
                    flags.push(format!("--tls-key={}", tls.key.display()));
                    flags.push("--tls-required=tcp-https".to_owned());
                }
                for addr in &opts.lookupd_tcp {
                    flags.push(format!("--lookupd-tcp-address={addr}"));
                }
                let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
                Some(Self::RealNsqd(RealNsqd::start(&bin, &flags)))
            }
        }
    }

    /// The TCP protocol address.
    pub fn tcp_addr(&self) -> SocketAddr {
        match self {
            Self::RealNsqd(nsqd) => nsqd.tcp_addr,
        }
    }

    /// The HTTP API address.
    pub fn http_addr(&self) -> SocketAddr {
        match self {
            Self::RealNsqd(nsqd) => nsqd.http_addr,
        }
    }

    /// Creates `topic` and its `channel` (`POST /topic/create`, `POST /channel/create`).
    ///
    /// # Errors
    ///
    /// When a request fails or is refused.
    pub async fn create_channel(&self, topic: &str, channel: &str) -> Result<(), String> {
        for path in [
            format!("/topic/create?topic={topic}"),
            format!("/channel/create?topic={topic}&channel={channel}"),
        ] {
            match http::request(self.http_addr(), "POST", &path).await? {
                (200, _) => {}
                (status, body) => return Err(format!("POST {path}: status {status}: {body}")),
            }
        }
        Ok(())
    }

    /// The stats of one channel (`GET /stats?format=json`), as nsqd reports them:
    /// `depth`, `in_flight_count`, `message_count`, `requeue_count`, `timeout_count`,
    /// and `clients` with each client's `finish_count`, `tls`, `snappy`, `deflate`, ...
    ///
    /// # Errors
    ///
    /// When the request fails or the channel is not in the stats.
    pub async fn channel_stats(&self, topic: &str, channel: &str) -> Result<Value, String> {
        let path = format!("/stats?format=json&topic={topic}&channel={channel}");
        let mut stats = http::json(self.http_addr(), "GET", &path).await?;
        // Pre-1.0 nsqd wraps replies in {"status_code":..,"data":..}; accept both.
        if let Some(data) = stats.get_mut("data") {
            stats = data.take();
        }
        stats["topics"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|t| t["topic_name"] == topic)
            .flat_map(|t| t["channels"].as_array().into_iter().flatten())
            .find(|c| c["channel_name"] == channel)
            .cloned()
            .ok_or_else(|| format!("no channel {topic}/{channel} in {path}: {stats}"))
    }
}
