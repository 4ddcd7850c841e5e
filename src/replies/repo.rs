//! The replies storage port: what a reply job reads and writes. Ending a reply (completed or
//! failed) removes its job in the same transaction, so a reply never ends twice.

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use super::model::ReplyJob;
use crate::jobs::queue::ClaimedJob;
use crate::messages::model::{Message, MessageError, MessageId, ReplyMeta};
use crate::storage::error::StoreError;

#[async_trait]
pub trait ReplyRepo: Send + Sync {
    /// The conversation a reply answers: up to `limit` messages of its chatroom before it,
    /// leaving out failed and unfinished replies, oldest first.
    async fn history(&self, reply: &ReplyJob, limit: u32) -> Result<Vec<Message>, StoreError>;

    /// Marks the reply `streaming` (from `pending`).
    async fn mark_streaming(&self, reply: MessageId, now: DateTime<Utc>) -> Result<(), StoreError>;

    /// Sends a reply whose attempt did not finish back to `pending`, if `job` still holds its
    /// lease (another run may own the reply otherwise).
    async fn reset_to_pending(
        &self,
        job: &ClaimedJob,
        reply: MessageId,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError>;

    /// In one transaction: completes the reply if it is still unfinished, bumps the chatroom's
    /// activity and removes the job. Returns the final reply, or `None` when another run had
    /// already finished it (a job may run twice; only one run completes it).
    async fn complete(
        &self,
        job: &ClaimedJob,
        reply: &ReplyJob,
        content: &str,
        meta: &ReplyMeta,
        now: DateTime<Utc>,
    ) -> Result<Option<Message>, StoreError>;

    /// In one transaction: fails the reply if it is still unfinished, gives its prompt back to
    /// the day it was taken from (once: the day is cleared), and removes the job.
    async fn fail(
        &self,
        job: &ClaimedJob,
        reply: &ReplyJob,
        error: &MessageError,
        now: DateTime<Utc>,
    ) -> Result<Option<Message>, StoreError>;
}
