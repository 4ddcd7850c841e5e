//! `JobQueue`, once for both databases: leases, retries and the conditional end of a reply.
//! Claiming and waking differ per database (see the dialects).

use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, NaiveDate, Utc};

use super::SqlStore;
use super::messages::message_columns;
use super::sql::{Connection, FromRecord, Lock, Record, Scalar, sql, to_u32};
use crate::chatrooms::model::ChatroomId;
use crate::jobs::queue::{ClaimedJob, JobId, JobQueue};
use crate::messages::model::{Message, MessageError, MessageId, ReplyMeta};
use crate::storage::error::StoreError;
use crate::users::model::UserId;

impl FromRecord for ClaimedJob {
    fn from_record(row: &dyn Record) -> Result<Self, StoreError> {
        Ok(Self {
            id: JobId(row.get("id")?),
            reply_id: MessageId(row.get("reply_id")?),
            chatroom_id: ChatroomId(row.get("chatroom_id")?),
            user_id: UserId(row.get("user_id")?),
            attempts: to_u32(row.get("attempts")?),
            lock_token: row.get("lock_token")?,
        })
    }
}

struct Counts(i64, i64);

impl FromRecord for Counts {
    fn from_record(row: &dyn Record) -> Result<Self, StoreError> {
        Ok(Self(row.get("queued")?, row.get("running")?))
    }
}

fn lease_end(now: DateTime<Utc>, lease: Duration) -> DateTime<Utc> {
    now + chrono::Duration::from_std(lease).unwrap_or(chrono::Duration::seconds(60))
}

impl SqlStore {
    /// Inside a transaction about to commit: wakes the workers of every process (on
    /// PostgreSQL a `NOTIFY`, delivered at commit; one process owns SQLite's workers, and
    /// `local_jobs` wakes them after the commit).
    pub(super) async fn wake_workers(&self, tx: &mut dyn Connection) -> Result<(), StoreError> {
        if let Some(notify) = self.db.wake_workers() {
            notify.execute(tx).await?;
        }
        Ok(())
    }

    /// Removes a finished job and, when the reply changed, bumps the chatroom's activity and
    /// wakes workers (the room's next job is now first in line).
    async fn finish_job(
        &self,
        tx: &mut dyn Connection,
        job: &ClaimedJob,
        reply_changed: bool,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        sql("DELETE FROM jobs WHERE id = $1")
            .bind(job.id.0)
            .execute(&mut *tx)
            .await?;
        if reply_changed {
            sql("UPDATE chatrooms SET last_message_at = $2, activity_at = $2 WHERE id = $1")
                .bind(job.chatroom_id.0)
                .bind(now)
                .execute(&mut *tx)
                .await?;
        }
        self.wake_workers(tx).await
    }
}

/// Sends a reply whose attempt did not finish back to `pending` for the next attempt.
async fn reset_to_pending(
    tx: &mut dyn Connection,
    job: &ClaimedJob,
    now: DateTime<Utc>,
) -> Result<(), StoreError> {
    sql("UPDATE messages SET status = 'pending', updated_at = $2 \
         WHERE id = $1 AND status = 'streaming'")
    .bind(job.reply_id.0)
    .bind(now)
    .execute(tx)
    .await?;
    Ok(())
}

#[async_trait]
impl JobQueue for SqlStore {
    async fn claim(
        &self,
        now: DateTime<Utc>,
        lease: Duration,
        max: u32,
    ) -> Result<Vec<ClaimedJob>, StoreError> {
        self.db
            .claim()
            .bind(now)
            .bind(lease_end(now, lease))
            .bind(max)
            .fetch_all(&mut *self.db.writes())
            .await
    }

    async fn renew(&self, job: &ClaimedJob, until: DateTime<Utc>) -> Result<bool, StoreError> {
        let done = sql("UPDATE jobs SET locked_until = $3 WHERE id = $1 AND lock_token = $2")
            .bind(job.id.0)
            .bind(job.lock_token)
            .bind(until)
            .execute(&mut *self.db.writes())
            .await?;
        Ok(done == 1)
    }

    async fn release(&self, job: &ClaimedJob, now: DateTime<Utc>) -> Result<(), StoreError> {
        let mut tx = self.db.begin().await?;
        sql(
            "UPDATE jobs SET locked_until = NULL, lock_token = NULL, run_at = $3, \
             attempts = CASE WHEN attempts > 0 THEN attempts - 1 ELSE 0 END \
             WHERE id = $1 AND lock_token = $2",
        )
        .bind(job.id.0)
        .bind(job.lock_token)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        reset_to_pending(&mut *tx, job, now).await?;
        self.wake_workers(&mut *tx).await?;
        tx.commit().await?;
        self.local_jobs.notify_one();
        Ok(())
    }

    async fn retry_later(
        &self,
        job: &ClaimedJob,
        run_at: DateTime<Utc>,
        error: &str,
    ) -> Result<(), StoreError> {
        let mut tx = self.db.begin().await?;
        let done = sql(
            "UPDATE jobs SET locked_until = NULL, lock_token = NULL, run_at = $3, \
             last_error = $4 WHERE id = $1 AND lock_token = $2",
        )
        .bind(job.id.0)
        .bind(job.lock_token)
        .bind(run_at)
        .bind(error)
        .execute(&mut *tx)
        .await?;
        if done == 1 {
            reset_to_pending(&mut *tx, job, run_at).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    async fn history(&self, job: &ClaimedJob, limit: u32) -> Result<Vec<Message>, StoreError> {
        let mut newest_first: Vec<Message> = sql(concat!(
            "SELECT ",
            message_columns!(),
            " FROM messages WHERE chatroom_id = $1 AND id < $2 AND status = 'completed' \
             ORDER BY id DESC LIMIT $3"
        ))
        .bind(job.chatroom_id.0)
        .bind(job.reply_id.0)
        .bind(limit)
        .fetch_all(&mut *self.db.reads())
        .await?;
        newest_first.reverse();
        Ok(newest_first)
    }

    async fn mark_streaming(&self, job: &ClaimedJob, now: DateTime<Utc>) -> Result<(), StoreError> {
        sql("UPDATE messages SET status = 'streaming', updated_at = $2 \
             WHERE id = $1 AND status = 'pending'")
        .bind(job.reply_id.0)
        .bind(now)
        .execute(&mut *self.db.writes())
        .await?;
        Ok(())
    }

    async fn complete(
        &self,
        job: &ClaimedJob,
        content: &str,
        meta: &ReplyMeta,
        now: DateTime<Utc>,
    ) -> Result<Option<Message>, StoreError> {
        let finish = |statement: super::sql::Statement| {
            statement
                .bind(job.reply_id.0)
                .bind(content)
                .bind(meta.finish_reason.as_deref())
                .bind(meta.model_version.as_deref())
                .bind(meta.prompt_tokens)
                .bind(meta.output_tokens)
                .bind(meta.total_tokens)
                .bind(now)
        };
        // Where the database can, one statement does it all (one round trip, once per reply).
        if let Some(in_one) = self.db.complete_in_one_statement() {
            let done: Option<Message> = finish(sql(in_one))
                .bind(job.id.0)
                .bind(job.chatroom_id.0)
                .fetch_optional(&mut *self.db.writes())
                .await?;
            self.local_jobs.notify_one();
            return Ok(done);
        }
        let mut tx = self.db.begin().await?;
        let done: Option<Message> = finish(sql(concat!(
            "UPDATE messages SET status = 'completed', content = $2, finish_reason = $3, \
             model_version = $4, prompt_tokens = $5, output_tokens = $6, total_tokens = $7, \
             updated_at = $8 WHERE id = $1 AND status IN ('pending', 'streaming') RETURNING ",
            message_columns!()
        )))
        .fetch_optional(&mut *tx)
        .await?;
        self.finish_job(&mut *tx, job, done.is_some(), now).await?;
        tx.commit().await?;
        self.local_jobs.notify_one();
        Ok(done)
    }

    async fn fail(
        &self,
        job: &ClaimedJob,
        error: &MessageError,
        now: DateTime<Utc>,
    ) -> Result<Option<Message>, StoreError> {
        let mut tx = self.db.begin().await?;
        let quota_day: Option<Scalar<Option<NaiveDate>>> = sql(format!(
            "SELECT quota_day AS value FROM messages \
             WHERE id = $1 AND status IN ('pending', 'streaming'){}",
            self.locked(Lock::Update)
        ))
        .bind(job.reply_id.0)
        .fetch_optional(&mut *tx)
        .await?;
        let Some(Scalar(quota_day)) = quota_day else {
            self.finish_job(&mut *tx, job, false, now).await?;
            tx.commit().await?;
            return Ok(None);
        };
        let failed: Message = sql(concat!(
            "UPDATE messages SET status = 'failed', content = '', error_code = $2, \
             error_message = $3, quota_day = NULL, updated_at = $4 WHERE id = $1 RETURNING ",
            message_columns!()
        ))
        .bind(job.reply_id.0)
        .bind(error.code.as_str())
        .bind(error.message.as_str())
        .bind(now)
        .fetch_one(&mut *tx)
        .await?;
        if let Some(day) = quota_day {
            // The prompt goes back to the day it was taken from, once (the day is cleared).
            sql("UPDATE daily_usage SET used = used - 1 \
                 WHERE user_id = $1 AND day = $2 AND used > 0")
            .bind(job.user_id.0)
            .bind(day)
            .execute(&mut *tx)
            .await?;
        }
        self.finish_job(&mut *tx, job, true, now).await?;
        tx.commit().await?;
        self.local_jobs.notify_one();
        Ok(Some(failed))
    }

    async fn counts(&self, now: DateTime<Utc>) -> Result<(u64, u64), StoreError> {
        let Counts(queued, running) = sql(
            "SELECT count(*) FILTER (WHERE lock_token IS NULL OR locked_until < $1) AS queued, \
             count(*) FILTER (WHERE lock_token IS NOT NULL AND locked_until >= $1) AS running \
             FROM jobs",
        )
        .bind(now)
        .fetch_one(&mut *self.db.reads())
        .await?;
        Ok((
            u64::try_from(queued).unwrap_or(0),
            u64::try_from(running).unwrap_or(0),
        ))
    }

    async fn next_run_at(&self) -> Result<Option<DateTime<Utc>>, StoreError> {
        let Scalar(next) = sql(
            "SELECT min(CASE WHEN lock_token IS NULL THEN run_at ELSE locked_until END) AS value \
             FROM jobs",
        )
        .fetch_one::<Scalar<Option<DateTime<Utc>>>>(&mut *self.db.reads())
        .await?;
        Ok(next)
    }

    async fn wait_for_work(&self, max_wait: Duration) {
        self.db.wait_for_work(&self.local_jobs, max_wait).await;
    }
}
