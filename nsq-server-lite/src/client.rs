//! What the broker knows about one TCP connection, shared by its tasks, its channel and `/stats`.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::AtomicU64;
use std::sync::{Mutex, MutexGuard};

use bytes::Bytes;
use nsq_proto::{Response, ServerError};
use tokio::io::WriteHalf;
use tokio::sync::oneshot;

use crate::conn::BoxedIo;

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
    pub(crate) sample_rate: u8,
    pub(crate) deflate: bool,
    pub(crate) snappy: bool,
    pub(crate) tls_version: Option<String>,
    pub(crate) tls_cipher_suite: String,
    pub(crate) auth_identity: Option<String>,
    pub(crate) auth_identity_url: String,
    pub(crate) pub_counts: BTreeMap<String, u64>,
}

/// One connection, as `/stats` and its channel see it.
#[derive(Debug)]
pub(crate) struct ClientInfo {
    pub(crate) id: u64,
    pub(crate) remote_addr: SocketAddr,
    pub(crate) connect_ts: i64,
    pub(crate) message_count: AtomicU64,
    pub(crate) finish_count: AtomicU64,
    pub(crate) requeue_count: AtomicU64,
    meta: Mutex<ClientMeta>,
}

impl ClientInfo {
    pub(crate) fn new(id: u64, remote_addr: SocketAddr, connect_ts: i64) -> Self {
        // nsqd's defaults before IDENTIFY: the client ID and hostname are the remote host.
        let host = remote_addr.ip().to_string();
        Self {
            id,
            remote_addr,
            connect_ts,
            message_count: AtomicU64::new(0),
            finish_count: AtomicU64::new(0),
            requeue_count: AtomicU64::new(0),
            meta: Mutex::new(ClientMeta {
                state: State::Init,
                client_id: host.clone(),
                hostname: host,
                user_agent: String::new(),
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

/// What a connection's writer is asked to send, in order.
#[derive(Debug)]
pub(crate) enum Outbound {
    /// A response frame; flushed at once.
    Response(Response),
    /// An error frame; flushed at once.
    Error(ServerError),
    /// Encoded message frames, in order; buffered, flushed after the last when `flush` (the
    /// client's window is now full), when the output buffer fills, or on the output buffer
    /// timer.
    Messages { frames: Bytes, flush: bool },
    /// New heartbeat and buffering settings after IDENTIFY, optionally with a hand-over of the
    /// write half so the reader can upgrade the stream (TLS, compression).
    Reconfigure {
        writer: WriterConfig,
        handover: Option<Handover>,
    },
    /// Flush what is pending and close the connection.
    Close,
}

/// The writer gives its half back on `give` and waits for the upgraded one on `take`.
pub(crate) struct Handover {
    pub(crate) give: oneshot::Sender<WriteHalf<BoxedIo>>,
    pub(crate) take: oneshot::Receiver<WriteHalf<BoxedIo>>,
}

impl std::fmt::Debug for Handover {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Handover")
    }
}

/// How a connection's writer buffers and beats.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct WriterConfig {
    pub(crate) heartbeat_interval: Option<std::time::Duration>,
    pub(crate) output_buffer_size: usize,
    pub(crate) output_buffer_timeout: Option<std::time::Duration>,
}
