//! Message domain types.

use std::fmt;

use chrono::{DateTime, NaiveDate, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use crate::chatrooms::model::ChatroomId;
use crate::users::model::UserId;

/// A message's id (UUIDv7: ordering by id is ordering by time).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct MessageId(pub Uuid);

impl MessageId {
    pub fn new() -> Self {
        Self(Uuid::now_v7())
    }
}

impl Default for MessageId {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Display for MessageId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    User,
    Model,
}

impl Role {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::User => "user",
            Self::Model => "model",
        }
    }

    pub(crate) fn from_db(value: &str) -> Self {
        if value == "model" {
            Self::Model
        } else {
            Self::User
        }
    }
}

/// Where a message is in its life. User messages are always `Completed`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum MessageStatus {
    Pending,
    Streaming,
    Completed,
    Failed,
    /// Stopped by its user; keeps the text streamed until then.
    Cancelled,
}

impl MessageStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Streaming => "streaming",
            Self::Completed => "completed",
            Self::Failed => "failed",
            Self::Cancelled => "cancelled",
        }
    }

    pub(crate) fn from_db(value: &str) -> Self {
        match value {
            "pending" => Self::Pending,
            "streaming" => Self::Streaming,
            "failed" => Self::Failed,
            "cancelled" => Self::Cancelled,
            _ => Self::Completed,
        }
    }

    /// Completed, failed or cancelled: nothing more will happen to it.
    pub(crate) fn is_final(self) -> bool {
        matches!(self, Self::Completed | Self::Failed | Self::Cancelled)
    }
}

/// Why a reply failed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct MessageError {
    /// Stable code, e.g. `blocked`, `ai_unavailable`, `ai_rejected`.
    pub code: String,
    pub message: String,
}

/// Prompt content: 1 to 8,000 characters after trimming.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct MessageContent(String);

impl MessageContent {
    pub(crate) const MAX_CHARS: usize = 8_000;

    pub(crate) fn parse(input: &str) -> Result<Self, String> {
        let trimmed = crate::users::model::trim_invisible(input);
        match trimmed.chars().count() {
            0 => Err("must not be empty".into()),
            n if n > Self::MAX_CHARS => {
                Err(format!("must be at most {} characters", Self::MAX_CHARS))
            }
            _ => Ok(Self(trimmed.to_owned())),
        }
    }

    pub(crate) fn into_inner(self) -> String {
        self.0
    }
}

/// Generation details kept on a reply, from Gemini's last `usageMetadata`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReplyMeta {
    pub finish_reason: Option<String>,
    pub model_version: Option<String>,
    /// Input, cached tokens included (`promptTokenCount`).
    pub prompt_tokens: Option<u32>,
    /// The answer's tokens (`candidatesTokenCount`).
    pub output_tokens: Option<u32>,
    /// Everything billed (`totalTokenCount`: input, output, thinking, tool prompts).
    pub total_tokens: Option<u32>,
    /// Thinking, billed as output (`thoughtsTokenCount`).
    pub thinking_tokens: Option<u32>,
    /// The part of the input served from cache (`cachedContentTokenCount`), billed cheaper.
    pub cached_tokens: Option<u32>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    pub id: MessageId,
    pub chatroom_id: ChatroomId,
    pub user_id: UserId,
    /// The message this one follows: `None` for a room's first prompt.
    pub parent_id: Option<MessageId>,
    /// The messages with the same parent and role, oldest first, this one among them; empty
    /// when it has no other version.
    pub versions: Vec<MessageId>,
    /// The files a prompt carries, in order (none on replies).
    pub attachments: Vec<crate::uploads::model::Upload>,
    pub role: Role,
    pub content: String,
    pub status: MessageStatus,
    pub error: Option<MessageError>,
    /// On a reply: the day whose prompt it took, until given back.
    pub quota_day: Option<NaiveDate>,
    pub meta: ReplyMeta,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// A message as clients see it (also the data of message events).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[schema(as = Message)]
pub(crate) struct MessageView {
    pub(crate) id: Uuid,
    pub(crate) chatroom_id: Uuid,
    /// The message this one follows; null for a room's first prompt.
    pub(crate) parent_id: Option<Uuid>,
    pub(crate) role: Role,
    pub(crate) content: String,
    pub(crate) status: MessageStatus,
    pub(crate) created_at: DateTime<Utc>,
    /// Present on failed replies.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) error: Option<MessageError>,
    pub(crate) versions: Versions,
    /// Files sent with a prompt (none on replies).
    pub(crate) attachments: Vec<AttachmentView>,
    /// Tokens of a reply that reached the AI provider; null otherwise.
    pub(crate) usage: Option<TokenUsage>,
    /// The model that wrote a reply; null for prompts.
    pub(crate) model: Option<String>,
}

/// The versions of a message: the messages with the same parent and role, oldest first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub(crate) struct Versions {
    pub(crate) ids: Vec<Uuid>,
    /// This message's place among them.
    pub(crate) index: usize,
}

/// A file sent with a prompt.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[schema(as = Attachment)]
pub(crate) struct AttachmentView {
    pub(crate) id: Uuid,
    pub(crate) name: String,
    pub(crate) mime_type: String,
    pub(crate) size: u64,
    pub(crate) created_at: DateTime<Utc>,
}

/// What a reply cost, from Gemini's `usageMetadata`. `input_tokens` includes `cached_tokens`;
/// `thinking_tokens` are billed as output.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub(crate) struct TokenUsage {
    pub(crate) input_tokens: u32,
    pub(crate) output_tokens: u32,
    pub(crate) thinking_tokens: u32,
    pub(crate) cached_tokens: u32,
}

impl From<&Message> for MessageView {
    fn from(message: &Message) -> Self {
        let ids: Vec<Uuid> = match message.versions.as_slice() {
            [] => vec![message.id.0],
            versions => versions.iter().map(|v| v.0).collect(),
        };
        let meta = &message.meta;
        Self {
            id: message.id.0,
            chatroom_id: message.chatroom_id.0,
            parent_id: message.parent_id.map(|p| p.0),
            role: message.role,
            content: message.content.clone(),
            status: message.status,
            created_at: message.created_at,
            error: message.error.clone(),
            versions: Versions {
                index: ids.iter().position(|id| *id == message.id.0).unwrap_or(0),
                ids,
            },
            attachments: message
                .attachments
                .iter()
                .map(AttachmentView::from)
                .collect(),
            usage: meta.prompt_tokens.map(|input| TokenUsage {
                input_tokens: input,
                output_tokens: meta.output_tokens.unwrap_or(0),
                thinking_tokens: meta.thinking_tokens.unwrap_or(0),
                cached_tokens: meta.cached_tokens.unwrap_or(0),
            }),
            model: meta.model_version.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_is_trimmed_and_bounded() {
        assert_eq!(MessageContent::parse(" hi ").map(|c| c.0), Ok("hi".into()));
        assert!(MessageContent::parse("  \n ").is_err());
        assert!(MessageContent::parse(&"x".repeat(8_001)).is_err());
        assert!(MessageContent::parse(&"я".repeat(8_000)).is_ok());
    }
}
