//! An in-process nsqlookupd: nsqd registration over TCP, discovery over HTTP.
//!
//! [`Lookupd`] answers as nsqlookupd 1.3.0 does, byte for byte where clients can
//! see it: the TCP protocol V1 that nsqd uses to register its topics and channels
//! (`IDENTIFY`, `REGISTER`, `UNREGISTER`, `PING`, with nsqlookupd's replies and error
//! texts), and the HTTP API consumers and tools use (`/lookup`, `/topics`,
//! `/channels`, `/nodes`, `/topic/create`, ...), including the inactive-producer
//! timeout and tombstones.
//!
//! ```
//! use nsq_server_lite::lookupd::Lookupd;
//!
//! #[tokio::main]
//! async fn main() -> Result<(), Box<dyn std::error::Error>> {
//!     let lookupd = Lookupd::builder()
//!         .broadcast_address("127.0.0.1".to_owned())
//!         .start()
//!         .await?;
//!     // Point nsqd at `--lookupd-tcp-address=<tcp_addr>`, consumers at `http_addr`.
//!     assert_ne!(lookupd.tcp_addr().port(), 0);
//!     assert_ne!(lookupd.http_addr().port(), 0);
//!     lookupd.shutdown().await;
//!     Ok(())
//! }
//! ```
//!
//! Not implemented: `/debug` and `/debug/pprof/*`, and the config file.

pub(crate) mod db;
pub(crate) mod http;
mod tcp;

/// Reads a query string as nsqlookupd and nsqd read theirs (Go's `url.ParseQuery`), the
/// parser behind every HTTP route's parameters: the `(key, value)` pairs in order, unescaped
/// (`+` is a space, `%XX` a byte, invalid UTF-8 replaced); `None` when Go would refuse the
/// query (a `;`, or a `%` not followed by two hex digits), which the routes answer with
/// `400 INVALID_REQUEST`.
///
/// For the fuzz targets (`nsq-proto/fuzz`), behind the `fuzzing` feature; not part of the
/// stable API.
///
/// ```
/// use nsq_server_lite::lookupd::parse_query;
///
/// let pairs = parse_query("topic=a%2Eb&channel=x+y&flag").unwrap();
/// assert_eq!(pairs[0], ("topic".to_owned(), "a.b".to_owned()));
/// assert_eq!(pairs[1], ("channel".to_owned(), "x y".to_owned()));
/// assert_eq!(pairs[2], ("flag".to_owned(), String::new()));
/// assert_eq!(parse_query("topic=%zz"), None);
/// ```
#[cfg(feature = "fuzzing")]
pub fn parse_query(query: &str) -> Option<Vec<(String, String)>> {
    http::Params::parse(Some(query)).map(http::Params::into_pairs)
}

#[cfg(test)]
pub(crate) mod test_support;
#[cfg(test)]
mod tests;

use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use nsq_proto::lookup::LookupdInfo;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::info;

use self::db::{Db, Lifetimes};

/// The nsqlookupd version this service answers as (in `/info` and the IDENTIFY reply).
///
/// ```
/// assert_eq!(nsq_server_lite::lookupd::VERSION, "1.3.0");
/// ```
pub const VERSION: &str = "1.3.0";

/// nsqlookupd's default `--inactive-producer-timeout`: 300 s.
///
/// ```
/// use std::time::Duration;
/// assert_eq!(nsq_server_lite::lookupd::DEFAULT_INACTIVE_PRODUCER_TIMEOUT, Duration::from_secs(300));
/// ```
pub const DEFAULT_INACTIVE_PRODUCER_TIMEOUT: Duration = Duration::from_secs(300);

/// nsqlookupd's default `--tombstone-lifetime`: 45 s.
///
/// ```
/// use std::time::Duration;
/// assert_eq!(nsq_server_lite::lookupd::DEFAULT_TOMBSTONE_LIFETIME, Duration::from_secs(45));
/// ```
pub const DEFAULT_TOMBSTONE_LIFETIME: Duration = Duration::from_secs(45);

/// Why a [`Lookupd`] could not start.
///
/// ```
/// use nsq_server_lite::lookupd::{Error, Lookupd};
///
/// #[tokio::main]
/// async fn main() {
///     let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
///     let addr = taken.local_addr().unwrap();
///     let err = Lookupd::builder().tcp_address(addr).start().await.unwrap_err();
///     assert!(matches!(err, Error::Bind { protocol: "TCP", .. }));
///     assert!(err.to_string().contains(&addr.to_string()));
/// }
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A listener could not be bound.
    #[error("failed to listen for {protocol} on {addr}")]
    Bind {
        /// `TCP` or `HTTP`.
        protocol: &'static str,
        /// The address asked for.
        addr: SocketAddr,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// A bound listener could not tell its address.
    #[error("failed to read the address of the {protocol} listener")]
    LocalAddr {
        /// `TCP` or `HTTP`.
        protocol: &'static str,
        /// Why.
        #[source]
        source: io::Error,
    },
}

/// The shape of the HTTP answers of the routes that negotiated it before nsq 1.0
/// (`/lookup`, `/topics`, `/channels`, `/nodes`).
///
/// ```
/// use nsq_server_lite::lookupd::ResponseFormat;
/// assert_eq!(ResponseFormat::default(), ResponseFormat::V1);
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum ResponseFormat {
    /// Always the v1 shape (bare JSON, `X-NSQ-Content-Type: nsq; version=1.0`), as
    /// nsqlookupd 1.x answers whatever the request's `Accept` says.
    #[default]
    V1,
    /// As nsqlookupd 0.2.29 to 0.3.8: v1 when the request sends exactly
    /// `Accept: application/vnd.nsq; version=1.0`, otherwise the legacy
    /// `{"status_code","status_txt","data"}` wrapper, with every error as status 500.
    Negotiate,
}

/// Configures and starts a [`Lookupd`].
///
/// ```
/// use std::time::Duration;
/// use nsq_server_lite::lookupd::Lookupd;
///
/// #[tokio::main]
/// async fn main() -> Result<(), nsq_server_lite::lookupd::Error> {
///     let lookupd = Lookupd::builder()
///         .tcp_address(([127, 0, 0, 1], 0).into())
///         .http_address(([127, 0, 0, 1], 0).into())
///         .broadcast_address("127.0.0.1".to_owned())
///         .inactive_producer_timeout(Duration::from_secs(60))
///         .tombstone_lifetime(Duration::from_secs(10))
///         .start()
///         .await?;
///     lookupd.shutdown().await;
///     Ok(())
/// }
/// ```
#[derive(Debug, Clone)]
#[must_use]
pub struct LookupdBuilder {
    tcp_address: SocketAddr,
    http_address: SocketAddr,
    broadcast_address: Option<String>,
    inactive_producer_timeout: Duration,
    tombstone_lifetime: Duration,
    response_format: ResponseFormat,
}

impl Default for LookupdBuilder {
    fn default() -> Self {
        Self {
            tcp_address: ([127, 0, 0, 1], 0).into(),
            http_address: ([127, 0, 0, 1], 0).into(),
            broadcast_address: None,
            inactive_producer_timeout: DEFAULT_INACTIVE_PRODUCER_TIMEOUT,
            tombstone_lifetime: DEFAULT_TOMBSTONE_LIFETIME,
            response_format: ResponseFormat::V1,
        }
    }
}

impl LookupdBuilder {
    /// Where nsqds connect (default `127.0.0.1:0`, a free port).
    ///
    /// ```
    /// let builder = nsq_server_lite::lookupd::Lookupd::builder().tcp_address(([127, 0, 0, 1], 0).into());
    /// # drop(builder);
    /// ```
    pub fn tcp_address(mut self, addr: SocketAddr) -> Self {
        self.tcp_address = addr;
        self
    }

    /// Where the HTTP API listens (default `127.0.0.1:0`, a free port).
    ///
    /// ```
    /// let builder = nsq_server_lite::lookupd::Lookupd::builder().http_address(([127, 0, 0, 1], 0).into());
    /// # drop(builder);
    /// ```
    pub fn http_address(mut self, addr: SocketAddr) -> Self {
        self.http_address = addr;
        self
    }

    /// The address this lookupd tells nsqds in its IDENTIFY reply; nsqd queries
    /// `http://<broadcast_address>:<http port>/channels`. Default: the host name.
    ///
    /// ```
    /// let builder = nsq_server_lite::lookupd::Lookupd::builder().broadcast_address("127.0.0.1".into());
    /// # drop(builder);
    /// ```
    pub fn broadcast_address(mut self, addr: String) -> Self {
        self.broadcast_address = Some(addr);
        self
    }

    /// How long a producer stays listed after its last IDENTIFY or PING (default 300 s).
    ///
    /// ```
    /// use std::time::Duration;
    /// let builder = nsq_server_lite::lookupd::Lookupd::builder()
    ///     .inactive_producer_timeout(Duration::from_secs(30));
    /// # drop(builder);
    /// ```
    pub fn inactive_producer_timeout(mut self, timeout: Duration) -> Self {
        self.inactive_producer_timeout = timeout;
        self
    }

    /// How long `/topic/tombstone` hides a producer from `/lookup` (default 45 s).
    ///
    /// ```
    /// use std::time::Duration;
    /// let builder = nsq_server_lite::lookupd::Lookupd::builder()
    ///     .tombstone_lifetime(Duration::from_secs(5));
    /// # drop(builder);
    /// ```
    pub fn tombstone_lifetime(mut self, lifetime: Duration) -> Self {
        self.tombstone_lifetime = lifetime;
        self
    }

    /// The HTTP answer shape (default [`ResponseFormat::V1`], as nsqlookupd 1.3.0).
    ///
    /// ```
    /// use nsq_server_lite::lookupd::{Lookupd, ResponseFormat};
    /// let builder = Lookupd::builder().response_format(ResponseFormat::Negotiate);
    /// # drop(builder);
    /// ```
    pub fn response_format(mut self, format: ResponseFormat) -> Self {
        self.response_format = format;
        self
    }

    /// Binds both listeners and starts serving on the current tokio runtime.
    ///
    /// # Errors
    ///
    /// [`Error::Bind`] naming the address that could not be bound.
    ///
    /// ```
    /// #[tokio::main]
    /// async fn main() -> Result<(), nsq_server_lite::lookupd::Error> {
    ///     let lookupd = nsq_server_lite::lookupd::Lookupd::builder().start().await?;
    ///     lookupd.shutdown().await;
    ///     Ok(())
    /// }
    /// ```
    pub async fn start(self) -> Result<Lookupd, Error> {
        let tcp = bind("TCP", self.tcp_address).await?;
        let http = bind("HTTP", self.http_address).await?;
        let tcp_addr = local_addr("TCP", &tcp)?;
        let http_addr = local_addr("HTTP", &http)?;
        let hostname = nsq_proto::identify::local_hostname();
        let info = LookupdInfo {
            broadcast_address: self.broadcast_address.unwrap_or_else(|| hostname.clone()),
            hostname,
            http_port: http_addr.port(),
            tcp_port: tcp_addr.port(),
            version: VERSION.to_owned(),
        };
        let shared = Arc::new(Shared {
            db: Mutex::new(Db::default()),
            changed: watch::Sender::new(0),
            lifetimes: Lifetimes {
                inactive_producer_timeout: self.inactive_producer_timeout,
                tombstone_lifetime: self.tombstone_lifetime,
            },
            info,
            format: self.response_format,
            next_conn: AtomicU64::new(0),
        });
        let shutdown = CancellationToken::new();
        let tracker = TaskTracker::new();

        tracing::debug!("TCP: listening on {tcp_addr}");
        tracker.spawn(tcp::accept_loop(
            tcp,
            Arc::clone(&shared),
            shutdown.clone(),
            tracker.clone(),
        ));
        tracing::debug!("HTTP: listening on {http_addr}");
        let router = http::router(Arc::clone(&shared));
        let stop = shutdown.clone();
        tracker.spawn(async move {
            let served = axum::serve(http, router)
                .with_graceful_shutdown(stop.cancelled_owned())
                .await;
            if let Err(err) = served {
                tracing::error!(cause = %err, "HTTP: server failed");
            }
            info!("HTTP: closing {http_addr}");
        });
        Ok(Lookupd {
            tcp_addr,
            http_addr,
            shared,
            shutdown,
            tracker,
        })
    }
}

/// A running nsqlookupd; stopped by [`Lookupd::shutdown`], or on drop.
///
/// ```
/// use nsq_server_lite::lookupd::Lookupd;
///
/// #[tokio::main]
/// async fn main() -> Result<(), Box<dyn std::error::Error>> {
///     let lookupd = Lookupd::builder().start().await?;
///     let tcp = lookupd.tcp_addr();
///     lookupd.shutdown().await;
///     // The port is free again.
///     let relisten = Lookupd::builder().tcp_address(tcp).start().await?;
///     drop(relisten);
///     Ok(())
/// }
/// ```
#[derive(Debug)]
pub struct Lookupd {
    tcp_addr: SocketAddr,
    http_addr: SocketAddr,
    /// Read by the crate's test hooks; the tasks hold their own handles.
    #[cfg_attr(not(test), allow(dead_code))]
    shared: Arc<Shared>,
    shutdown: CancellationToken,
    tracker: TaskTracker,
}

impl Lookupd {
    /// A builder with nsqlookupd's defaults, on free loopback ports.
    ///
    /// ```
    /// let builder = nsq_server_lite::lookupd::Lookupd::builder();
    /// # drop(builder);
    /// ```
    pub fn builder() -> LookupdBuilder {
        LookupdBuilder::default()
    }

    /// The address nsqds register at (`--lookupd-tcp-address`).
    ///
    /// ```
    /// # #[tokio::main] async fn main() -> Result<(), nsq_server_lite::lookupd::Error> {
    /// let lookupd = nsq_server_lite::lookupd::Lookupd::builder().start().await?;
    /// assert!(lookupd.tcp_addr().ip().is_loopback());
    /// # Ok(()) }
    /// ```
    pub fn tcp_addr(&self) -> SocketAddr {
        self.tcp_addr
    }

    /// The HTTP API's address (consumers' `--lookupd-http-address`).
    ///
    /// ```
    /// # #[tokio::main] async fn main() -> Result<(), nsq_server_lite::lookupd::Error> {
    /// let lookupd = nsq_server_lite::lookupd::Lookupd::builder().start().await?;
    /// assert!(lookupd.http_addr().ip().is_loopback());
    /// # Ok(()) }
    /// ```
    pub fn http_addr(&self) -> SocketAddr {
        self.http_addr
    }

    /// Stops accepting, closes every connection and waits for every task to end.
    ///
    /// # Cancel safety
    ///
    /// Dropping the future part-way leaves the service stopping in the background.
    ///
    /// ```
    /// # #[tokio::main] async fn main() -> Result<(), nsq_server_lite::lookupd::Error> {
    /// let lookupd = nsq_server_lite::lookupd::Lookupd::builder().start().await?;
    /// let http = lookupd.http_addr();
    /// lookupd.shutdown().await;
    /// assert!(tokio::net::TcpStream::connect(http).await.is_err());
    /// # Ok(()) }
    /// ```
    pub async fn shutdown(self) {
        self.shutdown.cancel();
        self.tracker.close();
        self.tracker.wait().await;
    }

    /// Waits until `condition` holds on the database, re-checking on every change.
    #[cfg(test)]
    pub(crate) async fn wait_until(&self, mut condition: impl FnMut(&Db) -> bool) {
        let mut changed = self.shared.changed.subscribe();
        loop {
            if self.shared.read(|db| condition(db)) {
                return;
            }
            if changed.changed().await.is_err() {
                return;
            }
        }
    }
}

impl Drop for Lookupd {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

/// What every connection and handler shares.
#[derive(Debug)]
pub(crate) struct Shared {
    db: Mutex<Db>,
    /// Bumped after every change to `db`.
    changed: watch::Sender<u64>,
    lifetimes: Lifetimes,
    /// What IDENTIFY answers.
    info: LookupdInfo,
    format: ResponseFormat,
    next_conn: AtomicU64,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Db> {
        self.db.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Reads the database.
    fn read<R>(&self, f: impl FnOnce(&Db) -> R) -> R {
        f(&self.lock())
    }

    /// Changes the database and tells the waiters.
    fn update<R>(&self, f: impl FnOnce(&mut Db) -> R) -> R {
        let result = f(&mut self.lock());
        self.changed
            .send_modify(|version| *version = version.wrapping_add(1));
        result
    }

    fn next_conn_id(&self) -> db::ConnId {
        self.next_conn.fetch_add(1, Ordering::Relaxed)
    }
}

async fn bind(protocol: &'static str, addr: SocketAddr) -> Result<TcpListener, Error> {
    crate::listener::listen(addr).map_err(|source| Error::Bind {
        protocol,
        addr,
        source,
    })
}

fn local_addr(protocol: &'static str, listener: &TcpListener) -> Result<SocketAddr, Error> {
    listener
        .local_addr()
        .map_err(|source| Error::LocalAddr { protocol, source })
}
