//! `UsageRepo` on PostgreSQL.

use async_trait::async_trait;
use chrono::NaiveDate;

use super::PgStore;
use crate::quota::repo::UsageRepo;
use crate::storage::StoreError;
use crate::users::model::UserId;

#[async_trait]
impl UsageRepo for PgStore {
    async fn used_on(&self, user_id: UserId, day: NaiveDate) -> Result<u32, StoreError> {
        let used: Option<i32> =
            sqlx::query_scalar("SELECT used FROM daily_usage WHERE user_id = $1 AND day = $2")
                .bind(user_id.0)
                .bind(day)
                .fetch_optional(&self.pool)
                .await?;
        Ok(used.map_or(0, |n| u32::try_from(n).unwrap_or(0)))
    }
}
