//! Errors, one type per family of operations, each with the nsqd address it concerns.

use std::time::Duration;

use bytes::Bytes;
use nsq_proto::{ErrorCode, ProtocolError, ServerError};

/// A configuration value out of range; found by `build()`, never by a setter.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid configuration: {message}")]
pub struct ConfigError {
    message: String,
}

impl ConfigError {
    pub(crate) fn new(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
        }
    }
}

/// Why a connection to nsqd could not be set up.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConnectError {
    /// The TCP connection or the handshake failed.
    #[error("cannot connect to nsqd at {addr}: {source}")]
    Io {
        /// The nsqd address.
        addr: String,
        /// The cause.
        source: std::io::Error,
    },
    /// Connecting and the handshake took longer than the dial timeout.
    #[error("timed out connecting to nsqd at {addr} after {after:?}")]
    Timeout {
        /// The nsqd address.
        addr: String,
        /// The dial timeout.
        after: Duration,
    },
    /// The address answered in HTTP: it is nsqd's HTTP port, not its TCP port.
    #[error("{addr} answered in HTTP: it is an HTTP port, not nsqd's TCP port (4150 by default)")]
    HttpPort {
        /// The address.
        addr: String,
    },
    /// nsqd answered the handshake with an error.
    #[error("nsqd at {addr} refused the handshake: {error}")]
    Refused {
        /// The nsqd address.
        addr: String,
        /// nsqd's error.
        error: ServerError,
    },
    /// nsqd sent something that is not the NSQ protocol.
    #[error("protocol error from nsqd at {addr}: {source}")]
    Protocol {
        /// The nsqd address.
        addr: String,
        /// What was wrong.
        source: ProtocolError,
    },
    /// nsqd requires AUTH and no secret is configured.
    #[error("nsqd at {addr} requires AUTH and no auth secret is configured")]
    AuthRequired {
        /// The nsqd address.
        addr: String,
    },
    /// A feature the configuration asks for was not granted by nsqd.
    #[error("nsqd at {addr} did not agree to {feature}")]
    FeatureRefused {
        /// The nsqd address.
        addr: String,
        /// `TLS`, `snappy` or `deflate`.
        feature: &'static str,
    },
    /// The TLS server name is not a valid DNS name or IP address.
    #[error("invalid TLS server name {name:?}")]
    ServerName {
        /// The name.
        name: String,
    },
}

impl ConnectError {
    pub(crate) fn protocol(addr: &str, source: ProtocolError) -> Self {
        match source {
            ProtocolError::HttpResponse => ConnectError::HttpPort {
                addr: addr.to_owned(),
            },
            ProtocolError::Io(source) => ConnectError::Io {
                addr: addr.to_owned(),
                source,
            },
            source => ConnectError::Protocol {
                addr: addr.to_owned(),
                source,
            },
        }
    }

    /// nsqd's error, when it refused the handshake.
    ///
    /// ```
    /// # let err = nsq_client::ConnectError::AuthRequired { addr: "h:4150".into() };
    /// assert!(err.server_error().is_none());
    /// ```
    pub fn server_error(&self) -> Option<&ServerError> {
        match self {
            ConnectError::Refused { error, .. } => Some(error),
            _ => None,
        }
    }
}

/// What went wrong with a publish.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum PublishErrorKind {
    /// nsqd answered with an error (`E_BAD_TOPIC`, `E_PUB_FAILED`, ...).
    Server(ServerError),
    /// No connection could be made; the text says why.
    Connect(String),
    /// The connection ended before nsqd answered. nsqd may or may not have taken the
    /// message: a retry can duplicate it (NSQ is at-least-once), never lose it.
    Disconnected,
    /// No answer within the publish timeout. As with `Disconnected`, nsqd may have taken it.
    Timeout(Duration),
    /// The producer was closed.
    Closed,
    /// The publish itself is invalid (for example an empty body or an empty batch).
    Invalid(String),
}

/// A failed publish. It hands the bodies back, so they can be retried without a copy.
///
/// ```
/// use nsq_client::{PublishError, PublishErrorKind};
/// # fn show(err: PublishError) {
/// if err.is_retriable() {
///     let bodies = err.into_bodies(); // publish them again, elsewhere or later
///     # let _ = bodies;
/// }
/// # }
/// ```
#[derive(Debug, thiserror::Error)]
#[error("publish to {addr} failed: {}", describe(.kind))]
pub struct PublishError {
    kind: PublishErrorKind,
    addr: String,
    bodies: Vec<Bytes>,
}

fn describe(kind: &PublishErrorKind) -> String {
    match kind {
        PublishErrorKind::Server(e) => e.to_string(),
        PublishErrorKind::Connect(e) => e.clone(),
        PublishErrorKind::Disconnected => "connection lost before nsqd answered".to_owned(),
        PublishErrorKind::Timeout(after) => format!("no answer within {after:?}"),
        PublishErrorKind::Closed => "producer closed".to_owned(),
        PublishErrorKind::Invalid(why) => why.clone(),
    }
}

impl PublishError {
    pub(crate) fn new(kind: PublishErrorKind, addr: impl Into<String>, bodies: Vec<Bytes>) -> Self {
        Self {
            kind,
            addr: addr.into(),
            bodies,
        }
    }

    /// What went wrong.
    ///
    /// ```
    /// use nsq_client::{PublishError, PublishErrorKind};
    /// # fn check(err: &PublishError) {
    /// if let PublishErrorKind::Server(e) = err.kind() {
    ///     eprintln!("nsqd said {e}");
    /// }
    /// # }
    /// ```
    pub fn kind(&self) -> &PublishErrorKind {
        &self.kind
    }

    /// The nsqd address the publish went to.
    ///
    /// ```
    /// use nsq_client::{PublishError, PublishErrorKind};
    /// # fn check(err: &PublishError) {
    /// eprintln!("publish to {} failed", err.addr());
    /// # }
    /// ```
    pub fn addr(&self) -> &str {
        &self.addr
    }

    /// nsqd's error, when it answered with one.
    ///
    /// ```
    /// use nsq_client::{PublishError, PublishErrorKind};
    /// # fn check(err: &PublishError) {
    /// let code = err.server_error().map(|e| e.code.as_str());
    /// # let _ = code;
    /// # }
    /// ```
    pub fn server_error(&self) -> Option<&ServerError> {
        match &self.kind {
            PublishErrorKind::Server(e) => Some(e),
            _ => None,
        }
    }

    /// Whether the publish timed out.
    ///
    /// ```
    /// use nsq_client::{PublishError, PublishErrorKind};
    /// # fn check(err: &PublishError) {
    /// if err.is_timeout() { /* nsqd may still have taken it */ }
    /// # }
    /// ```
    pub fn is_timeout(&self) -> bool {
        matches!(self.kind, PublishErrorKind::Timeout(_))
    }

    /// Whether publishing the same bodies again (to this nsqd or another) can succeed:
    /// connection failures, timeouts, and nsqd refusing because it is exiting or full.
    ///
    /// ```
    /// use nsq_client::{PublishError, PublishErrorKind};
    /// # fn check(err: &PublishError) {
    /// let retry = err.is_retriable();
    /// # let _ = retry;
    /// # }
    /// ```
    pub fn is_retriable(&self) -> bool {
        match &self.kind {
            PublishErrorKind::Connect(_)
            | PublishErrorKind::Disconnected
            | PublishErrorKind::Timeout(_) => true,
            PublishErrorKind::Server(e) => matches!(
                e.code,
                ErrorCode::PubFailed | ErrorCode::MpubFailed | ErrorCode::DpubFailed
            ),
            PublishErrorKind::Closed | PublishErrorKind::Invalid(_) => false,
        }
    }

    /// The bodies of the failed publish.
    ///
    /// ```
    /// use nsq_client::{PublishError, PublishErrorKind};
    /// # fn check(err: &PublishError) {
    /// eprintln!("{} bodies not published", err.bodies().len());
    /// # }
    /// ```
    pub fn bodies(&self) -> &[Bytes] {
        &self.bodies
    }

    /// Takes the bodies back.
    ///
    /// ```
    /// # fn check(err: nsq_client::PublishError) {
    /// let bodies: Vec<bytes::Bytes> = err.into_bodies();
    /// # let _ = bodies;
    /// # }
    /// ```
    pub fn into_bodies(self) -> Vec<Bytes> {
        self.bodies
    }

    /// Takes back the body of a single publish (the first body of a batch).
    ///
    /// ```
    /// # fn check(err: nsq_client::PublishError) {
    /// let body: Option<bytes::Bytes> = err.into_body();
    /// # let _ = body;
    /// # }
    /// ```
    pub fn into_body(self) -> Option<Bytes> {
        self.bodies.into_iter().next()
    }
}
