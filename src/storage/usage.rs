//! `UsageRepo`, once for both databases.

use async_trait::async_trait;
use chrono::{NaiveDate, NaiveTime};

use super::SqlStore;
use super::sql::{FromRecord, Record, Scalar, sql, to_u32};
use crate::quota::model::UsageDay;
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

    async fn history(
        &self,
        user_id: UserId,
        first: NaiveDate,
        last: NaiveDate,
    ) -> Result<Vec<UsageDay>, StoreError> {
        let mut reads = self.db.reads();
        let prompts: Vec<Counted> = sql("SELECT day AS date, used AS prompts, 0 AS input_tokens, \
             0 AS output_tokens, 0 AS thinking_tokens FROM daily_usage \
             WHERE user_id = $1 AND day >= $2 AND day <= $3")
        .bind(user_id.0)
        .bind(first)
        .bind(last)
        .fetch_all(&mut *reads)
        .await?;
        let start = first.and_time(NaiveTime::MIN).and_utc();
        let end = last.and_time(NaiveTime::MIN).and_utc() + chrono::TimeDelta::days(1);
        let day = self.db.utc_day("created_at");
        let tokens: Vec<Counted> = sql(format!(
            "SELECT {day} AS date, 0 AS prompts, \
             COALESCE(SUM(prompt_tokens), 0) AS input_tokens, \
             COALESCE(SUM(output_tokens), 0) AS output_tokens, \
             COALESCE(SUM(thinking_tokens), 0) AS thinking_tokens \
             FROM messages WHERE user_id = $1 AND role = 'model' \
             AND created_at >= $2 AND created_at < $3 GROUP BY {day}"
        ))
        .bind(user_id.0)
        .bind(start)
        .bind(end)
        .fetch_all(&mut *reads)
        .await?;
        Ok(prompts
            .into_iter()
            .chain(tokens)
            .map(|Counted(d)| d)
            .collect())
    }
}

/// A row of either half of the history.
struct Counted(UsageDay);

impl FromRecord for Counted {
    fn from_record(row: &dyn Record) -> Result<Self, StoreError> {
        let count = |column| -> Result<u64, StoreError> {
            Ok(u64::try_from(row.get::<i64>(column)?).unwrap_or(0))
        };
        Ok(Self(UsageDay {
            date: row.get("date")?,
            prompts: to_u32(row.get("prompts")?),
            input_tokens: count("input_tokens")?,
            output_tokens: count("output_tokens")?,
            thinking_tokens: count("thinking_tokens")?,
        }))
    }
}
