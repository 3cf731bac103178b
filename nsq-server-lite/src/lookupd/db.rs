//! The registration database: which nsqd holds which topic and channel.
//!
//! Sans-IO and clock-injected (every query takes `now`), so its rules are tested
//! without sockets. It follows nsqlookupd's `RegistrationDB`: a map from a key
//! (`client`, `topic:<t>` or `channel:<t>:<c>`) to the producers registered under it.
//! Keys outlive their producers: a topic whose nsqd went away still exists, with no
//! producers, until `/topic/delete`.

use std::collections::BTreeMap;
use std::time::Duration;

use nsq_proto::lookup::{LookupResponse, Node, NodesResponse, PeerInfo, Producer};
use tokio::time::Instant;

/// Identifies one TCP connection (one nsqd) for as long as it is open.
pub(crate) type ConnId = u64;

/// A registration key, as nsqlookupd's `Registration{Category, Key, SubKey}`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) enum Key {
    /// Every identified nsqd (what `/nodes` lists).
    Client,
    /// A topic.
    Topic(String),
    /// A channel of a topic.
    Channel(String, String),
}

/// One nsqd that has identified itself.
#[derive(Debug, Clone)]
struct Peer {
    info: PeerInfo,
    remote_address: String,
    last_update: Instant,
}

/// One producer under one key; the tombstone is per key, as in nsqlookupd.
#[derive(Debug, Clone, Default)]
struct Entry {
    tombstoned_at: Option<Instant>,
}

/// How long producers stay visible.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Lifetimes {
    /// A producer with no IDENTIFY or PING for longer than this is hidden.
    pub(crate) inactive_producer_timeout: Duration,
    /// A tombstoned producer is hidden from `/lookup` for this long.
    pub(crate) tombstone_lifetime: Duration,
}

/// The database.
#[derive(Debug, Default)]
pub(crate) struct Db {
    peers: BTreeMap<ConnId, Peer>,
    registrations: BTreeMap<Key, BTreeMap<ConnId, Entry>>,
}

impl Db {
    /// A successful IDENTIFY: the peer is known and listed under [`Key::Client`].
    pub(crate) fn identify(&mut self, conn: ConnId, info: PeerInfo, remote: String, now: Instant) {
        self.peers.insert(
            conn,
            Peer {
                info,
                remote_address: remote,
                last_update: now,
            },
        );
        self.add_producer(Key::Client, conn);
    }

    /// A PING: refreshes the peer's liveness, if it has identified.
    pub(crate) fn ping(&mut self, conn: ConnId, now: Instant) {
        if let Some(peer) = self.peers.get_mut(&conn) {
            peer.last_update = now;
        }
    }

    /// REGISTER: the channel (if any) and the topic.
    pub(crate) fn register(&mut self, conn: ConnId, topic: &str, channel: Option<&str>) {
        if let Some(channel) = channel {
            self.add_producer(Key::Channel(topic.to_owned(), channel.to_owned()), conn);
        }
        self.add_producer(Key::Topic(topic.to_owned()), conn);
    }

    /// UNREGISTER, with nsqlookupd's rules: a channel alone, or the topic and all
    /// its channels. An `#ephemeral` key left without producers is removed; the
    /// channels removed along with a topic keep their keys.
    pub(crate) fn unregister(&mut self, conn: ConnId, topic: &str, channel: Option<&str>) {
        match channel {
            Some(channel) => {
                let key = Key::Channel(topic.to_owned(), channel.to_owned());
                let left = self.remove_producer(&key, conn);
                if left == 0 && channel.ends_with("#ephemeral") {
                    self.registrations.remove(&key);
                }
            }
            None => {
                for producers in self.channels_of_mut(topic) {
                    producers.remove(&conn);
                }
                let key = Key::Topic(topic.to_owned());
                let left = self.remove_producer(&key, conn);
                if left == 0 && topic.ends_with("#ephemeral") {
                    self.registrations.remove(&key);
                }
            }
        }
    }

    /// The connection closed: the peer leaves every registration; the keys stay.
    pub(crate) fn disconnect(&mut self, conn: ConnId) {
        if self.peers.remove(&conn).is_some() {
            for producers in self.registrations.values_mut() {
                producers.remove(&conn);
            }
        }
    }

    /// Creates a key with no producers (`/topic/create`, `/channel/create`).
    pub(crate) fn add_registration(&mut self, key: Key) {
        self.registrations.entry(key).or_default();
    }

    /// `/topic/delete`: the topic's channel keys and the topic key.
    pub(crate) fn delete_topic(&mut self, topic: &str) {
        self.registrations.retain(|key, _| match key {
            Key::Topic(t) | Key::Channel(t, _) => t != topic,
            Key::Client => true,
        });
    }

    /// `/channel/delete`; `false` when the channel key does not exist.
    pub(crate) fn delete_channel(&mut self, topic: &str, channel: &str) -> bool {
        self.registrations
            .remove(&Key::Channel(topic.to_owned(), channel.to_owned()))
            .is_some()
    }

    /// `/topic/tombstone`: tombstones the topic's producers whose
    /// `broadcast_address:http_port` is `node`.
    pub(crate) fn tombstone(&mut self, topic: &str, node: &str, now: Instant) {
        let Some(producers) = self.registrations.get_mut(&Key::Topic(topic.to_owned())) else {
            return;
        };
        for (conn, entry) in producers.iter_mut() {
            if let Some(peer) = self.peers.get(conn) {
                let this = format!("{}:{}", peer.info.broadcast_address, peer.info.http_port);
                if this == node {
                    entry.tombstoned_at = Some(now);
                }
            }
        }
    }

    /// Every topic key (`/topics`).
    pub(crate) fn topics(&self) -> Vec<String> {
        self.registrations
            .keys()
            .filter_map(|key| match key {
                Key::Topic(t) => Some(t.clone()),
                _ => None,
            })
            .collect()
    }

    /// Every channel key of `topic` (`/channels`).
    pub(crate) fn channels(&self, topic: &str) -> Vec<String> {
        self.registrations
            .keys()
            .filter_map(|key| match key {
                Key::Channel(t, c) if t == topic => Some(c.clone()),
                _ => None,
            })
            .collect()
    }

    /// `/lookup`: `None` when the topic key does not exist; otherwise its channels and
    /// its producers that are active and not tombstoned.
    pub(crate) fn lookup(
        &self,
        topic: &str,
        lifetimes: Lifetimes,
        now: Instant,
    ) -> Option<LookupResponse> {
        let producers = self.registrations.get(&Key::Topic(topic.to_owned()))?;
        let producers = producers
            .iter()
            .filter(|(_, entry)| !is_tombstoned(entry, lifetimes.tombstone_lifetime, now))
            .filter_map(|(conn, _)| self.active_peer(*conn, lifetimes, now))
            .map(producer)
            .collect();
        Some(LookupResponse {
            channels: self.channels(topic),
            producers,
        })
    }

    /// `/nodes`: every active identified peer, its topics and their tombstones.
    pub(crate) fn nodes(&self, lifetimes: Lifetimes, now: Instant) -> NodesResponse {
        let clients = self.registrations.get(&Key::Client);
        let producers = clients
            .into_iter()
            .flat_map(|clients| clients.keys())
            .filter_map(|conn| Some((*conn, self.active_peer(*conn, lifetimes, now)?)))
            .map(|(conn, peer)| {
                let (topics, tombstones) = self
                    .registrations
                    .iter()
                    .filter_map(|(key, producers)| match key {
                        Key::Topic(t) => producers.get(&conn).map(|entry| {
                            let dead = is_tombstoned(entry, lifetimes.tombstone_lifetime, now);
                            (t.clone(), dead)
                        }),
                        _ => None,
                    })
                    .unzip();
                Node {
                    producer: producer(peer),
                    tombstones,
                    topics,
                }
            })
            .collect();
        NodesResponse { producers }
    }

    /// How many producers a key has, `None` when the key does not exist.
    #[cfg(test)]
    pub(crate) fn producer_count(&self, key: &Key) -> Option<usize> {
        self.registrations.get(key).map(BTreeMap::len)
    }

    fn active_peer(&self, conn: ConnId, lifetimes: Lifetimes, now: Instant) -> Option<&Peer> {
        self.peers.get(&conn).filter(|peer| {
            now.saturating_duration_since(peer.last_update) <= lifetimes.inactive_producer_timeout
        })
    }

    fn channels_of_mut<'a>(
        &'a mut self,
        topic: &'a str,
    ) -> impl Iterator<Item = &'a mut BTreeMap<ConnId, Entry>> + 'a {
        self.registrations
            .iter_mut()
            .filter(move |(key, _)| matches!(key, Key::Channel(t, _) if t == topic))
            .map(|(_, producers)| producers)
    }

    fn add_producer(&mut self, key: Key, conn: ConnId) {
        self.registrations
            .entry(key)
            .or_default()
            .entry(conn)
            .or_default();
    }

    /// Removes the producer and says how many are left under the key.
    fn remove_producer(&mut self, key: &Key, conn: ConnId) -> usize {
        match self.registrations.get_mut(key) {
            Some(producers) => {
                producers.remove(&conn);
                producers.len()
            }
            None => 0,
        }
    }
}

fn is_tombstoned(entry: &Entry, lifetime: Duration, now: Instant) -> bool {
    entry
        .tombstoned_at
        .is_some_and(|at| now.saturating_duration_since(at) < lifetime)
}

/// The producer as `/lookup` and `/nodes` show it (nsqlookupd 1.3.0 has no topology fields).
fn producer(peer: &Peer) -> Producer {
    Producer {
        remote_address: peer.remote_address.clone(),
        hostname: peer.info.hostname.clone(),
        broadcast_address: peer.info.broadcast_address.clone(),
        tcp_port: peer.info.tcp_port,
        http_port: peer.info.http_port,
        version: peer.info.version.clone(),
        topology_zone: None,
        topology_region: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIFETIMES: Lifetimes = Lifetimes {
        inactive_producer_timeout: Duration::from_secs(300),
        tombstone_lifetime: Duration::from_secs(45),
    };

    fn peer(name: &str) -> PeerInfo {
        PeerInfo::new(name, 4150, 4151, "1.3.0")
    }

    fn identified(now: Instant) -> Db {
        let mut db = Db::default();
        db.identify(1, peer("a"), "127.0.0.1:1".into(), now);
        db
    }

    #[tokio::test(start_paused = true)]
    async fn inactive_producer_hidden_strictly_after_timeout() {
        let start = Instant::now();
        let mut db = identified(start);
        db.register(1, "t", None);
        let at_limit = start + LIFETIMES.inactive_producer_timeout;
        assert_eq!(
            db.lookup("t", LIFETIMES, at_limit).unwrap().producers.len(),
            1
        );
        assert_eq!(db.nodes(LIFETIMES, at_limit).producers.len(), 1);
        let past = at_limit + Duration::from_millis(1);
        assert!(db
            .lookup("t", LIFETIMES, past)
            .unwrap()
            .producers
            .is_empty());
        assert!(db.nodes(LIFETIMES, past).producers.is_empty());
        db.ping(1, past);
        assert_eq!(db.lookup("t", LIFETIMES, past).unwrap().producers.len(), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn tombstone_hides_from_lookup_only_for_its_lifetime_and_shows_in_nodes() {
        let now = Instant::now();
        let mut db = identified(now);
        db.register(1, "t", None);
        db.register(1, "u", None);
        db.tombstone("t", "a:4150", now);
        assert_eq!(db.lookup("t", LIFETIMES, now).unwrap().producers.len(), 1);
        db.tombstone("t", "a:4151", now);
        assert!(db.lookup("t", LIFETIMES, now).unwrap().producers.is_empty());
        assert_eq!(db.lookup("u", LIFETIMES, now).unwrap().producers.len(), 1);
        let node = &db.nodes(LIFETIMES, now).producers[0];
        assert_eq!(node.topics, ["t", "u"]);
        assert_eq!(node.tombstones, [true, false]);
        let later = now + LIFETIMES.tombstone_lifetime;
        assert_eq!(db.lookup("t", LIFETIMES, later).unwrap().producers.len(), 1);
        assert_eq!(
            db.nodes(LIFETIMES, later).producers[0].tombstones,
            [false, false]
        );
    }

    #[tokio::test(start_paused = true)]
    async fn disconnect_removes_producers_but_keeps_keys() {
        let now = Instant::now();
        let mut db = identified(now);
        db.register(1, "t", Some("c#ephemeral"));
        db.disconnect(1);
        let found = db.lookup("t", LIFETIMES, now).unwrap();
        assert_eq!(found.channels, ["c#ephemeral"]);
        assert!(found.producers.is_empty());
        assert_eq!(db.producer_count(&Key::Client), Some(0));
    }

    #[tokio::test(start_paused = true)]
    async fn unregister_channel_removes_only_empty_ephemeral_keys() {
        let now = Instant::now();
        let mut db = identified(now);
        db.identify(2, peer("b"), "127.0.0.1:2".into(), now);
        for conn in [1, 2] {
            db.register(conn, "t", Some("keep"));
            db.register(conn, "t", Some("e#ephemeral"));
        }
        db.unregister(1, "t", Some("e#ephemeral"));
        db.unregister(1, "t", Some("keep"));
        assert_eq!(db.channels("t"), ["e#ephemeral", "keep"]);
        db.unregister(2, "t", Some("e#ephemeral"));
        db.unregister(2, "t", Some("keep"));
        assert_eq!(db.channels("t"), ["keep"]);
        assert_eq!(
            db.producer_count(&Key::Channel("t".into(), "keep".into())),
            Some(0)
        );
    }

    #[tokio::test(start_paused = true)]
    async fn unregister_topic_leaves_channel_keys_and_drops_empty_ephemeral_topic() {
        let now = Instant::now();
        let mut db = identified(now);
        db.register(1, "t#ephemeral", Some("c#ephemeral"));
        db.register(1, "p", Some("c"));
        db.unregister(1, "t#ephemeral", None);
        db.unregister(1, "p", None);
        assert_eq!(db.topics(), ["p"]);
        assert_eq!(db.channels("t#ephemeral"), ["c#ephemeral"]);
        assert_eq!(
            db.producer_count(&Key::Channel("p".into(), "c".into())),
            Some(0)
        );
        assert_eq!(db.producer_count(&Key::Topic("p".into())), Some(0));
    }

    #[tokio::test(start_paused = true)]
    async fn delete_topic_removes_topic_and_channel_keys() {
        let now = Instant::now();
        let mut db = identified(now);
        db.register(1, "t", Some("c"));
        db.register(1, "u", Some("c"));
        db.delete_topic("t");
        assert!(db.lookup("t", LIFETIMES, now).is_none());
        assert!(db.channels("t").is_empty());
        assert_eq!(db.topics(), ["u"]);
        assert!(!db.delete_channel("t", "c"));
        assert!(db.delete_channel("u", "c"));
    }
}
