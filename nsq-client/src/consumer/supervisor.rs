//! The supervisor: one task per consumer that owns the RDY controller, the set of nsqd
//! connections, reconnects and nsqlookupd discovery, and tells the user what happens.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use nsq_proto::{Channel, Topic};
use tokio::sync::{broadcast, mpsc, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::Instrument;

use crate::conn;
use crate::consumer::config::{BackoffStrategy, ConsumerConfig};
use crate::consumer::connection::{ConnCommand, ConnEvent, Ended, NsqdConnection};
#[cfg(feature = "lookupd")]
use crate::consumer::discovery::discover;
use crate::consumer::discovery::{Discovery, DiscoveryFilter};
use crate::consumer::events::{ConsumerEvent, ConsumerFailure, Health};
use crate::consumer::message::Message;
use crate::consumer::rdy::{ConnId, Outcome, Rdy, SendRdy};
use crate::consumer::stats::{Counters, Snapshot};
use crate::replication::window::Window;

/// What a consumer's handles ask of its supervisor.
#[derive(Debug)]
pub(crate) enum Control {
    SetMaxInFlight(u32),
    ConnectNsqd(String),
    DisconnectNsqd(String),
    #[cfg(feature = "lookupd")]
    AddLookupd(String),
    #[cfg(feature = "lookupd")]
    RemoveLookupd(String),
}

/// A connection as the supervisor sees it.
struct ConnHandle {
    addr: String,
    /// The address as the stats snapshot holds it (shared, so a snapshot allocates nothing).
    shared_addr: Arc<str>,
    commands: mpsc::UnboundedSender<ConnCommand>,
    subscribed: bool,
}

/// Everything the supervisor starts with.
pub(crate) struct SupervisorParts {
    pub(crate) topic: Topic,
    pub(crate) channel: Channel,
    pub(crate) config: ConsumerConfig,
    pub(crate) nsqd: Vec<String>,
    pub(crate) lookupd: Vec<String>,
    pub(crate) filter: Option<DiscoveryFilter>,
    pub(crate) window: Option<Arc<Window>>,
    pub(crate) messages: mpsc::UnboundedSender<Vec<Message>>,
    pub(crate) control: mpsc::UnboundedReceiver<Control>,
    pub(crate) counters: Arc<Counters>,
    pub(crate) health: watch::Sender<Health>,
    pub(crate) events: broadcast::Sender<ConsumerEvent>,
    pub(crate) stop: CancellationToken,
    pub(crate) tasks: TaskTracker,
}

pub(crate) struct Supervisor {
    topic: Topic,
    channel: Channel,
    config: ConsumerConfig,
    /// nsqd given directly (reconnected with backoff).
    nsqd: Vec<String>,
    lookupd: Vec<String>,
    #[cfg_attr(not(feature = "lookupd"), allow(dead_code))]
    filter: Option<DiscoveryFilter>,
    /// The de-duplication window, handed to every connection.
    window: Option<Arc<Window>>,
    /// Addresses disconnected by the user: not connected again, even when lookupd lists them.
    excluded: HashSet<String>,
    /// What the last lookupd answer listed.
    listed: BTreeSet<String>,
    rdy: Rdy,
    conns: HashMap<ConnId, ConnHandle>,
    /// The per-connection buffer of the stats snapshot before last, reused.
    spare_connections: Vec<(Arc<str>, u32, u32)>,
    /// Counts changes to the connections (opened, subscribed, ended), and the count the
    /// stats and health last showed.
    conn_changes: u64,
    published_changes: u64,
    /// When the per-connection stats were last rebuilt, and when they are due again.
    per_connection_at: Option<Instant>,
    per_connection_due: Option<Instant>,
    next_id: ConnId,
    conn_rx: mpsc::UnboundedReceiver<ConnEvent>,
    conn_tx: mpsc::UnboundedSender<ConnEvent>,
    control: mpsc::UnboundedReceiver<Control>,
    messages: mpsc::UnboundedSender<Vec<Message>>,
    counters: Arc<Counters>,
    health: watch::Sender<Health>,
    events: broadcast::Sender<ConsumerEvent>,
    stop: CancellationToken,
    tasks: TaskTracker,
    /// The HTTP client for nsqlookupd, made by the first query: a consumer of nsqd given
    /// directly never pays for it (building one loads the system's TLS roots).
    #[cfg(feature = "lookupd")]
    http: Option<reqwest::Client>,
    /// Addresses waiting to reconnect: failures in a row and when to try again.
    retry: HashMap<String, (u32, Instant)>,
    /// When nsqlookupd is asked next.
    next_poll: Option<Instant>,
    /// A lookupd round under way.
    discovery: Option<JoinHandle<Discovery>>,
    backoff_level: u32,
    /// Events of this turn, sent once the stats reflect them.
    outbox: Vec<ConsumerEvent>,
}

impl Supervisor {
    pub(crate) fn new(parts: SupervisorParts) -> Self {
        let (conn_tx, conn_rx) = mpsc::unbounded_channel();
        Self {
            rdy: Rdy::new(parts.config.rdy(), fastrand::u64(..)),
            topic: parts.topic,
            channel: parts.channel,
            config: parts.config,
            nsqd: parts.nsqd,
            lookupd: parts.lookupd,
            filter: parts.filter,
            window: parts.window,
            excluded: HashSet::new(),
            listed: BTreeSet::new(),
            conns: HashMap::new(),
            spare_connections: Vec::new(),
            conn_changes: 0,
            published_changes: 0,
            per_connection_at: None,
            per_connection_due: None,
            next_id: 1,
            conn_rx,
            conn_tx,
            control: parts.control,
            messages: parts.messages,
            counters: parts.counters,
            health: parts.health,
            events: parts.events,
            stop: parts.stop,
            tasks: parts.tasks,
            #[cfg(feature = "lookupd")]
            http: None,
            retry: HashMap::new(),
            next_poll: None,
            discovery: None,
            backoff_level: 0,
            outbox: Vec::new(),
        }
    }

    pub(crate) async fn run(mut self) {
        for addr in self.nsqd.clone() {
            self.open(addr);
        }
        let interval = self.config.lookupd_poll_interval;
        let jitter = interval.mul_f64(fastrand::f64() * self.config.lookupd_poll_jitter);
        // The first lookupd query is immediate; the next one waits the jitter plus the interval.
        self.next_poll = (!self.lookupd.is_empty()).then(Instant::now);
        let mut first_poll = true;
        loop {
            let rdy_deadline = self.rdy.next_deadline();
            let retry_deadline = self.retry.values().map(|(_, at)| *at).min();
            let poll_deadline = self.next_poll.filter(|_| self.discovery.is_none());
            tokio::select! {
                biased;
                _ = self.stop.cancelled() => break,
                event = self.conn_rx.recv() => match event {
                    Some(event) => {
                        self.on_conn_event(event);
                        // Take what else is waiting before the stats snapshot is rebuilt.
                        for _ in 0..1024 {
                            match self.conn_rx.try_recv() {
                                Ok(event) => self.on_conn_event(event),
                                Err(_) => break,
                            }
                        }
                    }
                    // Unreachable: the supervisor holds a sender.
                    None => break,
                },
                Some(control) = self.control.recv() => self.on_control(control),
                found = join(&mut self.discovery), if self.discovery.is_some() => {
                    self.discovery = None;
                    if let Ok(found) = found {
                        self.on_discovered(found);
                    }
                    let wait = if first_poll { interval + jitter } else { interval };
                    first_poll = false;
                    self.next_poll = Some(Instant::now() + wait);
                }
                _ = sleep_until(rdy_deadline) => {
                    let sends = self.rdy.tick(Instant::now());
                    self.apply(sends);
                }
                _ = sleep_until(retry_deadline) => self.retry_due(),
                _ = sleep_until(poll_deadline) => self.poll_lookupd(),
                _ = sleep_until(self.per_connection_due) => {}
            }
            self.publish_state();
        }
        if let Some(discovery) = self.discovery.take() {
            discovery.abort();
        }
        self.shutdown().await;
        self.health.send_modify(|h| {
            h.stopped = true;
            h.subscribed = 0;
            h.opening = 0;
        });
        let _ = self.events.send(ConsumerEvent::Stopped);
    }

    /// Queues an event for the user; it goes out once the stats reflect it (at the end of
    /// this turn), so that a reader who sees an event and asks for the stats agrees with it.
    fn emit(&mut self, event: ConsumerEvent) {
        self.outbox.push(event);
    }

    /// Rebuilds the stats snapshot and the health, and reports backoff changes.
    fn publish_state(&mut self) {
        // Runs after every turn, and a consumer of a hundred nsqd takes turns many thousand
        // times a second: the totals go out every turn, the per-connection figures (a walk
        // over every connection) when the connections changed and otherwise at most once per
        // PER_CONNECTION_EVERY. It allocates nothing and leaves sorting to the reader.
        let now = Instant::now();
        let changed = self.conn_changes != self.published_changes;
        let due = self
            .per_connection_at
            .is_none_or(|at| now >= at + PER_CONNECTION_EVERY);
        let mut snapshot = Snapshot {
            per_connection: std::mem::take(&mut self.spare_connections),
            total_rdy: self.rdy.total_rdy(),
            backoff_level: self.rdy.backoff_level(),
            starved: self.rdy.is_starved(),
        };
        if changed || due {
            snapshot.per_connection.clear();
            snapshot
                .per_connection
                .extend(
                    self.conns
                        .iter()
                        .filter(|(_, c)| c.subscribed)
                        .map(|(id, c)| {
                            let rdy = self.rdy.rdy(*id).unwrap_or(0);
                            let in_flight = self.rdy.in_flight(*id).unwrap_or(0);
                            (c.shared_addr.clone(), rdy, in_flight)
                        }),
                );
            self.per_connection_at = Some(now);
            self.per_connection_due = None;
            self.spare_connections = self.counters.set_snapshot(snapshot).per_connection;
        } else {
            self.spare_connections = snapshot.per_connection;
            self.counters
                .set_totals(snapshot.total_rdy, snapshot.backoff_level, snapshot.starved);
            // What changed since goes out when it is due, even if nothing else happens.
            self.per_connection_due = self.per_connection_at.map(|at| at + PER_CONNECTION_EVERY);
        }
        if changed {
            self.published_changes = self.conn_changes;
            let subscribed = self.conns.values().filter(|c| c.subscribed).count();
            let opening = self.conns.len() - subscribed;
            self.health.send_if_modified(|h| {
                let changed = h.subscribed != subscribed || h.opening != opening;
                h.subscribed = subscribed;
                h.opening = opening;
                changed
            });
        }
        let level = self.rdy.backoff_level();
        if level > self.backoff_level {
            self.emit(ConsumerEvent::BackoffEntered { level });
        } else if level == 0 && self.backoff_level > 0 {
            self.emit(ConsumerEvent::BackoffLeft);
        }
        self.backoff_level = level;
        for event in self.outbox.drain(..) {
            // No reader is no error.
            let _ = self.events.send(event);
        }
    }

    fn fail(&self, failure: ConsumerFailure) {
        self.health.send_modify(|h| h.last_failure = Some(failure));
    }

    fn on_conn_event(&mut self, event: ConnEvent) {
        let now = Instant::now();
        match event {
            ConnEvent::Subscribed { id, max_rdy_count } => {
                if let Some(c) = self.conns.get_mut(&id) {
                    c.subscribed = true;
                    self.conn_changes += 1;
                    self.health.send_modify(|h| {
                        h.subscribed += 1;
                        h.subscriptions += 1;
                    });
                    self.retry.remove(&c.addr);
                    let nsqd = c.addr.clone();
                    self.emit(ConsumerEvent::Connected { nsqd });
                }
                let sends = self.rdy.connected(id, max_rdy_count, now);
                self.apply(sends);
            }
            ConnEvent::Received(id, count) => {
                self.counters
                    .received
                    .fetch_add(u64::from(count), Ordering::Relaxed);
                let sends = self.rdy.message_received(id, count, now);
                self.apply(sends);
            }
            ConnEvent::Done(id, outcome, count) => self.on_done(id, outcome, count, now),
            ConnEvent::Ended { id, how } => {
                self.conn_changes += 1;
                let Some(c) = self.conns.remove(&id) else {
                    return;
                };
                let addr = c.addr;
                let sends = self.rdy.closed(id, now);
                self.apply(sends);
                let failed = match how {
                    Ended::Failed(error) => {
                        let error = Arc::new(error);
                        self.fail(ConsumerFailure::Nsqd(error.clone()));
                        self.emit(ConsumerEvent::ConnectFailed {
                            nsqd: addr.clone(),
                            error,
                        });
                        true
                    }
                    Ended::Lost(reason) => {
                        tracing::info!(%addr, %reason, "nsqd connection closed");
                        self.emit(ConsumerEvent::Disconnected {
                            nsqd: addr.clone(),
                            reason,
                        });
                        false
                    }
                };
                if self.stop.is_cancelled() || self.excluded.contains(&addr) {
                    return;
                }
                let direct = self.nsqd.contains(&addr);
                if !direct && !failed && !self.lookupd.is_empty() {
                    // Ask lookupd again soon: if it still lists this nsqd, it is reconnected.
                    let soon = now + self.config.reconnect_min;
                    self.next_poll = Some(self.next_poll.map_or(soon, |at| at.min(soon)));
                }
                if direct || failed {
                    let failures = self.retry.get(&addr).map_or(0, |(n, _)| *n) + 1;
                    let wait = conn::reconnect_delay(
                        failures,
                        self.config.reconnect_min,
                        self.config.reconnect_max,
                    );
                    self.retry.insert(addr, (failures, now + wait));
                }
            }
        }
    }

    fn on_done(&mut self, id: ConnId, outcome: Outcome, count: u32, now: Instant) {
        self.counters.count_done(outcome, count);
        let outcome = match outcome {
            Outcome::Requeued { .. }
                if self.config.backoff_strategy == BackoffStrategy::Disabled =>
            {
                Outcome::Requeued { backoff: false }
            }
            other => other,
        };
        let sends = self.rdy.message_done(id, outcome, count, now);
        self.apply(sends);
    }

    fn on_control(&mut self, control: Control) {
        let now = Instant::now();
        match control {
            Control::SetMaxInFlight(n) => {
                let sends = self.rdy.set_max_in_flight(n, now);
                self.apply(sends);
            }
            Control::ConnectNsqd(addr) => {
                self.excluded.remove(&addr);
                if !self.nsqd.contains(&addr) {
                    self.nsqd.push(addr.clone());
                }
                if !self.is_connected(&addr) {
                    self.retry.remove(&addr);
                    self.open(addr);
                }
            }
            Control::DisconnectNsqd(addr) => {
                self.nsqd.retain(|a| *a != addr);
                self.retry.remove(&addr);
                self.excluded.insert(addr.clone());
                self.close(&addr);
            }
            #[cfg(feature = "lookupd")]
            Control::AddLookupd(lookupd) => {
                if !self.lookupd.contains(&lookupd) {
                    self.lookupd.push(lookupd);
                }
                self.next_poll = Some(now);
            }
            #[cfg(feature = "lookupd")]
            Control::RemoveLookupd(lookupd) => {
                self.lookupd.retain(|l| *l != lookupd);
                if self.lookupd.is_empty() {
                    self.next_poll = None;
                }
            }
        }
    }

    fn is_connected(&self, addr: &str) -> bool {
        self.conns.values().any(|c| c.addr == addr)
    }

    fn close(&self, addr: &str) {
        for c in self.conns.values().filter(|c| c.addr == addr) {
            let _ = c.commands.send(ConnCommand::Close);
        }
    }

    fn apply(&mut self, sends: Vec<SendRdy>) {
        for SendRdy { conn, count } in sends {
            if let Some(c) = self.conns.get(&conn) {
                let _ = c.commands.send(ConnCommand::Rdy(count));
            }
        }
    }

    /// Opens the connections whose reconnect wait is over, if they are still wanted.
    fn retry_due(&mut self) {
        let now = Instant::now();
        let due: Vec<String> = self
            .retry
            .iter()
            .filter(|(_, (_, at))| *at <= now)
            .map(|(addr, _)| addr.clone())
            .collect();
        for addr in due {
            let wanted = self.nsqd.contains(&addr) || self.listed.contains(&addr);
            if !wanted || self.excluded.contains(&addr) {
                self.retry.remove(&addr);
                continue;
            }
            if let Some(entry) = self.retry.get_mut(&addr) {
                // Pushed out until this attempt reports back (Subscribed clears it).
                entry.1 = now + self.config.reconnect_max;
            }
            if !self.is_connected(&addr) {
                self.open(addr);
            }
        }
    }

    /// Opens a connection task to `addr`.
    fn open(&mut self, addr: String) {
        let id = self.next_id;
        self.next_id += 1;
        let (commands, commands_rx) = mpsc::unbounded_channel();
        self.conn_changes += 1;
        self.conns.insert(
            id,
            ConnHandle {
                addr: addr.clone(),
                shared_addr: Arc::from(addr.as_str()),
                commands,
                subscribed: false,
            },
        );
        let task = NsqdConnection {
            id,
            addr: Arc::from(addr.as_str()),
            topic: self.topic.clone(),
            channel: self.channel.clone(),
            config: self.config.clone(),
            events: self.conn_tx.clone(),
            messages: self.messages.clone(),
            commands: commands_rx,
            window: self.window.clone(),
        };
        let span = tracing::info_span!("nsqd", %addr, conn = id);
        self.tasks.spawn(task.run().instrument(span));
    }

    /// Starts a round of lookupd queries beside the loop. (Without the `lookupd` feature
    /// there is never a lookupd to ask: the builder has no way to name one.)
    fn poll_lookupd(&mut self) {
        self.next_poll = None;
        #[cfg(feature = "lookupd")]
        if !self.lookupd.is_empty() {
            self.start_discovery();
        }
    }

    #[cfg(feature = "lookupd")]
    fn start_discovery(&mut self) {
        let Some(http) = self.http_client() else {
            return;
        };
        let round = discover(
            http,
            self.lookupd.clone(),
            self.topic.clone(),
            self.filter.clone(),
        );
        self.discovery = Some(tokio::spawn(round.in_current_span()));
    }

    /// The HTTP client for nsqlookupd, made now if this is the first query. `None` when it
    /// cannot be made (logged); a later poll tries again.
    #[cfg(feature = "lookupd")]
    fn http_client(&mut self) -> Option<reqwest::Client> {
        if self.http.is_none() {
            match crate::lookupd::http_client(
                self.config.lookupd_poll_timeout,
                &self.config.connection,
            ) {
                Ok(http) => self.http = Some(http),
                Err(err) => tracing::error!(%err, "cannot build the HTTP client for nsqlookupd"),
            }
        }
        self.http.clone()
    }

    /// Connects to newly listed nsqd and closes (after their messages drain) those no lookupd
    /// lists any more. Keeps every connection while no lookupd answers.
    fn on_discovered(&mut self, found: Discovery) {
        for (lookupd, error) in found.failures {
            tracing::warn!(%lookupd, %error, "nsqlookupd query failed");
            let error = Arc::new(error);
            if self.conns.is_empty() {
                self.fail(ConsumerFailure::Lookupd(error.clone()));
            }
            self.emit(ConsumerEvent::LookupdFailed { lookupd, error });
        }
        if !found.answered {
            return;
        }
        let now = Instant::now();
        for addr in found.listed.difference(&self.listed) {
            tracing::info!(%addr, "nsqd listed by nsqlookupd");
            self.outbox
                .push(ConsumerEvent::NsqdListed { nsqd: addr.clone() });
        }
        for addr in self.listed.difference(&found.listed) {
            self.outbox
                .push(ConsumerEvent::NsqdUnlisted { nsqd: addr.clone() });
        }
        self.listed = found.listed;
        if self.listed.is_empty() && self.conns.is_empty() {
            self.fail(ConsumerFailure::NoNsqd);
        }
        let wanted: Vec<String> = self
            .listed
            .iter()
            .filter(|addr| !self.excluded.contains(*addr) && !self.is_connected(addr))
            .filter(|addr| self.retry.get(*addr).is_none_or(|(_, at)| *at <= now))
            .cloned()
            .collect();
        for addr in wanted {
            self.open(addr);
        }
        for c in self.conns.values() {
            if !self.listed.contains(&c.addr) && !self.nsqd.contains(&c.addr) {
                tracing::info!(addr = %c.addr, "nsqd no longer listed by any nsqlookupd; closing");
                let _ = c.commands.send(ConnCommand::Close);
            }
        }
    }

    async fn shutdown(&mut self) {
        for c in self.conns.values() {
            let _ = c.commands.send(ConnCommand::Close);
        }
        let deadline = Instant::now() + self.config.shutdown_timeout;
        while !self.conns.is_empty() {
            tokio::select! {
                event = self.conn_rx.recv() => match event {
                    Some(ConnEvent::Ended { id, how }) => {
                        self.conn_changes += 1;
                        if let (Some(c), Ended::Lost(reason)) = (self.conns.remove(&id), how) {
                            self.emit(ConsumerEvent::Disconnected { nsqd: c.addr, reason });
                        }
                    }
                    Some(ConnEvent::Done(id, outcome, count)) => {
                        self.on_done(id, outcome, count, Instant::now());
                    }
                    Some(_) => {}
                    None => break,
                },
                _ = tokio::time::sleep_until(deadline) => {
                    tracing::warn!(left = self.conns.len(), "shutdown timeout; closing connections with messages in flight");
                    break;
                }
            }
        }
        self.publish_state();
    }
}

/// The result of the lookupd round under way (never resolves when there is none).
async fn join(
    discovery: &mut Option<JoinHandle<Discovery>>,
) -> Result<Discovery, tokio::task::JoinError> {
    match discovery {
        Some(round) => round.await,
        None => std::future::pending().await,
    }
}

/// How stale the per-connection stats may be while connections stay as they are.
const PER_CONNECTION_EVERY: Duration = Duration::from_millis(1);

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}
