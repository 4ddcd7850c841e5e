//! `MessageRepo`, once for both databases: the prompt, its pending reply and the reply's job
//! in one transaction (with the daily quota taken atomically), history pages, search.

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use super::SqlStore;
use super::sql::{Connection, FromRecord, Lock, Record, Scalar, sql};
use crate::chatrooms::model::ChatroomId;
use crate::jobs::queue::JobId;
use crate::messages::model::{Message, MessageError, MessageId, MessageStatus, ReplyMeta, Role};
use crate::messages::repo::{MessageRepo, NewPrompt, PromptOutcome, SearchHit};
use crate::messages::search::SearchQuery;
use crate::quota::model::{QuotaPolicy, Take, judge_take};
use crate::replies::model::ReplyJob;
use crate::storage::error::StoreError;
use crate::users::model::{Tier, UserId};

/// The columns a `Message` reads.
macro_rules! message_columns {
    () => {
        "id, chatroom_id, user_id, role, content, status, error_code, error_message, quota_day, \
         finish_reason, model_version, prompt_tokens, output_tokens, total_tokens, created_at, \
         updated_at"
    };
}
pub(crate) use message_columns;

/// The same columns of `messages m`, for statements that join (a dialect's search).
pub(crate) const MESSAGE_COLUMNS_OF_M: &str = "m.id, m.chatroom_id, m.user_id, m.role, \
     m.content, m.status, m.error_code, m.error_message, m.quota_day, m.finish_reason, \
     m.model_version, m.prompt_tokens, m.output_tokens, m.total_tokens, m.created_at, \
     m.updated_at";

fn tokens(value: Option<i64>) -> Option<u32> {
    value.and_then(|v| u32::try_from(v).ok())
}

impl FromRecord for Message {
    fn from_record(row: &dyn Record) -> Result<Self, StoreError> {
        let error_code: Option<String> = row.get("error_code")?;
        let error_message: Option<String> = row.get("error_message")?;
        Ok(Self {
            id: MessageId(row.get("id")?),
            chatroom_id: ChatroomId(row.get("chatroom_id")?),
            user_id: UserId(row.get("user_id")?),
            role: Role::from_db(&row.get::<String>("role")?),
            content: row.get("content")?,
            status: MessageStatus::from_db(&row.get::<String>("status")?),
            error: error_code.map(|code| MessageError {
                code,
                message: error_message.unwrap_or_default(),
            }),
            quota_day: row.get("quota_day")?,
            meta: ReplyMeta {
                finish_reason: row.get("finish_reason")?,
                model_version: row.get("model_version")?,
                prompt_tokens: tokens(row.get("prompt_tokens")?),
                output_tokens: tokens(row.get("output_tokens")?),
                total_tokens: tokens(row.get("total_tokens")?),
            },
            created_at: row.get("created_at")?,
            updated_at: row.get("updated_at")?,
        })
    }
}

impl FromRecord for SearchHit {
    fn from_record(row: &dyn Record) -> Result<Self, StoreError> {
        Ok(Self {
            message: Message::from_record(row)?,
            chatroom_name: row.get("chatroom_name")?,
            snippet: row.get("snippet")?,
        })
    }
}

async fn insert_message(message: &Message, on: &mut dyn Connection) -> Result<(), StoreError> {
    sql(concat!(
        "INSERT INTO messages (",
        message_columns!(),
        ") VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16)"
    ))
    .bind(message.id.0)
    .bind(message.chatroom_id.0)
    .bind(message.user_id.0)
    .bind(message.role.as_str())
    .bind(message.content.as_str())
    .bind(message.status.as_str())
    .bind(message.error.as_ref().map(|e| e.code.as_str()))
    .bind(message.error.as_ref().map(|e| e.message.as_str()))
    .bind(message.quota_day)
    .bind(message.meta.finish_reason.as_deref())
    .bind(message.meta.model_version.as_deref())
    .bind(message.meta.prompt_tokens)
    .bind(message.meta.output_tokens)
    .bind(message.meta.total_tokens)
    .bind(message.created_at)
    .bind(message.updated_at)
    .execute(on)
    .await?;
    Ok(())
}

#[async_trait]
impl MessageRepo for SqlStore {
    async fn insert_prompt_with_reply_job(
        &self,
        new: &NewPrompt,
        quota: &QuotaPolicy,
    ) -> Result<PromptOutcome, StoreError> {
        let user = new.prompt.user_id;
        let mut tx = self.db.begin().await?;
        // The chatroom must exist and be the user's. Locking its row up front (NO KEY UPDATE,
        // as the activity bump below needs) serialises sends per chatroom; a weaker share
        // lock here would deadlock two concurrent sends upgrading it. The tier is read in the
        // same transaction so a plan change applies at once.
        let is_pro: Option<Scalar<bool>> = sql(format!(
            "SELECT EXISTS (SELECT 1 FROM subscriptions s WHERE s.user_id = c.user_id \
             AND s.pro_until > $3) AS value FROM chatrooms c WHERE c.id = $1 AND c.user_id = $2{}",
            self.locked(Lock::NoKeyUpdate)
        ))
        .bind(new.prompt.chatroom_id.0)
        .bind(user.0)
        .bind(new.now)
        .fetch_optional(&mut *tx)
        .await?;
        let Some(Scalar(is_pro)) = is_pro else {
            return Ok(PromptOutcome::ChatroomNotFound);
        };
        let tier = if is_pro { Tier::Pro } else { Tier::Basic };
        let limit = quota.limit_for(tier);
        // One atomic statement checks and takes the prompt: concurrent sends serialise on the
        // row, and the WHERE sees the latest count.
        let taken: Option<Scalar<i64>> = sql("INSERT INTO daily_usage (user_id, day, used) \
             VALUES ($1, $2, 1) \
             ON CONFLICT (user_id, day) DO UPDATE SET used = daily_usage.used + 1 \
             WHERE $3 IS NULL OR daily_usage.used < $3 \
             RETURNING used AS value")
        .bind(user.0)
        .bind(new.day)
        .bind(limit)
        .fetch_optional(&mut *tx)
        .await?;
        let taken = taken.map(|Scalar(used)| super::sql::to_u32(used));
        let used = match (judge_take(taken, limit), limit) {
            (Take::Taken(used), _) => used,
            (Take::Refused, Some(limit)) => return Ok(PromptOutcome::LimitReached { limit, tier }),
            (Take::Refused | Take::Inconsistent, _) => {
                return Err(StoreError::Backend(anyhow::anyhow!(
                    "the quota statement refused an unlimited plan"
                )));
            }
        };
        insert_message(&new.prompt, &mut *tx).await?;
        insert_message(&new.reply, &mut *tx).await?;
        sql("UPDATE chatrooms SET last_message_at = $2, activity_at = $2 WHERE id = $1")
            .bind(new.prompt.chatroom_id.0)
            .bind(new.now)
            .execute(&mut *tx)
            .await?;
        let job = ReplyJob::of(&new.reply).queued(new.job_id, new.now);
        self.enqueue_in(&mut *tx, &job).await?;
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
        sql(concat!(
            "SELECT ",
            message_columns!(),
            " FROM messages WHERE chatroom_id = $1 AND ($2 IS NULL OR id < $2) \
             ORDER BY id DESC LIMIT $3"
        ))
        .bind(chatroom.0)
        .bind(before.map(|b| b.0))
        .bind(limit)
        .fetch_all(&mut *self.db.reads())
        .await
    }

    async fn find(
        &self,
        user: UserId,
        chatroom: ChatroomId,
        id: MessageId,
    ) -> Result<Option<Message>, StoreError> {
        sql(concat!(
            "SELECT ",
            message_columns!(),
            " FROM messages WHERE id = $1 AND chatroom_id = $2 AND user_id = $3"
        ))
        .bind(id.0)
        .bind(chatroom.0)
        .bind(user.0)
        .fetch_optional(&mut *self.db.reads())
        .await
    }

    async fn search(
        &self,
        user: UserId,
        query: &SearchQuery,
        limit: u32,
    ) -> Result<Vec<SearchHit>, StoreError> {
        self.db
            .search(query)
            .bind(user.0)
            .bind(limit)
            .fetch_all(&mut *self.db.reads())
            .await
    }

    async fn requeue_failed(
        &self,
        user: UserId,
        chatroom: ChatroomId,
        reply: MessageId,
        job_id: JobId,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let mut tx = self.db.begin().await?;
        let requeued: Option<Message> = sql(concat!(
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
        let Some(requeued) = requeued else {
            return Ok(false);
        };
        let job = ReplyJob::of(&requeued).queued(job_id, now);
        self.enqueue_in(&mut *tx, &job).await?;
        tx.commit().await?;
        self.local_jobs.notify_one();
        Ok(true)
    }
}
