//! Starting and stopping a broker: [`Nsqd`] and its builder.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tokio_util::task::TaskTracker;

use crate::auth::{Authenticator, HttpAuth};
use crate::broker::{Broker, Options, TlsRequired};
use crate::listener::ProtocolListener;
use crate::stats::Stats;

/// Why a broker could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StartError {
    /// A listening socket could not be bound.
    #[error("cannot listen on {what} address {addr}: {source}")]
    Bind {
        /// `TCP` or `HTTP`.
        what: &'static str,
        /// The address asked for.
        addr: SocketAddr,
        /// The cause.
        source: std::io::Error,
    },
    /// The unix socket could not be bound (it exists already, say, or its directory does not).
    #[error("cannot listen on unix socket {}: {source}", path.display())]
    BindUnix {
        /// The socket path asked for.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// The options contradict each other.
    #[error("invalid options: {0}")]
    Invalid(String),
}

/// Builds an [`Nsqd`]; every option defaults to nsqd 1.3.0's default unless noted.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use std::time::Duration;
///
/// let nsqd = nsq_server_lite::Nsqd::builder()
///     .msg_timeout(Duration::from_secs(5))
///     .max_rdy_count(100)
///     .start()
///     .await?;
/// assert!(nsqd.tcp_addr().ip().is_loopback());
/// nsqd.shutdown().await;
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone, Default)]
#[must_use]
pub struct NsqdBuilder {
    opts: Options,
}

impl NsqdBuilder {
    /// The TCP (protocol V2) address; default `127.0.0.1:0`, a free port. Replaces a
    /// [`NsqdBuilder::tcp_unix_socket`] given before.
    pub fn tcp_address(mut self, addr: SocketAddr) -> Self {
        self.opts.tcp_address = addr;
        self.opts.tcp_unix_socket = None;
        self
    }

    /// Serves the TCP protocol (V2) on a unix socket at `path` instead of a TCP port, as
    /// nsqd 1.3.0 does when `--tcp-address` is a path. Replaces a
    /// [`NsqdBuilder::tcp_address`] given before.
    ///
    /// The running broker names the path in [`Nsqd::unix_socket_path`]; it has no TCP
    /// address then ([`Nsqd::tcp_addr`] is `0.0.0.0:0`), `/info` reports `tcp_port` -1, and
    /// nsqlookupd is told TCP port 0. Starting fails if the file exists (as Go's
    /// `net.Listen` does); the broker removes it when it stops. Clients of the socket show
    /// as `@` in `/stats` and are reported to an auth service as `127.0.0.1`.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let path = std::env::temp_dir().join(format!("nsqd-doc-{}.sock", std::process::id()));
    /// let nsqd = nsq_server_lite::Nsqd::builder().tcp_unix_socket(&path).start().await?;
    /// assert_eq!(nsqd.unix_socket_path(), Some(path.as_path()));
    /// let stream = tokio::net::UnixStream::connect(&path).await?; // then "  V2", IDENTIFY, ...
    /// # drop(stream);
    /// nsqd.shutdown().await;
    /// assert!(!path.exists());
    /// # Ok(())
    /// # }
    /// ```
    #[cfg(unix)]
    pub fn tcp_unix_socket(mut self, path: impl Into<PathBuf>) -> Self {
        self.opts.tcp_unix_socket = Some(path.into());
        self
    }

    /// The HTTP address; default `127.0.0.1:0`, a free port.
    pub fn http_address(mut self, addr: SocketAddr) -> Self {
        self.opts.http_address = addr;
        self
    }

    /// The host name given to nsqlookupd (default: this machine's host name).
    pub fn broadcast_address(mut self, host: impl Into<String>) -> Self {
        self.opts.broadcast_address = host.into();
        self
    }

    /// Adds an nsqlookupd TCP address (`host:port`) to register with.
    pub fn lookupd_tcp_address(mut self, addr: impl Into<String>) -> Self {
        self.opts.lookupd_tcp_addresses.push(addr.into());
        self
    }

    /// The largest message body (PUB, DPUB, each MPUB message); default 1 MiB.
    pub fn max_msg_size(mut self, bytes: u32) -> Self {
        self.opts.limits.max_msg_size = bytes;
        self
    }

    /// The largest IDENTIFY, AUTH or MPUB body; default 5 MiB.
    pub fn max_body_size(mut self, bytes: u32) -> Self {
        self.opts.limits.max_body_size = bytes;
        self
    }

    /// The largest RDY a client may send; default 2500.
    pub fn max_rdy_count(mut self, count: u32) -> Self {
        self.opts.limits.max_rdy_count = count;
        self.opts.server.max_rdy_count = count;
        self
    }

    /// The in-flight timeout for clients that do not ask for one; default 60 s.
    pub fn msg_timeout(mut self, timeout: Duration) -> Self {
        self.opts.server.msg_timeout = timeout;
        self
    }

    /// The longest in-flight timeout a client may ask for, and TOUCH's cap; default 15 min.
    pub fn max_msg_timeout(mut self, timeout: Duration) -> Self {
        self.opts.server.max_msg_timeout = timeout;
        self
    }

    /// The longest REQ delay (longer ones are clamped) and DPUB defer; default 1 h.
    pub fn max_req_timeout(mut self, timeout: Duration) -> Self {
        self.opts.limits.max_req_timeout = timeout;
        self
    }

    /// The longest heartbeat interval a client may ask for; default 60 s.
    pub fn max_heartbeat_interval(mut self, interval: Duration) -> Self {
        self.opts.server.max_heartbeat_interval = interval;
        self
    }

    /// The client timeout: the default heartbeat is half of it; default 60 s.
    pub fn client_timeout(mut self, timeout: Duration) -> Self {
        self.opts.client_timeout = timeout;
        self.opts.server.heartbeat_interval = timeout / 2;
        self
    }

    /// The largest output buffer a client may ask for; default 64 KiB.
    pub fn max_output_buffer_size(mut self, bytes: u32) -> Self {
        self.opts.server.max_output_buffer_size = bytes;
        self
    }

    /// The longest output buffer timeout a client may ask for; default 30 s.
    pub fn max_output_buffer_timeout(mut self, timeout: Duration) -> Self {
        self.opts.server.max_output_buffer_timeout = timeout;
        self
    }

    /// The default output buffer timeout; default 250 ms.
    pub fn output_buffer_timeout(mut self, timeout: Duration) -> Self {
        self.opts.server.output_buffer_timeout = timeout;
        self
    }

    /// Messages a topic or channel holds in memory; default 1,000,000.
    ///
    /// nsqd keeps `--mem-queue-size` (10,000) messages in memory and writes the rest to disk.
    /// This broker has no disk: past this bound a publish is refused with `E_PUB_FAILED` (or
    /// `E_MPUB_FAILED`, `E_DPUB_FAILED`, HTTP 500), so no accepted message is ever dropped.
    /// Ephemeral channels drop what does not fit, as in nsqd.
    pub fn mem_queue_size(mut self, messages: usize) -> Self {
        self.opts.mem_queue_size = messages;
        self
    }

    /// The most consumers one channel takes; 0 (the default) is no limit.
    pub fn max_channel_consumers(mut self, consumers: usize) -> Self {
        self.opts.max_channel_consumers = consumers;
        self
    }

    /// Whether clients may negotiate snappy; default true.
    pub fn snappy(mut self, enabled: bool) -> Self {
        self.opts.server.snappy = enabled;
        self
    }

    /// Whether clients may negotiate deflate; default true.
    pub fn deflate(mut self, enabled: bool) -> Self {
        self.opts.server.deflate = enabled;
        self
    }

    /// The highest deflate level a client gets; default 6.
    pub fn max_deflate_level(mut self, level: u32) -> Self {
        self.opts.server.max_deflate_level = level;
        self
    }

    /// Offers TLS with this configuration (client certificates as it decides).
    pub fn tls(mut self, config: Arc<rustls::ServerConfig>) -> Self {
        self.opts.tls = Some(config);
        self
    }

    /// When TLS is required; default [`TlsRequired::No`].
    pub fn tls_required(mut self, required: TlsRequired) -> Self {
        self.opts.tls_required = required;
        self
    }

    /// Requires AUTH, decided by `auth` (an in-process policy, or [`HttpAuth`]).
    pub fn authenticator(mut self, auth: Arc<dyn Authenticator>) -> Self {
        self.opts.auth = Some(auth);
        self
    }

    /// Requires AUTH, decided by these auth services (nsqd's `--auth-http-address`).
    pub fn auth_http_addresses(self, addresses: Vec<String>) -> Self {
        self.authenticator(Arc::new(HttpAuth::new(addresses)))
    }

    /// The region this broker says it is in (nsq master's `--topology-region`, after 1.3.0);
    /// default empty.
    ///
    /// With a region or a zone set, the IDENTIFY reply, `/info` and the registration with
    /// nsqlookupd carry both, as nsq master's do; without, they are nsqd 1.3.0's. Clients'
    /// own region and zone (from IDENTIFY) are recorded and shown in `/stats` either way.
    /// Messages are not steered by topology here.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let nsqd = nsq_server_lite::Nsqd::builder()
    ///     .topology_region("eu-west-1")
    ///     .topology_zone("eu-west-1b")
    ///     .start()
    ///     .await?;
    /// nsqd.shutdown().await;
    /// # Ok(())
    /// # }
    /// ```
    pub fn topology_region(mut self, region: impl Into<String>) -> Self {
        self.opts.server.topology_region = region.into();
        self
    }

    /// The zone this broker says it is in (nsq master's `--topology-zone`); default empty.
    /// See [`NsqdBuilder::topology_region`].
    ///
    /// ```
    /// let builder = nsq_server_lite::Nsqd::builder().topology_zone("eu-west-1b");
    /// # let _ = builder;
    /// ```
    pub fn topology_zone(mut self, zone: impl Into<String>) -> Self {
        self.opts.server.topology_zone = zone.into();
        self
    }

    /// Binds the listeners and starts serving.
    ///
    /// # Errors
    ///
    /// [`StartError::Bind`] when an address cannot be bound, [`StartError::BindUnix`] when
    /// the unix socket cannot; [`StartError::Invalid`] when TLS
    /// is required but not configured.
    pub async fn start(self) -> Result<Nsqd, StartError> {
        let opts = self.opts;
        if opts.tls_required != TlsRequired::No && opts.tls.is_none() {
            return Err(StartError::Invalid(
                "TLS is required but no TLS configuration was given".to_owned(),
            ));
        }
        let tcp = ProtocolListener::bind(&opts).await?;
        let http =
            crate::listener::listen(opts.http_address).map_err(|source| StartError::Bind {
                what: "HTTP",
                addr: opts.http_address,
                source,
            })?;
        let tcp_addr = tcp.tcp_addr(&opts)?;
        let unix_socket = tcp.unix_socket_path().map(Path::to_path_buf);
        let http_addr = http.local_addr().map_err(|source| StartError::Bind {
            what: "HTTP",
            addr: opts.http_address,
            source,
        })?;
        let broker = Arc::new(Broker::new(opts, tcp_addr, http_addr));
        let tasks = TaskTracker::new();
        broker.start_lookup();
        tasks.spawn(tcp.accept_loop(broker.clone(), tasks.clone()));
        tasks.spawn(crate::http::serve(broker.clone(), http));
        tasks.spawn(scan_loop(broker.clone()));
        match &unix_socket {
            Some(path) => {
                tracing::info!(unix_socket = %path.display(), %http_addr, "nsq-server-lite listening")
            }
            None => tracing::info!(%tcp_addr, %http_addr, "nsq-server-lite listening"),
        }
        Ok(Nsqd {
            broker,
            tcp_addr,
            unix_socket,
            http_addr,
            tasks,
        })
    }
}

/// nsqd's queue scan: in-flight timeouts and deferred messages, every 100 ms.
async fn scan_loop(broker: Arc<Broker>) {
    let mut timer = tokio::time::interval(broker.opts.scan_interval);
    timer.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = timer.tick() => broker.scan(),
            _ = broker.shutdown.cancelled() => return,
        }
    }
}

/// A running broker. Dropping it stops it (without waiting); [`Nsqd::shutdown`] waits.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let nsqd = nsq_server_lite::Nsqd::start().await?;
/// println!("nsqd at {} (HTTP {})", nsqd.tcp_addr(), nsqd.http_addr());
/// nsqd.shutdown().await;
/// # Ok(())
/// # }
/// ```
#[derive(Debug)]
pub struct Nsqd {
    broker: Arc<Broker>,
    tcp_addr: SocketAddr,
    unix_socket: Option<PathBuf>,
    http_addr: SocketAddr,
    tasks: TaskTracker,
}

impl Nsqd {
    /// A builder with nsqd's defaults, listening on free loopback ports.
    pub fn builder() -> NsqdBuilder {
        NsqdBuilder::default()
    }

    /// Starts a broker with the defaults on free loopback ports.
    ///
    /// # Errors
    ///
    /// As [`NsqdBuilder::start`].
    pub async fn start() -> Result<Self, StartError> {
        Self::builder().start().await
    }

    /// The TCP (protocol V2) address clients connect to.
    ///
    /// A broker serving the protocol on a unix socket ([`NsqdBuilder::tcp_unix_socket`]) has
    /// no TCP address: this is then the unspecified `0.0.0.0:0`, and
    /// [`Nsqd::unix_socket_path`] says where to connect.
    pub fn tcp_addr(&self) -> SocketAddr {
        self.tcp_addr
    }

    /// The unix socket clients connect to for the TCP protocol (V2), when the broker serves
    /// it on one ([`NsqdBuilder::tcp_unix_socket`]); `None` when it listens on
    /// [`Nsqd::tcp_addr`].
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let nsqd = nsq_server_lite::Nsqd::start().await?;
    /// assert_eq!(nsqd.unix_socket_path(), None);
    /// # Ok(())
    /// # }
    /// ```
    pub fn unix_socket_path(&self) -> Option<&Path> {
        self.unix_socket.as_deref()
    }

    /// The HTTP API's address.
    pub fn http_addr(&self) -> SocketAddr {
        self.http_addr
    }

    /// Serves one client connection over `stream` (any byte stream, such as one end of
    /// [`tokio::io::duplex`]) as the TCP listener serves an accepted socket: the protocol
    /// magic, then commands until the client closes its side, the connection fails or the
    /// broker shuts down. The returned future does the work; await it or spawn it (it needs
    /// a tokio runtime), and [`Nsqd::shutdown`] waits for it as for any connection.
    ///
    /// The client has no address: `/stats` shows it as `@` and an auth service is told
    /// `127.0.0.1`, as for a unix socket client.
    ///
    /// For the fuzz targets (`nsq-proto/fuzz`), behind the `fuzzing` feature; not part of
    /// the stable API.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use tokio::io::{AsyncReadExt, AsyncWriteExt};
    ///
    /// let nsqd = nsq_server_lite::Nsqd::start().await?;
    /// let (mut client, server) = tokio::io::duplex(4096);
    /// let served = tokio::spawn(nsqd.serve_connection(server));
    /// client.write_all(b"  V2PUB orders\n\x00\x00\x00\x02hi").await?;
    /// client.shutdown().await?; // the broker answers, then ends the connection
    /// let mut answer = Vec::new();
    /// client.read_to_end(&mut answer).await?;
    /// assert_eq!(answer, b"\x00\x00\x00\x06\x00\x00\x00\x00OK");
    /// served.await?;
    /// nsqd.shutdown().await;
    /// # Ok(())
    /// # }
    /// ```
    #[cfg(feature = "fuzzing")]
    pub fn serve_connection<S>(
        &self,
        stream: S,
    ) -> impl std::future::Future<Output = ()> + Send + 'static
    where
        S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Unpin + 'static,
    {
        self.tasks.track_future(crate::conn::serve(
            self.broker.clone(),
            stream,
            crate::client::Peer::Unix,
        ))
    }

    /// What `/stats?format=json` would answer now.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let nsqd = nsq_server_lite::Nsqd::start().await?;
    /// assert!(nsqd.stats().topics.is_empty());
    /// # Ok(())
    /// # }
    /// ```
    pub fn stats(&self) -> Stats {
        self.broker.stats(None, None, true)
    }

    /// Stops accepting, closes every connection and waits for the broker's tasks to end.
    /// Messages still queued are dropped with the broker, as with nsqd's memory queue, so a
    /// test can use it as a crash of nsqd. Once it returns the broker is gone for good; its
    /// addresses stay readable.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let nsqd = nsq_server_lite::Nsqd::start().await?;
    /// nsqd.shutdown().await;
    /// assert!(tokio::net::TcpStream::connect(nsqd.tcp_addr()).await.is_err());
    /// # Ok(())
    /// # }
    /// ```
    pub async fn shutdown(&self) {
        self.broker.shutdown.cancel();
        self.tasks.close();
        self.tasks.wait().await;
    }
}

impl Drop for Nsqd {
    fn drop(&mut self) {
        self.broker.shutdown.cancel();
    }
}
