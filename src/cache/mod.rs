//! The chatroom-list cache port and its adapters (in-process, Redis).
//!
//! Entries are versioned per user so a stale list can never be stored: a reader gets the
//! current version with its miss, and its later `put` lands under that version only.
//! An invalidation moves the version on, so a list read from the database before a write is
//! stored (if at all) where nobody looks. A cache failure is a miss, never an error.
//!
//! With Redis, each process also keeps the lists it served in memory under their version. The
//! per-user rate limit, which every signed-in request counts in Redis anyway, reads the user's
//! current version in the same round trip ([`crate::ratelimit::RateLimiter::hit_user`]); a list
//! kept under that version is served without asking Redis again, and is exactly as fresh.

mod memory;
mod redis;

use async_trait::async_trait;
use bytes::Bytes;

pub(crate) use memory::MemoryListCache;
pub(crate) use redis::{RedisListCache, current_version, version_keys};

use crate::users::model::UserId;

/// The version a missed entry must be stored under.
pub(crate) type Version = u64;

/// The caller's list version as read at the start of this request (a request extension set by
/// the `AuthUser` extractor when the limiter could read it).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Known(pub(crate) Version);

#[async_trait]
pub(crate) trait ListCache: Send + Sync {
    /// The cached list of `user`, or the version to store one under. `current` is the user's
    /// version if the caller already read it this request ([`Known`]).
    async fn get(&self, user: UserId, current: Option<Version>) -> Result<Bytes, Version>;

    /// Stores `list` for `user` if no invalidation happened since `get` returned `version`.
    async fn put(&self, user: UserId, version: Version, list: Bytes);

    /// Drops the user's list on every process; the next `get` misses.
    async fn invalidate(&self, user: UserId);
}
