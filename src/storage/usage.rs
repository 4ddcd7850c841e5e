//! `UsageRepo`, once for both databases.

use async_trait::async_trait;
use chrono::NaiveDate;

use super::SqlStore;
use super::sql::{Scalar, sql, to_u32};
use crate::quota::repo::UsageRepo;
use crate::storage::error::StoreError;
use crate::users::model::UserId;

#[async_trait]
impl UsageRepo for SqlStore {
    async fn used_on(&self, user_id: UserId, day: NaiveDate) -> Result<u32, StoreError> {
        let used: Option<Scalar<i64>> =
            sql("SELECT used AS value FROM daily_usage WHERE user_id = $1 AND day = $2")
                .bind(user_id.0)
                .bind(day)
                .fetch_optional(&mut *self.db.reads())
                .await?;
        Ok(used.map_or(0, |Scalar(n)| to_u32(n)))
    }
}
