//! Checking bearer tokens without a database round trip per request: the signature and expiry
//! are checked in memory, and each session's liveness is cached for up to a minute per process.
//! A cache miss is one `UPDATE … RETURNING` that both checks the session and records its use,
//! which is how `last_used_at` stays within a minute without a write on every request.

use std::sync::Arc;
use std::time::Duration;

use moka::future::Cache;

use super::jwt::JwtKeys;
use super::model::SessionId;
use super::repo::SessionRepo;
use crate::clock::Clock;
use crate::error::{AppError, Result};
use crate::users::model::UserId;

/// How long a session's state is trusted before it is checked (and touched) again.
pub const RECHECK_AFTER: Duration = Duration::from_secs(60);

/// Sessions whose state one process keeps in memory.
const CAPACITY: u64 = 100_000;

/// The identity a valid token proves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Authenticated {
    pub user_id: UserId,
    pub session_id: SessionId,
}

#[derive(Debug, Clone, Copy)]
enum SessionState {
    Live(UserId),
    /// Revoked or expired: final, so it is safe to cache too.
    Dead,
}

pub struct Authenticator {
    keys: JwtKeys,
    sessions: Arc<dyn SessionRepo>,
    clock: Arc<dyn Clock>,
    cache: Cache<SessionId, SessionState>,
}

impl Authenticator {
    pub fn new(keys: JwtKeys, sessions: Arc<dyn SessionRepo>, clock: Arc<dyn Clock>) -> Self {
        let cache = Cache::builder()
            .max_capacity(CAPACITY)
            .time_to_live(RECHECK_AFTER)
            .support_invalidation_closures()
            .build();
        Self {
            keys,
            sessions,
            clock,
            cache,
        }
    }

    pub fn keys(&self) -> &JwtKeys {
        &self.keys
    }

    /// The identity behind a bearer token, or `Unauthorized` for any token that is malformed,
    /// badly signed, expired, revoked or not ours.
    pub async fn authenticate(&self, token: &str) -> Result<Authenticated> {
        let claims = self.keys.verify(token).ok_or(AppError::Unauthorized)?;
        let session_id = SessionId(claims.jti);
        let state = self
            .cache
            .try_get_with(session_id, async {
                let owner = self.sessions.touch(session_id, self.clock.now()).await?;
                Ok::<_, crate::storage::StoreError>(match owner {
                    Some(user) => SessionState::Live(user),
                    None => SessionState::Dead,
                })
            })
            .await
            .map_err(|err| match Arc::try_unwrap(err) {
                Ok(err) => AppError::from(err),
                Err(shared) => AppError::Internal(anyhow::anyhow!("checking a session: {shared}")),
            })?;
        match state {
            SessionState::Live(user_id) if user_id.0 == claims.sub => Ok(Authenticated {
                user_id,
                session_id,
            }),
            _ => Err(AppError::Unauthorized),
        }
    }

    /// Forgets what this process knows of one session (after it was revoked).
    pub async fn forget(&self, session_id: SessionId) {
        self.cache.invalidate(&session_id).await;
    }

    /// Forgets every cached session of a user (after a password change revoked them all).
    pub fn forget_user(&self, user_id: UserId) {
        let result = self.cache.invalidate_entries_if(
            move |_, state| matches!(state, SessionState::Live(owner) if *owner == user_id),
        );
        if let Err(err) = result {
            tracing::error!(error = %err, "could not invalidate cached sessions");
        }
    }
}
