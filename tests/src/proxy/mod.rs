//! A TCP proxy in front of a broker (real nsqd or nsq-server-lite, it only moves bytes), so
//! tests can make the network misbehave on purpose. Every fault can be switched on and off
//! while connections are open:
//!
//! * [`hold_replies`](Proxy::hold_replies): the broker's bytes wait in the proxy (a client
//!   times out);
//! * [`blackhole`](Proxy::blackhole): bytes vanish both ways and no FIN or RST ever comes (a
//!   pulled cable, a dropped route);
//! * [`drop_traffic`](Proxy::drop_traffic): bytes vanish both ways, then each connection is
//!   closed after a while (a firewall that drops, then a middlebox that gives up);
//! * [`kill`](Proxy::kill): every connection is closed and new ones refused (the broker is
//!   dead as far as clients can tell, while the test can still ask it what it received);
//! * [`reset`](Proxy::reset): every connection is closed with an RST;
//! * [`truncate_after`](Proxy::truncate_after): each connection forwards a few more bytes to
//!   its client, then closes, cutting a frame mid-way;
//! * [`delay`](Proxy::delay): latency on every chunk, per direction, order kept;
//! * [`limit_rate`](Proxy::limit_rate): a bandwidth cap in bytes per second, per direction.
//!
//! The faults follow toxiproxy's: `blackhole` is its `timeout` toxic with a timeout of 0,
//! `drop_traffic` the same toxic with a timeout, `truncate_after` its `limit_data` on the
//! downstream (counted from the call rather than from the connection's start), `reset` its
//! `reset_peer`, `delay` its `latency` without jitter and `limit_rate` its `bandwidth`.
//! Nothing here drops a chunk out of the middle of a stream and carries on: TCP never loses
//! bytes inside a connection (a lost packet is sent again), so no network shows a client that.

mod bucket;
mod pipe;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// What the proxy lets through.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
enum Mode {
    /// Bytes flow both ways.
    #[default]
    Open,
    /// Bytes from the broker to clients are held until [`Proxy::open`].
    HoldReplies,
    /// Bytes vanish both ways and nothing is closed; a connection that lost bytes so stays
    /// dead after [`Proxy::open`] (new connections then work).
    Blackhole,
    /// Bytes vanish both ways, and each connection is closed `close_after` it met the mode.
    Dropping { close_after: Duration },
    /// Every connection is closed and new ones are dropped at once.
    Dead,
}

impl Mode {
    /// Whether bytes vanish in this mode.
    fn swallows(self) -> bool {
        matches!(self, Mode::Blackhole | Mode::Dropping { .. })
    }
}

/// One way through the proxy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Way {
    /// Client to broker.
    Up = 0,
    /// Broker to client.
    Down = 1,
}

/// Which way a [`delay`](Proxy::delay) or [`limit_rate`](Proxy::limit_rate) applies.
///
/// ```no_run
/// # async fn example(broker: std::net::SocketAddr) {
/// use nsq_tests::proxy::{Direction, Proxy};
/// let proxy = Proxy::start(broker).await;
/// proxy.delay(Direction::ToClient, std::time::Duration::from_millis(50));
/// # }
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// Bytes from the client to the broker (commands, message bodies, FIN, RDY...).
    ToBroker,
    /// Bytes from the broker to the client (responses, messages, heartbeats).
    ToClient,
    /// Both ways, each on its own.
    Both,
}

impl Direction {
    fn ways(self) -> &'static [Way] {
        match self {
            Direction::ToBroker => &[Way::Up],
            Direction::ToClient => &[Way::Down],
            Direction::Both => &[Way::Up, Way::Down],
        }
    }
}

/// Everything the connections obey, changed through the [`Proxy`] methods.
#[derive(Debug, Clone, Default)]
struct Faults {
    mode: Mode,
    /// Per [`Way`]: added to every chunk's trip.
    latency: [Duration; 2],
    /// Per [`Way`]: bytes per second, per connection.
    rate: [Option<u64>; 2],
    /// How many times [`Proxy::reset`] was called: a connection that was open at a call
    /// (that saw a lower count when it was accepted) ends with an RST.
    resets: u64,
    /// How many times [`Proxy::truncate_after`] was called, and its last byte count.
    truncations: u64,
    truncate_after: u64,
}

/// A proxy to one broker address; stops (closing its connections) when dropped.
///
/// ```no_run
/// # async fn example(broker: std::net::SocketAddr) {
/// use nsq_tests::proxy::Proxy;
/// let proxy = Proxy::start(broker).await;
/// let addr = proxy.addr(); // point the client here instead of at the broker
/// proxy.blackhole();
/// // ... the client must notice on its own ...
/// proxy.open();
/// # let _ = addr;
/// # }
/// ```
#[derive(Debug)]
pub struct Proxy {
    addr: SocketAddr,
    faults: watch::Sender<Faults>,
    stop: CancellationToken,
    tasks: TaskTracker,
    /// Connections forwarded so far (each one connected to the broker).
    forwarded: Arc<AtomicUsize>,
}

impl Proxy {
    /// Listens on a free loopback port and forwards each connection to `target`.
    ///
    /// ```no_run
    /// # async fn example() {
    /// let proxy = nsq_tests::proxy::Proxy::start("127.0.0.1:4150".parse().unwrap()).await;
    /// # let _ = proxy;
    /// # }
    /// ```
    ///
    /// # Panics
    ///
    /// When no loopback port can be bound.
    pub async fn start(target: SocketAddr) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind a loopback port");
        let addr = listener.local_addr().expect("local address");
        let (faults, _) = watch::channel(Faults::default());
        let stop = CancellationToken::new();
        let tasks = TaskTracker::new();
        let forwarded = Arc::new(AtomicUsize::new(0));
        let (faults_rx, stop2, tasks2) = (faults.subscribe(), stop.clone(), tasks.clone());
        let forwarded2 = forwarded.clone();
        tasks.spawn(async move {
            loop {
                let accepted = tokio::select! {
                    _ = stop2.cancelled() => return,
                    accepted = listener.accept() => accepted,
                };
                let Ok((client, _)) = accepted else { continue };
                // What this connection was opened after: later resets and truncations are
                // its own.
                let seen = pipe::Seen::of(&faults_rx.borrow());
                if faults_rx.borrow().mode == Mode::Dead {
                    drop(client);
                    continue;
                }
                let Ok(server) = TcpStream::connect(target).await else {
                    continue;
                };
                forwarded2.fetch_add(1, Ordering::SeqCst);
                tasks2.spawn(pipe::pipe(
                    client,
                    server,
                    faults_rx.clone(),
                    seen,
                    stop2.clone(),
                ));
            }
        });
        Self {
            addr,
            faults,
            stop,
            tasks,
            forwarded,
        }
    }

    /// How many client connections the proxy has forwarded so far, each one connected to the
    /// broker before it is counted.
    ///
    /// ```no_run
    /// # async fn example(proxy: nsq_tests::proxy::Proxy) {
    /// // Wait until a client's connection reaches the broker.
    /// while proxy.forwarded() == 0 {
    ///     tokio::task::yield_now().await;
    /// }
    /// # }
    /// ```
    pub fn forwarded(&self) -> usize {
        self.forwarded.load(Ordering::SeqCst)
    }

    /// The address clients connect to.
    ///
    /// ```no_run
    /// # async fn example(proxy: &nsq_tests::proxy::Proxy) {
    /// let producer = nsq_client::Producer::new(
    ///     proxy.addr().to_string(),
    ///     nsq_client::ProducerConfig::default(),
    /// );
    /// # let _ = producer;
    /// # }
    /// ```
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Holds the broker's replies until [`open`](Self::open).
    ///
    /// ```no_run
    /// # async fn example(proxy: &nsq_tests::proxy::Proxy) {
    /// proxy.hold_replies(); // a publish now waits for its OK until proxy.open()
    /// # }
    /// ```
    pub fn hold_replies(&self) {
        self.set_mode(Mode::HoldReplies);
    }

    /// Blackholes every connection, open and new: nothing gets through either way, and
    /// nothing is closed, until [`open`](Self::open) (after which new connections work, and
    /// those that lost bytes stay silent).
    ///
    /// ```no_run
    /// # async fn example(proxy: &nsq_tests::proxy::Proxy) {
    /// proxy.blackhole(); // only the client's own read deadline can notice now
    /// # }
    /// ```
    pub fn blackhole(&self) {
        self.set_mode(Mode::Blackhole);
    }

    /// Drops every byte both ways, of connections open and new, and closes each connection
    /// (FIN, both sides) `close_after` it met this mode: toxiproxy's `timeout` toxic. Until
    /// [`open`](Self::open), a new connection is accepted, hears nothing and is closed in
    /// turn; after it, new connections work, and those that lost bytes stay silent until
    /// they are closed.
    ///
    /// ```no_run
    /// # async fn example(proxy: &nsq_tests::proxy::Proxy) {
    /// proxy.drop_traffic(std::time::Duration::from_millis(500));
    /// # }
    /// ```
    pub fn drop_traffic(&self, close_after: Duration) {
        self.set_mode(Mode::Dropping { close_after });
    }

    /// Lets bytes flow again, releasing what was held, and accepts connections again after
    /// [`kill`](Self::kill). Latency and rate limits stay as they are.
    ///
    /// ```no_run
    /// # async fn example(proxy: &nsq_tests::proxy::Proxy) {
    /// proxy.open();
    /// # }
    /// ```
    pub fn open(&self) {
        self.set_mode(Mode::Open);
    }

    /// Cuts every connection and refuses new ones: to clients, the broker is dead.
    ///
    /// ```no_run
    /// # async fn example(proxy: &nsq_tests::proxy::Proxy) {
    /// proxy.kill(); // until proxy.open()
    /// # }
    /// ```
    pub fn kill(&self) {
        self.set_mode(Mode::Dead);
    }

    /// Closes every connection open now with an RST (`SO_LINGER` 0) on both sides, so the
    /// client reads "connection reset by peer" rather than an end of stream, and anything
    /// still queued in the proxy is thrown away. Connections made afterwards are left alone.
    ///
    /// ```no_run
    /// # async fn example(proxy: &nsq_tests::proxy::Proxy) {
    /// proxy.reset();
    /// # }
    /// ```
    pub fn reset(&self) {
        self.faults.send_modify(|f| f.resets += 1);
    }

    /// Lets every connection open now forward exactly `bytes` more bytes from the broker to
    /// its client, then closes it (FIN, both sides): with a count smaller than the next
    /// frame, the client gets that frame cut mid-way. Connections made afterwards are left
    /// alone; a second call before the count is used up starts it again.
    ///
    /// ```no_run
    /// # async fn example(proxy: &nsq_tests::proxy::Proxy) {
    /// proxy.truncate_after(6); // the next frame's size and half its type, then a close
    /// # }
    /// ```
    pub fn truncate_after(&self, bytes: u64) {
        self.faults.send_modify(|f| {
            f.truncations += 1;
            f.truncate_after = bytes;
        });
    }

    /// Holds every chunk read one way for `latency` before it goes on, on every connection,
    /// open and new, keeping the order (a chunk never overtakes one read before it, even
    /// when the latency is lowered meanwhile). [`Duration::ZERO`] removes it.
    ///
    /// ```no_run
    /// # async fn example(proxy: &nsq_tests::proxy::Proxy) {
    /// use nsq_tests::proxy::Direction;
    /// // A round trip now takes at least 100 ms.
    /// proxy.delay(Direction::Both, std::time::Duration::from_millis(50));
    /// # }
    /// ```
    pub fn delay(&self, direction: Direction, latency: Duration) {
        self.faults.send_modify(|f| {
            for &way in direction.ways() {
                f.latency[way as usize] = latency;
            }
        });
    }

    /// Caps each connection's throughput one way at `bytes_per_second` (a token bucket that
    /// holds 50 ms worth of bytes, so a burst is at most that; the proxy sleeps until the
    /// bucket has enough); `None` removes the cap. Applies to connections open and new.
    ///
    /// ```no_run
    /// # async fn example(proxy: &nsq_tests::proxy::Proxy) {
    /// use nsq_tests::proxy::Direction;
    /// proxy.limit_rate(Direction::ToClient, Some(64 * 1024));
    /// # }
    /// ```
    ///
    /// # Panics
    ///
    /// When the rate is 0 (use [`hold_replies`](Self::hold_replies) to stop bytes).
    pub fn limit_rate(&self, direction: Direction, bytes_per_second: Option<u64>) {
        assert_ne!(bytes_per_second, Some(0), "a rate of 0 bytes per second");
        self.faults.send_modify(|f| {
            for &way in direction.ways() {
                f.rate[way as usize] = bytes_per_second;
            }
        });
    }

    fn set_mode(&self, mode: Mode) {
        self.faults.send_modify(|f| f.mode = mode);
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.stop.cancel();
        self.tasks.close();
    }
}
