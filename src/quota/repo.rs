//! The usage storage port.

use async_trait::async_trait;
use chrono::NaiveDate;

use crate::storage::error::StoreError;
use crate::users::model::UserId;

#[async_trait]
pub trait UsageRepo: Send + Sync {
    /// Prompts the user has taken on `day` (0 when none).
    async fn used_on(&self, user_id: UserId, day: NaiveDate) -> Result<u32, StoreError>;
}
