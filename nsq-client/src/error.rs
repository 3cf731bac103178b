//! Errors, one type per family of operations, each with the nsqd address it concerns.

use std::sync::Arc;
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
            | ConnectError::FeatureRefused { addr, .. }
            | ConnectError::Tls { addr, .. }
            | ConnectError::Subscribe { addr, .. } => addr,
            ConnectError::ServerName { name } => name,
        }
    }

    /// Whether trying again cannot succeed without a change of configuration or of nsqd:
    /// an HTTP port given for the TCP port, AUTH required with no secret or refused
    /// (`E_AUTH_FAILED`, `E_UNAUTHORIZED`), TLS or compression not agreed, an untrusted
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
            | ConnectError::FeatureRefused { .. }
            | ConnectError::ServerName { .. }
            | ConnectError::Protocol { .. } => true,
            ConnectError::Tls { source, .. } => source
                .get_ref()
                .is_some_and(|inner| inner.is::<rustls::Error>()),
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
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum DisconnectReason {
    /// Closed by this side, as asked (a stop, or the nsqd no longer wanted).
    #[error("closed")]
    Closed,
    /// nsqd closed the connection.
    #[error("nsqd closed the connection")]
    ClosedByPeer,
    /// Nothing arrived from nsqd for two heartbeat intervals: the connection is presumed dead.
    #[error("nothing from nsqd for {0:?}")]
    ReadTimeout(Duration),
    /// A write to nsqd did not complete within the write timeout.
    #[error("a write to nsqd did not complete within {0:?}")]
    WriteTimeout(Duration),
    /// Reading or writing the socket failed.
    #[error("i/o error: {0}")]
    Io(#[source] Arc<std::io::Error>),
    /// nsqd sent something that is not the NSQ protocol (or a frame above the size limit).
    #[error("protocol error: {0}")]
    Protocol(#[source] Arc<ProtocolError>),
    /// nsqd sent a fatal error, after which it closes the connection.
    #[error("nsqd sent {0}")]
    Server(ServerError),
    /// nsqd sent a frame that has no place on this connection.
    #[error("unexpected frame from nsqd: {0}")]
    UnexpectedFrame(&'static str),
    /// The graceful stop's timeout passed with messages still in flight; nsqd redelivers them
    /// after its message timeout.
    #[error("{0} messages still in flight at the shutdown timeout")]
    ShutdownTimeout(u32),
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
            LookupdError::Address { url, .. }
            | LookupdError::Request { url, .. }
            | LookupdError::Response { url, .. } => url,
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
        matches!(self, LookupdError::Request { source, .. } if source.is_timeout())
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

#[cfg(test)]
mod tests {
    use super::*;

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
