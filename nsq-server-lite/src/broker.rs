//! The broker's shared state: its options, topics and connections.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use nsq_proto::{
    Channel as ChannelName, Limits, Message, MessageId, ServerOptions, Topic as TopicName,
};
use tokio_util::sync::CancellationToken;

use crate::auth::Authenticator;
use crate::channel::{Channel, ChannelLimits};
use crate::client::ClientInfo;
use crate::lookup_peer::{LookupPeers, Registration, Snapshot};
use crate::stats::{ClientStats, Stats};
use crate::topic::{PutError, Topic};
use nsq_proto::lookup::PeerInfo;

/// When TLS is required (nsqd's `--tls-required`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TlsRequired {
    /// Plain TCP is allowed (`false`, the default).
    #[default]
    No,
    /// Every TCP command but IDENTIFY needs TLS, and plain HTTP is refused (`true`).
    Yes,
    /// TCP needs TLS; plain HTTP is still served (`tcp-https`).
    TcpOnly,
}

/// Everything the broker is configured with.
#[derive(Clone)]
pub(crate) struct Options {
    pub(crate) tcp_address: SocketAddr,
    /// When set, the TCP protocol listens on this unix socket instead of `tcp_address`.
    pub(crate) tcp_unix_socket: Option<PathBuf>,
    pub(crate) http_address: SocketAddr,
    pub(crate) broadcast_address: String,
    pub(crate) lookupd_tcp_addresses: Vec<String>,
    pub(crate) server: ServerOptions,
    pub(crate) limits: Limits,
    pub(crate) mem_queue_size: usize,
    pub(crate) max_channel_consumers: usize,
    pub(crate) client_timeout: Duration,
    pub(crate) scan_interval: Duration,
    pub(crate) tls: Option<Arc<rustls::ServerConfig>>,
    pub(crate) tls_required: TlsRequired,
    pub(crate) auth: Option<Arc<dyn Authenticator>>,
}

impl std::fmt::Debug for Options {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Options")
            .field("tcp_address", &self.tcp_address)
            .field("tcp_unix_socket", &self.tcp_unix_socket)
            .field("http_address", &self.http_address)
            .field("broadcast_address", &self.broadcast_address)
            .field("lookupd_tcp_addresses", &self.lookupd_tcp_addresses)
            .field("server", &self.server)
            .field("limits", &self.limits)
            .field("mem_queue_size", &self.mem_queue_size)
            .field("tls", &self.tls.is_some())
            .field("tls_required", &self.tls_required)
            .field("auth", &self.auth.is_some())
            .finish_non_exhaustive()
    }
}

impl Default for Options {
    fn default() -> Self {
        let loopback = SocketAddr::from(([127, 0, 0, 1], 0));
        Self {
            tcp_address: loopback,
            tcp_unix_socket: None,
            http_address: loopback,
            broadcast_address: nsq_proto::identify::local_hostname(),
            lookupd_tcp_addresses: Vec::new(),
            server: ServerOptions::default(),
            limits: Limits::default(),
            mem_queue_size: 1_000_000,
            max_channel_consumers: 0,
            client_timeout: Duration::from_secs(60),
            scan_interval: Duration::from_millis(100),
            tls: None,
            tls_required: TlsRequired::No,
            auth: None,
        }
    }
}

impl Options {
    /// Whether a topology region or zone is configured (nsq after 1.3.0); without one the
    /// broker answers exactly as nsqd 1.3.0.
    pub(crate) fn has_topology(&self) -> bool {
        !self.server.topology_region.is_empty() || !self.server.topology_zone.is_empty()
    }
}

pub(crate) fn unix_now() -> Duration {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
}

#[derive(Debug)]
pub(crate) struct Broker {
    pub(crate) opts: Options,
    pub(crate) tcp_addr: SocketAddr,
    pub(crate) http_addr: SocketAddr,
    pub(crate) start_time: i64,
    pub(crate) shutdown: CancellationToken,
    topics: Mutex<BTreeMap<TopicName, Arc<Topic>>>,
    clients: Mutex<HashMap<u64, Arc<ClientInfo>>>,
    next_client_id: AtomicU64,
    next_msg_id: AtomicU64,
    lookup: Mutex<Option<Arc<LookupPeers>>>,
}

impl Broker {
    pub(crate) fn new(opts: Options, tcp_addr: SocketAddr, http_addr: SocketAddr) -> Self {
        let now = unix_now();
        Self {
            opts,
            tcp_addr,
            http_addr,
            start_time: now.as_secs() as i64,
            shutdown: CancellationToken::new(),
            topics: Mutex::new(BTreeMap::new()),
            clients: Mutex::new(HashMap::new()),
            next_client_id: AtomicU64::new(1),
            // Like nsqd's GUIDs, IDs start from the clock so that a restarted broker does not
            // reuse the IDs of messages a client may still hold.
            next_msg_id: AtomicU64::new((now.as_millis() as u64) << 22),
            lookup: Mutex::new(None),
        }
    }

    /// Starts registering with the configured nsqlookupds, as nsqd does at start.
    pub(crate) fn start_lookup(self: &Arc<Self>) {
        let addrs = self.opts.lookupd_tcp_addresses.clone();
        if addrs.is_empty() {
            return;
        }
        let mut info = PeerInfo::new(
            self.opts.broadcast_address.clone(),
            self.tcp_addr.port(),
            self.http_addr.port(),
            self.opts.server.version.clone(),
        );
        info.hostname = nsq_proto::identify::local_hostname();
        if self.opts.has_topology() {
            // nsq master's nsqd registers its topology; nsqlookupd 1.3.0 ignores it.
            info.topology_region = Some(self.opts.server.topology_region.clone());
            info.topology_zone = Some(self.opts.server.topology_zone.clone());
        }
        let weak = Arc::downgrade(self);
        let snapshot: Snapshot = Arc::new(move || {
            weak.upgrade()
                .map(|b| b.registrations())
                .unwrap_or_default()
        });
        let peers = LookupPeers::start(addrs, info, snapshot, self.shutdown.clone());
        *lock(&self.lookup) = Some(Arc::new(peers));
    }

    fn notify(&self, registration: Registration) {
        if let Some(peers) = lock(&self.lookup).as_ref() {
            peers.notify(registration);
        }
    }

    /// Everything to register with an nsqlookupd that (re)connects, as nsqd sends it.
    pub(crate) fn registrations(&self) -> Vec<Registration> {
        let topics: Vec<_> = lock(&self.topics).values().cloned().collect();
        let mut out = Vec::new();
        for topic in topics {
            let channels = topic.channels();
            if channels.is_empty() {
                out.push(Registration::Register {
                    topic: topic.name.clone(),
                    channel: None,
                });
            }
            for c in channels {
                out.push(Registration::Register {
                    topic: topic.name.clone(),
                    channel: Some(c.name.clone()),
                });
            }
        }
        out
    }

    fn channel_limits(&self) -> ChannelLimits {
        ChannelLimits {
            mem_queue_size: self.opts.mem_queue_size,
            max_msg_timeout: self.opts.server.max_msg_timeout,
            max_channel_consumers: self.opts.max_channel_consumers,
        }
    }

    pub(crate) fn next_client_id(&self) -> u64 {
        self.next_client_id.fetch_add(1, Ordering::Relaxed)
    }

    pub(crate) fn add_client(&self, info: Arc<ClientInfo>) {
        lock(&self.clients).insert(info.id, info);
    }

    pub(crate) fn remove_client(&self, id: u64) {
        lock(&self.clients).remove(&id);
    }

    pub(crate) fn topic(&self, name: &str) -> Option<Arc<Topic>> {
        lock(&self.topics).get(name).cloned()
    }

    /// The topic, created if needed. A new topic first gets the channels nsqlookupd knows for
    /// it (not ephemeral ones), as nsqd does, so that what is published before its consumers
    /// connect is kept for them.
    pub(crate) async fn get_or_create_topic(&self, name: &TopicName) -> Arc<Topic> {
        let (topic, created) = self.topic_entry(name);
        if created {
            let lookup = lock(&self.lookup).clone();
            if let Some(peers) = lookup {
                for channel in peers.channels(name).await {
                    if !channel.is_ephemeral() {
                        self.channel_entry(&topic, &channel);
                    }
                }
            }
            topic.start();
        }
        topic
    }

    fn topic_entry(&self, name: &TopicName) -> (Arc<Topic>, bool) {
        let (topic, created) = {
            let mut topics = lock(&self.topics);
            match topics.get(name) {
                Some(t) => (t.clone(), false),
                None => {
                    let t = Arc::new(Topic::new(name.clone(), self.channel_limits()));
                    topics.insert(name.clone(), t.clone());
                    (t, true)
                }
            }
        };
        if created {
            tracing::info!(topic = %name, "topic created");
            self.notify(Registration::Register {
                topic: name.clone(),
                channel: None,
            });
        }
        (topic, created)
    }

    /// The channel, creating it and its topic as needed. `None` when the topic is being deleted.
    pub(crate) async fn get_or_create_channel(
        &self,
        topic: &TopicName,
        channel: &ChannelName,
    ) -> Option<Arc<Channel>> {
        let topic = self.get_or_create_topic(topic).await;
        self.channel_entry(&topic, channel)
    }

    fn channel_entry(&self, topic: &Topic, channel: &ChannelName) -> Option<Arc<Channel>> {
        let topic_name = &topic.name;
        let got = topic.get_or_create_channel(channel)?;
        if got.created {
            tracing::info!(topic = %topic_name, channel = %channel, "channel created");
            self.notify(Registration::Register {
                topic: topic_name.clone(),
                channel: Some(channel.clone()),
            });
        }
        Some(got.channel)
    }

    /// Publishes bodies to a topic (created if needed), all or none.
    pub(crate) async fn publish(
        &self,
        topic: &TopicName,
        bodies: Vec<Bytes>,
        defer: Duration,
    ) -> Result<(), PutError> {
        let timestamp = unix_now().as_nanos() as i64;
        let n = bodies.len() as u64;
        let first = self.next_msg_id.fetch_add(n, Ordering::Relaxed);
        let msgs = bodies
            .into_iter()
            .zip(first..)
            .map(|(body, id)| Message {
                timestamp,
                attempts: 0,
                id: MessageId::from_u64(id),
                body,
            })
            .collect();
        self.get_or_create_topic(topic).await.put(msgs, defer)
    }

    /// Deletes a topic and its channels, closing their consumers.
    pub(crate) fn delete_topic(&self, name: &str) -> bool {
        let Some(topic) = lock(&self.topics).remove(name) else {
            return false;
        };
        for channel in topic.delete() {
            self.notify(Registration::Unregister {
                topic: topic.name.clone(),
                channel: Some(channel.name.clone()),
            });
        }
        self.notify(Registration::Unregister {
            topic: topic.name.clone(),
            channel: None,
        });
        tracing::info!(topic = %name, "topic deleted");
        true
    }

    /// Deletes a channel; an ephemeral topic left without channels goes with it.
    pub(crate) fn delete_channel(&self, topic: &Topic, name: &str) -> bool {
        let Some((channel, topic_now_empty)) = topic.remove_channel(name) else {
            return false;
        };
        tracing::info!(topic = %topic.name, channel = %name, "channel deleted");
        self.notify(Registration::Unregister {
            topic: topic.name.clone(),
            channel: Some(channel.name.clone()),
        });
        if topic_now_empty {
            self.delete_topic(topic.name.as_str());
        }
        true
    }

    /// Takes a consumer off its channel, deleting an ephemeral channel it leaves empty.
    pub(crate) fn unsubscribe(&self, channel: &Channel, client: u64) {
        if channel.remove_consumer(client) {
            if let Some(topic) = self.topic(channel.topic.as_str()) {
                if topic
                    .channel(channel.name.as_str())
                    .is_some_and(|c| std::ptr::eq(&*c, channel))
                {
                    self.delete_channel(&topic, channel.name.as_str());
                }
            }
        }
    }

    /// Times out in-flight messages and releases deferred ones on every channel.
    pub(crate) fn scan(&self) {
        let now = tokio::time::Instant::now();
        let topics: Vec<_> = lock(&self.topics).values().cloned().collect();
        for topic in topics {
            for channel in topic.channels() {
                channel.scan(now);
            }
        }
    }

    pub(crate) fn stats(&self, topic: Option<&str>, channel: Option<&str>, clients: bool) -> Stats {
        let topics: Vec<_> = lock(&self.topics)
            .values()
            .filter(|t| topic.is_none_or(|name| t.name.as_str() == name))
            .cloned()
            .collect();
        let mut producers: Vec<_> = lock(&self.clients)
            .values()
            .filter(|c| !c.meta().pub_counts.is_empty())
            .cloned()
            .collect();
        producers.sort_by_key(|c| c.id);
        Stats {
            version: self.opts.server.version.clone(),
            health: "OK".to_owned(),
            start_time: self.start_time,
            topics: topics.iter().map(|t| t.stats(channel, clients)).collect(),
            memory: None,
            producers: if clients {
                producers
                    .iter()
                    .map(|c| ClientStats::new(c, 0, 0))
                    .collect()
            } else {
                Vec::new()
            },
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}
