//! The Redis transport: `PUBLISH gemchat:<topic>` out, and one `PSUBSCRIBE gemchat:*` per
//! process in, relayed to the local hub. Pub/sub needs a connection of its own.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use futures::StreamExt;
use redis::AsyncCommands;

use super::hub::Hub;
use super::{CHANNEL_PREFIX, Delivery};

pub(super) struct RedisTransport {
    publisher: redis::aio::ConnectionManager,
    relay: tokio::task::JoinHandle<()>,
}

impl RedisTransport {
    /// Subscribes first, so that nothing published after this returns is missed, then
    /// relays in the background.
    pub(super) async fn start(
        client: redis::Client,
        publisher: redis::aio::ConnectionManager,
        hub: Arc<Hub>,
    ) -> anyhow::Result<Self> {
        let first = subscribe(&client)
            .await
            .context("subscribing to the event bus on Redis")?;
        let relay = tokio::spawn(relay(client, hub, first));
        Ok(Self { publisher, relay })
    }

    pub(super) async fn publish(&self, topic: &str, payload: &str) -> anyhow::Result<()> {
        let mut conn = self.publisher.clone();
        let channel = format!("{CHANNEL_PREFIX}{topic}");
        let _: i64 = conn
            .publish(&channel, payload)
            .await
            .with_context(|| format!("publishing on {channel}"))?;
        Ok(())
    }
}

impl Drop for RedisTransport {
    fn drop(&mut self) {
        self.relay.abort();
    }
}

/// Relays Redis messages to the hub for as long as the process runs, reconnecting after a
/// drop. After a reconnect every subscriber gets a `Gap`: messages sent meanwhile are lost.
async fn relay(client: redis::Client, hub: Arc<Hub>, first: redis::aio::PubSub) {
    let mut reconnecting = false;
    let mut backoff = Duration::from_millis(100);
    let mut next = Some(first);
    loop {
        let connected = match next.take() {
            Some(pubsub) => Ok(pubsub),
            None => subscribe(&client).await,
        };
        match connected {
            Ok(mut pubsub) => {
                if reconnecting {
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
                tracing::warn!("event bus: Redis subscription lost; reconnecting");
            }
            Err(err) => {
                tracing::warn!(error = %err, "event bus: cannot subscribe on Redis; retrying");
            }
        }
        reconnecting = true;
        // Until the link is back, subscribers cannot trust what they hold.
        hub.gap_everywhere();
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_secs(5));
    }
}

async fn subscribe(client: &redis::Client) -> redis::RedisResult<redis::aio::PubSub> {
    let mut pubsub = client.get_async_pubsub().await?;
    pubsub.psubscribe(format!("{CHANNEL_PREFIX}*")).await?;
    Ok(pubsub)
}
