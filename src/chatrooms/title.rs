//! Titles for chatrooms created without a name: once a reply of such a room completes, a title
//! job asks the AI provider for a few words about the room's first exchange and names the room
//! with them, unless its owner named it meanwhile (`chatroom.updated` tells the listeners). It
//! runs on the durable job queue, apart from the room's replies, and never counts against the
//! daily limit.

use serde::{Deserialize, Serialize};

use super::model::{ChatroomId, ChatroomName, ChatroomView, NameSource};
use crate::ai::pause;
use crate::ai::{AiError, Conversation, Turn};
use crate::app::App;
use crate::jobs::queue::{ClaimedJob, NewJob};
use crate::jobs::retry;
use crate::jobs::worker::{JobHandler, count_outcome, drop_unreadable};
use crate::messages::events::{self, RoomEvent};
use crate::messages::model::{MessageStatus, Role};
use crate::storage::error::StoreError;
use crate::users::model::UserId;

/// The `kind` of title jobs.
pub const KIND: &str = "title";

/// What the model is asked.
const INSTRUCTION: &str = "Write a title of at most 6 words for this conversation, in its \
     language. Answer with the title only: no quotes, no final punctuation.";

/// The payload of a title job.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct TitleJob {
    pub chatroom_id: ChatroomId,
    pub user_id: UserId,
}

impl TitleJob {
    /// The job: one per room at a time (its key), in no lane (the room's replies do not wait
    /// for it), going with the room.
    pub fn queued(&self, now: chrono::DateTime<chrono::Utc>) -> NewJob {
        NewJob {
            key: Some(format!("title:{}", self.chatroom_id)),
            user_id: Some(self.user_id),
            chatroom_id: Some(self.chatroom_id),
            ..NewJob::new(KIND, self, now)
        }
    }
}

/// A model's answer as a chatroom name: its first line, without quotes, Markdown marks or a
/// final full stop, at most six words and 100 characters. `None` if nothing is left.
pub(crate) fn clean_title(answer: &str) -> Option<String> {
    let line = answer
        .lines()
        .map(str::trim)
        .find(|line| !line.is_empty())?;
    let words: Vec<&str> = line
        .split_whitespace()
        .map(|word| word.trim_matches(|c: char| matches!(c, '"' | '\'' | '*' | '_' | '`' | '#')))
        .filter(|word| !word.is_empty())
        .take(6)
        .collect();
    let title = words.join(" ");
    let title = title.trim_end_matches(['.', ':', ';', ',']).trim();
    let title: String = title.chars().take(ChatroomName::MAX_CHARS).collect();
    ChatroomName::parse(&title)
        .ok()
        .map(|name| name.as_str().to_owned())
}

/// Runs title jobs.
pub struct TitleHandler;

#[async_trait::async_trait]
impl JobHandler for TitleHandler {
    fn kind(&self) -> &'static str {
        KIND
    }

    async fn run(&self, app: &App, job: &ClaimedJob) -> Result<(), StoreError> {
        let title: TitleJob = match job.payload() {
            Ok(title) => title,
            Err(err) => return drop_unreadable(app, job, &err).await,
        };
        if let Some(until) = pause::paused_at(app, app.clock.now()).await {
            count_outcome("paused");
            return app.store.jobs.release(job, until).await;
        }
        let answer = title_for(app, &title).await?;
        if let Err(AiError::Retryable {
            kind: "rate_limited",
            retry_after,
            ..
        }) = &answer
        {
            pause::after_rate_limit(app, app.clock.now(), *retry_after).await;
        }
        match answer {
            Ok(Some(name)) => name_room(app, &title, &name).await?,
            Ok(None) => tracing::info!(chatroom_id = %title.chatroom_id, "no title due"),
            Err(AiError::Retryable {
                kind,
                message,
                retry_after,
            }) if job.attempts < app.config.job_max_attempts => {
                let wait = retry::backoff(job.attempts, retry_after, rand::random::<f64>());
                tracing::warn!(kind, error = %message, retry_in = ?wait, "title failed; retrying later");
                let run_at = app.clock.now() + chrono::Duration::from_std(wait).unwrap_or_default();
                app.store.jobs.retry_later(job, run_at, &message).await?;
                return Ok(());
            }
            Err(error) => {
                count_outcome("title_failed");
                tracing::warn!(error = %error, "no title: the room keeps its default name");
            }
        }
        app.store.jobs.finish(job).await?;
        Ok(())
    }
}

/// The title for the room's first exchange; `None` when none is due (the room is gone, was
/// named by its owner, or has no completed first exchange).
async fn title_for(
    app: &App,
    title: &TitleJob,
) -> Result<Result<Option<String>, AiError>, StoreError> {
    let store = &app.store;
    let room = store
        .chatrooms
        .find(title.user_id, title.chatroom_id)
        .await?;
    if room.is_none_or(|room| room.name_source != NameSource::Default) {
        return Ok(Ok(None));
    }
    let opening = store.messages.opening(title.chatroom_id, 2).await?;
    let [prompt, reply] = opening.as_slice() else {
        return Ok(Ok(None));
    };
    if prompt.role != Role::User || reply.status != MessageStatus::Completed {
        return Ok(Ok(None));
    }
    let conversation = Conversation {
        model: None,
        system: INSTRUCTION.into(),
        turns: [prompt, reply]
            .into_iter()
            .map(|message| Turn::text(message.role, message.content.clone()))
            .collect(),
    };
    Ok(app
        .ai
        .complete(conversation)
        .await
        .map(|answer| clean_title(&answer)))
}

/// Names the room, unless its owner did meanwhile, and tells its listeners.
async fn name_room(app: &App, title: &TitleJob, name: &str) -> Result<(), StoreError> {
    let now = app.clock.now();
    let Some(room) = app
        .store
        .chatrooms
        .set_title(title.chatroom_id, name, now)
        .await?
    else {
        return Ok(());
    };
    count_outcome("titled");
    tracing::info!(chatroom_id = %title.chatroom_id, "chatroom titled");
    app.user_cache.invalidate(title.user_id).await;
    let view = ChatroomView::from(&room);
    events::publish(app, room.id, &RoomEvent::ChatroomUpdated(view)).await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_become_short_names() {
        assert_eq!(
            clean_title("\"Monsoon trip to Goa.\"\n").as_deref(),
            Some("Monsoon trip to Goa")
        );
        assert_eq!(
            clean_title("**Rust borrow checker basics**").as_deref(),
            Some("Rust borrow checker basics")
        );
        assert_eq!(
            clean_title("one two three four five six seven eight").as_deref(),
            Some("one two three four five six")
        );
        assert_eq!(
            clean_title("\n\n  Title: Plans  \nmore"),
            Some("Title: Plans".into())
        );
        assert_eq!(clean_title("  \n "), None);
        assert_eq!(clean_title("\"\""), None);
    }
}
