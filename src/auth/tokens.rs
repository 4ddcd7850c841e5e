//! Checking bearer tokens without a database round trip per request: the signature and expiry
//! are checked in memory, and each session's liveness is cached for up to a minute per process.
//! A cache miss is one `UPDATE … RETURNING` that both checks the session and records its use,
//! which is how `last_used_at` stays within a minute without a write on every request.

use std::sync::Arc;
use std::time::Duration;

use moka::future::Cache;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::jwt::JwtKeys;
use super::model::SessionId;
use super::repo::SessionRepo;
use crate::clock::Clock;
use crate::error::{AppError, Result};
use crate::events::{Delivery, EventBus};
use crate::users::model::UserId;

/// The longest a session's state is trusted before it is checked (and touched) again.
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

/// The event-bus topic on which revocations reach every process's cache.
const REVOCATIONS: &str = "sessions.revoked";

/// A revocation as published: one session, or every session of a user.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
enum Revocation {
    Session(Uuid),
    User(Uuid),
}

type SessionCache = Cache<SessionId, SessionState>;

/// Each cached state expires at a random point in the last quarter of `RECHECK_AFTER`.
/// Sessions cached together (every active user right after a restart, a cohort signed in at
/// once) would otherwise all be rechecked in the same instant: a burst of writes on the
/// database during which those users' requests wait (seen in bench/ as a 250 ms stall).
struct JitteredRecheck;

impl moka::Expiry<SessionId, SessionState> for JitteredRecheck {
    fn expire_after_create(
        &self,
        _key: &SessionId,
        _value: &SessionState,
        _created_at: std::time::Instant,
    ) -> Option<Duration> {
        Some(RECHECK_AFTER.mul_f64(0.75 + 0.25 * rand::random::<f64>()))
    }
}

pub struct Authenticator {
    keys: JwtKeys,
    sessions: Arc<dyn SessionRepo>,
    clock: Arc<dyn Clock>,
    cache: SessionCache,
    events: Arc<EventBus>,
}

impl Authenticator {
    /// Builds the authenticator and starts the task that applies revocations published by
    /// any process (it ends when the event bus is dropped).
    pub fn new(
        keys: JwtKeys,
        sessions: Arc<dyn SessionRepo>,
        clock: Arc<dyn Clock>,
        events: Arc<EventBus>,
    ) -> Self {
        let cache = Cache::builder()
            .max_capacity(CAPACITY)
            .expire_after(JitteredRecheck)
            .support_invalidation_closures()
            .build();
        tokio::spawn(apply_revocations(
            events.subscribe(REVOCATIONS),
            cache.clone(),
        ));
        Self {
            keys,
            sessions,
            clock,
            cache,
            events,
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

    /// Makes every process forget one session, after it was revoked in the database.
    pub async fn forget(&self, session_id: SessionId) {
        self.cache.invalidate(&session_id).await;
        self.announce(Revocation::Session(session_id.0)).await;
    }

    /// Makes every process forget all sessions of a user (after a password change or reset).
    pub async fn forget_user(&self, user_id: UserId) {
        forget_user(&self.cache, user_id);
        self.announce(Revocation::User(user_id.0)).await;
    }

    async fn announce(&self, revocation: Revocation) {
        let payload = serde_json::to_string(&revocation).unwrap_or_default();
        // If Redis cannot carry it, the database already says revoked: other processes
        // notice within RECHECK_AFTER, or at once when their event link comes back (a gap
        // empties their session cache).
        self.events.publish(REVOCATIONS, &payload).await;
    }
}

fn forget_user(cache: &SessionCache, user_id: UserId) {
    let result = cache.invalidate_entries_if(
        move |_, state| matches!(state, SessionState::Live(owner) if *owner == user_id),
    );
    if let Err(err) = result {
        tracing::error!(error = %err, "could not invalidate cached sessions");
    }
}

/// Applies revocations announced by any process to this process's cache.
async fn apply_revocations(mut revocations: crate::events::Subscription, cache: SessionCache) {
    while let Some(delivery) = revocations.recv().await {
        match delivery {
            Delivery::Message(payload) => match serde_json::from_str(&payload) {
                Ok(Revocation::Session(id)) => cache.invalidate(&SessionId(id)).await,
                Ok(Revocation::User(id)) => forget_user(&cache, UserId(id)),
                Err(err) => tracing::warn!(error = %err, "ignoring a malformed revocation"),
            },
            // Revocations may have been missed: trust nothing cached.
            Delivery::Gap => cache.invalidate_all(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use moka::Expiry;

    #[test]
    fn rechecks_are_spread_over_the_last_quarter_of_the_minute() {
        let session = SessionId(Uuid::nil());
        let spans: Vec<Duration> = (0..200)
            .filter_map(|_| {
                JitteredRecheck.expire_after_create(
                    &session,
                    &SessionState::Dead,
                    std::time::Instant::now(),
                )
            })
            .collect();
        assert_eq!(spans.len(), 200);
        assert!(
            spans
                .iter()
                .all(|d| *d >= RECHECK_AFTER.mul_f64(0.75) && *d <= RECHECK_AFTER)
        );
        let (min, max) = (spans.iter().min(), spans.iter().max());
        assert!(
            min.zip(max)
                .is_some_and(|(a, b)| *b - *a > Duration::from_secs(5)),
            "spread out, not one instant"
        );
    }
}
