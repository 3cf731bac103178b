//! The nsqd side of the lookupd protocol: keeping every nsqlookupd told what this
//! broker holds (nsqd's `lookup.go` and `lookup_peer.go`).
//!
//! One task per nsqlookupd address. Each connects, sends `"  V1"` and IDENTIFY,
//! REGISTERs the broker's snapshot, then forwards every notified change and PINGs
//! every 15 s. Any failure (connect, a 1 s read or write deadline, an error reply)
//! drops the connection; nsqlookupd then forgets this broker's registrations, so the
//! task reconnects after a backoff and registers the snapshot again.

use std::collections::BTreeSet;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use futures::{SinkExt, StreamExt};
use nsq_proto::lookup::{
    decode_response, is_v1_header, join_host_port, ChannelsResponse, LookupClientCodec,
    LookupCommand, LookupReply, LookupdInfo, PeerInfo, ACCEPT_V1, DEFAULT_MAX_REPLY_LEN, MAGIC_V1,
    V1_HEADER,
};
use nsq_proto::{Channel, ProtocolError, ServerError, Topic};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, watch};
use tokio::time::{timeout, MissedTickBehavior};
use tokio_util::codec::Framed;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn, Instrument};

/// A change in what the broker holds, told to every nsqlookupd.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Registration {
    /// The topic (and the channel, if any) now exists here.
    Register {
        /// The topic.
        topic: Topic,
        /// The channel, if the change is about one.
        channel: Option<Channel>,
    },
    /// The channel, or the whole topic, is gone from here.
    Unregister {
        /// The topic.
        topic: Topic,
        /// The channel, if the change is about one.
        channel: Option<Channel>,
    },
}

impl Registration {
    fn command(self) -> LookupCommand {
        match self {
            Registration::Register { topic, channel } => LookupCommand::Register { topic, channel },
            Registration::Unregister { topic, channel } => {
                LookupCommand::Unregister { topic, channel }
            }
        }
    }
}

/// What the broker holds now, as the REGISTERs nsqd sends after (re)connecting.
pub(crate) type Snapshot = Arc<dyn Fn() -> Vec<Registration> + Send + Sync>;

/// nsqd PINGs every nsqlookupd this often.
const PING_INTERVAL: Duration = Duration::from_secs(15);
/// nsqd's dial timeout and read/write deadline for lookupd connections.
const IO_TIMEOUT: Duration = Duration::from_secs(1);
/// How long `channels` waits for each nsqlookupd.
const CHANNELS_TIMEOUT: Duration = Duration::from_secs(2);
/// Changes queued per nsqlookupd before the peer resynchronises instead.
const QUEUE_LEN: usize = 1024;
/// The first and the largest delay before reconnecting.
const BACKOFF_MIN: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(15);

/// A byte stream to an nsqlookupd.
pub(crate) trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;
/// Opens a stream to an address (TCP, or an in-memory pipe in tests).
pub(crate) type Connector = Arc<dyn Fn(String) -> BoxFuture<io::Result<Box<dyn Io>>> + Send + Sync>;

/// Why a session with an nsqlookupd ended.
#[derive(Debug, thiserror::Error)]
enum PeerError {
    #[error("connect failed")]
    Connect(#[source] io::Error),
    #[error("write failed")]
    Write(#[source] io::Error),
    #[error("{0} timed out")]
    Timeout(&'static str),
    #[error("protocol error")]
    Protocol(#[from] ProtocolError),
    #[error("connection closed by nsqlookupd")]
    Closed,
    #[error("nsqlookupd refused {command}: {error}")]
    Refused {
        command: &'static str,
        error: ServerError,
    },
    #[error("bad IDENTIFY reply")]
    Identify(#[source] ProtocolError),
    #[error("unsolicited reply {0:?}")]
    Unsolicited(LookupReply),
    #[error("too many queued changes; resynchronising")]
    Overflow,
}

/// The handle to one nsqlookupd's task.
#[derive(Debug)]
struct Peer {
    addr: String,
    queue: mpsc::Sender<Registration>,
    overflow: Arc<AtomicBool>,
    /// `broadcast_address:http_port` from the last IDENTIFY reply.
    http_addr: watch::Receiver<Option<String>>,
}

/// Registers this broker with every configured nsqlookupd.
#[derive(Debug)]
pub(crate) struct LookupPeers {
    peers: Vec<Peer>,
    http: reqwest::Client,
}

impl LookupPeers {
    /// One task per address (host:port strings, as nsqd's --lookupd-tcp-address). Each
    /// connects, sends the V1 magic and IDENTIFY with `info`, then REGISTERs everything
    /// `snapshot()` returns, then forwards each notified Registration, PINGs every 15 s,
    /// and on any failure reconnects with backoff and re-registers the snapshot. Stops
    /// when `shutdown` is cancelled.
    pub(crate) fn start(
        addrs: Vec<String>,
        info: PeerInfo,
        snapshot: Snapshot,
        shutdown: CancellationToken,
    ) -> Self {
        Self::start_with(addrs, info, snapshot, shutdown, tcp_connector())
    }

    /// [`Self::start`] with streams opened by `connect`.
    pub(crate) fn start_with(
        addrs: Vec<String>,
        info: PeerInfo,
        snapshot: Snapshot,
        shutdown: CancellationToken,
        connect: Connector,
    ) -> Self {
        let peers = addrs
            .into_iter()
            .map(|addr| {
                let (queue, rx) = mpsc::channel(QUEUE_LEN);
                let overflow = Arc::new(AtomicBool::new(false));
                let (http_tx, http_addr) = watch::channel(None);
                let task = PeerTask {
                    addr: addr.clone(),
                    info: info.clone(),
                    snapshot: Arc::clone(&snapshot),
                    rx,
                    overflow: Arc::clone(&overflow),
                    http_addr: http_tx,
                    connect: Arc::clone(&connect),
                };
                let span = tracing::info_span!("lookup_peer", addr = %addr);
                tokio::spawn(task.run(shutdown.clone()).instrument(span));
                Peer {
                    addr,
                    queue,
                    overflow,
                    http_addr,
                }
            })
            .collect();
        Self {
            peers,
            http: reqwest::Client::new(),
        }
    }

    /// Non-blocking; queued for every peer.
    pub(crate) fn notify(&self, registration: Registration) {
        for peer in &self.peers {
            match peer.queue.try_send(registration.clone()) {
                Ok(()) => {}
                Err(mpsc::error::TrySendError::Full(_)) => {
                    // The peer will reconnect and send the whole snapshot instead.
                    peer.overflow.store(true, Ordering::Release);
                }
                Err(mpsc::error::TrySendError::Closed(_)) => {
                    debug!(addr = %peer.addr, "lookup peer stopped; change dropped");
                }
            }
        }
    }

    /// nsqd does `GET /channels?topic=` on every lookupd when a topic is created; the
    /// HTTP address of each lookupd comes from its IDENTIFY reply (LookupdInfo
    /// broadcast_address + http_port). Union of the answers, bounded by a short timeout
    /// per lookupd; errors logged, not returned.
    pub(crate) async fn channels(&self, topic: &Topic) -> Vec<Channel> {
        let addrs: Vec<String> = self
            .peers
            .iter()
            .filter_map(|peer| peer.http_addr.borrow().clone())
            .collect();
        let answers =
            futures::future::join_all(addrs.iter().map(|addr| self.query_channels(addr, topic)))
                .await;
        let mut union = BTreeSet::new();
        for (addr, answer) in addrs.iter().zip(answers) {
            match answer {
                Ok(names) => {
                    union.extend(names.into_iter().filter_map(|name| {
                        Channel::new(&name)
                            .inspect_err(|_| warn!(%addr, channel = %name, "invalid channel name"))
                            .ok()
                    }));
                }
                Err(err) => warn!(%addr, cause = %err, "failed to query nsqlookupd for channels"),
            }
        }
        union.into_iter().collect()
    }

    async fn query_channels(
        &self,
        addr: &str,
        topic: &Topic,
    ) -> Result<Vec<String>, Box<dyn std::error::Error + Send + Sync>> {
        // Topic names hold only URL-safe bytes, except the `#` of `#ephemeral`.
        let topic = topic.as_str().replace('#', "%23");
        let url = format!("http://{addr}/channels?topic={topic}");
        let request = async {
            let mut response = self
                .http
                .get(url)
                .header(reqwest::header::ACCEPT, ACCEPT_V1)
                .send()
                .await?;
            let status = response.status().as_u16();
            let v1 = response
                .headers()
                .get(V1_HEADER)
                .is_some_and(|value| is_v1_header(value.as_bytes()));
            let mut body = Vec::new();
            while let Some(chunk) = response.chunk().await? {
                if body.len() + chunk.len() > DEFAULT_MAX_REPLY_LEN {
                    return Err("response body too large".into());
                }
                body.extend_from_slice(&chunk);
            }
            let channels: ChannelsResponse = decode_response(status, v1, &body)?;
            Ok(channels.channels)
        };
        timeout(CHANNELS_TIMEOUT, request)
            .await
            .map_err(|_| "timed out")?
    }
}

/// Opens TCP connections with nsqd's 1 s dial timeout.
fn tcp_connector() -> Connector {
    Arc::new(|addr: String| {
        Box::pin(async move {
            let stream = timeout(IO_TIMEOUT, TcpStream::connect(addr))
                .await
                .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "connect timed out"))??;
            stream.set_nodelay(true)?;
            Ok(Box::new(stream) as Box<dyn Io>)
        })
    })
}

/// One nsqlookupd's task.
struct PeerTask {
    addr: String,
    info: PeerInfo,
    snapshot: Snapshot,
    rx: mpsc::Receiver<Registration>,
    overflow: Arc<AtomicBool>,
    http_addr: watch::Sender<Option<String>>,
    connect: Connector,
}

type Conn = Framed<Box<dyn Io>, LookupClientCodec>;

impl PeerTask {
    async fn run(mut self, shutdown: CancellationToken) {
        let mut backoff = BACKOFF_MIN;
        loop {
            let session = async {
                let mut conn = self.open().await?;
                info!("registered with nsqlookupd");
                self.steady(&mut conn).await
            };
            let ended = tokio::select! {
                () = shutdown.cancelled() => return,
                ended = session => ended,
            };
            match ended {
                Ok(()) => return,
                Err(PeerError::Overflow) => backoff = BACKOFF_MIN,
                Err(err) => warn!(cause = %err, "nsqlookupd session ended; reconnecting"),
            }
            let delay = jitter(backoff);
            backoff = (backoff * 2).min(BACKOFF_MAX);
            tokio::select! {
                () = shutdown.cancelled() => return,
                () = tokio::time::sleep(delay) => {}
            }
        }
    }

    /// Connects, identifies and registers the snapshot.
    async fn open(&mut self) -> Result<Conn, PeerError> {
        let mut io = (self.connect)(self.addr.clone())
            .await
            .map_err(PeerError::Connect)?;
        timeout(IO_TIMEOUT, io.write_all(&MAGIC_V1))
            .await
            .map_err(|_| PeerError::Timeout("magic"))?
            .map_err(PeerError::Write)?;
        let mut conn = Framed::new(io, LookupClientCodec::new());
        let reply = command(&mut conn, LookupCommand::Identify(self.info.clone())).await?;
        let data = match reply {
            LookupReply::Data(data) => data,
            LookupReply::Ok => bytes::Bytes::from_static(b"OK"),
            LookupReply::Error(error) => {
                return Err(PeerError::Refused {
                    command: "IDENTIFY",
                    error,
                })
            }
        };
        let lookupd = LookupdInfo::parse(&data).map_err(PeerError::Identify)?;
        debug!(?lookupd, "nsqlookupd identified");
        if lookupd.broadcast_address.is_empty() {
            warn!("nsqlookupd has no broadcast address");
            self.http_addr.send_replace(None);
        } else {
            let http = join_host_port(&lookupd.broadcast_address, lookupd.http_port);
            self.http_addr.send_replace(Some(http));
        }
        // The snapshot covers every change queued so far.
        while self.rx.try_recv().is_ok() {}
        self.overflow.store(false, Ordering::Release);
        for registration in (self.snapshot)() {
            expect_ok(&mut conn, registration.command()).await?;
        }
        Ok(conn)
    }

    /// Forwards changes and PINGs until something fails; `Ok` when the handle is gone.
    async fn steady(&mut self, conn: &mut Conn) -> Result<(), PeerError> {
        let start = tokio::time::Instant::now() + PING_INTERVAL;
        let mut ping = tokio::time::interval_at(start, PING_INTERVAL);
        ping.set_missed_tick_behavior(MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = ping.tick() => {
                    debug!("sending heartbeat");
                    expect_ok(conn, LookupCommand::Ping).await?;
                }
                // nsqlookupd never speaks first: anything here means the connection is
                // gone (nsqd would notice only at its next PING).
                unsolicited = conn.next() => {
                    return Err(match unsolicited {
                        None => PeerError::Closed,
                        Some(Err(err)) => PeerError::Protocol(err),
                        Some(Ok(reply)) => PeerError::Unsolicited(reply),
                    });
                }
                registration = self.rx.recv() => {
                    let Some(registration) = registration else { return Ok(()) };
                    if self.overflow.load(Ordering::Acquire) {
                        return Err(PeerError::Overflow);
                    }
                    let cmd = registration.command();
                    info!(command = ?cmd, "telling nsqlookupd");
                    expect_ok(conn, cmd).await?;
                }
            }
        }
    }
}

/// Sends a command and reads its reply, each under nsqd's 1 s deadline.
async fn command(conn: &mut Conn, cmd: LookupCommand) -> Result<LookupReply, PeerError> {
    timeout(IO_TIMEOUT, conn.send(cmd))
        .await
        .map_err(|_| PeerError::Timeout("write"))??;
    match timeout(IO_TIMEOUT, conn.next()).await {
        Err(_) => Err(PeerError::Timeout("read")),
        Ok(None) => Err(PeerError::Closed),
        Ok(Some(reply)) => Ok(reply?),
    }
}

/// [`command`], failing on an error reply (after which nsqlookupd closes anyway).
async fn expect_ok(conn: &mut Conn, cmd: LookupCommand) -> Result<(), PeerError> {
    let name = cmd.verb().as_str();
    match command(conn, cmd).await? {
        LookupReply::Error(error) => Err(PeerError::Refused {
            command: name,
            error,
        }),
        LookupReply::Ok | LookupReply::Data(_) => Ok(()),
    }
}

/// A delay in `[d/2, d]`, so peers that failed together do not retry together.
fn jitter(d: Duration) -> Duration {
    let half = d / 2;
    let millis = u64::try_from(half.as_millis()).unwrap_or(u64::MAX);
    half + Duration::from_millis(fastrand::u64(0..=millis))
}

#[cfg(test)]
mod tests;
