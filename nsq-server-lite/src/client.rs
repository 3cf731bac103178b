//! What the broker knows about one client connection, shared by its tasks, its channel and `/stats`.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::AtomicU64;
use std::sync::{Mutex, MutexGuard};

/// nsqd's client states (`client_v2.go`), with its numbers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum State {
    Init = 0,
    Subscribed = 3,
    Closing = 4,
}

/// Per-connection details that change after connect.
#[derive(Debug)]
pub(crate) struct ClientMeta {
    pub(crate) state: State,
    pub(crate) client_id: String,
    pub(crate) hostname: String,
    pub(crate) user_agent: String,
    /// IDENTIFY's topology hints (nsq after 1.3.0), empty when not given.
    pub(crate) topology_region: String,
    pub(crate) topology_zone: String,
    pub(crate) sample_rate: u8,
    pub(crate) deflate: bool,
    pub(crate) snappy: bool,
    pub(crate) tls_version: Option<String>,
    pub(crate) tls_cipher_suite: String,
    pub(crate) auth_identity: Option<String>,
    pub(crate) auth_identity_url: String,
    pub(crate) pub_counts: BTreeMap<String, u64>,
}

/// Who is at the other end of a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Peer {
    /// A TCP client at this address.
    Tcp(SocketAddr),
    /// A client of the unix socket listener. Such peers are unnamed; Go shows their address
    /// as `@`, and so does `/stats`.
    #[cfg_attr(not(unix), allow(dead_code))]
    Unix,
}

impl Peer {
    /// The IP address the auth service is told: a unix socket peer is on this host.
    pub(crate) fn ip(&self) -> IpAddr {
        match self {
            Peer::Tcp(addr) => addr.ip(),
            Peer::Unix => IpAddr::V4(Ipv4Addr::LOCALHOST),
        }
    }

    /// nsqd's client ID and hostname before IDENTIFY: the host part of the remote address,
    /// empty when it has none (a unix socket peer).
    fn host(&self) -> String {
        match self {
            Peer::Tcp(addr) => addr.ip().to_string(),
            Peer::Unix => String::new(),
        }
    }
}

impl std::fmt::Display for Peer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Peer::Tcp(addr) => addr.fmt(f),
            Peer::Unix => f.write_str("@"),
        }
    }
}

/// One connection, as `/stats` and its channel see it.
#[derive(Debug)]
pub(crate) struct ClientInfo {
    pub(crate) id: u64,
    pub(crate) remote: Peer,
    pub(crate) connect_ts: i64,
    pub(crate) message_count: AtomicU64,
    pub(crate) finish_count: AtomicU64,
    pub(crate) requeue_count: AtomicU64,
    meta: Mutex<ClientMeta>,
}

impl ClientInfo {
    pub(crate) fn new(id: u64, remote: Peer, connect_ts: i64) -> Self {
        // nsqd's defaults before IDENTIFY: the client ID and hostname are the remote host.
        let host = remote.host();
        Self {
            id,
            remote,
            connect_ts,
            message_count: AtomicU64::new(0),
            finish_count: AtomicU64::new(0),
            requeue_count: AtomicU64::new(0),
            meta: Mutex::new(ClientMeta {
                state: State::Init,
                client_id: host.clone(),
                hostname: host,
                user_agent: String::new(),
                topology_region: String::new(),
                topology_zone: String::new(),
                sample_rate: 0,
                deflate: false,
                snappy: false,
                tls_version: None,
                tls_cipher_suite: String::new(),
                auth_identity: None,
                auth_identity_url: String::new(),
                pub_counts: BTreeMap::new(),
            }),
        }
    }

    pub(crate) fn meta(&self) -> MutexGuard<'_, ClientMeta> {
        self.meta.lock().unwrap_or_else(|e| e.into_inner())
    }
}
