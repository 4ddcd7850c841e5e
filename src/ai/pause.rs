//! Gemini's rate limit belongs to the project, not to a reply: when one call is told 429
//! `RESOURCE_EXHAUSTED` (a per-minute limit), every AI call of every process holds off until
//! the delay Gemini asked for has passed, rather than each queued reply finding out on its own
//! (and spending an attempt on it). Replies and titles that come due meanwhile are handed back
//! to the queue until then, their attempt not counted. The pause is kept in-process, or in
//! Redis when configured: one key per provider endpoint and API key, so the processes that
//! share a project share its pause. A Redis that cannot be read means no pause.

use std::sync::Mutex;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sha2::{Digest, Sha256};

use crate::app::App;
use crate::redis_link::RedisLink;

/// How long calls hold off after a rate limit that names no delay.
const DEFAULT_PAUSE: Duration = Duration::from_secs(2);
/// The longest pause one answer can ask for.
const MAX_PAUSE: Duration = Duration::from_secs(60);

/// Until when AI calls hold off.
#[async_trait]
pub trait AiPause: Send + Sync {
    /// The end of the current pause, if one was set (it may have passed).
    async fn until(&self) -> Option<DateTime<Utc>>;
    /// Holds calls off until `until`; a longer pause already set stays.
    async fn extend(&self, until: DateTime<Utc>);
}

/// The end of the pause in force at `now`, if any.
pub(crate) async fn paused_at(app: &App, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
    app.ai_pause.until().await.filter(|until| *until > now)
}

/// After a rate-limited answer: every AI call holds off for the delay asked (or
/// `DEFAULT_PAUSE`), at most `MAX_PAUSE`.
pub(crate) async fn after_rate_limit(app: &App, now: DateTime<Utc>, asked: Option<Duration>) {
    let pause = asked.unwrap_or(DEFAULT_PAUSE).min(MAX_PAUSE);
    let until = now + chrono::Duration::from_std(pause).unwrap_or_default();
    tracing::warn!(%until, "the AI provider is rate limited; AI calls hold off until then");
    metrics::counter!(crate::metrics::AI_PAUSES).increment(1);
    app.ai_pause.extend(until).await;
}

/// The pause of one process.
#[derive(Default)]
pub(crate) struct MemoryPause(Mutex<Option<DateTime<Utc>>>);

#[async_trait]
impl AiPause for MemoryPause {
    async fn until(&self) -> Option<DateTime<Utc>> {
        *self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    async fn extend(&self, until: DateTime<Utc>) {
        let mut current = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if current.is_none_or(|current| current < until) {
            *current = Some(until);
        }
    }
}

/// The pause shared through Redis: the end as Unix milliseconds under one key per project.
pub(crate) struct RedisPause {
    link: RedisLink,
    key: String,
    extend: redis::Script,
}

/// Sets `KEYS[1]` to `ARGV[1]` unless it holds a later end; it expires `ARGV[2]` ms later.
const EXTEND_SCRIPT: &str = r"
local current = tonumber(redis.call('GET', KEYS[1]) or '0')
if tonumber(ARGV[1]) > current then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
end
return 1
";

impl RedisPause {
    /// `scope` names the project: the provider's endpoint and key (hashed, never stored).
    pub(crate) fn new(link: RedisLink, scope: &str) -> Self {
        let digest = hex::encode(Sha256::digest(scope.as_bytes()));
        Self {
            link,
            key: format!("gemchat:ai:pause:{}", &digest[..16]),
            extend: redis::Script::new(EXTEND_SCRIPT),
        }
    }
}

#[async_trait]
impl AiPause for RedisPause {
    async fn until(&self) -> Option<DateTime<Utc>> {
        let key = self.key.as_str();
        let millis = self
            .link
            .call("read the AI pause", |mut conn| async move {
                redis::cmd("GET")
                    .arg(key)
                    .query_async::<Option<i64>>(&mut conn)
                    .await
            })
            .await
            .flatten()?;
        DateTime::from_timestamp_millis(millis)
    }

    async fn extend(&self, until: DateTime<Utc>) {
        let (key, script) = (self.key.as_str(), &self.extend);
        // Kept a little past its end, then gone.
        let keep_ms = (MAX_PAUSE.as_millis() * 2).to_string();
        self.link
            .call("set the AI pause", |mut conn| async move {
                script
                    .key(key)
                    .arg(until.timestamp_millis())
                    .arg(keep_ms)
                    .invoke_async::<i64>(&mut conn)
                    .await
                    .map(drop)
            })
            .await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_pause_is_extended_never_shortened() {
        let pause = MemoryPause::default();
        assert_eq!(pause.until().await, None);
        let now = Utc::now();
        let later = now + chrono::Duration::seconds(20);
        pause.extend(later).await;
        pause.extend(now + chrono::Duration::seconds(5)).await;
        assert_eq!(pause.until().await, Some(later));
    }
}
