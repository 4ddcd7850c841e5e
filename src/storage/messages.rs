//! `MessageRepo`, once for both databases: the prompt, its pending reply and the reply's job
//! in one transaction (with the daily quota taken atomically), history pages, search.

use async_trait::async_trait;
use chrono::{DateTime, NaiveDate, Utc};
use uuid::Uuid;

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
        "id, chatroom_id, user_id, parent_id, has_versions, has_attachments, role, content, \
         status, error_code, error_message, quota_day, finish_reason, model_version, prompt_tokens, output_tokens, \
         total_tokens, thinking_tokens, cached_tokens, created_at, updated_at"
    };
}
pub(crate) use message_columns;

/// The same columns of the messages table under `alias`, for statements that join (a
/// dialect's search).
pub(crate) fn message_columns_of(alias: &str) -> String {
    let columns: Vec<String> = message_columns!()
        .split(", ")
        .map(|column| format!("{alias}.{column}"))
        .collect();
    columns.join(", ")
}

fn tokens(value: Option<i64>) -> Option<u32> {
    value.and_then(|v| u32::try_from(v).ok())
}

/// A message as stored: `has_versions` and `has_attachments` say whether its siblings and
/// its files must be looked up.
pub(crate) struct Stored {
    pub(crate) message: Message,
    pub(crate) has_versions: bool,
    pub(crate) has_attachments: bool,
}

impl FromRecord for Stored {
    fn from_record(row: &dyn Record) -> Result<Self, StoreError> {
        Ok(Self {
            message: Message::from_record(row)?,
            has_versions: row.get("has_versions")?,
            has_attachments: row.get("has_attachments")?,
        })
    }
}

impl FromRecord for Message {
    fn from_record(row: &dyn Record) -> Result<Self, StoreError> {
        let error_code: Option<String> = row.get("error_code")?;
        let error_message: Option<String> = row.get("error_message")?;
        Ok(Self {
            id: MessageId(row.get("id")?),
            chatroom_id: ChatroomId(row.get("chatroom_id")?),
            user_id: UserId(row.get("user_id")?),
            parent_id: row.get::<Option<Uuid>>("parent_id")?.map(MessageId),
            versions: Vec::new(),
            attachments: Vec::new(),
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
                thinking_tokens: tokens(row.get("thinking_tokens")?),
                cached_tokens: tokens(row.get("cached_tokens")?),
            },
            created_at: row.get("created_at")?,
            updated_at: row.get("updated_at")?,
        })
    }
}

/// A search hit as stored.
struct StoredHit(Stored, String, String);

impl FromRecord for StoredHit {
    fn from_record(row: &dyn Record) -> Result<Self, StoreError> {
        Ok(Self(
            Stored::from_record(row)?,
            row.get("chatroom_name")?,
            row.get("snippet")?,
        ))
    }
}

/// One sibling of a message with versions.
struct Sibling {
    id: MessageId,
    parent_id: Option<MessageId>,
    role: String,
}

impl FromRecord for Sibling {
    fn from_record(row: &dyn Record) -> Result<Self, StoreError> {
        Ok(Self {
            id: MessageId(row.get("id")?),
            parent_id: row.get::<Option<Uuid>>("parent_id")?.map(MessageId),
            role: row.get("role")?,
        })
    }
}

/// Attaches the files `prompt` carries: `false` (and the caller rolls back) when one is no
/// longer its author's.
pub(super) async fn attach_files(
    tx: &mut dyn Connection,
    prompt: &Message,
) -> Result<bool, StoreError> {
    let ids: Vec<_> = prompt.attachments.iter().map(|u| u.id).collect();
    super::uploads::attach(tx, prompt.user_id, prompt.id, &ids).await
}

impl SqlStore {
    /// The messages with their versions and files filled in: one lookup of the siblings of
    /// those that have any, one of the files of those that carry any (none at all for a
    /// conversation never branched and without files).
    pub(crate) async fn assembled(
        &self,
        on: &mut dyn Connection,
        stored: Vec<Stored>,
    ) -> Result<Vec<Message>, StoreError> {
        let siblings = self.siblings(&mut *on, &stored).await?;
        let carrying: Vec<MessageId> = stored
            .iter()
            .filter(|s| s.has_attachments)
            .map(|s| s.message.id)
            .collect();
        let mut files = super::uploads::attachments_of(&mut *on, &carrying).await?;
        Ok(stored
            .into_iter()
            .map(
                |Stored {
                     mut message,
                     has_versions,
                     has_attachments,
                 }| {
                    if has_versions {
                        message.versions = siblings
                            .iter()
                            .filter(|s| s.parent_id == message.parent_id)
                            .filter(|s| s.role == message.role.as_str())
                            .map(|s| s.id)
                            .collect();
                    }
                    if has_attachments {
                        let (own, others) = files.drain(..).partition(|(m, _)| *m == message.id);
                        files = others;
                        message.attachments = own.into_iter().map(|(_, upload)| upload).collect();
                    }
                    message
                },
            )
            .collect())
    }

    /// The siblings of the messages that have any.
    async fn siblings(
        &self,
        on: &mut dyn Connection,
        stored: &[Stored],
    ) -> Result<Vec<Sibling>, StoreError> {
        let branched: Vec<&Message> = stored
            .iter()
            .filter(|s| s.has_versions)
            .map(|s| &s.message)
            .collect();
        let Some(first) = branched.first() else {
            return Ok(Vec::new());
        };
        let parents: Vec<MessageId> = branched.iter().filter_map(|m| m.parent_id).collect();
        let placeholders: Vec<String> = (0..parents.len()).map(|i| format!("${}", i + 3)).collect();
        let mut lookup = sql(format!(
            "SELECT id, parent_id, role FROM messages WHERE chatroom_id = $1 \
             AND (($2 AND parent_id IS NULL){}) ORDER BY id",
            if parents.is_empty() {
                String::new()
            } else {
                format!(" OR parent_id IN ({})", placeholders.join(", "))
            }
        ))
        .bind(first.chatroom_id.0)
        .bind(branched.iter().any(|m| m.parent_id.is_none()));
        for parent in &parents {
            lookup = lookup.bind(parent.0);
        }
        lookup.fetch_all(on).await
    }

    /// One message with its versions and files.
    pub(crate) async fn one_assembled(
        &self,
        on: &mut dyn Connection,
        stored: Option<Stored>,
    ) -> Result<Option<Message>, StoreError> {
        let Some(stored) = stored else {
            return Ok(None);
        };
        Ok(self.assembled(on, vec![stored]).await?.pop())
    }
}

/// Where a new message hangs in its room's tree.
#[derive(Clone, Copy)]
pub(super) enum Parent {
    /// Under its own `parent_id`.
    Given,
    /// Under the end of the room's active path, read by the insert itself (the caller holds
    /// the room's lock).
    EndOfPath,
}

/// Inserts `message`, on the room's active path or not; returns the parent it was given.
pub(super) async fn insert_message(
    message: &Message,
    parent: Parent,
    on_path: bool,
    on: &mut dyn Connection,
) -> Result<Option<MessageId>, StoreError> {
    const COLUMNS: &str = concat!("INSERT INTO messages (", message_columns!(), ", on_path) ");
    const VALUES: &str = "$5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, \
         $19, $20, $21, $22) RETURNING parent_id AS value";
    let (statement, parent_bound) = match parent {
        Parent::Given => (
            format!("{COLUMNS}VALUES ($1, $2, $3, $4, {VALUES}"),
            message.parent_id.map(|p| p.0),
        ),
        Parent::EndOfPath => (
            format!(
                "{COLUMNS}VALUES ($1, $2, $3, (SELECT id FROM messages \
                 WHERE chatroom_id = $4 AND on_path = TRUE ORDER BY id DESC LIMIT 1), {VALUES}"
            ),
            Some(message.chatroom_id.0),
        ),
    };
    let Scalar(parent): Scalar<Option<Uuid>> = sql(statement)
        .bind(message.id.0)
        .bind(message.chatroom_id.0)
        .bind(message.user_id.0)
        .bind(parent_bound)
        .bind(!message.versions.is_empty())
        .bind(!message.attachments.is_empty())
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
        .bind(message.meta.thinking_tokens)
        .bind(message.meta.cached_tokens)
        .bind(message.created_at)
        .bind(message.updated_at)
        .bind(on_path)
        .fetch_one(on)
        .await?;
    Ok(parent.map(MessageId))
}

/// The owner's tier, read in the transaction that writes (a plan change applies at once).
const OWNER_TIER: &str = "(EXISTS (SELECT 1 FROM users o WHERE o.id = $2 AND o.pro_override) \
     OR EXISTS (SELECT 1 FROM subscriptions s WHERE s.user_id = $2 AND s.pro_until > $3)) AS value";

/// Runs `statement` (room `$1`, user `$2`, now `$3`, answering [`OWNER_TIER`]): the owner's
/// tier, or `None` when the room is not the user's.
async fn room_tier(
    tx: &mut dyn Connection,
    statement: String,
    user: UserId,
    room: ChatroomId,
    now: DateTime<Utc>,
) -> Result<Option<Tier>, StoreError> {
    let is_pro: Option<Scalar<bool>> = sql(statement)
        .bind(room.0)
        .bind(user.0)
        .bind(now)
        .fetch_optional(tx)
        .await?;
    Ok(is_pro.map(|Scalar(pro)| if pro { Tier::Pro } else { Tier::Basic }))
}

impl SqlStore {
    /// Inside a transaction about to change a user's chatroom without adding to it: locks the
    /// room's row (NO KEY UPDATE, as a later activity bump needs; a weaker share lock would
    /// deadlock two concurrent writers upgrading it), so writers of one room line up, and
    /// reads the owner's tier. `None`: no such room of this user.
    pub(super) async fn lock_room(
        &self,
        tx: &mut dyn Connection,
        user: UserId,
        room: ChatroomId,
        now: DateTime<Utc>,
    ) -> Result<Option<Tier>, StoreError> {
        let statement = format!(
            "SELECT {OWNER_TIER} FROM chatrooms WHERE id = $1 AND user_id = $2{}",
            self.locked(Lock::NoKeyUpdate)
        );
        room_tier(tx, statement, user, room, now).await
    }

    /// As [`Self::lock_room`], for a transaction that adds a message: the same statement bumps
    /// the room's activity (an update locks the row as strongly).
    pub(super) async fn lock_room_for_new_message(
        &self,
        tx: &mut dyn Connection,
        user: UserId,
        room: ChatroomId,
        now: DateTime<Utc>,
    ) -> Result<Option<Tier>, StoreError> {
        let statement = format!(
            "UPDATE chatrooms SET last_message_at = $3, activity_at = $3 \
             WHERE id = $1 AND user_id = $2 RETURNING {OWNER_TIER}"
        );
        room_tier(tx, statement, user, room, now).await
    }
}

/// Takes one prompt from the user's quota for `day`: `(used, limit)`, or the limit it is at.
/// One atomic statement checks and takes: concurrent takes serialise on the row, and the
/// WHERE sees the latest count.
pub(super) async fn take_prompt(
    tx: &mut dyn Connection,
    user: UserId,
    day: NaiveDate,
    tier: Tier,
    quota: &QuotaPolicy,
) -> Result<Result<(u32, Option<u32>), u32>, StoreError> {
    let limit = quota.limit_for(tier);
    let taken: Option<Scalar<i64>> = sql("INSERT INTO daily_usage (user_id, day, used) \
         VALUES ($1, $2, 1) \
         ON CONFLICT (user_id, day) DO UPDATE SET used = daily_usage.used + 1 \
         WHERE $3 IS NULL OR daily_usage.used < $3 \
         RETURNING used AS value")
    .bind(user.0)
    .bind(day)
    .bind(limit)
    .fetch_optional(tx)
    .await?;
    let taken = taken.map(|Scalar(used)| super::sql::to_u32(used));
    match (judge_take(taken, limit), limit) {
        (Take::Taken(used), _) => Ok(Ok((used, limit))),
        (Take::Refused, Some(limit)) => Ok(Err(limit)),
        (Take::Refused | Take::Inconsistent, _) => Err(StoreError::Backend(anyhow::anyhow!(
            "the quota statement refused an unlimited plan"
        ))),
    }
}

#[async_trait]
impl MessageRepo for SqlStore {
    async fn insert_prompt_with_reply_job(
        &self,
        new: &NewPrompt,
        quota: &QuotaPolicy,
    ) -> Result<PromptOutcome, StoreError> {
        let user = new.prompt.user_id;
        let room = new.prompt.chatroom_id;
        let mut tx = self.db.begin().await?;
        let locked = self.lock_room_for_new_message(&mut *tx, user, room, new.now);
        let Some(tier) = locked.await? else {
            return Ok(PromptOutcome::ChatroomNotFound);
        };
        let (used, limit) = match take_prompt(&mut *tx, user, new.day, tier, quota).await? {
            Ok(taken) => taken,
            Err(limit) => return Ok(PromptOutcome::LimitReached { limit, tier }),
        };
        // The prompt follows the end of the room's active path (the room's row is locked:
        // concurrent sends line up behind each other).
        let parent = insert_message(&new.prompt, Parent::EndOfPath, true, &mut *tx).await?;
        if !attach_files(&mut *tx, &new.prompt).await? {
            return Ok(PromptOutcome::AttachmentGone);
        }
        insert_message(&new.reply, Parent::Given, true, &mut *tx).await?;
        let job = ReplyJob::of(&new.reply).queued(new.job_id, new.now);
        self.enqueue_in(&mut *tx, &job).await?;
        tx.commit().await?;
        self.wake_workers().await;
        Ok(PromptOutcome::Accepted {
            used,
            limit,
            parent,
        })
    }

    async fn page(
        &self,
        chatroom: ChatroomId,
        before: Option<MessageId>,
        limit: u32,
    ) -> Result<Vec<Message>, StoreError> {
        let mut reads = self.db.reads();
        let page: Vec<Stored> = sql(concat!(
            "SELECT ",
            message_columns!(),
            " FROM messages WHERE chatroom_id = $1 AND on_path = TRUE AND ($2 IS NULL OR id < $2) \
             ORDER BY id DESC LIMIT $3"
        ))
        .bind(chatroom.0)
        .bind(before.map(|b| b.0))
        .bind(limit)
        .fetch_all(&mut *reads)
        .await?;
        self.assembled(&mut *reads, page).await
    }

    async fn find(
        &self,
        user: UserId,
        chatroom: ChatroomId,
        id: MessageId,
    ) -> Result<Option<Message>, StoreError> {
        let mut reads = self.db.reads();
        let found: Option<Stored> = sql(concat!(
            "SELECT ",
            message_columns!(),
            " FROM messages WHERE id = $1 AND chatroom_id = $2 AND user_id = $3"
        ))
        .bind(id.0)
        .bind(chatroom.0)
        .bind(user.0)
        .fetch_optional(&mut *reads)
        .await?;
        self.one_assembled(&mut *reads, found).await
    }

    async fn opening(&self, chatroom: ChatroomId, limit: u32) -> Result<Vec<Message>, StoreError> {
        sql(concat!(
            "SELECT ",
            message_columns!(),
            " FROM messages WHERE chatroom_id = $1 AND on_path = TRUE ORDER BY id LIMIT $2"
        ))
        .bind(chatroom.0)
        .bind(limit)
        .fetch_all(&mut *self.db.reads())
        .await
    }

    async fn every_branch(
        &self,
        chatroom: ChatroomId,
        after: Option<MessageId>,
        limit: u32,
    ) -> Result<Vec<Message>, StoreError> {
        let mut reads = self.db.reads();
        let page: Vec<Stored> = sql(concat!(
            "SELECT ",
            message_columns!(),
            " FROM messages WHERE chatroom_id = $1 AND ($2 IS NULL OR id > $2) \
             ORDER BY id LIMIT $3"
        ))
        .bind(chatroom.0)
        .bind(after.map(|a| a.0))
        .bind(limit)
        .fetch_all(&mut *reads)
        .await?;
        self.assembled(&mut *reads, page).await
    }

    async fn search(
        &self,
        user: UserId,
        query: &SearchQuery,
        limit: u32,
    ) -> Result<Vec<SearchHit>, StoreError> {
        let mut reads = self.db.reads();
        let hits: Vec<StoredHit> = self
            .db
            .search(query)
            .bind(user.0)
            .bind(limit)
            .fetch_all(&mut *reads)
            .await?;
        let mut found = Vec::with_capacity(hits.len());
        for StoredHit(stored, chatroom_name, snippet) in hits {
            // Hits are from many rooms: versions are looked up per hit that has any.
            let message = self.one_assembled(&mut *reads, Some(stored)).await?;
            if let Some(message) = message {
                found.push(SearchHit {
                    message,
                    chatroom_name,
                    snippet,
                });
            }
        }
        Ok(found)
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
        self.wake_workers().await;
        Ok(true)
    }
}
