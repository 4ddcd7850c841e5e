//! Message use cases: sending a prompt (quota, one transaction, optional wait for the reply),
//! reading history, and retrying a failed reply.

use std::time::Duration;

use super::events::{self, Heard, RoomEvent};
use super::model::{Message, MessageContent, MessageId, MessageStatus, ReplyMeta, Role};
use super::repo::{NewPrompt, PromptOutcome, SearchHit};
use super::search::SearchQuery;
use crate::app::App;
use crate::auth::otp::retry_after_secs;
use crate::chatrooms::model::ChatroomId;
use crate::chatrooms::service as chatrooms;
use crate::error::{AppError, Result};
use crate::jobs::queue::JobId;
use crate::quota::model::{Usage, day_of, next_reset};
use crate::uploads::model::UploadId;
use crate::uploads::service as uploads;
use crate::users::model::{Tier, UserId};

/// A prompt accepted for a reply.
pub(crate) struct Accepted {
    pub(crate) prompt: Message,
    /// The reply: pending, or final when the caller waited and it finished in time.
    pub(crate) reply: Message,
    pub(crate) usage: Usage,
}

/// Sends `content` to the chatroom. With `wait`, holds until the reply is final or the wait
/// is over.
pub(crate) async fn send(
    app: &App,
    user: UserId,
    room: ChatroomId,
    content: &str,
    attachments: &[UploadId],
    wait: Option<Duration>,
) -> Result<Accepted> {
    let content = parse_content(content)?;
    let files = uploads::for_prompt(app, user, attachments).await?;
    let now = app.clock.now();
    let day = day_of(now);
    let prompt = Message {
        attachments: files,
        ..new_prompt(user, room, content, now)
    };
    let reply = pending_reply(user, room, Some(prompt.id), now);
    // Listen before writing, so a reply that finishes at once is not missed.
    let subscription = wait.map(|_| events::subscribe(app, room));
    let mut new = NewPrompt {
        prompt,
        reply,
        job_id: JobId::new(),
        day,
        now,
    };
    let (used, limit) = match app
        .store
        .messages
        .insert_prompt_with_reply_job(&new, &app.quota)
        .await?
    {
        PromptOutcome::Accepted {
            used,
            limit,
            parent,
        } => {
            new.prompt.parent_id = parent;
            (used, limit)
        }
        PromptOutcome::ChatroomNotFound => return Err(AppError::NotFound),
        PromptOutcome::AttachmentGone => return Err(uploads::gone()),
        PromptOutcome::LimitReached { limit, tier } => {
            return Err(limit_reached(limit, tier, now));
        }
    };
    app.user_cache.invalidate(user).await;
    events::publish(app, room, &RoomEvent::created(&new.prompt)).await;
    events::publish(app, room, &RoomEvent::created(&new.reply)).await;
    let mut reply = new.reply;
    if let (Some(wait), Some(subscription)) = (wait, subscription)
        && let Some(finished) = wait_for_reply(app, subscription, &reply, wait).await?
    {
        reply = finished;
    }
    Ok(Accepted {
        prompt: new.prompt,
        reply,
        usage: Usage::new(used, limit, now),
    })
}

/// Prompt content, trimmed and checked (422 naming `content` otherwise).
pub(crate) fn parse_content(content: &str) -> Result<String> {
    MessageContent::parse(content)
        .map(MessageContent::into_inner)
        .map_err(|why| AppError::invalid("content", &why))
}

/// A prompt of `user` in `room`, written now (storage sets its parent).
pub(crate) fn new_prompt(
    user: UserId,
    room: ChatroomId,
    content: String,
    now: chrono::DateTime<chrono::Utc>,
) -> Message {
    Message {
        id: MessageId::new(),
        chatroom_id: room,
        user_id: user,
        parent_id: None,
        versions: Vec::new(),
        attachments: Vec::new(),
        role: Role::User,
        content,
        status: MessageStatus::Completed,
        error: None,
        quota_day: None,
        meta: ReplyMeta::default(),
        created_at: now,
        updated_at: now,
    }
}

/// A pending reply of `user`'s in `room` to the prompt `parent`, taking a prompt of today's
/// quota.
pub(crate) fn pending_reply(
    user: UserId,
    room: ChatroomId,
    parent: Option<MessageId>,
    now: chrono::DateTime<chrono::Utc>,
) -> Message {
    Message {
        id: MessageId::new(),
        parent_id: parent,
        role: Role::Model,
        content: String::new(),
        status: MessageStatus::Pending,
        quota_day: Some(day_of(now)),
        ..new_prompt(user, room, String::new(), now)
    }
}

/// 429 `daily_limit_reached`, counted in the metrics.
pub(crate) fn limit_reached(
    limit: u32,
    tier: Tier,
    now: chrono::DateTime<chrono::Utc>,
) -> AppError {
    metrics::counter!(crate::metrics::QUOTA_REJECTIONS, "tier" => tier.as_str()).increment(1);
    let resets_at = next_reset(now);
    let plan = match tier {
        Tier::Basic => "Basic",
        Tier::Pro => "Pro",
    };
    AppError::RateLimited {
        code: "daily_limit_reached",
        detail: format!(
            "Daily limit of {limit} prompts reached on the {plan} plan; it resets at {}.",
            resets_at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
        ),
        retry_after: retry_after_secs(resets_at - now),
    }
}

/// Waits until the reply is completed or failed, or `wait` passes; the final reply if so.
async fn wait_for_reply(
    app: &App,
    mut subscription: events::RoomSubscription,
    reply: &Message,
    wait: Duration,
) -> Result<Option<Message>> {
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        match tokio::time::timeout_at(deadline, subscription.recv()).await {
            Ok(Some(Heard::Event(event))) => {
                if event.is_final() && event.message_id() == Some(reply.id.0) {
                    break;
                }
            }
            // Events may have been lost: look at the source.
            Ok(Some(Heard::Gap)) => {
                if current(app, reply)
                    .await?
                    .is_some_and(|r| r.status.is_final())
                {
                    break;
                }
            }
            Ok(None) | Err(_) => break,
        }
    }
    Ok(current(app, reply).await?.filter(|r| r.status.is_final()))
}

async fn current(app: &App, reply: &Message) -> Result<Option<Message>> {
    Ok(app
        .store
        .messages
        .find(reply.user_id, reply.chatroom_id, reply.id)
        .await?)
}

/// A page of history, oldest first, and the cursor of the next older page.
pub(crate) struct Page {
    pub(crate) messages: Vec<Message>,
    pub(crate) next_before: Option<MessageId>,
}

pub(crate) async fn page(
    app: &App,
    user: UserId,
    room: ChatroomId,
    before: Option<MessageId>,
    limit: u32,
) -> Result<Page> {
    chatrooms::find(app, user, room).await?;
    let mut messages = app.store.messages.page(room, before, limit + 1).await?;
    let more = messages.len() > limit as usize;
    messages.truncate(limit as usize);
    let next_before = if more {
        messages.last().map(|m| m.id)
    } else {
        None
    };
    messages.reverse();
    Ok(Page {
        messages,
        next_before,
    })
}

/// Queues a failed reply again. It does not take a prompt from the daily limit.
pub(crate) async fn retry(
    app: &App,
    user: UserId,
    room: ChatroomId,
    reply_id: MessageId,
) -> Result<Accepted> {
    chatrooms::find(app, user, room).await?;
    let now = app.clock.now();
    let requeued = app
        .store
        .messages
        .requeue_failed(user, room, reply_id, JobId::new(), now)
        .await?;
    if !requeued {
        return match app.store.messages.find(user, room, reply_id).await? {
            None => Err(AppError::NotFound),
            Some(_) => Err(AppError::Conflict {
                code: "not_retryable",
                detail: "Only a failed reply can be retried.",
            }),
        };
    }
    let reply = app
        .store
        .messages
        .find(user, room, reply_id)
        .await?
        .ok_or(AppError::NotFound)?;
    let asked = reply.parent_id.ok_or(AppError::NotFound)?;
    let prompt = app.store.messages.find(user, room, asked).await?;
    let prompt = prompt.ok_or(AppError::NotFound)?;
    let usage = usage_now(app, user).await?;
    events::publish(app, room, &RoomEvent::created(&reply)).await;
    Ok(Accepted {
        prompt,
        reply,
        usage,
    })
}

pub(crate) async fn usage_now(app: &App, user: UserId) -> Result<Usage> {
    let user = app
        .store
        .users
        .find_by_id(user, app.clock.now())
        .await?
        .ok_or(AppError::Unauthorized)?;
    crate::users::service::usage_of(app, &user).await
}

/// The user's messages matching `query`, best first.
pub(crate) async fn search(
    app: &App,
    user: UserId,
    query: &str,
    limit: u32,
) -> Result<Vec<SearchHit>> {
    let query = query.trim();
    match query.chars().count() {
        0 => return Err(AppError::invalid("q", "must not be empty")),
        n if n > 200 => return Err(AppError::invalid("q", "must be at most 200 characters")),
        _ => {}
    }
    if !(1..=50).contains(&limit) {
        return Err(AppError::invalid("limit", "must be 1 to 50"));
    }
    let Some(query) = SearchQuery::parse(query) else {
        return Ok(Vec::new());
    };
    Ok(app.store.messages.search(user, &query, limit).await?)
}
