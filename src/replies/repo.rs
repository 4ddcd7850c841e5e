//! The replies storage port: what a reply job reads and writes. Ending a reply (completed or
//! failed) removes its job in the same transaction, so a reply never ends twice.

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use super::model::ReplyJob;
use crate::chatrooms::model::ChatroomId;
use crate::jobs::queue::ClaimedJob;
use crate::messages::model::{Message, MessageError, MessageId, ReplyMeta};
use crate::storage::error::StoreError;
use crate::users::model::UserId;

/// A reply this run completed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Completed {
    pub message: Message,
    /// Its chatroom still has the default name: a title is due.
    pub room_untitled: bool,
}

/// What became of a request to cancel a reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Cancel {
    /// Cancelled now; the reply as it ends.
    Cancelled(Message),
    /// It had been cancelled before: nothing changed.
    AlreadyCancelled(Message),
    /// A prompt, or a reply that already ended.
    NotCancellable,
    /// No such message in this user's chatroom.
    NotFound,
}

#[async_trait]
pub trait ReplyRepo: Send + Sync {
    /// The path above a reply, oldest first: its prompt and that prompt's ancestors, up to
    /// `limit` messages (failed and unfinished ones included: the caller chooses the context).
    async fn path_above(&self, reply: &ReplyJob, limit: u32) -> Result<Vec<Message>, StoreError>;

    /// Marks the reply `streaming`; false when it has ended (cancelled before it started, or
    /// finished by another run).
    async fn mark_streaming(
        &self,
        reply: MessageId,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError>;

    /// Sends a reply whose attempt did not finish back to `pending`, if `job` still holds its
    /// lease (another run may own the reply otherwise).
    async fn reset_to_pending(
        &self,
        job: &ClaimedJob,
        reply: MessageId,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError>;

    /// In one transaction: completes the reply if it is still unfinished, bumps the chatroom's
    /// activity and removes the job. Returns the final reply (and whether its room still waits
    /// for a title), or `None` when another run had already finished it (a job may run twice;
    /// only one run completes it).
    async fn complete(
        &self,
        job: &ClaimedJob,
        reply: &ReplyJob,
        content: &str,
        meta: &ReplyMeta,
        now: DateTime<Utc>,
    ) -> Result<Option<Completed>, StoreError>;

    /// In one transaction: fails the reply if it is still unfinished, gives its prompt back to
    /// the day it was taken from (once: the day is cleared), and removes the job.
    async fn fail(
        &self,
        job: &ClaimedJob,
        reply: &ReplyJob,
        error: &MessageError,
        now: DateTime<Utc>,
    ) -> Result<Option<Message>, StoreError>;

    /// In one transaction: cancels a `pending` or `streaming` reply and removes its job (the
    /// room's next reply is first in line). A reply that had not started gives its prompt
    /// back and keeps no text; one that was streaming keeps `streamed` (the text so far) and
    /// counts.
    async fn cancel(
        &self,
        user: UserId,
        room: ChatroomId,
        reply: MessageId,
        streamed: &str,
        now: DateTime<Utc>,
    ) -> Result<Cancel, StoreError>;
}
