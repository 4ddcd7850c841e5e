//! The Redis list cache, shared by every process. `gemchat:rooms:{user}` holds the user's
//! version (moved on by `INCR`), `gemchat:rooms:epoch` a global epoch (moved on whenever a
//! process regains Redis after an outage, since invalidations it could not send were lost),
//! and `gemchat:rooms:{user}:{epoch}.{version}` the list. One round trip a read.

use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;

use super::{ListCache, Version};
use crate::redis_link::RedisLink;
use crate::users::model::UserId;

const EPOCH_KEY: &str = "gemchat:rooms:epoch";

/// Reads the epoch, the user's version and the list stored under both in one round trip.
const GET_SCRIPT: &str = r"
local epoch = redis.call('GET', KEYS[1]) or '0'
local version = redis.call('GET', KEYS[2]) or '0'
return {epoch, version, redis.call('GET', KEYS[2] .. ':' .. epoch .. '.' .. version)}
";

pub(crate) struct RedisListCache {
    link: RedisLink,
    ttl: Duration,
    get: redis::Script,
}

impl RedisListCache {
    /// A cache on `link`; registers the epoch bump that runs when Redis comes back.
    pub(crate) fn new(link: RedisLink, ttl: Duration) -> Self {
        link.on_recovery(redis::Cmd::incr(EPOCH_KEY, 1));
        Self {
            link,
            ttl,
            get: redis::Script::new(GET_SCRIPT),
        }
    }
}

fn version_key(user: UserId) -> String {
    format!("gemchat:rooms:{user}")
}

/// The epoch and the user's version travel to `put` packed in one [`Version`]: the epoch in
/// the high half, the version in the low half. Each wraps (the epoch at 2^31, so that no packed
/// value is `Version::MAX`), far beyond what a counter reaches within a TTL.
fn pack(epoch: u64, version: u64) -> Version {
    ((epoch & 0x7FFF_FFFF) << 32) | (version & 0xFFFF_FFFF)
}

fn list_key(user: UserId, packed: Version) -> String {
    format!(
        "{}:{}.{}",
        version_key(user),
        packed >> 32,
        packed & 0xFFFF_FFFF
    )
}

#[async_trait]
impl ListCache for RedisListCache {
    async fn get(&self, user: UserId) -> Result<Bytes, Version> {
        let found = self
            .link
            .call("read the chatroom cache", |mut conn| async move {
                self.get
                    .key(EPOCH_KEY)
                    .key(version_key(user))
                    .invoke_async::<(u64, u64, Option<Vec<u8>>)>(&mut conn)
                    .await
            })
            .await;
        match found {
            Some((_, _, Some(list))) => Ok(Bytes::from(list)),
            Some((epoch, version, None)) => Err(pack(epoch, version)),
            // A version nobody stores under: the caller's put is dropped.
            None => Err(Version::MAX),
        }
    }

    async fn put(&self, user: UserId, version: Version, list: Bytes) {
        if version == Version::MAX {
            return;
        }
        let ttl = self.ttl.as_secs().max(1);
        self.link
            .call("fill the chatroom cache", |mut conn| async move {
                redis::cmd("SET")
                    .arg(list_key(user, version))
                    .arg(list.as_ref())
                    .arg("EX")
                    .arg(ttl)
                    .query_async::<()>(&mut conn)
                    .await
            })
            .await;
    }

    async fn invalidate(&self, user: UserId) {
        // The version outlives every list stored under an older one, so it never goes back
        // to a number whose list could still be there. If Redis cannot be reached, the epoch
        // moves on when it can (see `new`), which drops this list with every other.
        let keep = i64::try_from(self.ttl.as_secs() * 2 + 60).unwrap_or(i64::MAX);
        self.link
            .call("invalidate the chatroom cache", |mut conn| async move {
                redis::pipe()
                    .atomic()
                    .incr(version_key(user), 1)
                    .ignore()
                    .expire(version_key(user), keep)
                    .ignore()
                    .query_async::<()>(&mut conn)
                    .await
            })
            .await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn packed_versions_name_their_epoch_and_version() {
        let user = UserId(uuid::Uuid::nil());
        assert_eq!(
            list_key(user, pack(3, 7)),
            format!("gemchat:rooms:{user}:3.7")
        );
        assert_ne!(pack(1, 0), pack(0, 1));
        assert_ne!(pack(u64::MAX, u64::MAX), Version::MAX);
    }
}
