//! The in-process limiter: a bounded map of per-window counters.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use super::{RateLimiter, Scope};

type Key = (Scope, String, i64);

pub(crate) struct MemoryLimiter {
    counts: moka::future::Cache<Key, Arc<AtomicU32>>,
}

/// A counter lives two windows of its scope: a minute's goes soon, a day's stays a day.
struct TwoWindows;

impl moka::Expiry<Key, Arc<AtomicU32>> for TwoWindows {
    fn expire_after_create(
        &self,
        key: &Key,
        _: &Arc<AtomicU32>,
        _: std::time::Instant,
    ) -> Option<Duration> {
        Some(Duration::from_secs(2 * key.0.window_secs().unsigned_abs()))
    }
}

impl Default for MemoryLimiter {
    fn default() -> Self {
        Self {
            counts: moka::future::Cache::builder()
                .max_capacity(200_000)
                .expire_after(TwoWindows)
                .build(),
        }
    }
}

#[async_trait]
impl RateLimiter for MemoryLimiter {
    async fn hit(
        &self,
        scope: Scope,
        key: &str,
        limit: u32,
        now: DateTime<Utc>,
    ) -> Result<(), u64> {
        let (index, retry_after) = scope.window(now);
        let counter = self
            .counts
            .get_with((scope, key.to_owned(), index), async {
                Arc::new(AtomicU32::new(0))
            })
            .await;
        let count = counter.fetch_add(1, Ordering::Relaxed).saturating_add(1);
        if count > limit {
            Err(retry_after)
        } else {
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[tokio::test]
    async fn a_key_is_limited_per_window() {
        let limiter = MemoryLimiter::default();
        let at = |s| Utc.timestamp_opt(s, 0).single().unwrap_or_default();
        for _ in 0..3 {
            assert_eq!(
                limiter.hit(Scope::Auth, "1.2.3.4", 3, at(600)).await,
                Ok(())
            );
        }
        assert_eq!(
            limiter.hit(Scope::Auth, "1.2.3.4", 3, at(615)).await,
            Err(45)
        );
        assert_eq!(
            limiter.hit(Scope::Auth, "5.6.7.8", 3, at(615)).await,
            Ok(())
        );
        assert_eq!(
            limiter.hit(Scope::User, "1.2.3.4", 3, at(615)).await,
            Ok(())
        );
        assert_eq!(
            limiter.hit(Scope::Auth, "1.2.3.4", 3, at(660)).await,
            Ok(())
        );
    }
}
