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
use std::sync::Arc;
use std::time::Duration;

use axum::response::sse::Event;
use futures::Stream;
use uuid::Uuid;

use super::events::{self, Heard, RoomEvent, RoomSubscription};
use super::model::{Message, MessageId, MessageStatus, Role};
use crate::app::App;
use crate::chatrooms::model::ChatroomId;
use crate::chatrooms::service as chatrooms;
use crate::error::{AppError, Result};
use crate::users::model::UserId;

/// How far back a resume looks.
const REPLAY_WINDOW: u32 = 100;

/// A resuming client is sent again the end of every reply that ended up to this long before
/// the last event it saw. An end can be lost on its way (its worker was killed between storing
/// the reply and announcing it, or could not reach Redis), and a client that then saw later
/// events of the room would not otherwise get it: its stream looks a silent reply up after
/// `SILENT_REPLY` plus a recheck, so an end lost longer ago than that was found there.
const RESEND_ENDS: chrono::TimeDelta = chrono::TimeDelta::seconds(15);

/// A reply in progress this long without an event is looked up in the database: its end may
/// have been announced where this process could not hear it (the worker's Redis link was down
/// as it published).
const SILENT_REPLY: Duration = Duration::from_secs(5);

/// How often an open stream checks that its token still holds (revocations reach every
/// process's session cache at once, so this costs a cache lookup, not a database query).
const ACCESS_RECHECK: Duration = Duration::from_secs(2);

/// The last event a resuming client saw, from a `Last-Event-ID` this server issued.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct LastEvent {
    pub(crate) message: MessageId,
    pub(crate) seen: Seen,
}

/// How much of that message the client saw.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Seen {
    /// Its creation.
    Created,
    /// A reply's content up to this many characters.
    Upto(usize),
    /// Its end (`reply.completed` or `reply.failed`).
    End,
}

impl LastEvent {
    /// As an event id (what [`parse_last_event_id`] reads).
    fn id(self) -> String {
        match self.seen {
            Seen::Created => self.message.to_string(),
            Seen::Upto(chars) => format!("{}:{chars}", self.message),
            Seen::End => format!("{}:end", self.message),
        }
    }
}

pub(crate) fn parse_last_event_id(value: &str) -> Option<LastEvent> {
    let (id, mark) = match value.trim().split_once(':') {
        Some((id, mark)) => (id, Some(mark)),
        None => (value.trim(), None),
    };
    let message = MessageId(Uuid::parse_str(id).ok()?);
    let seen = match mark {
        None => Seen::Created,
        Some("end") => Seen::End,
        Some(offset) => Seen::Upto(offset.parse().ok()?),
    };
    Some(LastEvent { message, seen })
}

/// Who holds the stream open: checked again every [`ACCESS_RECHECK`], so a revoked or expired
/// token (logout, password change, a revoked session, a disabled account) ends it.
pub(crate) struct Listener {
    pub(crate) user: UserId,
    pub(crate) token: String,
}

/// The SSE form of a chatroom event. An event about no message (`chatroom.updated`) carries
/// the id of the last event before it, so a client resuming from it misses nothing.
fn to_sse(event: &RoomEvent, last_id: &mut Option<String>) -> Event {
    let end = match event {
        RoomEvent::ReplyDelta { delta, offset, .. } => Some(offset + delta.chars().count()),
        _ => None,
    };
    let id = event_id(event, end);
    if !id.is_empty() {
        *last_id = Some(id);
    }
    let sse = Event::default().event(event.name()).data(event.data());
    match last_id {
        Some(id) => sse.id(id.as_str()),
        None => sse,
    }
}

fn event_id(event: &RoomEvent, end: Option<usize>) -> String {
    let message = event
        .message_id()
        .map(|id| id.to_string())
        .unwrap_or_default();
    match (event, end) {
        (_, Some(end)) => format!("{message}:{end}"),
        (
            RoomEvent::ReplyCompleted(_) | RoomEvent::ReplyFailed(_) | RoomEvent::ReplyCancelled(_),
            None,
        ) => {
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
        MessageStatus::Cancelled => Some(RoomEvent::cancelled(message)),
        _ => None,
    }
}

/// Opens the stream of `room` for its owner, resuming after `last` when given.
pub(crate) async fn open(
    app: &Arc<App>,
    listener: Listener,
    room: ChatroomId,
    last: Option<LastEvent>,
) -> Result<impl Stream<Item = Result<Event, Infallible>> + Send + 'static> {
    chatrooms::find(app, listener.user, room).await?;
    let subscription = events::subscribe(app, room);
    let mut recent = app.store.messages.page(room, None, REPLAY_WINDOW).await?;
    recent.reverse();
    let last_seen = last.and_then(|last| recent.iter().find(|m| m.id == last.message));
    // What the client had seen ended at this instant: the end of the last message it saw, or
    // its creation.
    let seen_until = last_seen.map(|m| match last.map(|l| l.seen) {
        Some(Seen::End) => m.updated_at,
        _ => m.created_at,
    });
    let mut replay = VecDeque::new();
    let mut held = HashMap::new();
    let opened_at = tokio::time::Instant::now();
    let open_replies: HashMap<Uuid, tokio::time::Instant> = recent
        .iter()
        .filter(|m| m.role == Role::Model && !m.status.is_final())
        .map(|m| (m.id.0, opened_at))
        .collect();
    for message in &recent {
        if let Some(last) = last {
            if message.id > last.message {
                replay.push_back(RoomEvent::created(message));
            }
            // Replies that finished since the last event the client saw, or shortly before it
            // (`RESEND_ENDS`), or, when that event is older than the window, every finished
            // reply in it; never one whose end the client saw.
            let seen_end = message.id == last.message && last.seen == Seen::End;
            let finished_since = message.id > last.message
                || seen_until.is_none_or(|seen| message.updated_at >= seen - RESEND_ENDS);
            if finished_since
                && !seen_end
                && let Some(event) = terminal(message)
            {
                replay.push_back(event);
            }
        }
        if message.role == Role::Model
            && !message.status.is_final()
            && let Some(content) = app.progress.get(message.id).await.filter(|c| !c.is_empty())
        {
            let length = content.chars().count();
            // Only what the client lacks: from where its last delta of this reply ended, unless
            // the reply started over since (a retry) and is now shorter.
            let from = match last {
                Some(LastEvent {
                    message: seen,
                    seen: Seen::Upto(upto),
                }) if seen == message.id && upto <= length => upto,
                _ => 0,
            };
            held.insert(
                message.id.0,
                Held {
                    chars: length,
                    snapshot: true,
                },
            );
            if from < length {
                replay.push_back(RoomEvent::ReplyDelta {
                    message_id: message.id.0,
                    delta: content.chars().skip(from).collect(),
                    offset: from,
                });
            }
        }
    }
    let mut recheck =
        tokio::time::interval_at(tokio::time::Instant::now() + ACCESS_RECHECK, ACCESS_RECHECK);
    recheck.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let state = StreamState {
        subscription,
        replay,
        held,
        room,
        open_replies,
        stopping: app.stopping(),
        app: Arc::clone(app),
        listener,
        recheck,
        // Until an event of this stream has one: where the client resumed from, or what it
        // was shown first.
        last_id: last
            .map(LastEvent::id)
            .or_else(|| recent.last().map(|m| m.id.to_string())),
        _open: crate::metrics::SseConnection::open(),
    };
    Ok(futures::stream::unfold(state, |mut state| async move {
        let event = state.next().await?;
        let sse = to_sse(&event, &mut state.last_id);
        Some((Ok(sse), state))
    }))
}

struct StreamState {
    subscription: RoomSubscription,
    /// The id of the last event sent (see [`to_sse`]).
    last_id: Option<String>,
    replay: VecDeque<RoomEvent>,
    /// What the client holds of each reply in progress.
    held: HashMap<Uuid, Held>,
    room: ChatroomId,
    /// Replies in progress the client knows of, and when it last heard of each (or they were
    /// last looked up).
    open_replies: HashMap<Uuid, tokio::time::Instant>,
    /// The process is shutting down: end the stream (the client reconnects elsewhere), or the
    /// server's graceful shutdown would wait for it forever.
    stopping: tokio::sync::watch::Receiver<bool>,
    app: Arc<App>,
    listener: Listener,
    recheck: tokio::time::Interval,
    /// Counted as an open connection until the stream is dropped.
    _open: crate::metrics::SseConnection,
}

impl StreamState {
    async fn next(&mut self) -> Option<RoomEvent> {
        let event = self.next_event().await?;
        self.note(&event);
        Some(event)
    }

    /// Keeps `open_replies` up to date with an event sent.
    fn note(&mut self, event: &RoomEvent) {
        match event {
            RoomEvent::MessageCreated(view)
                if view.role == Role::Model && !view.status.is_final() =>
            {
                self.open_replies
                    .insert(view.id, tokio::time::Instant::now());
            }
            RoomEvent::ReplyDelta { message_id, .. } => {
                self.open_replies
                    .insert(*message_id, tokio::time::Instant::now());
            }
            _ if event.is_final() => {
                if let Some(id) = event.message_id() {
                    self.open_replies.remove(&id);
                }
            }
            _ => {}
        }
    }

    /// Looks up the replies in progress that have been silent for `SILENT_REPLY`, and queues
    /// the end of each that has ended.
    async fn find_silent_ends(&mut self) {
        let now = tokio::time::Instant::now();
        let silent: Vec<Uuid> = self
            .open_replies
            .iter()
            .filter(|(_, heard)| now.duration_since(**heard) >= SILENT_REPLY)
            .map(|(id, _)| *id)
            .collect();
        for id in silent {
            let messages = &self.app.store.messages;
            match messages
                .find(self.listener.user, self.room, MessageId(id))
                .await
            {
                Ok(Some(message)) => match terminal(&message) {
                    Some(end) => {
                        self.open_replies.remove(&id);
                        self.replay.push_back(end);
                    }
                    None => {
                        self.open_replies.insert(id, now);
                    }
                },
                Ok(None) => {
                    self.open_replies.remove(&id);
                }
                // Looked up again at the next check.
                Err(_) => {}
            }
        }
    }

    async fn next_event(&mut self) -> Option<RoomEvent> {
        if let Some(event) = self.replay.pop_front() {
            return Some(event);
        }
        loop {
            let delivery = tokio::select! {
                delivery = self.subscription.recv() => Some(delivery?),
                _ = self.stopping.wait_for(|stopping| *stopping) => return None,
                _ = self.recheck.tick() => None,
            };
            let Some(delivery) = delivery else {
                if !self.may_listen().await {
                    return None;
                }
                self.find_silent_ends().await;
                if let Some(event) = self.replay.pop_front() {
                    let event = self.dedup(event).await;
                    if event.is_some() {
                        return event;
                    }
                }
                continue;
            };
            match delivery {
                // Events may have been lost: end the stream so the client resumes.
                Heard::Gap => return None,
                Heard::Event(event) => {
                    if matches!(event, RoomEvent::ChatroomDeleted) {
                        return None;
                    }
                    if let Some(event) = self.dedup(event).await {
                        return Some(event);
                    }
                }
            }
        }
    }

    /// Whether the listener's token still holds. Only a definite no ends the stream: while
    /// the database cannot confirm a session, the stream stays (and is checked again).
    async fn may_listen(&self) -> bool {
        match self.app.auth.authenticate(&self.listener.token).await {
            Ok(who) => who.user_id == self.listener.user,
            Err(AppError::Unauthorized) => false,
            Err(_) => true,
        }
    }

    /// Makes a live delta follow what the client holds of its reply: dropped or trimmed when
    /// a snapshot already covered it; when it would leave a hole (the client missed deltas and
    /// no snapshot could be read, as while Redis was away), preceded by what it lacks from the
    /// progress buffer, or held back if that cannot be read: the reply's end brings it whole.
    async fn dedup(&mut self, event: RoomEvent) -> Option<RoomEvent> {
        let RoomEvent::ReplyDelta {
            message_id,
            delta,
            offset,
        } = event
        else {
            if event.is_final()
                && let Some(id) = event.message_id()
            {
                self.held.remove(&id);
            }
            return Some(event);
        };
        let end = offset + delta.chars().count();
        let held = self.held.get(&message_id).copied();
        let (offset, delta) = match held {
            // The first the client hears of this reply, or a new attempt starting over.
            None if offset == 0 => (offset, delta),
            Some(held) if offset == 0 && !held.snapshot => (offset, delta),
            Some(held) if end <= held.chars => return None,
            Some(held) if offset <= held.chars => {
                let skip = held.chars - offset;
                (held.chars, delta.chars().skip(skip).collect())
            }
            _ => {
                let have = held.map_or(0, |held| held.chars);
                let lacking = self.lacking(message_id, have, offset).await?;
                (have, lacking + delta.as_str())
            }
        };
        self.held.insert(
            message_id,
            Held {
                chars: end.max(offset + delta.chars().count()),
                snapshot: false,
            },
        );
        Some(RoomEvent::ReplyDelta {
            message_id,
            delta,
            offset,
        })
    }

    /// The reply's content from character `have` up to `upto`, from its progress buffer (the
    /// worker records each delta there before publishing it); `None` if it cannot be read.
    async fn lacking(&self, reply: Uuid, have: usize, upto: usize) -> Option<String> {
        let content = self.app.progress.get(MessageId(reply)).await?;
        let lacking: String = content.chars().skip(have).take(upto - have).collect();
        (lacking.chars().count() == upto - have).then_some(lacking)
    }
}

/// What a client holds of a reply in progress.
#[derive(Debug, Clone, Copy)]
struct Held {
    /// Characters of its content, from the start.
    chars: usize,
    /// They came from a snapshot: a live delta at offset 0 may be one it already covers
    /// rather than a new attempt starting over.
    snapshot: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn last_event_ids_name_a_message_and_how_much_of_it_was_seen() {
        let id = Uuid::now_v7();
        let at = |seen| {
            Some(LastEvent {
                message: MessageId(id),
                seen,
            })
        };
        assert_eq!(parse_last_event_id(&id.to_string()), at(Seen::Created));
        assert_eq!(parse_last_event_id(&format!("{id}:42")), at(Seen::Upto(42)));
        assert_eq!(parse_last_event_id(&format!("{id}:end")), at(Seen::End));
        assert_eq!(parse_last_event_id("garbage"), None);
        assert_eq!(parse_last_event_id(&format!("{id}:what")), None);
    }
}
