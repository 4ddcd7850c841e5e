//! The Redis transport: `PUBLISH gemchat:<topic>` out, and one `PSUBSCRIBE gemchat:*` per
//! process in, relayed to the local hub. Pub/sub needs a connection of its own.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use futures::StreamExt;
use redis::AsyncCommands;

use super::hub::Hub;
use super::{CHANNEL_PREFIX, Delivery};
use crate::redis_link::RedisLink;

pub(super) struct RedisTransport {
    publisher: RedisLink,
    hub: Arc<Hub>,
    relay: tokio::task::JoinHandle<()>,
}

impl RedisTransport {
    /// Subscribes first, so that nothing published after this returns is missed, then
    /// relays in the background.
    pub(super) async fn start(
        client: redis::Client,
        publisher: RedisLink,
        hub: Arc<Hub>,
    ) -> anyhow::Result<Self> {
        let first = subscribe(&client)
            .await
            .context("subscribing to the event bus on Redis")?;
        let relay = tokio::spawn(relay(client, Arc::clone(&hub), first));
        Ok(Self {
            publisher,
            hub,
            relay,
        })
    }

    /// Publishes through Redis; when Redis cannot take it, delivers to this process's
    /// subscribers only (they are the ones it can still reach).
    pub(super) async fn publish(&self, topic: &str, payload: &str) {
        let channel = format!("{CHANNEL_PREFIX}{topic}");
        let sent = self
            .publisher
            .call("publish an event", |mut conn| async move {
                conn.publish::<_, _, i64>(&channel, payload).await
            })
            .await;
        if sent.is_none() {
            self.hub
                .deliver(topic, Delivery::Message(Arc::from(payload)));
        }
    }
}

impl Drop for RedisTransport {
    fn drop(&mut self) {
        self.relay.abort();
    }
}

/// Relays Redis messages to the hub for as long as the process runs, reconnecting after a
/// drop. Subscribers get a `Gap` when the link drops and again when it is back: what other
/// processes published meanwhile never arrived. (In between, publications of this process
/// still reach its own subscribers: see `publish`.)
async fn relay(client: redis::Client, hub: Arc<Hub>, first: redis::aio::PubSub) {
    let mut backoff = Duration::from_millis(100);
    let mut next = Some(first);
    // Set once the first subscription is lost; every later one is a restoration.
    let mut lost = false;
    loop {
        let connected = match next.take() {
            Some(pubsub) => Ok(pubsub),
            None => subscribe(&client).await,
        };
        match connected {
            Ok(mut pubsub) => {
                if lost {
                    tracing::info!("event bus: Redis subscription restored");
                    hub.gap_everywhere();
                }
                backoff = Duration::from_millis(100);
                let mut messages = pubsub.on_message();
                while let Some(message) = messages.next().await {
                    let channel = message.get_channel_name();
                    let Some(topic) = channel.strip_prefix(CHANNEL_PREFIX) else {
                        continue;
                    };
                    match message.get_payload::<String>() {
                        Ok(payload) => hub.deliver(topic, Delivery::Message(Arc::from(payload))),
                        Err(err) => tracing::warn!(error = %err, channel, "event bus: bad payload"),
                    }
                }
                tracing::warn!(
                    "event bus: Redis subscription lost; live events reach only listeners on \
                     the process that publishes them until it is back"
                );
                lost = true;
                hub.gap_everywhere();
            }
            Err(err) => {
                tracing::debug!(error = %err, "event bus: cannot subscribe on Redis yet");
            }
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_secs(5));
    }
}

async fn subscribe(client: &redis::Client) -> redis::RedisResult<redis::aio::PubSub> {
    let mut pubsub = client.get_async_pubsub().await?;
    pubsub.psubscribe(format!("{CHANNEL_PREFIX}*")).await?;
    Ok(pubsub)
}
