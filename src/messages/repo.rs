//! The messages storage port, including the one transaction that accepts a prompt.

use async_trait::async_trait;
use chrono::{DateTime, NaiveDate, Utc};

use super::model::{Message, MessageId};
use super::search::SearchQuery;
use crate::chatrooms::model::ChatroomId;
use crate::jobs::queue::JobId;
use crate::quota::model::QuotaPolicy;
use crate::storage::error::StoreError;
use crate::users::model::{Tier, UserId};

/// A prompt to accept: the user's message, the pending reply, and the job that produces it.
#[derive(Debug, Clone)]
pub struct NewPrompt {
    pub prompt: Message,
    pub reply: Message,
    pub job_id: JobId,
    pub day: NaiveDate,
    pub now: DateTime<Utc>,
}

/// What became of a prompt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PromptOutcome {
    /// Stored and queued; `used` prompts of `limit` are taken today. The prompt follows
    /// `parent`, the end of the room's active path (`None` in an empty room).
    Accepted {
        used: u32,
        limit: Option<u32>,
        parent: Option<MessageId>,
    },
    /// Nothing stored: the daily limit of the user's tier is reached.
    LimitReached { limit: u32, tier: Tier },
    /// Nothing stored: no such chatroom of this user.
    ChatroomNotFound,
    /// Nothing stored: a file the prompt carries is no longer the user's (it expired).
    AttachmentGone,
}

/// One search result.
#[derive(Debug, Clone)]
pub struct SearchHit {
    pub message: Message,
    pub(crate) chatroom_name: String,
    /// The match in context, matched words wrapped in `**`.
    pub(crate) snippet: String,
}

#[async_trait]
pub trait MessageRepo: Send + Sync {
    /// In one transaction: takes one prompt from the owner's quota for `day` (by the tier read
    /// in the same transaction), stores the prompt and the pending reply, queues the job and
    /// bumps the chatroom's activity. Either all of it happens or none.
    async fn insert_prompt_with_reply_job(
        &self,
        new: &NewPrompt,
        quota: &QuotaPolicy,
    ) -> Result<PromptOutcome, StoreError>;

    /// Up to `limit` messages of the chatroom older than `before` (all when `None`), newest
    /// first. The caller has checked the chatroom belongs to the user.
    async fn page(
        &self,
        chatroom: ChatroomId,
        before: Option<MessageId>,
        limit: u32,
    ) -> Result<Vec<Message>, StoreError>;

    async fn find(
        &self,
        user: UserId,
        chatroom: ChatroomId,
        id: MessageId,
    ) -> Result<Option<Message>, StoreError>;

    /// The first `limit` messages of the chatroom's active path, oldest first.
    async fn opening(&self, chatroom: ChatroomId, limit: u32) -> Result<Vec<Message>, StoreError>;

    /// Up to `limit` messages of the room after `after` (from the start when `None`), of
    /// every branch, oldest first, with their versions and files: the export's pages.
    async fn every_branch(
        &self,
        chatroom: ChatroomId,
        after: Option<MessageId>,
        limit: u32,
    ) -> Result<Vec<Message>, StoreError>;

    /// The user's messages matching `query` (every required term, no excluded one), best
    /// matches first, using the database's full-text index.
    async fn search(
        &self,
        user: UserId,
        query: &SearchQuery,
        limit: u32,
    ) -> Result<Vec<SearchHit>, StoreError>;

    /// Puts a failed reply back in the queue (status `pending`, a new job); false when the
    /// reply is not a failed reply of this user's chatroom.
    async fn requeue_failed(
        &self,
        user: UserId,
        chatroom: ChatroomId,
        reply: MessageId,
        job_id: JobId,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError>;
}

/// A new version of a message, written like a send: an edited prompt with its reply, or a
/// regenerated reply.
#[derive(Debug, Clone)]
pub struct NewVersion {
    /// The message this is a new version of.
    pub of: MessageId,
    /// The edited prompt (storage sets its parent: the parent of `of`); `None` regenerates.
    pub prompt: Option<Message>,
    /// An edit that named no files keeps those of `of`.
    pub keep_attachments: bool,
    /// The pending reply (storage sets its parent).
    pub reply: Message,
    pub job_id: JobId,
    pub day: NaiveDate,
    pub now: DateTime<Utc>,
}

/// What became of a new version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VersionOutcome {
    /// Stored, queued and made active: the prompt the reply answers, and the reply.
    Accepted {
        used: u32,
        limit: Option<u32>,
        prompt: Box<Message>,
        reply: Box<Message>,
    },
    LimitReached {
        limit: u32,
        tier: Tier,
    },
    /// No such message in this user's chatroom.
    NotFound,
    /// An edit of a reply, or a regeneration of a prompt.
    WrongRole,
    /// A regeneration of a reply still in progress.
    InProgress,
    /// A file the edited prompt carries is no longer the user's (it expired).
    AttachmentGone,
}

/// Versions and the active path of a chatroom's message tree.
#[async_trait]
pub trait BranchRepo: Send + Sync {
    /// In one transaction, atomically like a send: takes a prompt from the quota, stores the
    /// new version beside `new.of` (same parent and role; every version is marked as having
    /// siblings) and its pending reply, queues the reply, and makes the new branch the active
    /// path. Nothing is stored unless all of it is.
    async fn add_version(
        &self,
        user: UserId,
        room: ChatroomId,
        new: &NewVersion,
        quota: &QuotaPolicy,
    ) -> Result<VersionOutcome, StoreError>;

    /// Makes the path through `message` the room's active path: its ancestors, itself, and
    /// below it the newest message of each following level. False when there is no such
    /// message in this user's chatroom.
    async fn select(
        &self,
        user: UserId,
        room: ChatroomId,
        message: MessageId,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError>;
}
