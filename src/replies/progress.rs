//! The content so far of replies being streamed, so a listener that connects or reconnects
//! mid-reply can be sent everything before the live deltas. The worker appends each delta
//! here before publishing it. In-process, or in Redis when configured (so an API process can
//! read what a worker process streams). Best-effort: failures are logged, never raised.

use std::time::Duration;

use async_trait::async_trait;

use crate::messages::model::MessageId;
use crate::redis_link::RedisLink;

/// How long an abandoned buffer (its worker died) is kept.
const KEEP: Duration = Duration::from_secs(600);

#[async_trait]
pub trait ReplyProgress: Send + Sync {
    /// Adds `delta` to the reply's content, which was `before` until now. A buffer that does not
    /// hold `before` (Redis restarted and lost it) is rewritten whole, never left with a hole.
    async fn append(&self, reply: MessageId, before: &str, delta: &str);
    /// The content streamed so far, if the reply is being streamed.
    async fn get(&self, reply: MessageId) -> Option<String>;
    async fn clear(&self, reply: MessageId);
}

pub(crate) struct MemoryProgress {
    buffers: moka::future::Cache<MessageId, String>,
}

impl Default for MemoryProgress {
    fn default() -> Self {
        Self {
            buffers: moka::future::Cache::builder()
                .max_capacity(10_000)
                .time_to_idle(KEEP)
                .build(),
        }
    }
}

#[async_trait]
impl ReplyProgress for MemoryProgress {
    async fn append(&self, reply: MessageId, _before: &str, delta: &str) {
        self.buffers
            .entry(reply)
            .and_upsert_with(|current| {
                let mut content = current.map(|e| e.into_value()).unwrap_or_default();
                content.push_str(delta);
                std::future::ready(content)
            })
            .await;
    }

    async fn get(&self, reply: MessageId) -> Option<String> {
        self.buffers.get(&reply).await
    }

    async fn clear(&self, reply: MessageId) {
        self.buffers.invalidate(&reply).await;
    }
}

pub(crate) struct RedisProgress {
    link: RedisLink,
    append: redis::Script,
}

/// Appends `ARGV[1]` only to a buffer of `ARGV[2]` bytes (what the worker had before this
/// delta), renewing its expiry (`ARGV[3]` s); answers 0, changing nothing, otherwise.
const APPEND_SCRIPT: &str = r"
if redis.call('STRLEN', KEYS[1]) ~= tonumber(ARGV[2]) then return 0 end
redis.call('APPEND', KEYS[1], ARGV[1])
redis.call('EXPIRE', KEYS[1], ARGV[3])
return 1
";

impl RedisProgress {
    pub(crate) fn new(link: RedisLink) -> Self {
        Self {
            link,
            append: redis::Script::new(APPEND_SCRIPT),
        }
    }
}

fn key(reply: MessageId) -> String {
    format!("gemchat:progress:{reply}")
}

#[async_trait]
impl ReplyProgress for RedisProgress {
    async fn append(&self, reply: MessageId, before: &str, delta: &str) {
        let keep = i64::try_from(KEEP.as_secs()).unwrap_or(600);
        let script = &self.append;
        self.link
            .call("record reply progress", |mut conn| async move {
                let appended: bool = script
                    .key(key(reply))
                    .arg(delta)
                    .arg(before.len())
                    .arg(keep)
                    .invoke_async(&mut conn)
                    .await?;
                if !appended {
                    // Lost (or never written, while Redis was away): the whole content so far.
                    let whole = format!("{before}{delta}");
                    redis::cmd("SET")
                        .arg(key(reply))
                        .arg(whole)
                        .arg("EX")
                        .arg(keep)
                        .query_async::<()>(&mut conn)
                        .await?;
                }
                Ok(())
            })
            .await;
    }

    async fn get(&self, reply: MessageId) -> Option<String> {
        self.link
            .call("read reply progress", |mut conn| async move {
                redis::cmd("GET")
                    .arg(key(reply))
                    .query_async::<Option<String>>(&mut conn)
                    .await
            })
            .await
            .flatten()
    }

    async fn clear(&self, reply: MessageId) {
        self.link
            .call("clear reply progress", |mut conn| async move {
                redis::cmd("DEL")
                    .arg(key(reply))
                    .query_async::<()>(&mut conn)
                    .await
            })
            .await;
    }
}
