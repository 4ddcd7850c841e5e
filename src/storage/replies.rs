//! `ReplyRepo`, once for both databases: the conversation a reply answers, and its end
//! (completed or failed) in one transaction with the removal of its job.

use std::sync::OnceLock;

use async_trait::async_trait;
use chrono::{DateTime, NaiveDate, Utc};

use super::SqlStore;
use super::messages::{Stored, message_columns, message_columns_of};
use super::sql::{Completion, Connection, FromRecord, Lock, Record, Scalar, sql};
use crate::chatrooms::model::{ChatroomId, NameSource};
use crate::jobs::queue::ClaimedJob;
use crate::messages::model::{Message, MessageError, MessageId, MessageStatus, ReplyMeta, Role};
use crate::replies::model::ReplyJob;
use crate::replies::repo::{Cancel, Completed, ReplyRepo};
use crate::storage::error::StoreError;
use crate::users::model::UserId;

impl SqlStore {
    /// After a reply's job ended: its lane's next job is first in line. This process's workers
    /// are woken, not every process's: the worker that ran the job has a slot free for it now
    /// (a worker that stops wakes the others as it goes, see `run_until_stopped`). A `NOTIFY`
    /// per reply was one more transaction per reply for PostgreSQL, and woke every idle worker
    /// of every process to claim the one job.
    fn lane_freed(&self) {
        self.local_jobs.notify_one();
    }

    /// Removes the reply's job and, when the reply changed, bumps the chatroom's activity;
    /// where the chatroom's name comes from, when it was bumped.
    async fn end_reply(
        &self,
        tx: &mut dyn Connection,
        job: &ClaimedJob,
        reply: &ReplyJob,
        reply_changed: bool,
        now: DateTime<Utc>,
    ) -> Result<Option<NameSource>, StoreError> {
        let mut source = None;
        if reply_changed {
            let bumped: Option<Scalar<String>> = sql(
                "UPDATE chatrooms SET last_message_at = $2, activity_at = $2 WHERE id = $1 \
                 RETURNING name_source AS value",
            )
            .bind(reply.chatroom_id.0)
            .bind(now)
            .fetch_optional(&mut *tx)
            .await?;
            source = bumped.map(|Scalar(name)| NameSource::from_db(&name));
        }
        self.finish_in(tx, job.id).await?;
        Ok(source)
    }
}

/// Gives a prompt back to the day it was taken from (the caller clears the reply's day, so it
/// happens once).
async fn give_back(
    tx: &mut dyn Connection,
    user: UserId,
    day: NaiveDate,
) -> Result<(), StoreError> {
    sql("UPDATE daily_usage SET used = used - 1 WHERE user_id = $1 AND day = $2 AND used > 0")
        .bind(user.0)
        .bind(day)
        .execute(tx)
        .await?;
    Ok(())
}

/// A completed reply as PostgreSQL's one statement returns it: with the chatroom's name source.
struct WithRoom(Stored, Option<NameSource>);

impl FromRecord for WithRoom {
    fn from_record(row: &dyn Record) -> Result<Self, StoreError> {
        let source: Option<String> = row.get("room_name_source")?;
        Ok(Self(
            Stored::from_record(row)?,
            source.map(|name| NameSource::from_db(&name)),
        ))
    }
}

impl Completed {
    fn new(message: Message, source: Option<NameSource>) -> Self {
        Self {
            message,
            room_untitled: source == Some(NameSource::Default),
        }
    }
}

#[async_trait]
impl ReplyRepo for SqlStore {
    async fn path_above(&self, reply: &ReplyJob, limit: u32) -> Result<Vec<Message>, StoreError> {
        // Up the parent links from the reply's prompt: the reply's own branch, whichever
        // branch is active now. Each step carries the row it reached, so the path is not
        // looked up again by id.
        static PATH: OnceLock<String> = OnceLock::new();
        let text = PATH.get_or_init(|| {
            format!(
                "WITH RECURSIVE path AS ( \
                     SELECT {}, 1 AS depth FROM messages r JOIN messages p ON p.id = r.parent_id \
                     WHERE r.id = $1 \
                     UNION ALL \
                     SELECT {}, path.depth + 1 FROM messages m \
                     JOIN path ON m.id = path.parent_id WHERE path.depth < $2) \
                 SELECT {} FROM path ORDER BY id",
                message_columns_of("p"),
                message_columns_of("m"),
                message_columns!(),
            )
        });
        let path = sql(text.as_str()).bind(reply.reply_id.0).bind(limit);
        let mut reads = self.db.reads();
        let path: Vec<Stored> = path.fetch_all(&mut *reads).await?;
        self.assembled(&mut *reads, path).await
    }

    async fn mark_streaming(
        &self,
        reply: MessageId,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        // Streaming already is fine: a run whose lease lapsed may have marked it. Not flushed
        // (see `Dialect::unflushed`): lost with the server, the reply is `pending` again, as
        // its next attempt would set it anyway.
        let marked = sql(format!(
            "UPDATE messages SET status = 'streaming', updated_at = $2{} \
             WHERE id = $1 AND status IN ('pending', 'streaming')",
            self.db.unflushed()
        ))
        .bind(reply.0)
        .bind(now)
        .execute(&mut *self.db.writes())
        .await?;
        Ok(marked == 1)
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
    ) -> Result<Option<Completed>, StoreError> {
        let statement = |text: &'static str| {
            sql(text)
                .bind(reply.reply_id.0)
                .bind(content)
                .bind(meta.finish_reason.as_deref())
                .bind(meta.model_version.as_deref())
                .bind(meta.prompt_tokens)
                .bind(meta.output_tokens)
                .bind(meta.total_tokens)
                .bind(now)
                .bind(meta.thinking_tokens)
                .bind(meta.cached_tokens)
                .bind(job.id.0)
                .bind(reply.chatroom_id.0)
        };
        let done: Option<WithRoom> = match self.db.completion() {
            Completion::Statement(one) => {
                statement(one)
                    .fetch_optional(&mut *self.db.writes())
                    .await?
            }
            Completion::Statements(several) => {
                let mut tx = self.db.begin().await?;
                // All of them run only if every row is read.
                let rows: Vec<WithRoom> = statement(several).fetch_all(&mut *tx).await?;
                tx.commit().await?;
                rows.into_iter().next()
            }
        };
        self.lane_freed();
        let Some(WithRoom(done, source)) = done else {
            return Ok(None);
        };
        // Its versions, if it has any: read once it is committed, off the writer.
        let done = self
            .one_assembled(&mut *self.db.reads(), Some(done))
            .await?;
        Ok(done.map(|message| Completed::new(message, source)))
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
            self.wake_workers().await;
            return Ok(None);
        };
        let failed: Stored = sql(concat!(
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
            give_back(&mut *tx, reply.user_id, day).await?;
        }
        self.end_reply(&mut *tx, job, reply, true, now).await?;
        let failed = self.one_assembled(&mut *tx, Some(failed)).await?;
        tx.commit().await?;
        self.wake_workers().await;
        Ok(failed)
    }

    async fn cancel(
        &self,
        user: UserId,
        room: ChatroomId,
        reply: MessageId,
        streamed: &str,
        now: DateTime<Utc>,
    ) -> Result<Cancel, StoreError> {
        let mut tx = self.db.begin().await?;
        let found = self.locked_message(&mut *tx, user, room, reply).await?;
        let Some(found) = found else {
            return Ok(Cancel::NotFound);
        };
        let current = &found.message;
        let text = match (current.role, current.status) {
            (Role::Model, MessageStatus::Pending) => "",
            (Role::Model, MessageStatus::Streaming) => streamed,
            (Role::Model, MessageStatus::Cancelled) => {
                let found = self.one_assembled(&mut *tx, Some(found)).await?;
                return Ok(found.map_or(Cancel::NotFound, Cancel::AlreadyCancelled));
            }
            _ => return Ok(Cancel::NotCancellable),
        };
        // Not started: the prompt goes back (and the day is cleared, so only once).
        let give_back_day = match current.status {
            MessageStatus::Pending => current.quota_day,
            _ => None,
        };
        let cancelled: Stored = sql(concat!(
            "UPDATE messages SET status = 'cancelled', content = $2, updated_at = $3, \
             quota_day = CASE WHEN $4 THEN NULL ELSE quota_day END WHERE id = $1 RETURNING ",
            message_columns!()
        ))
        .bind(reply.0)
        .bind(text)
        .bind(now)
        .bind(give_back_day.is_some())
        .fetch_one(&mut *tx)
        .await?;
        if let Some(day) = give_back_day {
            give_back(&mut *tx, user, day).await?;
        }
        let job = ReplyJob::of(&cancelled.message);
        self.remove_in(&mut *tx, &job.key()).await?;
        let cancelled = self.one_assembled(&mut *tx, Some(cancelled)).await?;
        tx.commit().await?;
        self.wake_workers().await;
        Ok(cancelled.map_or(Cancel::NotFound, Cancel::Cancelled))
    }
}
