//! The Redis user cache, shared by every process. `gemchat:rooms:{user}` holds the user's
//! version (moved on by `INCR`), `gemchat:rooms:epoch` a global epoch (moved on whenever a
//! process regains Redis after an outage, since invalidations it could not send were lost),
//! and `gemchat:rooms:{user}:{view}:{epoch}.{version}` each view ([`Body::encode`]). One round
//! trip a read; none when the request already read the version (with its rate limit) and this
//! process kept the view.
//!
//! The epoch starts from the clock (milliseconds, within 31 bits) when Redis has none, so a
//! Redis that lost its data does not count versions again from where an older body that a
//! process still keeps was stored.

use std::time::Duration;

use anyhow::Context;
use async_trait::async_trait;
use bytes::Bytes;
use chrono::{DateTime, Utc};

use super::{Body, UserCache, Version, View};
use crate::redis_link::RedisLink;
use crate::users::model::UserId;

const EPOCH_KEY: &str = "gemchat:rooms:epoch";

/// Sets the epoch from the clock if there is none (see the module's documentation).
const START_EPOCH: &str = r"
local function start_epoch()
  local now = redis.call('TIME')
  local epoch = (tonumber(now[1]) % 2147483) * 1000 + math.floor(tonumber(now[2]) / 1000)
  redis.call('SET', KEYS[1], epoch, 'NX')
  return redis.call('GET', KEYS[1])
end
";

/// Reads the epoch, the user's version and the view (`ARGV[1]`) stored under both in one
/// round trip.
const GET_SCRIPT: &str = r"
local epoch = redis.call('GET', KEYS[1]) or start_epoch()
local version = redis.call('GET', KEYS[2]) or '0'
return {epoch, version, redis.call('GET', KEYS[2] .. ':' .. ARGV[1] .. ':' .. epoch .. '.' .. version)}
";

/// Moves the epoch on (when a process regains Redis), or starts it if Redis lost it.
const NEXT_EPOCH_SCRIPT: &str = r"
if redis.call('EXISTS', KEYS[1]) == 1 then return redis.call('INCR', KEYS[1]) end
return start_epoch()
";

/// The most body bytes one process keeps in memory.
const NEAR_BYTES: u64 = 16 * 1024 * 1024;

pub(crate) struct RedisUserCache {
    link: RedisLink,
    ttl: Duration,
    get: redis::Script,
    /// The views this process served, each with the version it was stored under.
    near: moka::future::Cache<(UserId, View), (Version, Body)>,
}

impl RedisUserCache {
    /// A cache on `link`; registers the epoch bump that runs when Redis comes back.
    pub(crate) fn new(link: RedisLink, ttl: Duration) -> Self {
        let next_epoch = format!("{START_EPOCH}{NEXT_EPOCH_SCRIPT}");
        link.on_recovery(
            redis::cmd("EVAL")
                .arg(next_epoch)
                .arg(1)
                .arg(EPOCH_KEY)
                .clone(),
        );
        Self {
            link,
            ttl,
            get: redis::Script::new(&format!("{START_EPOCH}{GET_SCRIPT}")),
            near: moka::future::Cache::builder()
                .max_capacity(NEAR_BYTES)
                .weigher(|_, (_, body): &(Version, Body)| {
                    u32::try_from(body.json.len())
                        .unwrap_or(u32::MAX)
                        .saturating_add(64)
                })
                .time_to_live(ttl)
                .build(),
        }
    }

    async fn keep(&self, user: UserId, view: View, version: Version, body: Body) {
        if version != Version::MAX {
            self.near.insert((user, view), (version, body)).await;
        }
    }
}

fn version_key(user: UserId) -> String {
    format!("gemchat:rooms:{user}")
}

/// How long a user's version outlives its last move: longer than every body stored under an
/// older one, so it never goes back to a number whose body could still be there.
fn version_lifetime(ttl: Duration) -> i64 {
    i64::try_from(ttl.as_secs() * 2 + 60).unwrap_or(i64::MAX)
}

/// Moves the user's version on: the pipeline [`UserCache::invalidate`] sends.
fn next_version(user: UserId, ttl: Duration) -> redis::Pipeline {
    let mut pipe = redis::pipe();
    pipe.atomic()
        .incr(version_key(user), 1)
        .ignore()
        .expire(version_key(user), version_lifetime(ttl))
        .ignore();
    pipe
}

/// Invalidates `user` from a process that serves nothing (`gemchat admin`): one connection to
/// `redis_url`, one pipeline.
pub(crate) async fn invalidate_user(
    redis_url: &str,
    user: UserId,
    ttl: Duration,
) -> anyhow::Result<()> {
    let client = redis::Client::open(redis_url).context("parsing REDIS_URL")?;
    let mut conn = client
        .get_multiplexed_async_connection()
        .await
        .context("connecting to Redis")?;
    next_version(user, ttl)
        .query_async::<()>(&mut conn)
        .await
        .context("moving the user's cache version on")
}

/// The keys a reader of `user`'s current version (`GET`s both) passes to [`current_version`].
pub(crate) fn version_keys(user: UserId) -> [String; 2] {
    [EPOCH_KEY.to_owned(), version_key(user)]
}

/// The version read from the keys of [`version_keys`]; unknown while Redis has no epoch.
pub(crate) fn current_version(epoch: Option<u64>, version: Option<u64>) -> Option<Version> {
    epoch.map(|epoch| pack(epoch, version.unwrap_or(0)))
}

/// The epoch and the user's version travel to `put` packed in one [`Version`]: the epoch in
/// the high half, the version in the low half. Each wraps (the epoch at 2^31, so that no packed
/// value is `Version::MAX`), far beyond what a counter reaches within a TTL.
fn pack(epoch: u64, version: u64) -> Version {
    ((epoch & 0x7FFF_FFFF) << 32) | (version & 0xFFFF_FFFF)
}

fn view_key(user: UserId, view: View, packed: Version) -> String {
    format!(
        "{}:{}:{}.{}",
        version_key(user),
        view.as_str(),
        packed >> 32,
        packed & 0xFFFF_FFFF
    )
}

#[async_trait]
impl UserCache for RedisUserCache {
    async fn get(
        &self,
        user: UserId,
        view: View,
        current: Option<Version>,
        now: DateTime<Utc>,
    ) -> Result<Bytes, Version> {
        if let Some(current) = current
            && let Some((version, body)) = self.near.get(&(user, view)).await
            && version == current
        {
            return if body.is_valid_at(now) {
                Ok(body.json)
            } else {
                Err(version)
            };
        }
        let found = self
            .link
            .call("read the user cache", |mut conn| async move {
                self.get
                    .key(EPOCH_KEY)
                    .key(version_key(user))
                    .arg(view.as_str())
                    .invoke_async::<(u64, u64, Option<Vec<u8>>)>(&mut conn)
                    .await
            })
            .await;
        match found {
            Some((epoch, version, stored)) => {
                let version = pack(epoch, version);
                match stored.and_then(Body::decode) {
                    Some(body) if body.is_valid_at(now) => {
                        let json = body.json.clone();
                        self.keep(user, view, version, body).await;
                        Ok(json)
                    }
                    _ => Err(version),
                }
            }
            // A version nobody stores under: the caller's put is dropped.
            None => Err(Version::MAX),
        }
    }

    async fn put(&self, user: UserId, view: View, version: Version, body: Body) {
        if version == Version::MAX {
            return;
        }
        let ttl = self.ttl.as_secs().max(1);
        let stored = body.encode();
        self.keep(user, view, version, body).await;
        self.link
            .call("fill the user cache", |mut conn| async move {
                redis::cmd("SET")
                    .arg(view_key(user, view, version))
                    .arg(stored.as_slice())
                    .arg("EX")
                    .arg(ttl)
                    .query_async::<()>(&mut conn)
                    .await
            })
            .await;
    }

    async fn invalidate(&self, user: UserId) {
        // If Redis cannot be reached, the epoch moves on when it can (see `new`), which drops
        // this user's views with every other.
        let pipe = next_version(user, self.ttl);
        self.link
            .call("invalidate the user cache", |mut conn| async move {
                pipe.query_async::<()>(&mut conn).await
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
            view_key(user, View::Me, pack(3, 7)),
            format!("gemchat:rooms:{user}:me:3.7")
        );
        assert_ne!(pack(1, 0), pack(0, 1));
        assert_ne!(pack(u64::MAX, u64::MAX), Version::MAX);
    }
}
