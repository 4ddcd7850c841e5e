//! The users storage port.

use async_trait::async_trait;
use chrono::{DateTime, NaiveDate, Utc};

use super::model::{MobileNumber, User, UserId};
use crate::chatrooms::model::ChatroomId;
use crate::storage::error::StoreError;

#[async_trait]
pub trait UserRepo: Send + Sync {
    /// Stores a new user (its tier is not stored: subscriptions decide it); `Conflict` when
    /// the mobile number is taken.
    async fn insert(&self, user: &User) -> Result<(), StoreError>;
    /// The user, with the tier their subscriptions grant at `now`.
    async fn find_by_id(&self, id: UserId, now: DateTime<Utc>) -> Result<Option<User>, StoreError>;
    /// The user (tier at `now`) with the prompts they used on `day` and the end of their
    /// subscriptions, in one round trip.
    async fn find_with_usage(
        &self,
        id: UserId,
        now: DateTime<Utc>,
        day: NaiveDate,
    ) -> Result<Option<Profile>, StoreError>;
    async fn find_by_mobile(
        &self,
        mobile: &MobileNumber,
        now: DateTime<Utc>,
    ) -> Result<Option<User>, StoreError>;
    /// Renames a user and returns the stored result (tier at `now`); `NotFound` if gone.
    async fn update_name(
        &self,
        id: UserId,
        name: &str,
        now: DateTime<Utc>,
    ) -> Result<User, StoreError>;

    /// In one transaction: deletes the user and everything the account owns (chatrooms,
    /// messages, uploads, sessions, codes, usage, subscriptions, queued work) and queues the
    /// removal of its files from the object store. `None` when there is no such user.
    async fn delete(
        &self,
        id: UserId,
        now: DateTime<Utc>,
    ) -> Result<Option<DeletedAccount>, StoreError>;
}

/// A user as `GET /user/me` shows them.
#[derive(Debug, Clone)]
pub struct Profile {
    pub user: User,
    /// Prompts taken on the day asked for.
    pub used_today: u32,
    /// The latest `pro_until` of the user's subscriptions: when a tier they give ends by
    /// itself.
    pub pro_until: Option<DateTime<Utc>>,
}

/// What was deleted with an account, for what follows the commit.
#[derive(Debug, Clone, Default)]
pub struct DeletedAccount {
    /// Its chatrooms: their listeners and replies being produced are told.
    pub chatrooms: Vec<ChatroomId>,
    /// Files queued for removal from the object store.
    pub files: usize,
}
