//! Abuse limits beyond the daily quota: a fixed one-minute window per key (an IP for the
//! unauthenticated auth routes, a user for everything else). In-process, or in Redis so every
//! process shares the count; if Redis fails, the in-process limiter takes over.

mod memory;
mod redis;

use async_trait::async_trait;
use chrono::{DateTime, Utc};

pub(crate) use memory::MemoryLimiter;
pub(crate) use redis::RedisLimiter;

/// The window every limit counts over.
pub(crate) const WINDOW_SECS: i64 = 60;

/// Which limit a key counts against.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Scope {
    /// Unauthenticated auth routes, per client IP.
    Auth,
    /// Authenticated requests, per user.
    User,
}

impl Scope {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::Auth => "auth",
            Self::User => "user",
        }
    }
}

/// The window `now` falls in, and the seconds until it ends.
pub(crate) fn window(now: DateTime<Utc>) -> (i64, u64) {
    let secs = now.timestamp();
    let index = secs.div_euclid(WINDOW_SECS);
    let left = WINDOW_SECS - secs.rem_euclid(WINDOW_SECS);
    (index, u64::try_from(left).unwrap_or(1))
}

/// The refusal of a request over its limit.
pub(crate) fn refused(scope: Scope, retry_after: u64) -> crate::error::AppError {
    metrics::counter!("gemchat_rate_limited_total", "scope" => scope.as_str()).increment(1);
    crate::error::AppError::RateLimited {
        code: "rate_limited",
        detail: format!("Too many requests; try again in {retry_after} s."),
        retry_after,
    }
}

#[async_trait]
pub(crate) trait RateLimiter: Send + Sync {
    /// Counts one request of `key` against `limit` per minute; `Err(retry_after_secs)` past it.
    async fn hit(&self, scope: Scope, key: &str, limit: u32, now: DateTime<Utc>)
    -> Result<(), u64>;
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn windows_are_whole_minutes() {
        let at = |s| Utc.timestamp_opt(s, 0).single().unwrap_or_default();
        assert_eq!(window(at(120)), (2, 60));
        assert_eq!(window(at(179)), (2, 1));
        assert_eq!(window(at(180)), (3, 60));
    }
}
