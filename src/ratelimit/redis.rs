//! The Redis limiter: `INCR` on `gemchat:rl:{scope}:{key}:{window}` with an expiry, shared by
//! every process. When Redis fails, the in-process limiter decides (limits stay on, per
//! process).

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use super::{MemoryLimiter, RateLimiter, Scope};
use crate::redis_link::RedisLink;

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
        let (index, retry_after) = scope.window(now);
        let counter = format!("gemchat:rl:{}:{key}:{index}", scope.as_str());
        let counted = self
            .link
            .call("count a rate limit", |mut conn| async move {
                redis::pipe()
                    .atomic()
                    .incr(&counter, 1)
                    .expire(&counter, scope.window_secs() * 2)
                    .ignore()
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
}
