//! Chatroom events on the event bus (topic `chatroom.{id}`), as the SSE endpoint sends them.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::model::{Message, MessageView};
use crate::app::App;
use crate::chatrooms::model::{ChatroomId, ChatroomView};
use crate::events::{Delivery, Subscription};
use crate::replies::stops::{self, Stop};

/// The bus topic of one chatroom.
pub(crate) fn topic(room: ChatroomId) -> String {
    format!("chatroom.{room}")
}

/// One event of a chatroom. `offset` on a delta is where it starts in the reply's content
/// (in characters), so a listener that resumed from a snapshot can drop what it already has.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "event", content = "data")]
pub(crate) enum RoomEvent {
    #[serde(rename = "message.created")]
    MessageCreated(MessageView),
    #[serde(rename = "reply.delta")]
    ReplyDelta {
        message_id: Uuid,
        delta: String,
        offset: usize,
    },
    #[serde(rename = "reply.completed")]
    ReplyCompleted(MessageView),
    #[serde(rename = "reply.failed")]
    ReplyFailed(MessageView),
    #[serde(rename = "reply.cancelled")]
    ReplyCancelled(MessageView),
    /// The chatroom was renamed by a generated title.
    #[serde(rename = "chatroom.updated")]
    ChatroomUpdated(ChatroomView),
    /// The chatroom was deleted: its listeners' streams end (never sent to clients).
    #[serde(rename = "chatroom.deleted")]
    ChatroomDeleted,
}

impl RoomEvent {
    pub(crate) fn created(message: &Message) -> Self {
        Self::MessageCreated(message.into())
    }

    pub(crate) fn completed(message: &Message) -> Self {
        Self::ReplyCompleted(message.into())
    }

    pub(crate) fn failed(message: &Message) -> Self {
        Self::ReplyFailed(message.into())
    }

    pub(crate) fn cancelled(message: &Message) -> Self {
        Self::ReplyCancelled(message.into())
    }

    /// Its name on the wire (the SSE event name).
    pub(crate) fn name(&self) -> &'static str {
        match self {
            Self::MessageCreated(_) => "message.created",
            Self::ReplyDelta { .. } => "reply.delta",
            Self::ReplyCompleted(_) => "reply.completed",
            Self::ReplyFailed(_) => "reply.failed",
            Self::ReplyCancelled(_) => "reply.cancelled",
            Self::ChatroomUpdated(_) => "chatroom.updated",
            Self::ChatroomDeleted => "chatroom.deleted",
        }
    }

    /// Its data as clients receive it (JSON).
    pub(crate) fn data(&self) -> String {
        let data = match self {
            Self::MessageCreated(view)
            | Self::ReplyCompleted(view)
            | Self::ReplyFailed(view)
            | Self::ReplyCancelled(view) => serde_json::to_string(view),
            Self::ChatroomUpdated(room) => serde_json::to_string(room),
            Self::ReplyDelta {
                message_id,
                delta,
                offset,
            } => serde_json::to_string(&serde_json::json!({
                "message_id": message_id, "delta": delta, "offset": offset,
            })),
            Self::ChatroomDeleted => Ok("null".into()),
        };
        // Plain data: serialising it cannot fail.
        data.unwrap_or_default()
    }

    /// The id of the message the event is about.
    pub(crate) fn message_id(&self) -> Option<Uuid> {
        match self {
            Self::ReplyDelta { message_id, .. } => Some(*message_id),
            Self::MessageCreated(view)
            | Self::ReplyCompleted(view)
            | Self::ReplyFailed(view)
            | Self::ReplyCancelled(view) => Some(view.id),
            Self::ChatroomUpdated(_) => None,
            Self::ChatroomDeleted => None,
        }
    }

    /// Whether this event ends a reply.
    pub(crate) fn is_final(&self) -> bool {
        matches!(
            self,
            Self::ReplyCompleted(_) | Self::ReplyFailed(_) | Self::ReplyCancelled(_)
        )
    }
}

/// Publishes `event` to the chatroom's listeners on every process. Best-effort: a listener
/// that misses events rebuilds from the database.
pub(crate) async fn publish(app: &App, room: ChatroomId, event: &RoomEvent) {
    let payload = match serde_json::to_string(event) {
        Ok(payload) => payload,
        Err(err) => {
            tracing::error!(error = %err, "cannot encode a chatroom event");
            return;
        }
    };
    app.events.publish(&topic(room), &payload).await;
    // The worker streaming a reply listens for stops, not to its room.
    let stop = match event {
        RoomEvent::ReplyCancelled(view) => Stop::Reply(view.id),
        RoomEvent::ChatroomDeleted => Stop::Chatroom(room.0),
        _ => return,
    };
    if let Ok(payload) = serde_json::to_string(&stop) {
        app.events.publish(stops::TOPIC, &payload).await;
    }
}

/// What a chatroom's subscription hears.
#[derive(Debug)]
#[allow(
    clippy::large_enum_variant,
    reason = "each event moves once, from the bus to its one reader; a box would allocate per event"
)]
pub(crate) enum Heard {
    Event(RoomEvent),
    /// Events may have been lost here: rebuild from the database.
    Gap,
}

/// The events of one chatroom, from every process.
pub(crate) struct RoomSubscription(Subscription);

/// Subscribes to the chatroom's events.
pub(crate) fn subscribe(app: &App, room: ChatroomId) -> RoomSubscription {
    RoomSubscription(app.events.subscribe(&topic(room)))
}

impl RoomSubscription {
    /// The next event; `None` once the bus is gone.
    pub(crate) async fn recv(&mut self) -> Option<Heard> {
        loop {
            match self.0.recv().await? {
                Delivery::Gap => return Some(Heard::Gap),
                Delivery::Message(payload) => match serde_json::from_str(&payload) {
                    Ok(event) => return Some(Heard::Event(event)),
                    // From a newer version, say: not for this process's listeners.
                    Err(err) => tracing::warn!(error = %err, "an unreadable chatroom event"),
                },
            }
        }
    }
}
