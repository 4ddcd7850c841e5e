//! Conversation controls on the message tree: regenerate a reply, edit a prompt (each a new
//! version beside the old one, counted like a send, and made the active branch), and select
//! which branch is active. Nothing is ever deleted by a branch change.

use super::events::{self, RoomEvent};
use super::model::{Message, MessageId};
use super::repo::{NewVersion, VersionOutcome};
use super::service::{Accepted, limit_reached, new_prompt, parse_content, pending_reply};
use crate::app::App;
use crate::chatrooms::model::{Chatroom, ChatroomId};
use crate::chatrooms::service as chatrooms;
use crate::error::{AppError, Result};
use crate::jobs::queue::JobId;
use crate::quota::model::{Usage, day_of};
use crate::uploads::model::{Upload, UploadId};
use crate::uploads::service as uploads;
use crate::users::model::UserId;

/// Queues a new reply to the prompt of `reply` (completed, failed or cancelled), as a new
/// version beside it, and makes it active. Counts against the daily limit.
pub(crate) async fn regenerate(
    app: &App,
    user: UserId,
    room: ChatroomId,
    reply: MessageId,
) -> Result<Accepted> {
    add_version(app, user, room, reply, None).await
}

/// A new version of a prompt: its content, and its files (`None`: those of the old version).
struct Edited {
    content: String,
    attachments: Option<Vec<Upload>>,
}

/// Adds a new version of the prompt `prompt` with `content`, queues its reply and makes that
/// branch active. Counts against the daily limit.
pub(crate) async fn edit(
    app: &App,
    user: UserId,
    room: ChatroomId,
    prompt: MessageId,
    content: &str,
    attachments: Option<&[UploadId]>,
) -> Result<Accepted> {
    let content = parse_content(content)?;
    let attachments = match attachments {
        Some(ids) => Some(uploads::for_prompt(app, user, ids).await?),
        None => None,
    };
    let edited = Edited {
        content,
        attachments,
    };
    add_version(app, user, room, prompt, Some(edited)).await
}

async fn add_version(
    app: &App,
    user: UserId,
    room: ChatroomId,
    of: MessageId,
    edited: Option<Edited>,
) -> Result<Accepted> {
    let now = app.clock.now();
    let keep_attachments = edited.as_ref().is_some_and(|e| e.attachments.is_none());
    let prompt = edited.map(|edited| Message {
        attachments: edited.attachments.unwrap_or_default(),
        ..new_prompt(user, room, edited.content, now)
    });
    // Storage sets the parent of a regenerated reply (the prompt of `of`).
    let reply = pending_reply(user, room, prompt.as_ref().map(|p| p.id), now);
    let editing = prompt.is_some();
    let new = NewVersion {
        of,
        prompt,
        keep_attachments,
        reply,
        job_id: JobId::new(),
        day: day_of(now),
        now,
    };
    let branches = &app.store.branches;
    let (prompt, reply, usage) = match branches.add_version(user, room, &new, &app.quota).await? {
        VersionOutcome::Accepted {
            used,
            limit,
            prompt,
            reply,
        } => (*prompt, *reply, Usage::new(used, limit, now)),
        VersionOutcome::LimitReached { limit, tier } => {
            return Err(limit_reached(limit, tier, now));
        }
        VersionOutcome::NotFound => return Err(AppError::NotFound),
        VersionOutcome::AttachmentGone => return Err(uploads::gone()),
        VersionOutcome::WrongRole if editing => {
            return Err(AppError::invalid(
                "message_id",
                "only a prompt (a user message) can be edited",
            ));
        }
        VersionOutcome::WrongRole => {
            return Err(AppError::invalid(
                "message_id",
                "only a reply (a model message) can be regenerated",
            ));
        }
        VersionOutcome::InProgress => {
            return Err(AppError::Conflict {
                code: "reply_in_progress",
                detail: "The reply is still being produced; cancel it first, or wait.",
            });
        }
    };
    app.user_cache.invalidate(user).await;
    if editing {
        events::publish(app, room, &RoomEvent::created(&prompt)).await;
    }
    events::publish(app, room, &RoomEvent::created(&reply)).await;
    Ok(Accepted {
        prompt,
        reply,
        usage,
    })
}

/// Makes the path through `message` active; the chatroom as `GET /chatroom/{id}` shows it.
pub(crate) async fn select(
    app: &App,
    user: UserId,
    room: ChatroomId,
    message: MessageId,
) -> Result<(Chatroom, Vec<Message>)> {
    let branches = &app.store.branches;
    if !branches
        .select(user, room, message, app.clock.now())
        .await?
    {
        return Err(AppError::NotFound);
    }
    chatrooms::get_with_messages(app, user, room).await
}
