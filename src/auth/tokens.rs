//! Checking bearer tokens without a database round trip per request: the signature and expiry
//! are checked in memory, and each session's liveness is cached for up to a minute per process.
//! A check is one `UPDATE … RETURNING` that both confirms the session and records its use,
//! which is how `last_used_at` stays within a minute without a write on every request. An
//! active session is rechecked in the background once its state is `REFRESH_AFTER` old, so its
//! requests do not wait for the database; only a first sight (or a minute of silence) does.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use chrono::{DateTime, Utc};
use moka::future::Cache;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::jwt::JwtKeys;
use super::model::SessionId;
use super::repo::SessionRepo;
use crate::clock::Clock;
use crate::error::{AppError, Result};
use crate::events::{Delivery, EventBus};
use crate::storage::error::StoreError;
use crate::users::model::UserId;

/// The longest a session's state is trusted before it is checked (and touched) again.
pub(crate) const RECHECK_AFTER: Duration = Duration::from_secs(60);

/// Past this age, a request still uses the cached state but starts a background recheck.
const REFRESH_AFTER: chrono::Duration = chrono::Duration::seconds(30);

/// Sessions whose state one process keeps in memory.
const CAPACITY: u64 = 100_000;

/// The identity a valid token proves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Authenticated {
    pub(crate) user_id: UserId,
    pub(crate) session_id: SessionId,
    /// When the token was issued (its `iat`): how recent the sign-in behind it is.
    pub(crate) issued_at: chrono::DateTime<chrono::Utc>,
}

#[derive(Debug, Clone, Copy)]
enum SessionState {
    Live(UserId),
    /// Revoked or expired: final, so it is safe to cache too.
    Dead,
}

/// A session's state as the database last confirmed it.
#[derive(Debug, Clone)]
struct Cached {
    state: SessionState,
    checked_at: DateTime<Utc>,
    /// Set while a background recheck of this entry runs (shared by the entry's clones).
    refreshing: Arc<AtomicBool>,
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

type SessionCache = Cache<SessionId, Cached>;

/// Each cached state expires at a random point in the last quarter of `RECHECK_AFTER`.
/// Sessions cached together (every active user right after a restart, a cohort signed in at
/// once) would otherwise all be rechecked in the same instant: a burst of writes on the
/// database during which those users' requests wait (seen in bench/ as a 250 ms stall).
struct JitteredRecheck;

impl JitteredRecheck {
    fn lifetime() -> Duration {
        RECHECK_AFTER.mul_f64(0.75 + 0.25 * rand::random::<f64>())
    }
}

impl moka::Expiry<SessionId, Cached> for JitteredRecheck {
    fn expire_after_create(
        &self,
        _key: &SessionId,
        _value: &Cached,
        _created_at: std::time::Instant,
    ) -> Option<Duration> {
        Some(Self::lifetime())
    }

    fn expire_after_update(
        &self,
        _key: &SessionId,
        _value: &Cached,
        _updated_at: std::time::Instant,
        _duration_until_expiry: Option<Duration>,
    ) -> Option<Duration> {
        // A background recheck replaced the entry: it is fresh again.
        Some(Self::lifetime())
    }
}

/// The cache and what checking a session needs, shared with background rechecks.
struct Sessions {
    repo: Arc<dyn SessionRepo>,
    clock: Arc<dyn Clock>,
    cache: SessionCache,
    /// Moves on at every revocation this process applies: a recheck that started before one
    /// must not store what it read (the session may have been revoked since).
    revocations: AtomicU64,
}

impl Sessions {
    /// Asks the database (which records the session's use).
    async fn check(&self, session_id: SessionId) -> std::result::Result<Cached, StoreError> {
        let now = self.clock.now();
        let owner = self.repo.touch(session_id, now).await?;
        Ok(Cached {
            state: match owner {
                Some(user) => SessionState::Live(user),
                None => SessionState::Dead,
            },
            checked_at: now,
            refreshing: Arc::default(),
        })
    }

    /// Rechecks a cached session in the background and stores the answer, unless a
    /// revocation was applied meanwhile.
    async fn refresh(self: Arc<Self>, session_id: SessionId, flag: Arc<AtomicBool>) {
        let before = self.revocations.load(Ordering::SeqCst);
        match self.check(session_id).await {
            Ok(fresh) if self.revocations.load(Ordering::SeqCst) == before => {
                self.cache.insert(session_id, fresh).await;
            }
            Ok(_) => {}
            Err(err) => {
                tracing::warn!(error = %err, "could not recheck a session; keeping its cached state");
                flag.store(false, Ordering::SeqCst);
            }
        }
    }

    async fn forget(&self, session_id: SessionId) {
        self.revocations.fetch_add(1, Ordering::SeqCst);
        self.cache.invalidate(&session_id).await;
    }

    fn forget_user(&self, user_id: UserId) {
        self.revocations.fetch_add(1, Ordering::SeqCst);
        let result = self.cache.invalidate_entries_if(
            move |_, cached| matches!(cached.state, SessionState::Live(owner) if owner == user_id),
        );
        if let Err(err) = result {
            tracing::error!(error = %err, "could not invalidate cached sessions");
        }
    }

    fn forget_all(&self) {
        self.revocations.fetch_add(1, Ordering::SeqCst);
        self.cache.invalidate_all();
    }
}

pub(crate) struct Authenticator {
    keys: JwtKeys,
    sessions: Arc<Sessions>,
    events: Arc<EventBus>,
}

impl Authenticator {
    /// Builds the authenticator and starts the task that applies revocations published by
    /// any process (it ends when the event bus is dropped).
    pub(crate) fn new(
        keys: JwtKeys,
        repo: Arc<dyn SessionRepo>,
        clock: Arc<dyn Clock>,
        events: Arc<EventBus>,
    ) -> Self {
        let sessions = Arc::new(Sessions {
            repo,
            clock,
            cache: Cache::builder()
                .max_capacity(CAPACITY)
                .expire_after(JitteredRecheck)
                .support_invalidation_closures()
                .build(),
            revocations: AtomicU64::new(0),
        });
        tokio::spawn(apply_revocations(
            events.subscribe(REVOCATIONS),
            Arc::clone(&sessions),
        ));
        Self {
            keys,
            sessions,
            events,
        }
    }

    pub(crate) fn keys(&self) -> &JwtKeys {
        &self.keys
    }

    /// The identity behind a bearer token, or `Unauthorized` for any token that is malformed,
    /// badly signed, expired, revoked or not ours.
    pub(crate) async fn authenticate(&self, token: &str) -> Result<Authenticated> {
        let claims = self.keys.verify(token).ok_or(AppError::Unauthorized)?;
        let session_id = SessionId(claims.jti);
        let cached = self
            .sessions
            .cache
            .try_get_with(session_id, self.sessions.check(session_id))
            .await
            .map_err(|err| match Arc::try_unwrap(err) {
                Ok(err) => AppError::from(err),
                // Requests that waited on another's check share its error: an outage is still
                // a 503 for each of them.
                Err(shared) => match *shared {
                    StoreError::Unavailable(_) => AppError::DatabaseUnavailable,
                    _ => AppError::Internal(anyhow::anyhow!("checking a session: {shared}")),
                },
            })?;
        let aging = self.sessions.clock.now() - cached.checked_at >= REFRESH_AFTER;
        if aging
            && matches!(cached.state, SessionState::Live(_))
            && !cached.refreshing.swap(true, Ordering::SeqCst)
        {
            tokio::spawn(
                Arc::clone(&self.sessions).refresh(session_id, Arc::clone(&cached.refreshing)),
            );
        }
        match cached.state {
            SessionState::Live(user_id) if user_id.0 == claims.sub => Ok(Authenticated {
                user_id,
                session_id,
                issued_at: chrono::DateTime::from_timestamp(claims.iat, 0).unwrap_or_default(),
            }),
            _ => Err(AppError::Unauthorized),
        }
    }

    /// Makes every process forget one session, after it was revoked in the database.
    pub(crate) async fn forget(&self, session_id: SessionId) {
        self.sessions.forget(session_id).await;
        self.announce(Revocation::Session(session_id.0)).await;
    }

    /// Makes every process forget all sessions of a user (after a password change or reset).
    pub(crate) async fn forget_user(&self, user_id: UserId) {
        self.sessions.forget_user(user_id);
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

/// Applies revocations announced by any process to this process's cache.
async fn apply_revocations(mut revocations: crate::events::Subscription, sessions: Arc<Sessions>) {
    while let Some(delivery) = revocations.recv().await {
        match delivery {
            Delivery::Message(payload) => match serde_json::from_str(&payload) {
                Ok(Revocation::Session(id)) => sessions.forget(SessionId(id)).await,
                Ok(Revocation::User(id)) => sessions.forget_user(UserId(id)),
                Err(err) => tracing::warn!(error = %err, "ignoring a malformed revocation"),
            },
            // Revocations may have been missed: trust nothing cached.
            Delivery::Gap => sessions.forget_all(),
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
        let cached = Cached {
            state: SessionState::Dead,
            checked_at: Utc::now(),
            refreshing: Arc::default(),
        };
        let spans: Vec<Duration> = (0..200)
            .filter_map(|_| {
                JitteredRecheck.expire_after_create(&session, &cached, std::time::Instant::now())
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
