//! AUTH: asking an auth service what a secret may do, the way nsqd's `--auth-http-address` does.
//!
//! nsqd sends `GET http://<address>/auth?remote_ip=..&tls=..&secret=..&common_name=..` (or the
//! address itself when it holds `://`) and reads a JSON [`AuthState`]. [`HttpAuth`] does exactly
//! that; [`StaticAuth`] answers from a table in-process, for tests; anything implementing
//! [`Authenticator`] can stand in.
//!
//! ```
//! use nsq_server_lite::auth::{AuthState, Authorization, Permission, StaticAuth};
//! use std::time::Duration;
//!
//! let auth = StaticAuth::new().with_secret(
//!     "s3cret",
//!     AuthState::new("alice", Duration::from_secs(3600))
//!         .with(Authorization::new("^clicks$", [".*"], [Permission::Publish, Permission::Subscribe])?),
//! );
//! # let _ = auth;
//! # Ok::<(), regex::Error>(())
//! ```

use std::collections::HashMap;
use std::future::Future;
use std::net::IpAddr;
use std::pin::Pin;
use std::time::Duration;

use regex::Regex;
use serde::Deserialize;

/// What nsqd passes to the auth service about a connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthRequest {
    /// The client's IP address.
    pub remote_ip: IpAddr,
    /// Whether the connection upgraded to TLS.
    pub tls: bool,
    /// The secret from the AUTH command.
    pub secret: String,
    /// The client certificate's common name, or empty.
    pub common_name: String,
}

/// A permission an authorization grants.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Permission {
    /// PUB, MPUB and DPUB.
    Publish,
    /// SUB.
    Subscribe,
}

/// One grant: topics matching `topic`, channels matching any of `channels`.
///
/// The patterns are unanchored, as in nsqd (Go's `MatchString`); publishing checks the channel
/// patterns against the empty string, so a publish grant needs one that matches it (`.*`).
#[derive(Debug, Clone)]
pub struct Authorization {
    topic: Regex,
    channels: Vec<Regex>,
    permissions: Vec<Permission>,
}

impl Authorization {
    /// A grant from patterns.
    ///
    /// ```
    /// use nsq_server_lite::auth::{Authorization, Permission};
    /// let grant = Authorization::new("^t", ["^c$"], [Permission::Subscribe])?;
    /// assert!(grant.allows("t1", "c"));
    /// assert!(!grant.allows("t1", ""));
    /// # Ok::<(), regex::Error>(())
    /// ```
    ///
    /// # Errors
    ///
    /// When a pattern does not compile.
    pub fn new<'a>(
        topic: &str,
        channels: impl IntoIterator<Item = &'a str>,
        permissions: impl IntoIterator<Item = Permission>,
    ) -> Result<Self, regex::Error> {
        Ok(Self {
            topic: Regex::new(topic)?,
            channels: channels
                .into_iter()
                .map(Regex::new)
                .collect::<Result<_, _>>()?,
            permissions: permissions.into_iter().collect(),
        })
    }

    /// Whether this grant lets a client publish to `topic` (`channel` empty) or subscribe to
    /// `topic`/`channel`.
    ///
    /// ```
    /// use nsq_server_lite::auth::{Authorization, Permission};
    /// let grant = Authorization::new(".*", [".*"], [Permission::Publish])?;
    /// assert!(grant.allows("t", ""));
    /// assert!(!grant.allows("t", "c"));
    /// # Ok::<(), regex::Error>(())
    /// ```
    pub fn allows(&self, topic: &str, channel: &str) -> bool {
        let needed = if channel.is_empty() {
            Permission::Publish
        } else {
            Permission::Subscribe
        };
        self.permissions.contains(&needed)
            && self.topic.is_match(topic)
            && self.channels.iter().any(|c| c.is_match(channel))
    }
}

/// What the auth service said about a secret.
#[derive(Debug, Clone)]
pub struct AuthState {
    /// Who the secret belongs to.
    pub identity: String,
    /// A URL about that identity.
    pub identity_url: String,
    /// How long the answer holds; the next check after it re-asks the service. Any length is
    /// taken: one that reaches past what the clock can represent (up to [`Duration::MAX`])
    /// never expires.
    pub ttl: Duration,
    /// The grants.
    pub authorizations: Vec<Authorization>,
}

impl AuthState {
    /// An answer without grants.
    ///
    /// ```
    /// let state = nsq_server_lite::auth::AuthState::new("bob", std::time::Duration::from_secs(60));
    /// assert!(state.authorizations.is_empty());
    /// ```
    pub fn new(identity: impl Into<String>, ttl: Duration) -> Self {
        Self {
            identity: identity.into(),
            identity_url: String::new(),
            ttl,
            authorizations: Vec::new(),
        }
    }

    /// Adds a grant.
    ///
    /// ```
    /// use nsq_server_lite::auth::{AuthState, Authorization, Permission};
    /// let state = AuthState::new("bob", std::time::Duration::from_secs(60))
    ///     .with(Authorization::new(".*", [".*"], [Permission::Publish])?);
    /// assert!(state.allows("any", ""));
    /// # Ok::<(), regex::Error>(())
    /// ```
    pub fn with(mut self, authorization: Authorization) -> Self {
        self.authorizations.push(authorization);
        self
    }

    /// Whether any grant allows the operation (see [`Authorization::allows`]).
    ///
    /// ```
    /// let state = nsq_server_lite::auth::AuthState::new("bob", std::time::Duration::from_secs(60));
    /// assert!(!state.allows("t", ""));
    /// ```
    pub fn allows(&self, topic: &str, channel: &str) -> bool {
        self.authorizations.iter().any(|a| a.allows(topic, channel))
    }
}

/// Why the auth service gave no usable answer. Clients only ever see nsqd's `E_AUTH_FAILED`.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    /// The service could not be reached or answered with an error status.
    #[error("auth request to {url} failed: {reason}")]
    Request {
        /// The URL asked (without the secret).
        url: String,
        /// What went wrong.
        reason: String,
    },
    /// The answer was not a valid auth state.
    #[error("invalid auth response: {0}")]
    Invalid(String),
    /// The secret is not known (in-process policies).
    #[error("unknown secret")]
    UnknownSecret,
}

/// The future an [`Authenticator`] returns.
pub type AuthFuture<'a> = Pin<Box<dyn Future<Output = Result<AuthState, AuthError>> + Send + 'a>>;

/// Decides what a secret may do.
///
/// ```
/// use nsq_server_lite::auth::{AuthError, AuthFuture, AuthRequest, Authenticator, AuthState};
///
/// #[derive(Debug)]
/// struct Nobody;
/// impl Authenticator for Nobody {
///     fn authenticate(&self, _: AuthRequest) -> AuthFuture<'_> {
///         Box::pin(async { Err(AuthError::UnknownSecret) })
///     }
/// }
/// ```
pub trait Authenticator: Send + Sync + std::fmt::Debug + 'static {
    /// Asks about one connection's secret.
    fn authenticate(&self, request: AuthRequest) -> AuthFuture<'_>;
}

/// An in-process table of secrets, for tests.
#[derive(Debug, Clone, Default)]
pub struct StaticAuth {
    secrets: HashMap<String, AuthState>,
}

impl StaticAuth {
    /// An empty table: every secret fails.
    ///
    /// ```
    /// let auth = nsq_server_lite::auth::StaticAuth::new();
    /// # let _ = auth;
    /// ```
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a secret and what it grants.
    ///
    /// ```
    /// use nsq_server_lite::auth::{AuthState, StaticAuth};
    /// let auth = StaticAuth::new().with_secret("x", AuthState::new("x", std::time::Duration::from_secs(1)));
    /// # let _ = auth;
    /// ```
    pub fn with_secret(mut self, secret: impl Into<String>, state: AuthState) -> Self {
        self.secrets.insert(secret.into(), state);
        self
    }
}

impl Authenticator for StaticAuth {
    fn authenticate(&self, request: AuthRequest) -> AuthFuture<'_> {
        let answer = self
            .secrets
            .get(&request.secret)
            .cloned()
            .ok_or(AuthError::UnknownSecret);
        Box::pin(async move { answer })
    }
}

/// nsqd's HTTP auth client: tries each address, starting at a random one.
#[derive(Debug, Clone)]
pub struct HttpAuth {
    addresses: Vec<String>,
    client: reqwest::Client,
}

impl HttpAuth {
    /// Addresses as `--auth-http-address` takes them: `host:port` (then `/auth` is asked) or a
    /// full URL.
    ///
    /// ```
    /// let auth = nsq_server_lite::auth::HttpAuth::new(vec!["127.0.0.1:4181".into()]);
    /// # let _ = auth;
    /// ```
    pub fn new(addresses: Vec<String>) -> Self {
        let client = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(2))
            .timeout(Duration::from_secs(5))
            .build()
            .unwrap_or_default();
        Self { addresses, client }
    }

    async fn query(&self, address: &str, request: &AuthRequest) -> Result<AuthState, AuthError> {
        let url = if address.contains("://") {
            address.to_owned()
        } else {
            format!("http://{address}/auth")
        };
        let failed = |reason: String| AuthError::Request {
            url: url.clone(),
            reason,
        };
        let response = self
            .client
            .get(&url)
            .header("Accept", nsq_proto::lookup::ACCEPT_V1)
            .query(&[
                ("remote_ip", request.remote_ip.to_string()),
                ("tls", request.tls.to_string()),
                ("secret", request.secret.clone()),
                ("common_name", request.common_name.clone()),
            ])
            .send()
            .await
            .map_err(|e| failed(e.to_string()))?;
        let status = response.status();
        let body = response.bytes().await.map_err(|e| failed(e.to_string()))?;
        if !status.is_success() {
            return Err(failed(format!(
                "status {status}: {}",
                String::from_utf8_lossy(&body)
            )));
        }
        parse_state(&body)
    }
}

#[derive(Deserialize)]
struct WireState {
    #[serde(default)]
    ttl: i64,
    #[serde(default)]
    authorizations: Vec<WireAuthorization>,
    #[serde(default)]
    identity: String,
    #[serde(default)]
    identity_url: String,
}

#[derive(Deserialize)]
struct WireAuthorization {
    #[serde(default)]
    topic: String,
    #[serde(default)]
    channels: Vec<String>,
    #[serde(default)]
    permissions: Vec<String>,
}

/// Reads and checks an auth service's answer as nsqd does.
fn parse_state(body: &[u8]) -> Result<AuthState, AuthError> {
    let wire: WireState =
        serde_json::from_slice(body).map_err(|e| AuthError::Invalid(e.to_string()))?;
    let mut authorizations = Vec::with_capacity(wire.authorizations.len());
    for a in wire.authorizations {
        let permissions = a
            .permissions
            .iter()
            .map(|p| match p.as_str() {
                "publish" => Ok(Permission::Publish),
                "subscribe" => Ok(Permission::Subscribe),
                other => Err(AuthError::Invalid(format!("unknown permission {other}"))),
            })
            .collect::<Result<Vec<_>, _>>()?;
        let grant =
            Authorization::new(&a.topic, a.channels.iter().map(String::as_str), permissions)
                .map_err(|e| AuthError::Invalid(e.to_string()))?;
        authorizations.push(grant);
    }
    if wire.ttl <= 0 {
        return Err(AuthError::Invalid(format!(
            "invalid TTL {} (must be >0)",
            wire.ttl
        )));
    }
    Ok(AuthState {
        identity: wire.identity,
        identity_url: wire.identity_url,
        ttl: Duration::from_secs(wire.ttl.unsigned_abs()),
        authorizations,
    })
}

impl Authenticator for HttpAuth {
    fn authenticate(&self, request: AuthRequest) -> AuthFuture<'_> {
        Box::pin(async move {
            let n = self.addresses.len();
            let start = fastrand::usize(..n.max(1));
            let mut errors = Vec::new();
            for i in 0..n {
                let address = &self.addresses[(start + i) % n];
                match self.query(address, &request).await {
                    Ok(state) => return Ok(state),
                    Err(e) => errors.push(e.to_string()),
                }
            }
            Err(AuthError::Request {
                url: self.addresses.join(","),
                reason: errors.join("; "),
            })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_nsqd_auth_answers_and_refuses_what_nsqd_refuses() {
        let ok = parse_state(
            br#"{"ttl":60,"identity":"i","identity_url":"u","authorizations":[{"topic":"^t$","channels":[".*"],"permissions":["publish"]}]}"#,
        )
        .unwrap();
        assert_eq!(ok.identity, "i");
        assert_eq!(ok.ttl, Duration::from_secs(60));
        assert!(ok.allows("t", ""));
        assert!(!ok.allows("t", "c"), "no subscribe permission");
        assert!(
            !ok.allows("tt", ""),
            "topic pattern is anchored by the grant"
        );

        for bad in [
            &br#"{"ttl":0,"authorizations":[]}"#[..],
            br#"{"ttl":5,"authorizations":[{"topic":"(","channels":[],"permissions":[]}]}"#,
            br#"{"ttl":5,"authorizations":[{"topic":"t","channels":[],"permissions":["admin"]}]}"#,
            b"not json",
        ] {
            assert!(
                parse_state(bad).is_err(),
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn the_largest_ttls_parse_without_overflow() {
        let state = |ttl: &str| {
            parse_state(format!(r#"{{"ttl":{ttl},"authorizations":[]}}"#).as_bytes())
                .map(|state| state.ttl)
        };
        // i64::MAX seconds is the most nsqd's int64 field holds; it is kept whole (the
        // connection saturates its expiry to never).
        assert_eq!(
            state(&i64::MAX.to_string()).unwrap(),
            Duration::from_secs(i64::MAX.unsigned_abs())
        );
        // Beyond int64, nsqd's JSON decoding fails, and so does this one.
        assert!(matches!(
            state(&u64::MAX.to_string()),
            Err(AuthError::Invalid(_))
        ));
        assert!(matches!(state("1e300"), Err(AuthError::Invalid(_))));
    }

    #[test]
    fn patterns_are_unanchored_like_go() {
        let grant = Authorization::new("lic", ["^c"], [Permission::Subscribe]).unwrap();
        assert!(grant.allows("clicks", "c1"));
        assert!(!grant.allows("clicks", "d"));
    }
}
