//! The usage storage port.

use async_trait::async_trait;
use chrono::NaiveDate;

use super::model::UsageDay;
use crate::storage::error::StoreError;
use crate::users::model::UserId;

#[async_trait]
pub trait UsageRepo: Send + Sync {
    /// Prompts the user has taken on `day` (0 when none).
    async fn used_on(&self, user_id: UserId, day: NaiveDate) -> Result<u32, StoreError>;

    /// The user's use on each UTC day from `first` to `last` (both included) that had any, in
    /// no particular order: prompts taken, and the tokens of the replies to prompts sent that
    /// day.
    async fn history(
        &self,
        user_id: UserId,
        first: NaiveDate,
        last: NaiveDate,
    ) -> Result<Vec<UsageDay>, StoreError>;
}
