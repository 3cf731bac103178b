//! The broker under test behind one small interface: real `nsqd`/`nsqlookupd` 1.3.0
//! processes, or `nsq-server-lite` in-process, chosen by [`BrokerKind`].

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;

use nsq_server_lite::auth::Authenticator;
use nsq_server_lite::lookupd::Lookupd as LiteLookupd;
use nsq_server_lite::stats::Stats;
use nsq_server_lite::{Nsqd as LiteNsqd, TlsRequired};

use crate::{http, peer_or_skip, RealNsqd, RealNsqlookupd};

/// Which broker to start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BrokerKind {
    /// A real `nsqd` 1.3.0 process (`NSQD_BIN`), with real `nsqlookupd` (`NSQLOOKUPD_BIN`).
    RealNsqd,
    /// `nsq-server-lite` in this process, with its lookupd.
    Lite,
}

/// Every broker kind, for tests that run against both.
pub const KINDS: [BrokerKind; 2] = [BrokerKind::Lite, BrokerKind::RealNsqd];

/// Runs `case` for every broker kind at once (a kind whose peers are missing skips itself);
/// fails when the cases together take longer than `within`, so a case that stops making
/// progress fails instead of holding up the whole run.
///
/// # Panics
///
/// When a case panics, or when they take longer than `within`.
pub async fn each_kind<F, Fut>(within: std::time::Duration, case: F)
where
    F: Fn(BrokerKind) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let all = futures::future::join_all(KINDS.map(&case));
    if tokio::time::timeout(within, all).await.is_err() {
        panic!("the cases did not finish within {within:?}");
    }
}

impl BrokerKind {
    /// A short name for test output.
    pub fn name(self) -> &'static str {
        match self {
            BrokerKind::RealNsqd => "nsqd",
            BrokerKind::Lite => "lite",
        }
    }

    /// Whether everything this kind needs is installed (see [`peer_or_skip`]).
    pub fn available(self) -> bool {
        match self {
            BrokerKind::RealNsqd => {
                peer_or_skip("NSQD_BIN").is_some() && peer_or_skip("NSQLOOKUPD_BIN").is_some()
            }
            BrokerKind::Lite => true,
        }
    }
}

/// A running nsqlookupd of either kind; stopped on drop.
#[derive(Debug)]
pub enum Lookupd {
    /// A real `nsqlookupd` process.
    Real(RealNsqlookupd),
    /// The lite lookupd.
    Lite(LiteLookupd),
}

impl Lookupd {
    /// Starts the lookupd that goes with brokers of `kind`. `None` when its binary is missing
    /// and the test should be skipped.
    ///
    /// # Panics
    ///
    /// When it cannot start, or a peer is missing under CI.
    pub async fn start(kind: BrokerKind) -> Option<Self> {
        match kind {
            BrokerKind::RealNsqd => {
                let bin = peer_or_skip("NSQLOOKUPD_BIN")?;
                let real = tokio::task::spawn_blocking(move || RealNsqlookupd::start(&bin))
                    .await
                    .expect("nsqlookupd start-up panicked");
                Some(Self::Real(real))
            }
            BrokerKind::Lite => Some(Self::Lite(
                LiteLookupd::builder()
                    .start()
                    .await
                    .expect("lite lookupd starts"),
            )),
        }
    }

    /// The TCP (registration) address.
    pub fn tcp_addr(&self) -> SocketAddr {
        match self {
            Self::Real(l) => l.tcp_addr,
            Self::Lite(l) => l.tcp_addr(),
        }
    }

    /// The HTTP address.
    pub fn http_addr(&self) -> SocketAddr {
        match self {
            Self::Real(l) => l.http_addr,
            Self::Lite(l) => l.http_addr(),
        }
    }
}

/// TLS files for the broker.
#[derive(Debug, Clone)]
pub struct BrokerTls {
    /// PEM certificate chain.
    pub cert: PathBuf,
    /// PEM private key.
    pub key: PathBuf,
    /// When set, clients must present a certificate signed by this CA (PEM): nsqd's
    /// `--tls-root-ca-file` with `--tls-client-auth-policy=require-verify`.
    pub client_ca: Option<PathBuf>,
}

impl BrokerTls {
    /// TLS with the server certificate of `certs`, asking clients for none.
    pub fn server(certs: &crate::tls::TestCerts) -> Self {
        Self {
            cert: certs.server_cert.clone(),
            key: certs.server_key.clone(),
            client_ca: None,
        }
    }
}

/// Broker settings the tests need; `None` keeps nsqd's default.
#[derive(Debug, Clone, Default)]
pub struct BrokerOpts {
    /// Offer TLS with these files and refuse TCP clients that do not upgrade (HTTP stays
    /// plain, so stats can be read).
    pub tls: Option<BrokerTls>,
    /// nsqlookupd TCP addresses to register with.
    pub lookupd_tcp: Vec<SocketAddr>,
    /// `--msg-timeout`: the in-flight timeout of clients that do not ask for one.
    pub msg_timeout: Option<Duration>,
    /// `--max-msg-timeout`: the longest in-flight timeout, and TOUCH's cap.
    pub max_msg_timeout: Option<Duration>,
    /// `--max-req-timeout`: the longest REQ delay and DPUB defer.
    pub max_req_timeout: Option<Duration>,
    /// `--max-rdy-count`.
    pub max_rdy_count: Option<u32>,
    /// `--max-msg-size`: the largest message body.
    pub max_msg_size: Option<u32>,
    /// `--max-body-size`: the largest IDENTIFY, AUTH or MPUB body.
    pub max_body_size: Option<u32>,
    /// `--auth-http-address`: require AUTH, asking this auth service (`host:port`).
    pub auth_http_address: Option<String>,
    /// For the lite broker only: require AUTH decided in-process by this authenticator
    /// (takes precedence over `auth_http_address`).
    pub lite_auth: Option<Arc<dyn Authenticator>>,
    /// For real nsqd only: more flags, such as `--mem-queue-size=0` (the lite broker has no
    /// disk queue).
    pub real_flags: Vec<String>,
}

impl BrokerOpts {
    /// The nsqd flags for the limits and timeouts set here.
    fn limit_flags(&self) -> Vec<String> {
        let mut flags = Vec::new();
        let mut duration = |name: &str, value: Option<Duration>| {
            if let Some(d) = value {
                flags.push(format!("--{name}={}ms", d.as_millis()));
            }
        };
        duration("msg-timeout", self.msg_timeout);
        duration("max-msg-timeout", self.max_msg_timeout);
        duration("max-req-timeout", self.max_req_timeout);
        for (name, value) in [
            ("max-rdy-count", self.max_rdy_count),
            ("max-msg-size", self.max_msg_size),
            ("max-body-size", self.max_body_size),
        ] {
            if let Some(v) = value {
                flags.push(format!("--{name}={v}"));
            }
        }
        if let Some(addr) = &self.auth_http_address {
            flags.push(format!("--auth-http-address={addr}"));
        }
        flags.extend(self.real_flags.iter().cloned());
        flags
    }

    /// The lite builder with the limits and timeouts set here.
    fn lite_builder(&self) -> nsq_server_lite::NsqdBuilder {
        let mut b = LiteNsqd::builder().broadcast_address("127.0.0.1");
        if let Some(d) = self.msg_timeout {
            b = b.msg_timeout(d);
        }
        if let Some(d) = self.max_msg_timeout {
            b = b.max_msg_timeout(d);
        }
        if let Some(d) = self.max_req_timeout {
            b = b.max_req_timeout(d);
        }
        if let Some(n) = self.max_rdy_count {
            b = b.max_rdy_count(n);
        }
        if let Some(n) = self.max_msg_size {
            b = b.max_msg_size(n);
        }
        if let Some(n) = self.max_body_size {
            b = b.max_body_size(n);
        }
        match (&self.lite_auth, &self.auth_http_address) {
            (Some(auth), _) => b.authenticator(auth.clone()),
            (None, Some(addr)) => b.auth_http_addresses(vec![addr.clone()]),
            (None, None) => b,
        }
    }
}

/// A running broker; stopped on drop.
#[derive(Debug)]
pub enum Broker {
    /// See [`BrokerKind::RealNsqd`].
    RealNsqd(RealNsqd),
    /// See [`BrokerKind::Lite`].
    Lite(LiteNsqd),
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
    pub async fn start(kind: BrokerKind, opts: &BrokerOpts) -> Option<Self> {
        match kind {
            BrokerKind::RealNsqd => {
                let bin = peer_or_skip("NSQD_BIN")?;
                let mut flags = opts.limit_flags();
                if let Some(tls) = &opts.tls {
                    flags.push(format!("--tls-cert={}", tls.cert.display()));
                    flags.push(format!("--tls-key={}", tls.key.display()));
                    flags.push("--tls-required=tcp-https".to_owned());
                    if let Some(ca) = &tls.client_ca {
                        flags.push(format!("--tls-root-ca-file={}", ca.display()));
                        flags.push("--tls-client-auth-policy=require-verify".to_owned());
                    }
                }
                for addr in &opts.lookupd_tcp {
                    flags.push(format!("--lookupd-tcp-address={addr}"));
                }
                let real = tokio::task::spawn_blocking(move || {
                    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
                    RealNsqd::start(&bin, &flags)
                })
                .await
                .expect("nsqd start-up panicked");
                Some(Self::RealNsqd(real))
            }
            BrokerKind::Lite => Some(Self::Lite(Self::start_lite(opts, None).await)),
        }
    }

    /// Starts a lite broker with `opts`, on `addrs` (TCP, HTTP) when given.
    async fn start_lite(opts: &BrokerOpts, addrs: Option<(SocketAddr, SocketAddr)>) -> LiteNsqd {
        Self::try_start_lite(opts, addrs)
            .await
            .expect("lite broker starts")
    }

    /// [`start_lite`](Self::start_lite), with its failure as text.
    async fn try_start_lite(
        opts: &BrokerOpts,
        addrs: Option<(SocketAddr, SocketAddr)>,
    ) -> Result<LiteNsqd, String> {
        let mut builder = opts.lite_builder();
        if let Some((tcp, http)) = addrs {
            builder = builder.tcp_address(tcp).http_address(http);
        }
        if let Some(tls) = &opts.tls {
            let client_auth = if tls.client_ca.is_some() {
                nsq_server_lite::tls::ClientAuth::RequireVerify
            } else {
                nsq_server_lite::tls::ClientAuth::None
            };
            let config = nsq_server_lite::tls::server_config(
                &tls.cert,
                &tls.key,
                tls.client_ca.as_deref(),
                client_auth,
            )
            .expect("test certificates load");
            builder = builder.tls(config).tls_required(TlsRequired::TcpOnly);
        }
        for addr in &opts.lookupd_tcp {
            builder = builder.lookupd_tcp_address(addr.to_string());
        }
        builder.start().await.map_err(|e| e.to_string())
    }

    /// Stops the broker the way an operator does and starts it again on the same ports, with
    /// `opts` (those it was started with). Real nsqd gets SIGTERM, so it writes what it holds
    /// to its data path and has it back; the lite broker has no disk and comes back empty.
    /// Returns once it listens again.
    ///
    /// # Panics
    ///
    /// When it cannot start again.
    pub async fn restart(&mut self, opts: &BrokerOpts) {
        match self {
            Self::RealNsqd(nsqd) => tokio::task::block_in_place(|| {
                nsqd.terminate();
                nsqd.restart();
            }),
            Self::Lite(nsqd) => {
                let addrs = (nsqd.tcp_addr(), nsqd.http_addr());
                nsqd.shutdown().await;
                // Free once the old broker let go of them, the ports came from the OS's
                // ephemeral range: until they are bound again, a connection of another test
                // may hold one as its local port for a moment.
                *nsqd = crate::eventually(
                    "the lite broker listens again on its ports",
                    std::time::Duration::from_secs(10),
                    || Self::try_start_lite(opts, Some(addrs)),
                )
                .await;
            }
        }
    }

    /// Ends the broker at once, as a crash would: real nsqd gets SIGKILL (its memory queue
    /// and in-flight messages are gone; its data path stays, for
    /// [`restart`](RealNsqd::restart)), the lite broker shuts down without draining (its
    /// queues are dropped). Returns once it is gone.
    pub async fn kill(&mut self) {
        match self {
            Self::RealNsqd(nsqd) => nsqd.kill(),
            Self::Lite(nsqd) => nsqd.shutdown().await,
        }
    }

    /// The TCP protocol address.
    pub fn tcp_addr(&self) -> SocketAddr {
        match self {
            Self::RealNsqd(nsqd) => nsqd.tcp_addr,
            Self::Lite(nsqd) => nsqd.tcp_addr(),
        }
    }

    /// The HTTP API address.
    pub fn http_addr(&self) -> SocketAddr {
        match self {
            Self::RealNsqd(nsqd) => nsqd.http_addr,
            Self::Lite(nsqd) => nsqd.http_addr(),
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

    /// The stats of one topic (`GET /stats?format=json`), channels included.
    ///
    /// # Errors
    ///
    /// When the request fails or the topic is not in the stats.
    pub async fn topic_stats(&self, topic: &str) -> Result<Value, String> {
        let path = format!("/stats?format=json&topic={topic}");
        let stats = http::json(self.http_addr(), "GET", &path).await?;
        stats["topics"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|t| t["topic_name"] == topic)
            .cloned()
            .ok_or_else(|| format!("no topic {topic} in {path}: {stats}"))
    }

    /// What the broker holds for `channel` of `topic`: (topic depth, channel depth, in
    /// flight, deferred). The topic's own depth counts: a disk-backed topic hands messages
    /// to its channel at the disk's pace. All four are 0 once the channel is drained.
    ///
    /// # Errors
    ///
    /// When the request fails or the channel is not in the stats.
    pub async fn held(&self, topic: &str, channel: &str) -> Result<(u64, u64, u64, u64), String> {
        let t = self.topic_stats(topic).await?;
        let c = t["channels"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|c| c["channel_name"] == channel)
            .ok_or_else(|| format!("no channel {channel}: {t}"))?;
        let n = |v: &Value, k: &str| v[k].as_u64().unwrap_or(0);
        Ok((
            n(&t, "depth"),
            n(c, "depth"),
            n(c, "in_flight_count"),
            n(c, "deferred_count"),
        ))
    }

    /// The whole `/stats?format=json`, in the lite broker's types (which read nsqd's too).
    ///
    /// # Errors
    ///
    /// When the request fails or the answer does not deserialise.
    pub async fn stats(&self) -> Result<Stats, String> {
        let value = http::json(self.http_addr(), "GET", "/stats?format=json").await?;
        serde_json::from_value(value).map_err(|e| format!("/stats: {e}"))
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
