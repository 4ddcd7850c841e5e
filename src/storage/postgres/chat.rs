//! `ChatroomRepo`, `MessageRepo` and `JobQueue` on PostgreSQL. Jobs are claimed with
//! `FOR UPDATE SKIP LOCKED`; new work is announced with `NOTIFY gemchat_jobs`.

use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, NaiveDate, Utc};
use sqlx::postgres::PgListener;
use uuid::Uuid;

use super::PgStore;
use crate::chatrooms::model::{Chatroom, ChatroomId};
use crate::chatrooms::repo::ChatroomRepo;
use crate::jobs::queue::{ClaimedJob, JobId, JobQueue};
use crate::messages::model::{Message, MessageError, MessageId, MessageStatus, ReplyMeta, Role};
use crate::messages::repo::{MessageRepo, NewPrompt, PromptOutcome, SearchHit};
use crate::messages::search::{SearchQuery, Term};
use crate::quota::model::QuotaPolicy;
use crate::storage::StoreError;
use crate::users::model::{Tier, UserId};

/// The channel `LISTEN`ed to by workers.
const JOBS_CHANNEL: &str = "gemchat_jobs";

macro_rules! message_columns {
    () => {
        "id, chatroom_id, user_id, role, content, status, error_code, error_message, quota_day, \
         finish_reason, model_version, prompt_tokens, output_tokens, total_tokens, created_at, \
         updated_at"
    };
}

#[derive(sqlx::FromRow)]
struct ChatroomRow {
    id: Uuid,
    user_id: Uuid,
    name: String,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
    last_message_at: Option<DateTime<Utc>>,
}

impl From<ChatroomRow> for Chatroom {
    fn from(row: ChatroomRow) -> Self {
        Self {
            id: ChatroomId(row.id),
            user_id: UserId(row.user_id),
            name: row.name,
            created_at: row.created_at,
            updated_at: row.updated_at,
            last_message_at: row.last_message_at,
        }
    }
}

#[derive(sqlx::FromRow)]
struct MessageRow {
    id: Uuid,
    chatroom_id: Uuid,
    user_id: Uuid,
    role: String,
    content: String,
    status: String,
    error_code: Option<String>,
    error_message: Option<String>,
    quota_day: Option<NaiveDate>,
    finish_reason: Option<String>,
    model_version: Option<String>,
    prompt_tokens: Option<i32>,
    output_tokens: Option<i32>,
    total_tokens: Option<i32>,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
}

fn tokens(value: Option<i32>) -> Option<u32> {
    value.and_then(|v| u32::try_from(v).ok())
}

fn db_tokens(value: Option<u32>) -> Option<i32> {
    value.and_then(|v| i32::try_from(v).ok())
}

impl From<MessageRow> for Message {
    fn from(row: MessageRow) -> Self {
        Self {
            id: MessageId(row.id),
            chatroom_id: ChatroomId(row.chatroom_id),
            user_id: UserId(row.user_id),
            role: Role::from_db(&row.role),
            content: row.content,
            status: MessageStatus::from_db(&row.status),
            error: row.error_code.map(|code| MessageError {
                code,
                message: row.error_message.unwrap_or_default(),
            }),
            quota_day: row.quota_day,
            meta: ReplyMeta {
                finish_reason: row.finish_reason,
                model_version: row.model_version,
                prompt_tokens: tokens(row.prompt_tokens),
                output_tokens: tokens(row.output_tokens),
                total_tokens: tokens(row.total_tokens),
            },
            created_at: row.created_at,
            updated_at: row.updated_at,
        }
    }
}

#[async_trait]
impl ChatroomRepo for PgStore {
    async fn create(&self, room: &Chatroom, max_per_user: u32) -> Result<bool, StoreError> {
        let mut tx = self.pool.begin().await?;
        // Serialise creations per user so the count cannot be raced past the limit.
        sqlx::query("SELECT 1 FROM users WHERE id = $1 FOR NO KEY UPDATE")
            .bind(room.user_id.0)
            .fetch_one(&mut *tx)
            .await?;
        let count: i64 = sqlx::query_scalar("SELECT count(*) FROM chatrooms WHERE user_id = $1")
            .bind(room.user_id.0)
            .fetch_one(&mut *tx)
            .await?;
        if count >= i64::from(max_per_user) {
            return Ok(false);
        }
        sqlx::query(
            "INSERT INTO chatrooms (id, user_id, name, created_at, updated_at, last_message_at, activity_at) \
             VALUES ($1, $2, $3, $4, $5, NULL, $4)",
        )
        .bind(room.id.0)
        .bind(room.user_id.0)
        .bind(&room.name)
        .bind(room.created_at)
        .bind(room.updated_at)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(true)
    }

    async fn list(&self, user: UserId) -> Result<Vec<Chatroom>, StoreError> {
        let rows: Vec<ChatroomRow> = sqlx::query_as(
            "SELECT id, user_id, name, created_at, updated_at, last_message_at FROM chatrooms \
             WHERE user_id = $1 ORDER BY activity_at DESC, id DESC",
        )
        .bind(user.0)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.into_iter().map(Chatroom::from).collect())
    }

    async fn find(&self, user: UserId, id: ChatroomId) -> Result<Option<Chatroom>, StoreError> {
        let row: Option<ChatroomRow> = sqlx::query_as(
            "SELECT id, user_id, name, created_at, updated_at, last_message_at FROM chatrooms \
             WHERE id = $1 AND user_id = $2",
        )
        .bind(id.0)
        .bind(user.0)
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.map(Chatroom::from))
    }

    async fn rename(
        &self,
        user: UserId,
        id: ChatroomId,
        name: &str,
        now: DateTime<Utc>,
    ) -> Result<Option<Chatroom>, StoreError> {
        let row: Option<ChatroomRow> = sqlx::query_as(
            "UPDATE chatrooms SET name = $3, updated_at = $4 WHERE id = $1 AND user_id = $2 \
             RETURNING id, user_id, name, created_at, updated_at, last_message_at",
        )
        .bind(id.0)
        .bind(user.0)
        .bind(name)
        .bind(now)
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.map(Chatroom::from))
    }

    async fn delete(&self, user: UserId, id: ChatroomId) -> Result<bool, StoreError> {
        let mut tx = self.pool.begin().await?;
        // Replies still queued will never be produced: their prompts go back to the days they
        // were taken from (a reply already streaming has reached the model, and counts).
        let days: Vec<NaiveDate> = sqlx::query_scalar(
            "SELECT quota_day FROM messages WHERE chatroom_id = $1 AND user_id = $2 \
             AND role = 'model' AND status = 'pending' AND quota_day IS NOT NULL FOR UPDATE",
        )
        .bind(id.0)
        .bind(user.0)
        .fetch_all(&mut *tx)
        .await?;
        let done = sqlx::query("DELETE FROM chatrooms WHERE id = $1 AND user_id = $2")
            .bind(id.0)
            .bind(user.0)
            .execute(&mut *tx)
            .await?;
        if done.rows_affected() != 1 {
            return Ok(false);
        }
        for (day, count) in crate::storage::tally(days) {
            sqlx::query(
                "UPDATE daily_usage SET used = CASE WHEN used > $3 THEN used - $3 ELSE 0 END \
                 WHERE user_id = $1 AND day = $2",
            )
            .bind(user.0)
            .bind(day)
            .bind(count)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(true)
    }
}

fn insert_message(
    message: &Message,
) -> sqlx::query::Query<'_, sqlx::Postgres, sqlx::postgres::PgArguments> {
    sqlx::query(concat!(
        "INSERT INTO messages (",
        message_columns!(),
        ") VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16)"
    ))
    .bind(message.id.0)
    .bind(message.chatroom_id.0)
    .bind(message.user_id.0)
    .bind(message.role.as_str())
    .bind(&message.content)
    .bind(message.status.as_str())
    .bind(message.error.as_ref().map(|e| e.code.as_str()))
    .bind(message.error.as_ref().map(|e| e.message.as_str()))
    .bind(message.quota_day)
    .bind(message.meta.finish_reason.as_deref())
    .bind(message.meta.model_version.as_deref())
    .bind(db_tokens(message.meta.prompt_tokens))
    .bind(db_tokens(message.meta.output_tokens))
    .bind(db_tokens(message.meta.total_tokens))
    .bind(message.created_at)
    .bind(message.updated_at)
}

fn insert_job(
    id: JobId,
    reply: &Message,
    now: DateTime<Utc>,
) -> sqlx::query::Query<'static, sqlx::Postgres, sqlx::postgres::PgArguments> {
    sqlx::query(
        "INSERT INTO jobs (id, reply_id, chatroom_id, user_id, attempts, run_at, created_at) \
         VALUES ($1, $2, $3, $4, 0, $5, $5)",
    )
    .bind(id.0)
    .bind(reply.id.0)
    .bind(reply.chatroom_id.0)
    .bind(reply.user_id.0)
    .bind(now)
}

const NOTIFY_JOBS: &str = "SELECT pg_notify('gemchat_jobs', '')";

#[async_trait]
impl MessageRepo for PgStore {
    async fn insert_prompt_with_reply_job(
        &self,
        new: &NewPrompt,
        quota: &QuotaPolicy,
    ) -> Result<PromptOutcome, StoreError> {
        let user = new.prompt.user_id;
        let mut tx = self.pool.begin().await?;
        // The chatroom must exist and be the user's. Locking its row up front (NO KEY UPDATE,
        // as the activity bump below needs) serialises sends per chatroom; a weaker share
        // lock here would deadlock two concurrent sends upgrading it. The tier is read in the
        // same transaction so a plan change applies at once.
        let is_pro: Option<bool> = sqlx::query_scalar(
            "SELECT EXISTS (SELECT 1 FROM subscriptions s WHERE s.user_id = c.user_id \
             AND s.pro_until > $3) FROM chatrooms c WHERE c.id = $1 AND c.user_id = $2 FOR NO KEY UPDATE OF c",
        )
        .bind(new.prompt.chatroom_id.0)
        .bind(user.0)
        .bind(new.now)
        .fetch_optional(&mut *tx)
        .await?;
        let Some(is_pro) = is_pro else {
            return Ok(PromptOutcome::ChatroomNotFound);
        };
        let tier = if is_pro { Tier::Pro } else { Tier::Basic };
        let limit = quota.limit_for(tier);
        // One atomic statement checks and takes the prompt: concurrent sends serialise on the
        // row, and the WHERE sees the latest count.
        let taken: Option<i32> = sqlx::query_scalar(
            "INSERT INTO daily_usage (user_id, day, used) VALUES ($1, $2, 1) \
             ON CONFLICT (user_id, day) DO UPDATE SET used = daily_usage.used + 1 \
             WHERE $3::integer IS NULL OR daily_usage.used < $3 \
             RETURNING used",
        )
        .bind(user.0)
        .bind(new.day)
        .bind(limit.and_then(|l| i32::try_from(l).ok()))
        .fetch_optional(&mut *tx)
        .await?;
        let used = match (taken, limit) {
            (Some(used), Some(limit)) if u32::try_from(used).unwrap_or(u32::MAX) > limit => {
                // Only a zero limit gets here (the first insert of the day does not check).
                return Ok(PromptOutcome::LimitReached { limit, tier });
            }
            (Some(used), _) => u32::try_from(used).unwrap_or(0),
            (None, Some(limit)) => return Ok(PromptOutcome::LimitReached { limit, tier }),
            (None, None) => {
                return Err(StoreError::Backend(anyhow::anyhow!(
                    "unlimited quota refused"
                )));
            }
        };
        insert_message(&new.prompt).execute(&mut *tx).await?;
        insert_message(&new.reply).execute(&mut *tx).await?;
        insert_job(new.job_id, &new.reply, new.now)
            .execute(&mut *tx)
            .await?;
        sqlx::query("UPDATE chatrooms SET last_message_at = $2, activity_at = $2 WHERE id = $1")
            .bind(new.prompt.chatroom_id.0)
            .bind(new.now)
            .execute(&mut *tx)
            .await?;
        sqlx::query(NOTIFY_JOBS).execute(&mut *tx).await?;
        tx.commit().await?;
        self.local_jobs.notify_one();
        Ok(PromptOutcome::Accepted { used, limit })
    }

    async fn page(
        &self,
        chatroom: ChatroomId,
        before: Option<MessageId>,
        limit: u32,
    ) -> Result<Vec<Message>, StoreError> {
        let rows: Vec<MessageRow> = sqlx::query_as(concat!(
            "SELECT ",
            message_columns!(),
            " FROM messages WHERE chatroom_id = $1 AND ($2::uuid IS NULL OR id < $2) \
             ORDER BY id DESC LIMIT $3"
        ))
        .bind(chatroom.0)
        .bind(before.map(|b| b.0))
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.into_iter().map(Message::from).collect())
    }

    async fn find(
        &self,
        user: UserId,
        chatroom: ChatroomId,
        id: MessageId,
    ) -> Result<Option<Message>, StoreError> {
        let row: Option<MessageRow> = sqlx::query_as(concat!(
            "SELECT ",
            message_columns!(),
            " FROM messages WHERE id = $1 AND chatroom_id = $2 AND user_id = $3"
        ))
        .bind(id.0)
        .bind(chatroom.0)
        .bind(user.0)
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.map(Message::from))
    }

    async fn search(
        &self,
        user: UserId,
        query: &SearchQuery,
        limit: u32,
    ) -> Result<Vec<SearchHit>, StoreError> {
        #[derive(sqlx::FromRow)]
        struct HitRow {
            #[sqlx(flatten)]
            message: MessageRow,
            chatroom_name: String,
            snippet: String,
        }
        let rows: Vec<HitRow> = sqlx::query_as(
            "SELECT m.id, m.chatroom_id, m.user_id, m.role, m.content, m.status, m.error_code, \
             m.error_message, m.quota_day, m.finish_reason, m.model_version, m.prompt_tokens, \
             m.output_tokens, m.total_tokens, m.created_at, m.updated_at, c.name AS chatroom_name, \
             ts_headline('simple', m.content, q, \
                 'StartSel=**, StopSel=**, MaxWords=24, MinWords=8, MaxFragments=1, FragmentDelimiter=\" … \"') \
                 AS snippet \
             FROM messages m JOIN chatrooms c ON c.id = m.chatroom_id, \
                  to_tsquery('simple', $1) q \
             WHERE m.user_id = $2 AND m.search @@ q \
             ORDER BY ts_rank(m.search, q) DESC, m.id DESC LIMIT $3",
        )
        .bind(tsquery(query))
        .bind(user.0)
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .into_iter()
            .map(|row| SearchHit {
                message: row.message.into(),
                chatroom_name: row.chatroom_name,
                snippet: row.snippet,
            })
            .collect())
    }

    async fn requeue_failed(
        &self,
        user: UserId,
        chatroom: ChatroomId,
        reply: MessageId,
        job_id: JobId,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let mut tx = self.pool.begin().await?;
        let row: Option<MessageRow> = sqlx::query_as(concat!(
            "UPDATE messages SET status = 'pending', content = '', error_code = NULL, \
             error_message = NULL, updated_at = $4 \
             WHERE id = $1 AND chatroom_id = $2 AND user_id = $3 AND role = 'model' \
             AND status = 'failed' RETURNING ",
            message_columns!()
        ))
        .bind(reply.0)
        .bind(chatroom.0)
        .bind(user.0)
        .bind(now)
        .fetch_optional(&mut *tx)
        .await?;
        let Some(row) = row else {
            return Ok(false);
        };
        insert_job(job_id, &Message::from(row), now)
            .execute(&mut *tx)
            .await?;
        sqlx::query(NOTIFY_JOBS).execute(&mut *tx).await?;
        tx.commit().await?;
        self.local_jobs.notify_one();
        Ok(true)
    }
}

#[derive(sqlx::FromRow)]
struct ClaimRow {
    id: Uuid,
    reply_id: Uuid,
    chatroom_id: Uuid,
    user_id: Uuid,
    attempts: i32,
    lock_token: Uuid,
}

fn lease_end(now: DateTime<Utc>, lease: Duration) -> DateTime<Utc> {
    now + chrono::Duration::from_std(lease).unwrap_or(chrono::Duration::seconds(60))
}

#[async_trait]
impl JobQueue for PgStore {
    async fn claim(
        &self,
        now: DateTime<Utc>,
        lease: Duration,
        max: u32,
    ) -> Result<Vec<ClaimedJob>, StoreError> {
        // Only the oldest job of each chatroom is eligible, so replies in a room are produced
        // in order; SKIP LOCKED lets concurrent workers claim different jobs without waiting.
        let rows: Vec<ClaimRow> = sqlx::query_as(
            "WITH next AS ( \
                 SELECT j.id FROM jobs j \
                 WHERE j.run_at <= $1 AND (j.lock_token IS NULL OR j.locked_until < $1) \
                 AND NOT EXISTS (SELECT 1 FROM jobs o WHERE o.chatroom_id = j.chatroom_id AND o.id < j.id) \
                 ORDER BY j.run_at, j.id LIMIT $3 FOR UPDATE SKIP LOCKED) \
             UPDATE jobs SET locked_until = $2, lock_token = gen_random_uuid(), attempts = jobs.attempts + 1 \
             FROM next WHERE jobs.id = next.id \
             RETURNING jobs.id, jobs.reply_id, jobs.chatroom_id, jobs.user_id, jobs.attempts, jobs.lock_token",
        )
        .bind(now)
        .bind(lease_end(now, lease))
        .bind(i64::from(max))
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .into_iter()
            .map(|row| ClaimedJob {
                id: JobId(row.id),
                reply_id: MessageId(row.reply_id),
                chatroom_id: ChatroomId(row.chatroom_id),
                user_id: UserId(row.user_id),
                attempts: u32::try_from(row.attempts).unwrap_or(u32::MAX),
                lock_token: row.lock_token,
            })
            .collect())
    }

    async fn renew(&self, job: &ClaimedJob, until: DateTime<Utc>) -> Result<bool, StoreError> {
        let done =
            sqlx::query("UPDATE jobs SET locked_until = $3 WHERE id = $1 AND lock_token = $2")
                .bind(job.id.0)
                .bind(job.lock_token)
                .bind(until)
                .execute(&self.pool)
                .await?;
        Ok(done.rows_affected() == 1)
    }

    async fn release(&self, job: &ClaimedJob, now: DateTime<Utc>) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await?;
        sqlx::query(
            "UPDATE jobs SET locked_until = NULL, lock_token = NULL, run_at = $3, \
             attempts = greatest(attempts - 1, 0) WHERE id = $1 AND lock_token = $2",
        )
        .bind(job.id.0)
        .bind(job.lock_token)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        reset_to_pending(&mut tx, job, now).await?;
        sqlx::query(NOTIFY_JOBS).execute(&mut *tx).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn retry_later(
        &self,
        job: &ClaimedJob,
        run_at: DateTime<Utc>,
        error: &str,
    ) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await?;
        let done = sqlx::query(
            "UPDATE jobs SET locked_until = NULL, lock_token = NULL, run_at = $3, last_error = $4 \
             WHERE id = $1 AND lock_token = $2",
        )
        .bind(job.id.0)
        .bind(job.lock_token)
        .bind(run_at)
        .bind(error)
        .execute(&mut *tx)
        .await?;
        if done.rows_affected() == 1 {
            reset_to_pending(&mut tx, job, run_at).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    async fn history(&self, job: &ClaimedJob, limit: u32) -> Result<Vec<Message>, StoreError> {
        let rows: Vec<MessageRow> = sqlx::query_as(concat!(
            "SELECT ",
            message_columns!(),
            " FROM messages WHERE chatroom_id = $1 AND id < $2 AND status = 'completed' \
             ORDER BY id DESC LIMIT $3"
        ))
        .bind(job.chatroom_id.0)
        .bind(job.reply_id.0)
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.into_iter().rev().map(Message::from).collect())
    }

    async fn mark_streaming(&self, job: &ClaimedJob, now: DateTime<Utc>) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE messages SET status = 'streaming', updated_at = $2 \
             WHERE id = $1 AND status = 'pending'",
        )
        .bind(job.reply_id.0)
        .bind(now)
        .execute(&self.pool)
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
        // One statement, so one round trip (this runs once per reply): data-modifying CTEs
        // all run, atomically, whatever the final SELECT reads. The job goes (waking other
        // workers: the room's next job is first in line now); the room's activity moves only
        // if this run finished the reply.
        let row: Option<MessageRow> = sqlx::query_as(concat!(
            "WITH done AS ( \
                 UPDATE messages SET status = 'completed', content = $2, finish_reason = $3, \
                 model_version = $4, prompt_tokens = $5, output_tokens = $6, total_tokens = $7, \
                 updated_at = $8 WHERE id = $1 AND status IN ('pending', 'streaming') \
                 RETURNING *), \
             gone AS (DELETE FROM jobs WHERE id = $9 RETURNING pg_notify('gemchat_jobs', '')), \
             touched AS (UPDATE chatrooms SET last_message_at = $8, activity_at = $8 \
                 WHERE id = $10 AND EXISTS (SELECT 1 FROM done)) \
             SELECT ",
            message_columns!(),
            " FROM done"
        ))
        .bind(job.reply_id.0)
        .bind(content)
        .bind(meta.finish_reason.as_deref())
        .bind(meta.model_version.as_deref())
        .bind(db_tokens(meta.prompt_tokens))
        .bind(db_tokens(meta.output_tokens))
        .bind(db_tokens(meta.total_tokens))
        .bind(now)
        .bind(job.id.0)
        .bind(job.chatroom_id.0)
        .fetch_optional(&self.pool)
        .await?;
        self.local_jobs.notify_one();
        Ok(row.map(Message::from))
    }

    async fn fail(
        &self,
        job: &ClaimedJob,
        error: &MessageError,
        now: DateTime<Utc>,
    ) -> Result<Option<Message>, StoreError> {
        let mut tx = self.pool.begin().await?;
        let quota_day: Option<Option<NaiveDate>> = sqlx::query_scalar(
            "SELECT quota_day FROM messages WHERE id = $1 AND status IN ('pending', 'streaming') \
             FOR UPDATE",
        )
        .bind(job.reply_id.0)
        .fetch_optional(&mut *tx)
        .await?;
        let Some(quota_day) = quota_day else {
            finish_job(&mut tx, job, false, now).await?;
            tx.commit().await?;
            return Ok(None);
        };
        let row: MessageRow = sqlx::query_as(concat!(
            "UPDATE messages SET status = 'failed', content = '', error_code = $2, \
             error_message = $3, quota_day = NULL, updated_at = $4 WHERE id = $1 RETURNING ",
            message_columns!()
        ))
        .bind(job.reply_id.0)
        .bind(&error.code)
        .bind(&error.message)
        .bind(now)
        .fetch_one(&mut *tx)
        .await?;
        if let Some(day) = quota_day {
            // The prompt goes back to the day it was taken from, once (the day is cleared).
            sqlx::query(
                "UPDATE daily_usage SET used = used - 1 WHERE user_id = $1 AND day = $2 AND used > 0",
            )
            .bind(job.user_id.0)
            .bind(day)
            .execute(&mut *tx)
            .await?;
        }
        finish_job(&mut tx, job, true, now).await?;
        tx.commit().await?;
        self.local_jobs.notify_one();
        Ok(Some(row.into()))
    }

    async fn counts(&self, now: DateTime<Utc>) -> Result<(u64, u64), StoreError> {
        let (queued, running): (i64, i64) = sqlx::query_as(
            "SELECT count(*) FILTER (WHERE lock_token IS NULL OR locked_until < $1), \
             count(*) FILTER (WHERE lock_token IS NOT NULL AND locked_until >= $1) FROM jobs",
        )
        .bind(now)
        .fetch_one(&self.pool)
        .await?;
        Ok((
            u64::try_from(queued).unwrap_or(0),
            u64::try_from(running).unwrap_or(0),
        ))
    }

    async fn next_run_at(&self) -> Result<Option<DateTime<Utc>>, StoreError> {
        let next: Option<DateTime<Utc>> = sqlx::query_scalar(
            "SELECT min(CASE WHEN lock_token IS NULL THEN run_at ELSE locked_until END) FROM jobs",
        )
        .fetch_one(&self.pool)
        .await?;
        Ok(next)
    }

    async fn wait_for_work(&self, max_wait: Duration) {
        let mut listener = self.jobs_listener.lock().await;
        if listener.is_none() {
            match PgListener::connect_with(&self.pool).await {
                Ok(mut fresh) => match fresh.listen(JOBS_CHANNEL).await {
                    Ok(()) => *listener = Some(fresh),
                    Err(err) => tracing::warn!(error = %err, "cannot LISTEN for jobs; polling"),
                },
                Err(err) => tracing::warn!(error = %err, "cannot LISTEN for jobs; polling"),
            }
        }
        let remote = async {
            match listener.as_mut() {
                Some(l) => {
                    if let Err(err) = l.recv().await {
                        tracing::warn!(error = %err, "job notifications interrupted");
                        std::future::pending::<()>().await;
                    }
                }
                None => std::future::pending::<()>().await,
            }
        };
        tokio::select! {
            () = remote => {}
            () = self.local_jobs.notified() => {}
            () = tokio::time::sleep(max_wait) => {}
        }
    }
}

/// Sends a reply whose attempt did not finish back to `pending` for the next attempt.
async fn reset_to_pending(
    tx: &mut sqlx::PgConnection,
    job: &ClaimedJob,
    now: DateTime<Utc>,
) -> Result<(), StoreError> {
    sqlx::query(
        "UPDATE messages SET status = 'pending', updated_at = $2 WHERE id = $1 AND status = 'streaming'",
    )
    .bind(job.reply_id.0)
    .bind(now)
    .execute(&mut *tx)
    .await?;
    Ok(())
}

/// Removes a finished job and, when the reply changed, bumps the chatroom's activity and
/// wakes workers (the room's next job is now first in line).
async fn finish_job(
    tx: &mut sqlx::PgConnection,
    job: &ClaimedJob,
    reply_changed: bool,
    now: DateTime<Utc>,
) -> Result<(), StoreError> {
    sqlx::query("DELETE FROM jobs WHERE id = $1")
        .bind(job.id.0)
        .execute(&mut *tx)
        .await?;
    if reply_changed {
        sqlx::query("UPDATE chatrooms SET last_message_at = $2, activity_at = $2 WHERE id = $1")
            .bind(job.chatroom_id.0)
            .bind(now)
            .execute(&mut *tx)
            .await?;
    }
    sqlx::query(NOTIFY_JOBS).execute(&mut *tx).await?;
    Ok(())
}

/// A search in `to_tsquery`'s language: `'a' & ('b' <-> 'c') & !'x'`. Every word is quoted
/// (letters and digits only), so no input can be a tsquery syntax error; `<->` keeps a
/// phrase's words adjacent and in order.
fn tsquery(query: &SearchQuery) -> String {
    let phrase = |term: &Term| {
        let words: Vec<String> = term.words.iter().map(|w| format!("'{w}'")).collect();
        format!("({})", words.join(" <-> "))
    };
    let required = query.required.iter().map(phrase);
    let excluded = query.excluded.iter().map(|t| format!("!{}", phrase(t)));
    required.chain(excluded).collect::<Vec<_>>().join(" & ")
}
