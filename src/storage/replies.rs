//! `ReplyRepo`, once for both databases: the conversation a reply answers, and its end
//! (completed or failed) in one transaction with the removal of its job.

use async_trait::async_trait;
use chrono::{DateTime, NaiveDate, Utc};

use super::SqlStore;
use super::messages::message_columns;
use super::sql::{Connection, Lock, Scalar, sql};
use crate::jobs::queue::ClaimedJob;
use crate::messages::model::{Message, MessageError, MessageId, ReplyMeta};
use crate::replies::model::ReplyJob;
use crate::replies::repo::ReplyRepo;
use crate::storage::error::StoreError;

impl SqlStore {
    /// Removes the reply's job and, when the reply changed, bumps the chatroom's activity.
    async fn end_reply(
        &self,
        tx: &mut dyn Connection,
        job: &ClaimedJob,
        reply: &ReplyJob,
        reply_changed: bool,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        if reply_changed {
            sql("UPDATE chatrooms SET last_message_at = $2, activity_at = $2 WHERE id = $1")
                .bind(reply.chatroom_id.0)
                .bind(now)
                .execute(&mut *tx)
                .await?;
        }
        self.finish_in(tx, job.id).await
    }
}

#[async_trait]
impl ReplyRepo for SqlStore {
    async fn history(&self, reply: &ReplyJob, limit: u32) -> Result<Vec<Message>, StoreError> {
        let mut newest_first: Vec<Message> = sql(concat!(
            "SELECT ",
            message_columns!(),
            " FROM messages WHERE chatroom_id = $1 AND id < $2 AND status = 'completed' \
             ORDER BY id DESC LIMIT $3"
        ))
        .bind(reply.chatroom_id.0)
        .bind(reply.reply_id.0)
        .bind(limit)
        .fetch_all(&mut *self.db.reads())
        .await?;
        newest_first.reverse();
        Ok(newest_first)
    }

    async fn mark_streaming(&self, reply: MessageId, now: DateTime<Utc>) -> Result<(), StoreError> {
        sql("UPDATE messages SET status = 'streaming', updated_at = $2 \
             WHERE id = $1 AND status = 'pending'")
        .bind(reply.0)
        .bind(now)
        .execute(&mut *self.db.writes())
        .await?;
        Ok(())
    }

    async fn reset_to_pending(
        &self,
        job: &ClaimedJob,
        reply: MessageId,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        sql("UPDATE messages SET status = 'pending', updated_at = $2 \
             WHERE id = $1 AND status = 'streaming' \
             AND EXISTS (SELECT 1 FROM jobs WHERE id = $3 AND lock_token = $4)")
        .bind(reply.0)
        .bind(now)
        .bind(job.id.0)
        .bind(job.lock_token)
        .execute(&mut *self.db.writes())
        .await?;
        Ok(())
    }

    async fn complete(
        &self,
        job: &ClaimedJob,
        reply: &ReplyJob,
        content: &str,
        meta: &ReplyMeta,
        now: DateTime<Utc>,
    ) -> Result<Option<Message>, StoreError> {
        let finish = |statement: super::sql::Statement| {
            statement
                .bind(reply.reply_id.0)
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
                .bind(reply.chatroom_id.0)
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
        self.end_reply(&mut *tx, job, reply, done.is_some(), now)
            .await?;
        tx.commit().await?;
        self.local_jobs.notify_one();
        Ok(done)
    }

    async fn fail(
        &self,
        job: &ClaimedJob,
        reply: &ReplyJob,
        error: &MessageError,
        now: DateTime<Utc>,
    ) -> Result<Option<Message>, StoreError> {
        let mut tx = self.db.begin().await?;
        let quota_day: Option<Scalar<Option<NaiveDate>>> = sql(format!(
            "SELECT quota_day AS value FROM messages \
             WHERE id = $1 AND status IN ('pending', 'streaming'){}",
            self.locked(Lock::Update)
        ))
        .bind(reply.reply_id.0)
        .fetch_optional(&mut *tx)
        .await?;
        let Some(Scalar(quota_day)) = quota_day else {
            self.end_reply(&mut *tx, job, reply, false, now).await?;
            tx.commit().await?;
            return Ok(None);
        };
        let failed: Message = sql(concat!(
            "UPDATE messages SET status = 'failed', content = '', error_code = $2, \
             error_message = $3, quota_day = NULL, updated_at = $4 WHERE id = $1 RETURNING ",
            message_columns!()
        ))
        .bind(reply.reply_id.0)
        .bind(error.code.as_str())
        .bind(error.message.as_str())
        .bind(now)
        .fetch_one(&mut *tx)
        .await?;
        if let Some(day) = quota_day {
            // The prompt goes back to the day it was taken from, once (the day is cleared).
            sql("UPDATE daily_usage SET used = used - 1 \
                 WHERE user_id = $1 AND day = $2 AND used > 0")
            .bind(reply.user_id.0)
            .bind(day)
            .execute(&mut *tx)
            .await?;
        }
        self.end_reply(&mut *tx, job, reply, true, now).await?;
        tx.commit().await?;
        self.local_jobs.notify_one();
        Ok(Some(failed))
    }
}
