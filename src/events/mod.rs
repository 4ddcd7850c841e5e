//! The event bus: publish a message on a topic and every subscriber in every process receives
//! it. Each process fans out locally through one broadcast channel per topic; with Redis
//! configured, publications travel through one Redis pub/sub subscription per process, so
//! subscribers in other processes get them too. Delivery is best-effort: a subscriber that may
//! have missed messages (it lagged, or the Redis link dropped) receives [`Delivery::Gap`].

mod hub;
mod redis;

use std::sync::Arc;

use hub::Hub;

/// Redis channels are named `gemchat:<topic>`.
const CHANNEL_PREFIX: &str = "gemchat:";

/// What a subscription yields.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Delivery {
    Message(Arc<str>),
    /// Messages may have been lost here; derived state should be rebuilt from the source.
    Gap,
}

/// A stream of deliveries on one topic.
pub struct Subscription(tokio::sync::broadcast::Receiver<Delivery>);

impl Subscription {
    /// The next delivery; `None` once the bus is gone.
    pub(crate) async fn recv(&mut self) -> Option<Delivery> {
        use tokio::sync::broadcast::error::RecvError;
        match self.0.recv().await {
            Ok(delivery) => Some(delivery),
            Err(RecvError::Lagged(_)) => Some(Delivery::Gap),
            Err(RecvError::Closed) => None,
        }
    }
}

/// How publications leave this process.
enum Transport {
    /// Single process: straight to the local hub.
    Memory,
    Redis(redis::RedisTransport),
}

pub(crate) struct EventBus {
    hub: Arc<Hub>,
    transport: Transport,
}

impl EventBus {
    /// A bus for one process.
    pub(crate) fn in_process() -> Self {
        Self {
            hub: Arc::new(Hub::default()),
            transport: Transport::Memory,
        }
    }

    /// A bus shared by every process connected to the same Redis. Starts the task that relays
    /// Redis messages to local subscribers (it reconnects by itself).
    pub(crate) async fn redis(
        client: ::redis::Client,
        publisher: crate::redis_link::RedisLink,
    ) -> anyhow::Result<Self> {
        let hub = Arc::new(Hub::default());
        let transport = redis::RedisTransport::start(client, publisher, Arc::clone(&hub)).await?;
        Ok(Self {
            hub,
            transport: Transport::Redis(transport),
        })
    }

    /// Publishes `payload` on `topic` to every subscriber of every process (best-effort: while
    /// Redis is unreachable, to this process's subscribers only).
    pub(crate) async fn publish(&self, topic: &str, payload: &str) {
        match &self.transport {
            Transport::Memory => self
                .hub
                .deliver(topic, Delivery::Message(Arc::from(payload))),
            Transport::Redis(redis) => redis.publish(topic, payload).await,
        }
    }

    pub(crate) fn subscribe(&self, topic: &str) -> Subscription {
        Subscription(self.hub.subscribe(topic))
    }
}
