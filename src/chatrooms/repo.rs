//! The chatrooms storage port. Every method is scoped to the owner: another user's chatroom
//! behaves exactly like a missing one.

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use super::model::{Chatroom, ChatroomId};
use crate::storage::error::StoreError;
use crate::users::model::UserId;

#[async_trait]
pub trait ChatroomRepo: Send + Sync {
    /// Stores `room` unless its owner already has `max_per_user`; false when at the limit.
    /// The count and the insert are one transaction, serialised per user.
    async fn create(&self, room: &Chatroom, max_per_user: u32) -> Result<bool, StoreError>;

    /// The owner's chatrooms, newest activity first.
    async fn list(&self, user: UserId) -> Result<Vec<Chatroom>, StoreError>;

    async fn find(&self, user: UserId, id: ChatroomId) -> Result<Option<Chatroom>, StoreError>;

    async fn rename(
        &self,
        user: UserId,
        id: ChatroomId,
        name: &str,
        now: DateTime<Utc>,
    ) -> Result<Option<Chatroom>, StoreError>;

    /// Names the chatroom with a generated title, unless its owner named it (or it has a
    /// title already); the chatroom if it was renamed.
    async fn set_title(
        &self,
        id: ChatroomId,
        title: &str,
        now: DateTime<Utc>,
    ) -> Result<Option<Chatroom>, StoreError>;

    /// Deletes the chatroom with its messages, its queued jobs and the files only its prompts
    /// carry (their bytes through a job queued due `now`); false if there was none.
    async fn delete(
        &self,
        user: UserId,
        id: ChatroomId,
        now: chrono::DateTime<chrono::Utc>,
    ) -> Result<bool, StoreError>;
}
