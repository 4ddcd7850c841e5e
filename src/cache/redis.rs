//! The Redis list cache, shared by every process: `gemchat:rooms:{user}` holds the version
//! (moved on by `INCR`), `gemchat:rooms:{user}:{version}` the list. One round trip a read.

use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use redis::aio::ConnectionManager;

use super::{ListCache, Version};
use crate::users::model::UserId;

/// Reads the version and the list under it in one round trip.
const GET_SCRIPT: &str = r"
local version = redis.call('GET', KEYS[1]) or '0'
return {version, redis.call('GET', KEYS[1] .. ':' .. version)}
";

pub struct RedisListCache {
    conn: ConnectionManager,
    ttl: Duration,
    get: redis::Script,
}

impl RedisListCache {
    pub fn new(conn: ConnectionManager, ttl: Duration) -> Self {
        Self {
            conn,
            ttl,
            get: redis::Script::new(GET_SCRIPT),
        }
    }
}

fn version_key(user: UserId) -> String {
    format!("gemchat:rooms:{user}")
}

#[async_trait]
impl ListCache for RedisListCache {
    async fn get(&self, user: UserId) -> Result<Bytes, Version> {
        let mut conn = self.conn.clone();
        let found: redis::RedisResult<(String, Option<Vec<u8>>)> = self
            .get
            .key(version_key(user))
            .invoke_async(&mut conn)
            .await;
        match found {
            Ok((_, Some(list))) => Ok(Bytes::from(list)),
            Ok((version, None)) => Err(version.parse().unwrap_or(0)),
            Err(err) => {
                tracing::warn!(error = %err, "chatroom cache unavailable; reading the database");
                // A version nobody stores under: the caller's put is dropped.
                Err(Version::MAX)
            }
        }
    }

    async fn put(&self, user: UserId, version: Version, list: Bytes) {
        if version == Version::MAX {
            return;
        }
        let mut conn = self.conn.clone();
        let stored: redis::RedisResult<()> = redis::cmd("SET")
            .arg(format!("{}:{version}", version_key(user)))
            .arg(list.as_ref())
            .arg("EX")
            .arg(self.ttl.as_secs().max(1))
            .query_async(&mut conn)
            .await;
        if let Err(err) = stored {
            tracing::warn!(error = %err, "could not fill the chatroom cache");
        }
    }

    async fn invalidate(&self, user: UserId) {
        let mut conn = self.conn.clone();
        // The version outlives every list stored under an older one, so it never goes back
        // to a number whose list could still be there.
        let moved: redis::RedisResult<()> = redis::pipe()
            .atomic()
            .incr(version_key(user), 1)
            .ignore()
            .expire(
                version_key(user),
                i64::try_from(self.ttl.as_secs() * 2 + 60).unwrap_or(i64::MAX),
            )
            .ignore()
            .query_async(&mut conn)
            .await;
        if let Err(err) = moved {
            // The list may be stale until its TTL; say so loudly.
            tracing::error!(error = %err, user = %user, "could not invalidate the chatroom cache");
        }
    }
}
