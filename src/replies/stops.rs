//! How a worker hears that a reply it streams must stop, whichever process stops it: its user
//! cancelled it, or its chatroom (or the whole account) was deleted. Every reply in flight in
//! a process shares one subscription to the `replies.stop` topic, instead of each subscribing
//! to its room: a room's channel buffers the room's deltas (~6 KiB), which at thousands of
//! replies in flight was a fifth of the process. The stops are published with the room events
//! that cause them (see `messages::events::publish`). A gap on the bus (Redis dropped) wakes
//! every watch to look its reply up in the database.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use serde::{Deserialize, Serialize};
use tokio::sync::Notify;
use uuid::Uuid;

use crate::events::{Delivery, EventBus, Subscription};

/// The topic stops travel on.
pub(crate) const TOPIC: &str = "replies.stop";

/// What must stop.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "stop", content = "id", rename_all = "snake_case")]
pub(crate) enum Stop {
    /// One reply (cancelled).
    Reply(Uuid),
    /// Every reply of a chatroom (deleted).
    Chatroom(Uuid),
}

/// What a watch hears.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Signal {
    Stop,
    /// Stops may have been missed: look the reply up.
    Gap,
}

#[derive(Default)]
struct Flags {
    stop: AtomicBool,
    gap: AtomicBool,
    wake: Notify,
}

struct Watched {
    chatroom: Uuid,
    flags: Arc<Flags>,
}

/// The replies this process streams, by id, and the subscription that stops them.
#[derive(Default)]
pub(crate) struct Stops {
    watched: Arc<Mutex<HashMap<Uuid, Watched>>>,
    listening: OnceLock<()>,
}

impl Stops {
    /// Watches `reply` of `chatroom` from now on (subscribing this process first, once).
    pub(crate) fn watch(&self, events: &EventBus, chatroom: Uuid, reply: Uuid) -> StopWatch {
        self.listening.get_or_init(|| {
            let subscription = events.subscribe(TOPIC);
            tokio::spawn(relay(subscription, Arc::clone(&self.watched)));
        });
        let flags = Arc::new(Flags::default());
        lock(&self.watched).insert(
            reply,
            Watched {
                chatroom,
                flags: Arc::clone(&flags),
            },
        );
        StopWatch {
            watched: Arc::clone(&self.watched),
            reply,
            flags,
        }
    }
}

fn lock(
    watched: &Mutex<HashMap<Uuid, Watched>>,
) -> std::sync::MutexGuard<'_, HashMap<Uuid, Watched>> {
    watched
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Hands each stop to the watches it concerns, and a gap to all of them.
async fn relay(mut subscription: Subscription, watched: Arc<Mutex<HashMap<Uuid, Watched>>>) {
    while let Some(delivery) = subscription.recv().await {
        let stop = match delivery {
            Delivery::Message(payload) => match serde_json::from_str::<Stop>(&payload) {
                Ok(stop) => Some(stop),
                Err(err) => {
                    tracing::warn!(error = %err, "unreadable reply stop; ignored");
                    continue;
                }
            },
            Delivery::Gap => None,
        };
        for (reply, entry) in lock(&watched).iter() {
            let flag = match stop {
                Some(Stop::Reply(id)) if id == *reply => &entry.flags.stop,
                Some(Stop::Chatroom(id)) if id == entry.chatroom => &entry.flags.stop,
                Some(_) => continue,
                None => &entry.flags.gap,
            };
            flag.store(true, Ordering::Release);
            entry.flags.wake.notify_one();
        }
    }
}

/// One reply's watch; it stops watching when dropped.
pub(crate) struct StopWatch {
    watched: Arc<Mutex<HashMap<Uuid, Watched>>>,
    reply: Uuid,
    flags: Arc<Flags>,
}

impl StopWatch {
    /// The next signal: `Stop` (and again on every later call), or `Gap`. Cancel-safe.
    pub(crate) async fn next(&self) -> Signal {
        loop {
            if self.flags.stop.load(Ordering::Acquire) {
                return Signal::Stop;
            }
            if self.flags.gap.swap(false, Ordering::AcqRel) {
                return Signal::Gap;
            }
            // A signal raised since the checks left a permit: this returns at once.
            self.flags.wake.notified().await;
        }
    }
}

impl Drop for StopWatch {
    fn drop(&mut self) {
        lock(&self.watched).remove(&self.reply);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stops_travel_as_tagged_json() {
        let id = Uuid::nil();
        let text = serde_json::to_string(&Stop::Reply(id)).unwrap_or_default();
        assert_eq!(
            text,
            r#"{"stop":"reply","id":"00000000-0000-0000-0000-000000000000"}"#
        );
        assert_eq!(
            serde_json::from_str::<Stop>(&text).ok(),
            Some(Stop::Reply(id))
        );
    }

    #[tokio::test]
    async fn a_watch_hears_its_reply_and_its_room_not_others() {
        let events = EventBus::in_process();
        let stops = Stops::default();
        let (room, other_room) = (Uuid::now_v7(), Uuid::now_v7());
        let (mine, other) = (Uuid::now_v7(), Uuid::now_v7());
        let watch = stops.watch(&events, room, mine);
        let bystander = stops.watch(&events, other_room, other);
        let publish = |stop: Stop| {
            let payload = serde_json::to_string(&stop).unwrap_or_default();
            let events = &events;
            async move { events.publish(TOPIC, &payload).await }
        };
        publish(Stop::Reply(other)).await;
        assert_eq!(bystander.next().await, Signal::Stop);
        let quiet = tokio::time::timeout(std::time::Duration::from_millis(50), watch.next()).await;
        assert!(quiet.is_err(), "another reply's stop is not mine");
        publish(Stop::Chatroom(room)).await;
        assert_eq!(watch.next().await, Signal::Stop);
        assert_eq!(watch.next().await, Signal::Stop, "and it stays stopped");
        drop(watch);
        assert_eq!(
            lock(&stops.watched).len(),
            1,
            "a dropped watch is forgotten"
        );
    }
}
