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
    async fn append(&self, reply: MessageId, delta: &str);
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
    async fn append(&self, reply: MessageId, delta: &str) {
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
}

impl RedisProgress {
    pub(crate) fn new(link: RedisLink) -> Self {
        Self { link }
    }
}

fn key(reply: MessageId) -> String {
    format!("gemchat:progress:{reply}")
}

#[async_trait]
impl ReplyProgress for RedisProgress {
    async fn append(&self, reply: MessageId, delta: &str) {
        let keep = i64::try_from(KEEP.as_secs()).unwrap_or(600);
        self.link
            .call("record reply progress", |mut conn| async move {
                redis::pipe()
                    .append(key(reply), delta)
                    .ignore()
                    .expire(key(reply), keep)
                    .ignore()
                    .query_async::<()>(&mut conn)
                    .await
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
