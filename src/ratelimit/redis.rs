//! The Redis limiter: `INCR` on `gemchat:rl:{scope}:{key}:{window}` with an expiry, shared by
//! every process. When Redis fails, the in-process limiter decides (limits stay on, per
//! process).

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use redis::aio::ConnectionManager;

use super::{MemoryLimiter, RateLimiter, Scope, WINDOW_SECS, window};

pub struct RedisLimiter {
    conn: ConnectionManager,
    fallback: MemoryLimiter,
}

impl RedisLimiter {
    pub fn new(conn: ConnectionManager) -> Self {
        Self {
            conn,
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
        let (index, retry_after) = window(now);
        let counter = format!("gemchat:rl:{}:{key}:{index}", scope.as_str());
        let mut conn = self.conn.clone();
        let counted: redis::RedisResult<(u64,)> = redis::pipe()
            .atomic()
            .incr(&counter, 1)
            .expire(&counter, WINDOW_SECS * 2)
            .ignore()
            .query_async(&mut conn)
            .await;
        match counted {
            Ok((count,)) if count > u64::from(limit) => Err(retry_after),
            Ok(_) => Ok(()),
            Err(err) => {
                tracing::warn!(error = %err, "rate limits fall back to this process (Redis failed)");
                self.fallback.hit(scope, key, limit, now).await
            }
        }
    }
}
