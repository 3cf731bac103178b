//! Errors, one type per family of operations, each with the nsqd address it concerns.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use nsq_proto::{ErrorCode, ProtocolError, ServerError};

/// A configuration value out of range, or an address that cannot be used; found by
/// `build()` (or the call that takes the address), never by a setter. When a typed cause
/// exists (an unusable nsqlookupd address, say), it is the [`source`](std::error::Error::source).
///
/// ```
/// use nsq_client::{Channel, Consumer, Topic};
/// let err = Consumer::builder(Topic::new("t")?, Channel::new("c")?)
///     .lookupd("ftp://lookupd:4161")
///     .build()
///     .unwrap_err();
/// let cause = std::error::Error::source(&err).and_then(|s| s.downcast_ref::<nsq_client::LookupdError>());
/// assert!(cause.is_some());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone)]
pub struct ConfigError {
    message: String,
    source: Option<Arc<dyn std::error::Error + Send + Sync>>,
}

impl ConfigError {
    pub(crate) fn new(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            source: None,
        }
    }

    /// A configuration error whose cause is `source`; its text is the cause's.
    #[cfg_attr(not(feature = "lookupd"), allow(dead_code))]
    pub(crate) fn caused_by(source: impl std::error::Error + Send + Sync + 'static) -> Self {
        Self {
            message: source.to_string(),
            source: Some(Arc::new(source)),
        }
    }
}

impl std::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "invalid configuration: {}", self.message)
    }
}

impl std::error::Error for ConfigError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match &self.source {
            Some(source) => Some(&**source),
            None => None,
        }
    }
}

/// Why a connection to nsqd could not be set up (or, for a consumer, subscribed).
///
/// ```
/// use nsq_client::ConnectError;
/// # fn show(err: &ConnectError) {
/// if err.is_permanent() {
///     eprintln!("{} will keep refusing: {err}", err.addr());
/// }
/// # }
/// ```
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
    /// nsqd requires AUTH, and the connection is plain TCP: the secret would cross the network
    /// readable, so it is not sent. Configure TLS, or opt in with
    /// [`ConnectionConfig::allow_plaintext_auth`](crate::ConnectionConfig::allow_plaintext_auth).
    #[error("nsqd at {addr} requires AUTH over a plaintext connection; the secret is not sent without TLS (configure TLS, or allow_plaintext_auth(true) to send it anyway)")]
    AuthWithoutTls {
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
    /// The TLS handshake failed (for example: nsqd's certificate is not trusted, or is not
    /// for the name verified).
    #[error("TLS handshake with nsqd at {addr} failed: {source}")]
    Tls {
        /// The nsqd address.
        addr: String,
        /// The cause; a certificate problem is a [`rustls::Error`] inside it.
        source: std::io::Error,
    },
    /// nsqd refused SUB (`E_BAD_TOPIC`, `E_BAD_CHANNEL`, `E_UNAUTHORIZED`, `E_INVALID`...).
    #[error("nsqd at {addr} refused SUB: {error}")]
    Subscribe {
        /// The nsqd address.
        addr: String,
        /// nsqd's error.
        error: ServerError,
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

    /// nsqd's error, when it refused the handshake or SUB.
    ///
    /// ```
    /// # let err = nsq_client::ConnectError::AuthRequired { addr: "h:4150".into() };
    /// assert!(err.server_error().is_none());
    /// ```
    pub fn server_error(&self) -> Option<&ServerError> {
        match self {
            ConnectError::Refused { error, .. } | ConnectError::Subscribe { error, .. } => {
                Some(error)
            }
            _ => None,
        }
    }

    /// The nsqd address the attempt went to.
    ///
    /// ```
    /// let err = nsq_client::ConnectError::AuthRequired { addr: "h:4150".into() };
    /// assert_eq!(err.addr(), "h:4150");
    /// ```
    pub fn addr(&self) -> &str {
        match self {
            ConnectError::Io { addr, .. }
            | ConnectError::Timeout { addr, .. }
            | ConnectError::HttpPort { addr }
            | ConnectError::Refused { addr, .. }
            | ConnectError::Protocol { addr, .. }
            | ConnectError::AuthRequired { addr }
            | ConnectError::AuthWithoutTls { addr }
            | ConnectError::FeatureRefused { addr, .. }
            | ConnectError::Tls { addr, .. }
            | ConnectError::Subscribe { addr, .. } => addr,
            ConnectError::ServerName { name } => name,
        }
    }

    /// Whether trying again cannot succeed without a change of configuration or of nsqd:
    /// an HTTP port given for the TCP port, AUTH required with no secret, over plaintext, or
    /// refused (`E_AUTH_FAILED`, `E_UNAUTHORIZED`), TLS or compression not agreed, an untrusted
    /// certificate, an invalid server name, or a refusal such as `E_BAD_TOPIC` or
    /// `E_INVALID` (for example a TLS-required nsqd asked to SUB without TLS). Refused
    /// connections, timeouts and resets are transient: the consumer keeps retrying them.
    ///
    /// ```
    /// use nsq_client::ConnectError;
    /// let auth = ConnectError::AuthRequired { addr: "h:4150".into() };
    /// assert!(auth.is_permanent());
    /// let timeout = ConnectError::Timeout { addr: "h:4150".into(), after: std::time::Duration::from_secs(1) };
    /// assert!(!timeout.is_permanent());
    /// ```
    pub fn is_permanent(&self) -> bool {
        match self {
            ConnectError::Io { .. } | ConnectError::Timeout { .. } => false,
            ConnectError::HttpPort { .. }
            | ConnectError::AuthRequired { .. }
            | ConnectError::AuthWithoutTls { .. }
            | ConnectError::FeatureRefused { .. }
            | ConnectError::ServerName { .. }
            | ConnectError::Protocol { .. } => true,
            ConnectError::Tls { source, .. } => is_certificate_error(source),
            ConnectError::Refused { error, .. } | ConnectError::Subscribe { error, .. } => {
                permanent_refusal(&error.code)
            }
        }
    }
}

/// Whether nsqd refusing a handshake step or SUB with `code` will refuse it again.
fn permanent_refusal(code: &ErrorCode) -> bool {
    !matches!(
        code,
        // nsqd exiting, or an auth server that could not be reached: worth retrying.
        ErrorCode::SubFailed | ErrorCode::AuthError | ErrorCode::IdentifyFailed
    )
}

/// Why an established connection to nsqd ended.
///
/// ```
/// use nsq_client::DisconnectReason;
/// let why = DisconnectReason::ReadTimeout(std::time::Duration::from_secs(60));
/// assert_eq!(why.to_string(), "nothing from nsqd for 60s");
/// ```
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum DisconnectReason {
    /// Closed by this side, as asked (a stop, or the nsqd no longer wanted).
    Closed,
    /// nsqd closed the connection.
    ClosedByPeer,
    /// Nothing arrived from nsqd for two heartbeat intervals: the connection is presumed dead.
    ReadTimeout(Duration),
    /// A write to nsqd did not complete within the write timeout.
    WriteTimeout(Duration),
    /// Reading or writing the socket failed.
    Io(Arc<std::io::Error>),
    /// nsqd sent something that is not the NSQ protocol (or a frame above the size limit).
    Protocol(Arc<ProtocolError>),
    /// nsqd sent a fatal error, after which it closes the connection.
    Server(ServerError),
    /// nsqd sent a frame that has no place on this connection.
    UnexpectedFrame(&'static str),
    /// The graceful stop's timeout passed with messages still in flight; nsqd redelivers them
    /// after its message timeout.
    ShutdownTimeout(u32),
}

impl std::fmt::Display for DisconnectReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DisconnectReason::Closed => f.write_str("closed"),
            DisconnectReason::ClosedByPeer => f.write_str("nsqd closed the connection"),
            DisconnectReason::ReadTimeout(after) => write!(f, "nothing from nsqd for {after:?}"),
            DisconnectReason::WriteTimeout(after) => {
                write!(f, "a write to nsqd did not complete within {after:?}")
            }
            DisconnectReason::Io(e) => write!(f, "i/o error: {e}"),
            DisconnectReason::Protocol(e) => write!(f, "protocol error: {e}"),
            DisconnectReason::Server(e) => write!(f, "nsqd sent {e}"),
            DisconnectReason::UnexpectedFrame(what) => {
                write!(f, "unexpected frame from nsqd: {what}")
            }
            DisconnectReason::ShutdownTimeout(n) => {
                write!(f, "{n} messages still in flight at the shutdown timeout")
            }
        }
    }
}

/// The source is the cause itself (an [`std::io::Error`], a [`ProtocolError`] or a
/// [`ServerError`]), not the `Arc` that lets the reason be cloned.
impl std::error::Error for DisconnectReason {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            DisconnectReason::Io(e) => Some(&**e),
            DisconnectReason::Protocol(e) => Some(&**e),
            DisconnectReason::Server(e) => Some(e),
            _ => None,
        }
    }
}

impl From<ProtocolError> for DisconnectReason {
    fn from(e: ProtocolError) -> Self {
        match e {
            ProtocolError::Io(io) => DisconnectReason::Io(Arc::new(io)),
            other => DisconnectReason::Protocol(Arc::new(other)),
        }
    }
}

impl From<std::io::Error> for DisconnectReason {
    fn from(e: std::io::Error) -> Self {
        DisconnectReason::Io(Arc::new(e))
    }
}

/// A failed nsqlookupd query.
///
/// ```
/// # fn show(err: &nsq_client::LookupdError) {
/// eprintln!("{} failed: {err}", err.url());
/// # }
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LookupdError {
    /// The address is not `host:port` or an `http(s)://` URL.
    #[error("invalid nsqlookupd address {url:?}: {why}")]
    Address {
        /// The address as given.
        url: String,
        /// What is wrong with it.
        why: &'static str,
    },
    /// The request failed: connection refused, timeout, TLS...
    #[cfg(feature = "lookupd")]
    #[error("{url}: {source}")]
    Request {
        /// The URL asked.
        url: String,
        /// The cause.
        source: reqwest::Error,
    },
    /// nsqlookupd answered with an error status, or with a body that is not its JSON.
    #[error("{url}: {source}")]
    Response {
        /// The URL asked.
        url: String,
        /// The cause.
        source: nsq_proto::lookup::ApiError,
    },
}

impl LookupdError {
    /// The URL that was asked (or the address that could not become one).
    ///
    /// ```
    /// let err = nsq_client::LookupdError::Address { url: "::".into(), why: "no port" };
    /// assert_eq!(err.url(), "::");
    /// ```
    pub fn url(&self) -> &str {
        match self {
            LookupdError::Address { url, .. } | LookupdError::Response { url, .. } => url,
            #[cfg(feature = "lookupd")]
            LookupdError::Request { url, .. } => url,
        }
    }

    /// Whether the request timed out.
    ///
    /// ```
    /// # fn show(err: &nsq_client::LookupdError) {
    /// if err.is_timeout() { /* raise lookupd_poll_timeout? */ }
    /// # }
    /// ```
    pub fn is_timeout(&self) -> bool {
        #[cfg(feature = "lookupd")]
        return matches!(self, LookupdError::Request { source, .. } if source.is_timeout());
        #[cfg(not(feature = "lookupd"))]
        return false;
    }
}

/// Whether a failed TLS handshake failed on rustls' judgement (a certificate, a protocol
/// mismatch), which retrying cannot change, rather than on the connection.
fn is_certificate_error(source: &std::io::Error) -> bool {
    #[cfg(feature = "tls")]
    return source
        .get_ref()
        .is_some_and(|inner| inner.is::<rustls::Error>());
    #[cfg(not(feature = "tls"))]
    return {
        let _ = source;
        false
    };
}

/// What went wrong with a publish.
///
/// ```
/// use nsq_client::{DisconnectReason, PublishErrorKind};
/// let kind = PublishErrorKind::Disconnected(DisconnectReason::ClosedByPeer);
/// assert_eq!(kind.to_string(), "connection lost before nsqd answered: nsqd closed the connection");
/// ```
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum PublishErrorKind {
    /// nsqd answered with an error (`E_BAD_TOPIC`, `E_PUB_FAILED`, ...).
    #[error("{0}")]
    Server(ServerError),
    /// No connection could be made. Shared: every publish waiting for the same attempt gets
    /// the same error.
    #[error("{0}")]
    Connect(Arc<ConnectError>),
    /// The connection ended before nsqd answered, for the reason given. nsqd may or may not
    /// have taken the message: a retry can duplicate it (NSQ is at-least-once), never lose it.
    #[error("connection lost before nsqd answered: {0}")]
    Disconnected(DisconnectReason),
    /// No answer within the publish timeout. As with `Disconnected`, nsqd may have taken it.
    #[error("no answer within {0:?}")]
    Timeout(Duration),
    /// The producer (or pool) was stopped before the publish was queued.
    #[error("producer stopped")]
    Stopped,
    /// The publish itself is invalid; nothing was sent.
    #[error("{0}")]
    Invalid(InvalidPublish),
    /// The pool has no nsqd to publish to.
    #[error("no nsqd in the pool")]
    NoNodes,
}

/// Why a publish was refused before it was sent.
///
/// ```
/// use nsq_client::InvalidPublish;
/// assert_eq!(InvalidPublish::EmptyBody.to_string(), "empty message body");
/// ```
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum InvalidPublish {
    /// A message body is empty (nsqd refuses those with `E_BAD_MESSAGE`).
    #[error("empty message body")]
    EmptyBody,
    /// `multi_publish` was given no bodies.
    #[error("MPUB needs at least one message")]
    EmptyBatch,
    /// The command cannot be encoded (for example, bodies too large for the protocol's
    /// 32-bit sizes).
    #[error("cannot encode the command: {0}")]
    Encode(#[source] Arc<ProtocolError>),
}

/// A failed publish. It hands the bodies back, so they can be retried without a copy.
///
/// [`source()`](std::error::Error::source) is the typed cause: the [`ServerError`], the
/// [`ConnectError`], the [`DisconnectReason`] or the [`InvalidPublish`].
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
#[derive(Debug)]
pub struct PublishError {
    kind: PublishErrorKind,
    addr: String,
    bodies: Vec<Bytes>,
}

impl std::fmt::Display for PublishError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "publish to {} failed: {}", self.addr, self.kind)
    }
}

impl std::error::Error for PublishError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match &self.kind {
            PublishErrorKind::Server(e) => Some(e),
            PublishErrorKind::Connect(e) => Some(&**e),
            PublishErrorKind::Disconnected(why) => Some(why),
            PublishErrorKind::Invalid(why) => Some(why),
            PublishErrorKind::Timeout(_)
            | PublishErrorKind::Stopped
            | PublishErrorKind::NoNodes => None,
        }
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
    /// connection failures other than [permanent](ConnectError::is_permanent) ones, lost
    /// connections, timeouts, and nsqd refusing because it is exiting or full.
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
            PublishErrorKind::Connect(e) => !e.is_permanent(),
            PublishErrorKind::Disconnected(_) | PublishErrorKind::Timeout(_) => true,
            PublishErrorKind::Server(e) => matches!(
                e.code,
                ErrorCode::PubFailed | ErrorCode::MpubFailed | ErrorCode::DpubFailed
            ),
            PublishErrorKind::Stopped
            | PublishErrorKind::Invalid(_)
            | PublishErrorKind::NoNodes => false,
        }
    }

    /// The connection error, when no connection to nsqd could be made.
    ///
    /// ```
    /// # fn check(err: &nsq_client::PublishError) {
    /// if let Some(e) = err.connect_error() {
    ///     eprintln!("cannot reach {}: {e} (permanent: {})", e.addr(), e.is_permanent());
    /// }
    /// # }
    /// ```
    pub fn connect_error(&self) -> Option<&ConnectError> {
        match &self.kind {
            PublishErrorKind::Connect(e) => Some(e),
            _ => None,
        }
    }

    /// Whether a pool should try another nsqd with these bodies: whenever a retry can
    /// succeed, and on any connection failure (even a permanent one: another nsqd may be
    /// configured differently, or be reachable).
    pub(crate) fn fails_over(&self) -> bool {
        self.is_retriable() || matches!(self.kind, PublishErrorKind::Connect(_))
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

#[cfg(test)]
mod tests {
    use std::error::Error as _;

    use super::*;

    fn publish_error(kind: PublishErrorKind) -> PublishError {
        PublishError::new(kind, "h:4150", vec![Bytes::from_static(b"x")])
    }

    #[test]
    fn the_source_of_a_publish_error_is_its_typed_cause() {
        let refused = ServerError {
            code: ErrorCode::BadTopic,
            description: "PUB topic name \"a b\" is not valid".into(),
        };
        let err = publish_error(PublishErrorKind::Server(refused.clone()));
        assert_eq!(err.source().and_then(|s| s.downcast_ref()), Some(&refused));

        let connect = ConnectError::AuthRequired {
            addr: "h:4150".into(),
        };
        let err = publish_error(PublishErrorKind::Connect(Arc::new(connect)));
        let source = err.source().and_then(|s| s.downcast_ref::<ConnectError>());
        assert!(
            matches!(source, Some(ConnectError::AuthRequired { .. })),
            "{err}"
        );

        let io = std::io::Error::from(std::io::ErrorKind::ConnectionReset);
        let err = publish_error(PublishErrorKind::Disconnected(io.into()));
        let why = err
            .source()
            .and_then(|s| s.downcast_ref::<DisconnectReason>());
        assert!(matches!(why, Some(DisconnectReason::Io(_))), "{err}");
        // ... and the chain goes on to the I/O error itself.
        let io = why
            .and_then(|w| w.source())
            .and_then(|s| s.downcast_ref::<std::io::Error>());
        assert_eq!(
            io.map(|e| e.kind()),
            Some(std::io::ErrorKind::ConnectionReset)
        );

        let err = publish_error(PublishErrorKind::Invalid(InvalidPublish::EmptyBody));
        assert!(err.source().is_some_and(|s| s.is::<InvalidPublish>()));
        assert!(
            publish_error(PublishErrorKind::Timeout(Duration::from_secs(1)))
                .source()
                .is_none()
        );
    }

    #[test]
    fn a_permanent_connect_error_is_not_retriable_but_fails_over() {
        let permanent = publish_error(PublishErrorKind::Connect(Arc::new(
            ConnectError::HttpPort {
                addr: "h:4151".into(),
            },
        )));
        assert!(!permanent.is_retriable());
        assert!(permanent.fails_over());
        let transient = publish_error(PublishErrorKind::Connect(Arc::new(ConnectError::Timeout {
            addr: "h:4150".into(),
            after: Duration::from_secs(1),
        })));
        assert!(transient.is_retriable());
        assert!(transient.fails_over());
        for kind in [
            PublishErrorKind::Stopped,
            PublishErrorKind::Invalid(InvalidPublish::EmptyBatch),
        ] {
            let err = publish_error(kind);
            assert!(!err.is_retriable() && !err.fails_over(), "{err}");
        }
        let lost = publish_error(PublishErrorKind::Disconnected(
            DisconnectReason::ClosedByPeer,
        ));
        assert!(lost.is_retriable());
        assert_eq!(
            lost.to_string(),
            "publish to h:4150 failed: connection lost before nsqd answered: nsqd closed the connection"
        );
    }

    fn refused(code: ErrorCode) -> ConnectError {
        ConnectError::Subscribe {
            addr: "h:4150".into(),
            error: ServerError::new(code, "x"),
        }
    }

    #[test]
    fn refusals_that_retrying_cannot_fix_are_permanent() {
        assert!(refused(ErrorCode::BadTopic).is_permanent());
        assert!(refused(ErrorCode::Unauthorized).is_permanent());
        assert!(refused(ErrorCode::Invalid).is_permanent());
        assert!(!refused(ErrorCode::SubFailed).is_permanent());
        assert!(!refused(ErrorCode::AuthError).is_permanent());
    }

    #[test]
    #[cfg(feature = "tls")]
    fn a_certificate_error_is_permanent_and_a_reset_during_tls_is_not() {
        let certificate = ConnectError::Tls {
            addr: "h:4150".into(),
            source: std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                rustls::Error::InvalidCertificate(rustls::CertificateError::UnknownIssuer),
            ),
        };
        assert!(certificate.is_permanent());
        let reset = ConnectError::Tls {
            addr: "h:4150".into(),
            source: std::io::ErrorKind::ConnectionReset.into(),
        };
        assert!(!reset.is_permanent());
    }

    #[test]
    fn the_source_chain_reaches_the_cause() {
        use std::error::Error as _;
        let why = DisconnectReason::from(std::io::Error::from(std::io::ErrorKind::BrokenPipe));
        let source = why.source().expect("a source");
        assert!(source.downcast_ref::<std::io::Error>().is_some());
    }
}
