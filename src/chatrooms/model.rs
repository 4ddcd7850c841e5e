//! Chatroom domain types.

use std::fmt;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use crate::users::model::UserId;

/// A chatroom's id (UUIDv7).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct ChatroomId(pub Uuid);

impl ChatroomId {
    pub(crate) fn new() -> Self {
        Self(Uuid::now_v7())
    }
}

impl Default for ChatroomId {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Display for ChatroomId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// A chatroom name: 1 to 100 characters after trimming, no control characters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ChatroomName(String);

impl ChatroomName {
    pub(crate) const MAX_CHARS: usize = 100;

    pub(crate) fn parse(input: &str) -> Result<Self, String> {
        crate::users::model::parse_display_name(input, Self::MAX_CHARS).map(Self)
    }

    pub(crate) fn as_str(&self) -> &str {
        &self.0
    }
}

/// Where a chatroom's name comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NameSource {
    /// Given or changed by its owner: never replaced by a title.
    User,
    /// Created without a name: [`DEFAULT_NAME`] until a title is generated.
    Default,
    /// Generated from the first exchange.
    Title,
}

/// The name of a chatroom created without one.
pub const DEFAULT_NAME: &str = "New chat";

impl NameSource {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::User => "user",
            Self::Default => "default",
            Self::Title => "title",
        }
    }

    pub(crate) fn from_db(value: &str) -> Self {
        match value {
            "default" => Self::Default,
            "title" => Self::Title,
            _ => Self::User,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Chatroom {
    pub id: ChatroomId,
    pub user_id: UserId,
    pub name: String,
    pub name_source: NameSource,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub last_message_at: Option<DateTime<Utc>>,
}

/// A chatroom as clients see it (also the data of `chatroom.updated`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[schema(as = Chatroom)]
pub(crate) struct ChatroomView {
    pub(crate) id: Uuid,
    pub(crate) name: String,
    pub(crate) created_at: DateTime<Utc>,
    pub(crate) updated_at: DateTime<Utc>,
    /// `null` until the first message.
    pub(crate) last_message_at: Option<DateTime<Utc>>,
}

impl From<&Chatroom> for ChatroomView {
    fn from(room: &Chatroom) -> Self {
        Self {
            id: room.id.0,
            name: room.name.clone(),
            created_at: room.created_at,
            updated_at: room.updated_at,
            last_message_at: room.last_message_at,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_trimmed_and_bounded() {
        assert_eq!(
            ChatroomName::parse("  Trip ").map(|n| n.0),
            Ok("Trip".into())
        );
        assert!(ChatroomName::parse(" \t ").is_err());
        assert!(ChatroomName::parse(&"n".repeat(101)).is_err());
        assert!(ChatroomName::parse(&"ñ".repeat(100)).is_ok());
        assert!(ChatroomName::parse("a\nb").is_err());
    }
}
