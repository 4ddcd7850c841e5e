//! Local fan-out: one broadcast channel per topic with live subscribers.

use std::collections::HashMap;
use std::sync::Mutex;

use tokio::sync::broadcast;

use super::Delivery;

/// Deliveries buffered per topic for a slow subscriber before it sees a `Gap`.
const BUFFER: usize = 128;

#[derive(Default)]
pub(super) struct Hub {
    topics: Mutex<HashMap<String, broadcast::Sender<Delivery>>>,
}

impl Hub {
    pub(super) fn subscribe(&self, topic: &str) -> broadcast::Receiver<Delivery> {
        let mut topics = self.topics.lock().unwrap_or_else(|p| p.into_inner());
        topics
            .entry(topic.to_owned())
            .or_insert_with(|| broadcast::channel(BUFFER).0)
            .subscribe()
    }

    /// Hands `delivery` to the topic's local subscribers; forgets topics nobody listens to.
    pub(super) fn deliver(&self, topic: &str, delivery: Delivery) {
        let mut topics = self.topics.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(sender) = topics.get(topic)
            && sender.send(delivery).is_err()
        {
            topics.remove(topic);
        }
    }

    /// Tells every subscriber that messages may have been missed.
    pub(super) fn gap_everywhere(&self) {
        let mut topics = self.topics.lock().unwrap_or_else(|p| p.into_inner());
        topics.retain(|_, sender| sender.send(Delivery::Gap).is_ok());
    }
}
