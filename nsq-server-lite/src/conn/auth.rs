//! A connection's AUTH: the secret it gave, what the auth service granted and until when,
//! and nsqd's `CheckAuth` before SUB and the publishes.

use std::future::Future;
use std::time::Duration;

use nsq_proto::{AuthResponse, ErrorCode, Response, ServerError};
use tokio::time::Instant;

use super::CommandLoop;
use crate::auth::{AuthError, AuthRequest, AuthState};

/// What AUTH settled for one connection.
#[derive(Debug, Default)]
pub(super) struct AuthSession {
    /// The secret from the AUTH command, asked about again when the grant expires.
    secret: String,
    grant: Option<Grant>,
}

/// The auth service's last answer.
#[derive(Debug)]
struct Grant {
    state: AuthState,
    /// When to ask again; `None` when the TTL reaches past what the clock can represent,
    /// which is never within the life of the process.
    expires: Option<Instant>,
}

/// When an answer with `ttl` given at `now` expires. A TTL too long for the clock (an auth
/// service may send up to `i64::MAX` seconds, or a [`Duration::MAX`] in-process) saturates to
/// "never" rather than overflowing.
fn expiry(now: Instant, ttl: Duration) -> Option<Instant> {
    now.checked_add(ttl)
}

impl AuthSession {
    /// Whether the last answer granted anything (an answer without grants fails AUTH, and a
    /// new AUTH may follow).
    pub(super) fn has_authorizations(&self) -> bool {
        self.grant
            .as_ref()
            .is_some_and(|grant| !grant.state.authorizations.is_empty())
    }

    /// Records an answer received at `now`.
    fn grant(&mut self, state: AuthState, now: Instant) {
        let expires = expiry(now, state.ttl);
        self.grant = Some(Grant { state, expires });
    }

    /// Whether the answer's TTL has run out at `now`.
    fn is_expired(&self, now: Instant) -> bool {
        self.grant
            .as_ref()
            .and_then(|grant| grant.expires)
            .is_some_and(|expires| expires <= now)
    }

    fn allows(&self, topic: &str, channel: &str) -> bool {
        self.grant
            .as_ref()
            .is_some_and(|grant| grant.state.allows(topic, channel))
    }
}

impl CommandLoop {
    /// Asks the authenticator about this connection's secret. Holds no borrow of `self`
    /// across the request, so the connection's future stays `Send`.
    fn query_auth(&self) -> impl Future<Output = Result<AuthState, AuthError>> + Send + 'static {
        let auth = self.broker.opts.auth.clone();
        let request = AuthRequest {
            remote_ip: self.info.remote.ip(),
            tls: self.tls,
            secret: self.auth.secret.clone(),
            common_name: String::new(),
        };
        async move {
            match auth {
                Some(auth) => auth.authenticate(request).await,
                None => Err(AuthError::UnknownSecret),
            }
        }
    }

    /// AUTH: asks the auth service about `secret` and answers with what it granted.
    pub(super) async fn authenticate(
        &mut self,
        secret: &[u8],
    ) -> Result<Option<Response>, ServerError> {
        if self.auth.has_authorizations() {
            return Err(Self::invalid("AUTH already set"));
        }
        if self.broker.opts.auth.is_none() {
            return Err(ServerError::new(ErrorCode::AuthDisabled, "AUTH disabled"));
        }
        self.auth.secret = String::from_utf8_lossy(secret).into_owned();
        let state = self.query_auth().await.map_err(|err| {
            tracing::warn!(client = self.info.id, %err, "AUTH failed");
            ServerError::new(ErrorCode::AuthFailed, "AUTH failed")
        })?;
        let response = AuthResponse::new(
            state.identity.clone(),
            state.identity_url.clone(),
            state.authorizations.len() as i64,
        );
        let empty = state.authorizations.is_empty();
        {
            let mut meta = self.info.meta();
            meta.auth_identity = Some(state.identity.clone());
            meta.auth_identity_url = state.identity_url.clone();
        }
        self.auth.grant(state, Instant::now());
        if empty {
            return Err(ServerError::new(
                ErrorCode::Unauthorized,
                "AUTH no authorizations found",
            ));
        }
        let json = serde_json::to_vec(&response)
            .map_err(|e| ServerError::new(ErrorCode::AuthError, format!("AUTH error {e}")))?;
        Ok(Some(Response::Data(json.into())))
    }

    /// nsqd's `CheckAuth`: nothing when auth is off; otherwise AUTH first, re-asked after its TTL.
    pub(super) async fn check_auth(
        &mut self,
        cmd: &str,
        topic: &str,
        channel: &str,
    ) -> Result<(), ServerError> {
        if self.broker.opts.auth.is_none() {
            return Ok(());
        }
        if !self.auth.has_authorizations() {
            return Err(ServerError::new(
                ErrorCode::AuthFirst,
                format!("AUTH required before {cmd}"),
            ));
        }
        if self.auth.is_expired(Instant::now()) {
            let state = self.query_auth().await.map_err(|err| {
                tracing::warn!(client = self.info.id, %err, "AUTH refresh failed");
                ServerError::new(ErrorCode::AuthFailed, "AUTH failed")
            })?;
            self.auth.grant(state, Instant::now());
        }
        if !self.auth.allows(topic, channel) {
            return Err(ServerError::new(
                ErrorCode::Unauthorized,
                format!("AUTH failed for {cmd} on \"{topic}\" \"{channel}\""),
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::{Authorization, Permission};

    const YEAR: Duration = Duration::from_secs(365 * 24 * 3600);

    fn session(ttl: Duration, now: Instant) -> AuthSession {
        let grant = Authorization::new(".*", [".*"], [Permission::Publish]).unwrap();
        let mut session = AuthSession::default();
        session.grant(AuthState::new("svc", ttl).with(grant), now);
        session
    }

    #[test]
    fn a_grant_expires_at_its_ttl() {
        let now = Instant::now();
        let session = session(Duration::from_secs(60), now);
        assert!(!session.is_expired(now + Duration::from_secs(59)));
        assert!(session.is_expired(now + Duration::from_secs(60)));
    }

    #[test]
    fn a_ttl_beyond_the_clock_saturates_to_never() {
        let now = Instant::now();
        for ttl in [
            Duration::MAX,
            Duration::from_secs(u64::MAX),
            Duration::from_secs(i64::MAX.unsigned_abs()),
        ] {
            let session = session(ttl, now);
            assert!(session.has_authorizations());
            assert!(
                !session.is_expired(now + 200 * YEAR),
                "{ttl:?} expired early"
            );
        }
    }

    #[test]
    fn no_grant_is_neither_authorized_nor_expired() {
        let session = AuthSession::default();
        assert!(!session.has_authorizations());
        assert!(!session.is_expired(Instant::now()));
        assert!(!session.allows("t", ""));
    }
}
