//! Abuse limits beyond the daily quota: a fixed window per key (a minute per IP on the
//! unauthenticated auth routes and per user everywhere else; a UTC day per region for the codes
//! sent by SMS). In-process, or in Redis so every process shares the count; if Redis fails, the
//! in-process limiter takes over.

mod memory;
mod redis;

use async_trait::async_trait;
use chrono::{DateTime, Utc};

pub(crate) use memory::MemoryLimiter;
pub(crate) use redis::RedisLimiter;

use crate::cache::Version;
use crate::users::model::UserId;

/// Which limit a key counts against.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Scope {
    /// Unauthenticated auth routes, per client IP.
    Auth,
    /// Authenticated requests, per user.
    User,
    /// One-time codes sent to the numbers of a region, per UTC day.
    SmsRegion,
}

impl Scope {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::Auth => "auth",
            Self::User => "user",
            Self::SmsRegion => "sms_region",
        }
    }

    /// The length of the window this scope counts over, in seconds.
    pub(crate) fn window_secs(self) -> i64 {
        match self {
            Self::Auth | Self::User => 60,
            Self::SmsRegion => 86_400,
        }
    }

    /// The window `now` falls in, and the seconds until it ends.
    pub(crate) fn window(self, now: DateTime<Utc>) -> (i64, u64) {
        let length = self.window_secs();
        let secs = now.timestamp();
        let index = secs.div_euclid(length);
        let left = length - secs.rem_euclid(length);
        (index, u64::try_from(left).unwrap_or(1))
    }
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
    /// Counts one request of `key` against `limit` per window of `scope`;
    /// `Err(retry_after_secs)` past it.
    async fn hit(&self, scope: Scope, key: &str, limit: u32, now: DateTime<Utc>)
    -> Result<(), u64>;

    /// Counts one request of `user` against the per-user `limit`, and reads the user's
    /// chatroom-list version where that costs nothing more (in Redis: in the same round trip),
    /// so that the list cache can serve the list from this process's memory.
    async fn hit_user(
        &self,
        user: UserId,
        limit: u32,
        now: DateTime<Utc>,
    ) -> Result<Option<Version>, u64> {
        self.hit(Scope::User, &user.to_string(), limit, now)
            .await
            .map(|()| None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn windows_are_whole_minutes_or_utc_days() {
        let at = |s| Utc.timestamp_opt(s, 0).single().unwrap_or_default();
        assert_eq!(Scope::Auth.window(at(120)), (2, 60));
        assert_eq!(Scope::User.window(at(179)), (2, 1));
        assert_eq!(Scope::Auth.window(at(180)), (3, 60));
        assert_eq!(Scope::SmsRegion.window(at(86_400 + 3_600)), (1, 82_800));
        assert_eq!(Scope::SmsRegion.window(at(2 * 86_400 - 1)), (1, 1));
    }
}
