//! The per-user response cache port and its adapters (in-process, Redis): the body of
//! `GET /chatroom` and of `GET /user/me`, each kept per user.
//!
//! Entries are versioned per user so a stale body can never be stored: a reader gets the
//! current version with its miss, and its later `put` lands under that version only.
//! An invalidation moves the user's one version on, so a body read from the database before a
//! write is stored (if at all) where nobody looks. Every write that changes what either view
//! shows invalidates the user; a body that time alone changes (today's usage at midnight, a
//! subscription's end) is stored with the instant it stops being true. A cache failure is a
//! miss, never an error.
//!
//! With Redis, each process also keeps the bodies it served in memory under their version. The
//! per-user rate limit, which every signed-in request counts in Redis anyway, reads the user's
//! current version in the same round trip ([`crate::ratelimit::RateLimiter::hit_user`]); a body
//! kept under that version is served without asking Redis again, and is exactly as fresh.

mod memory;
mod redis;

use async_trait::async_trait;
use bytes::Bytes;
use chrono::{DateTime, Utc};
use serde::Serialize;

pub(crate) use memory::MemoryUserCache;
pub(crate) use redis::{RedisUserCache, current_version, invalidate_user, version_keys};

use crate::app::App;
use crate::users::model::UserId;

/// The version a missed entry must be stored under.
pub(crate) type Version = u64;

/// The caller's version as read at the start of this request (a request extension set by the
/// `AuthUser` extractor when the limiter could read it).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Known(pub(crate) Version);

/// What is cached per user.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum View {
    /// `GET /chatroom`.
    Chatrooms,
    /// `GET /user/me`: the profile, its tier and today's usage.
    Me,
}

impl View {
    pub(crate) const ALL: [View; 2] = [View::Chatrooms, View::Me];

    pub(crate) fn as_str(self) -> &'static str {
        match self {
            View::Chatrooms => "chatrooms",
            View::Me => "me",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// A cached body and the instant it stops being true whatever is written.
#[derive(Debug, Clone)]
pub(crate) struct Body {
    pub(crate) json: Bytes,
    pub(crate) valid_until: DateTime<Utc>,
}

impl Body {
    fn is_valid_at(&self, now: DateTime<Utc>) -> bool {
        now < self.valid_until
    }

    /// The stored form: the instant (microseconds since the epoch, big-endian), then the body.
    fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(8 + self.json.len());
        out.extend_from_slice(&self.valid_until.timestamp_micros().to_be_bytes());
        out.extend_from_slice(&self.json);
        out
    }

    fn decode(stored: Vec<u8>) -> Option<Self> {
        let micros = i64::from_be_bytes(stored.get(..8)?.try_into().ok()?);
        let valid_until = DateTime::from_timestamp_micros(micros)?;
        let mut json = Bytes::from(stored);
        let json = json.split_off(8);
        Some(Self { json, valid_until })
    }
}

/// `view` of `user` as a JSON body: from the cache, or made by `read` and stored. `read`
/// answers the value and, if time alone can change it, the instant it does.
pub(crate) async fn cached<T: Serialize>(
    app: &App,
    user: UserId,
    view: View,
    current: Option<Version>,
    read: impl AsyncFnOnce() -> crate::error::Result<(T, Option<DateTime<Utc>>)>,
) -> crate::error::Result<Bytes> {
    let now = app.clock.now();
    let version = match app.user_cache.get(user, view, current, now).await {
        Ok(json) => {
            metrics::counter!(crate::metrics::CACHE_REQUESTS, "cache" => view.as_str(), "result" => "hit")
                .increment(1);
            return Ok(json);
        }
        Err(version) => version,
    };
    metrics::counter!(crate::metrics::CACHE_REQUESTS, "cache" => view.as_str(), "result" => "miss")
        .increment(1);
    let (value, changes_at) = read().await?;
    let json = Bytes::from(serde_json::to_vec(&value).map_err(anyhow::Error::from)?);
    // Without an instant, only a write changes the body; the cache's TTL bounds its stay.
    let valid_until = changes_at.unwrap_or(now + chrono::Duration::days(365));
    let body = Body {
        json: json.clone(),
        valid_until,
    };
    app.user_cache.put(user, view, version, body).await;
    Ok(json)
}

#[async_trait]
pub(crate) trait UserCache: Send + Sync {
    /// The cached `view` of `user` if it is still valid at `now`, or the version to store one
    /// under. `current` is the user's version if the caller already read it this request
    /// ([`Known`]).
    async fn get(
        &self,
        user: UserId,
        view: View,
        current: Option<Version>,
        now: DateTime<Utc>,
    ) -> Result<Bytes, Version>;

    /// Stores `body` as `user`'s `view` if no invalidation happened since `get` returned
    /// `version`.
    async fn put(&self, user: UserId, view: View, version: Version, body: Body);

    /// Drops every view of the user on every process; the next `get` misses.
    async fn invalidate(&self, user: UserId);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stored_body_reads_back_with_its_instant() {
        let valid_until =
            DateTime::from_timestamp_micros(1_764_547_200_123_456).unwrap_or_default();
        let body = Body {
            json: Bytes::from_static(b"{\"a\":1}"),
            valid_until,
        };
        let back = Body::decode(body.encode());
        assert_eq!(back.as_ref().map(|b| b.json.clone()), Some(body.json));
        assert_eq!(back.map(|b| b.valid_until), Some(valid_until));
        assert!(Body::decode(vec![1, 2, 3]).is_none());
    }
}
