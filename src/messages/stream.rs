//! The chatroom event stream behind `GET /chatroom/{id}/events`.
//!
//! Order of work, so nothing is missed: subscribe to the chatroom's topic first, then read the
//! database and the progress buffers, send what the client lacks, then relay live events.
//! Deltas carry their `offset`; live deltas already covered by a snapshot are dropped or
//! trimmed. Event ids are `{message_id}` (created), `{message_id}:{end offset}` (delta) and
//! `{message_id}:end` (completed or failed); a client resuming with `Last-Event-ID` gets every
//! message after that one, every reply that finished since, and the content so far of every
//! reply in progress. If the bus reports lost events the stream ends, and the client's
//! automatic reconnect (with `Last-Event-ID`) resynchronises it.

use std::collections::{HashMap, VecDeque};
use std::convert::Infallible;

use axum::response::sse::Event;
use futures::Stream;
use uuid::Uuid;

use super::events::{RoomEvent, topic};
use super::model::{Message, MessageId, MessageStatus, Role};
use crate::app::App;
use crate::chatrooms::model::ChatroomId;
use crate::chatrooms::service as chatrooms;
use crate::error::Result;
use crate::events::{Delivery, Subscription};
use crate::users::model::UserId;

/// How far back a resume looks.
const REPLAY_WINDOW: u32 = 100;

/// The message id in a `Last-Event-ID` this server issued.
pub fn parse_last_event_id(value: &str) -> Option<MessageId> {
    let id = value.split(':').next()?;
    Uuid::parse_str(id.trim()).ok().map(MessageId)
}

/// The SSE form of a chatroom event.
fn to_sse(event: &RoomEvent) -> Event {
    let (name, id) = match event {
        RoomEvent::MessageCreated(_) => ("message.created", event_id(event, None)),
        RoomEvent::ReplyDelta { delta, offset, .. } => (
            "reply.delta",
            event_id(event, Some(offset + delta.chars().count())),
        ),
        RoomEvent::ReplyCompleted(_) => ("reply.completed", event_id(event, None)),
        RoomEvent::ReplyFailed(_) => ("reply.failed", event_id(event, None)),
    };
    let data = match serde_json::to_value(event) {
        Ok(serde_json::Value::Object(mut fields)) => fields.remove("data").unwrap_or_default(),
        _ => serde_json::Value::Null,
    };
    Event::default().event(name).id(id).data(data.to_string())
}

fn event_id(event: &RoomEvent, end: Option<usize>) -> String {
    let message = event
        .message_id()
        .map(|id| id.to_string())
        .unwrap_or_default();
    match (event, end) {
        (_, Some(end)) => format!("{message}:{end}"),
        (RoomEvent::ReplyCompleted(_) | RoomEvent::ReplyFailed(_), None) => {
            format!("{message}:end")
        }
        _ => message,
    }
}

/// The event that ended a reply, if it is a finished reply.
fn terminal(message: &Message) -> Option<RoomEvent> {
    if message.role != Role::Model {
        return None;
    }
    match message.status {
        MessageStatus::Completed => Some(RoomEvent::completed(message)),
        MessageStatus::Failed => Some(RoomEvent::failed(message)),
        _ => None,
    }
}

/// Opens the stream of `room` for its owner, resuming after `last` when given.
pub async fn open(
    app: &App,
    user: UserId,
    room: ChatroomId,
    last: Option<MessageId>,
) -> Result<impl Stream<Item = Result<Event, Infallible>> + Send + 'static> {
    chatrooms::find(app, user, room).await?;
    let subscription = app.events.subscribe(&topic(room));
    let mut recent = app.store.messages.page(room, None, REPLAY_WINDOW).await?;
    recent.reverse();
    let last_seen_at = last.and_then(|id| recent.iter().find(|m| m.id == id).map(|m| m.created_at));
    let mut replay = VecDeque::new();
    let mut snapshots = HashMap::new();
    for message in &recent {
        if let Some(last) = last {
            if message.id > last {
                replay.push_back(RoomEvent::created(message));
            }
            // Replies that finished since the last event the client saw (or, when that event
            // is older than the window, every finished reply in it).
            let finished_since =
                message.id > last || last_seen_at.is_none_or(|seen| message.updated_at >= seen);
            if finished_since && let Some(event) = terminal(message) {
                replay.push_back(event);
            }
        }
        if message.role == Role::Model
            && !message.status.is_final()
            && let Some(content) = app.progress.get(message.id).await.filter(|c| !c.is_empty())
        {
            snapshots.insert(message.id.0, content.chars().count());
            replay.push_back(RoomEvent::ReplyDelta {
                message_id: message.id.0,
                delta: content,
                offset: 0,
            });
        }
    }
    let state = StreamState {
        subscription,
        replay,
        snapshots,
        stopping: app.stopping(),
        _open: crate::metrics::SseConnection::open(),
    };
    Ok(futures::stream::unfold(state, |mut state| async move {
        let event = state.next().await?;
        Some((Ok(to_sse(&event)), state))
    }))
}

struct StreamState {
    subscription: Subscription,
    replay: VecDeque<RoomEvent>,
    /// Replies whose content so far was sent as a snapshot: characters covered.
    snapshots: HashMap<Uuid, usize>,
    /// The process is shutting down: end the stream (the client reconnects elsewhere), or the
    /// server's graceful shutdown would wait for it forever.
    stopping: tokio::sync::watch::Receiver<bool>,
    /// Counted as an open connection until the stream is dropped.
    _open: crate::metrics::SseConnection,
}

impl StreamState {
    async fn next(&mut self) -> Option<RoomEvent> {
        if let Some(event) = self.replay.pop_front() {
            return Some(event);
        }
        loop {
            let delivery = tokio::select! {
                delivery = self.subscription.recv() => delivery?,
                _ = self.stopping.wait_for(|stopping| *stopping) => return None,
            };
            match delivery {
                // Events may have been lost: end the stream so the client resumes.
                Delivery::Gap => return None,
                Delivery::Message(payload) => {
                    let Ok(event) = serde_json::from_str::<RoomEvent>(&payload) else {
                        continue;
                    };
                    if let Some(event) = self.dedup(event) {
                        return Some(event);
                    }
                }
            }
        }
    }

    /// Drops or trims a live delta the snapshot already covered.
    fn dedup(&mut self, event: RoomEvent) -> Option<RoomEvent> {
        match event {
            RoomEvent::ReplyDelta {
                message_id,
                delta,
                offset,
            } => {
                let Some(&covered) = self.snapshots.get(&message_id) else {
                    return Some(RoomEvent::ReplyDelta {
                        message_id,
                        delta,
                        offset,
                    });
                };
                let end = offset + delta.chars().count();
                if end <= covered {
                    return None;
                }
                // Caught up: from here on, deltas pass as they are (a retried reply starts
                // again at offset 0, which tells the client to start over).
                self.snapshots.remove(&message_id);
                let skip = covered.saturating_sub(offset);
                Some(RoomEvent::ReplyDelta {
                    message_id,
                    delta: delta.chars().skip(skip).collect(),
                    offset: offset.max(covered),
                })
            }
            other => {
                if other.is_final()
                    && let Some(id) = other.message_id()
                {
                    self.snapshots.remove(&id);
                }
                Some(other)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn last_event_ids_name_a_message() {
        let id = Uuid::now_v7();
        assert_eq!(parse_last_event_id(&id.to_string()), Some(MessageId(id)));
        assert_eq!(
            parse_last_event_id(&format!("{id}:42")),
            Some(MessageId(id))
        );
        assert_eq!(
            parse_last_event_id(&format!("{id}:end")),
            Some(MessageId(id))
        );
        assert_eq!(parse_last_event_id("garbage"), None);
    }
}
