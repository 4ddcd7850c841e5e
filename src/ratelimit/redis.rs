//! The Redis limiter: `INCR` on `gemchat:rl:{scope}:{key}:{window}` with an expiry, shared by
//! every process. When Redis fails, the in-process limiter decides (limits stay on, per
//! process).

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use super::{MemoryLimiter, RateLimiter, Scope};
use crate::cache::Version;
use crate::redis_link::RedisLink;
use crate::users::model::UserId;

pub(crate) struct RedisLimiter {
    link: RedisLink,
    fallback: MemoryLimiter,
}

impl RedisLimiter {
    pub(crate) fn new(link: RedisLink) -> Self {
        Self {
            link,
            fallback: MemoryLimiter::default(),
        }
    }
}

#[async_trait]
impl RateLimiter for RedisLimiter {
    async fn hit(
        &self,
        scope: Scope,
        key: &str,
        limit: u32,
        now: DateTime<Utc>,
    ) -> Result<(), u64> {
        let (counter, retry_after) = counter(scope, key, now);
        let counted = self
            .link
            .call("count a rate limit", |mut conn| async move {
                count(&counter, scope)
                    .query_async::<(u64,)>(&mut conn)
                    .await
            })
            .await;
        match counted {
            Some((count,)) if count > u64::from(limit) => Err(retry_after),
            Some(_) => Ok(()),
            None => self.fallback.hit(scope, key, limit, now).await,
        }
    }

    async fn hit_user(
        &self,
        user: UserId,
        limit: u32,
        now: DateTime<Utc>,
    ) -> Result<Option<Version>, u64> {
        let key = user.to_string();
        let (counter, retry_after) = counter(Scope::User, &key, now);
        let [epoch, version] = crate::cache::version_keys(user);
        let counted = self
            .link
            .call("count a rate limit", |mut conn| async move {
                count(&counter, Scope::User)
                    .get(epoch)
                    .get(version)
                    .query_async::<(u64, Option<u64>, Option<u64>)>(&mut conn)
                    .await
            })
            .await;
        match counted {
            Some((count, ..)) if count > u64::from(limit) => Err(retry_after),
            Some((_, epoch, version)) => Ok(crate::cache::current_version(epoch, version)),
            None => self
                .fallback
                .hit(Scope::User, &key, limit, now)
                .await
                .map(|()| None),
        }
    }
}

/// One more request on `counter` (kept for two windows), as a transaction the caller may add
/// reads to: its answer starts with the count.
fn count(counter: &str, scope: Scope) -> redis::Pipeline {
    let mut pipe = redis::pipe();
    pipe.atomic()
        .incr(counter, 1)
        .expire(counter, scope.window_secs() * 2)
        .ignore();
    pipe
}

/// The counter of `key` in the window `now` falls in, and the seconds until that window ends.
fn counter(scope: Scope, key: &str, now: DateTime<Utc>) -> (String, u64) {
    let (index, retry_after) = scope.window(now);
    (
        format!("gemchat:rl:{}:{key}:{index}", scope.as_str()),
        retry_after,
    )
}
