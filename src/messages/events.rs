//! Chatroom events on the event bus (topic `chatroom.{id}`), as the SSE endpoint sends them.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::model::{Message, MessageView};
use crate::app::App;
use crate::chatrooms::model::ChatroomId;

/// The bus topic of one chatroom.
pub fn topic(room: ChatroomId) -> String {
    format!("chatroom.{room}")
}

/// One event of a chatroom. `offset` on a delta is where it starts in the reply's content
/// (in characters), so a listener that resumed from a snapshot can drop what it already has.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "event", content = "data")]
pub enum RoomEvent {
    #[serde(rename = "message.created")]
    MessageCreated(serde_json::Value),
    #[serde(rename = "reply.delta")]
    ReplyDelta {
        message_id: Uuid,
        delta: String,
        offset: usize,
    },
    #[serde(rename = "reply.completed")]
    ReplyCompleted(serde_json::Value),
    #[serde(rename = "reply.failed")]
    ReplyFailed(serde_json::Value),
    /// The chatroom was deleted: its listeners' streams end (never sent to clients).
    #[serde(rename = "chatroom.deleted")]
    ChatroomDeleted,
}

impl RoomEvent {
    pub fn created(message: &Message) -> Self {
        Self::MessageCreated(view(message))
    }

    pub fn completed(message: &Message) -> Self {
        Self::ReplyCompleted(view(message))
    }

    pub fn failed(message: &Message) -> Self {
        Self::ReplyFailed(view(message))
    }

    /// The id of the message the event is about.
    pub fn message_id(&self) -> Option<Uuid> {
        match self {
            Self::ReplyDelta { message_id, .. } => Some(*message_id),
            Self::MessageCreated(data) | Self::ReplyCompleted(data) | Self::ReplyFailed(data) => {
                data.get("id")
                    .and_then(|id| id.as_str())
                    .and_then(|id| id.parse().ok())
            }
            Self::ChatroomDeleted => None,
        }
    }

    /// Whether this event ends a reply.
    pub fn is_final(&self) -> bool {
        matches!(self, Self::ReplyCompleted(_) | Self::ReplyFailed(_))
    }
}

fn view(message: &Message) -> serde_json::Value {
    serde_json::to_value(MessageView::from(message)).unwrap_or_default()
}

/// Publishes `event` to the chatroom's listeners on every process. Best-effort: a listener
/// that misses events rebuilds from the database.
pub async fn publish(app: &App, room: ChatroomId, event: &RoomEvent) {
    let payload = match serde_json::to_string(event) {
        Ok(payload) => payload,
        Err(err) => {
            tracing::error!(error = %err, "cannot encode a chatroom event");
            return;
        }
    };
    app.events.publish(&topic(room), &payload).await;
}
