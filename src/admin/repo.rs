//! The administration storage port.

use async_trait::async_trait;
use chrono::{DateTime, NaiveDate, Utc};
use uuid::Uuid;

use super::model::{Action, AdminUser, AuditEntry, Stats, UserChange, UserQuery};
use crate::messages::model::Message;
use crate::storage::error::StoreError;
use crate::users::model::{MobileNumber, UserId};

#[async_trait]
pub trait AdminRepo: Send + Sync {
    /// Grants or revokes the admin role of the user with this number, with its audit entry
    /// (no admin: the command line), in one transaction. `None`: no such user; `Some(false)`:
    /// the role was already so (nothing written).
    async fn set_admin(
        &self,
        mobile: &MobileNumber,
        admin: bool,
        now: DateTime<Utc>,
    ) -> Result<Option<bool>, StoreError>;

    /// Whether the user holds the admin role (and is not disabled).
    async fn is_admin(&self, user: UserId) -> Result<bool, StoreError>;

    /// Users matching `query`, newest first, with their usage on `today`.
    async fn users(
        &self,
        query: &UserQuery,
        now: DateTime<Utc>,
        today: NaiveDate,
    ) -> Result<Vec<AdminUser>, StoreError>;

    /// In one transaction: applies `change` to `target` (disabling also revokes every session)
    /// and writes an audit entry by `admin` for each setting that actually changed; returns
    /// the user as they are now and the actions applied. `None`: no such user.
    async fn change_user(
        &self,
        admin: UserId,
        target: UserId,
        change: UserChange,
        now: DateTime<Utc>,
        today: NaiveDate,
    ) -> Result<Option<(AdminUser, Vec<Action>)>, StoreError>;

    /// The service's figures at `now`.
    async fn stats(&self, now: DateTime<Utc>, today: NaiveDate) -> Result<Stats, StoreError>;

    /// Failed replies, newest first.
    async fn failed_replies(&self, limit: u32) -> Result<Vec<Message>, StoreError>;

    /// Audit entries, newest first, before the entry `before`.
    async fn audit(&self, before: Option<Uuid>, limit: u32) -> Result<Vec<AuditEntry>, StoreError>;
}
