//! The job queue port.

use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use uuid::Uuid;

use crate::chatrooms::model::ChatroomId;
use crate::messages::model::{Message, MessageError, MessageId, ReplyMeta};
use crate::storage::error::StoreError;
use crate::users::model::UserId;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct JobId(pub Uuid);

impl JobId {
    pub fn new() -> Self {
        Self(Uuid::now_v7())
    }
}

impl Default for JobId {
    fn default() -> Self {
        Self::new()
    }
}

/// A job this worker holds the lease of. `lock_token` identifies this claim: a run whose lease
/// lapsed and was claimed again can no longer renew or reschedule it.
#[derive(Debug, Clone)]
pub struct ClaimedJob {
    pub id: JobId,
    pub reply_id: MessageId,
    pub chatroom_id: ChatroomId,
    pub user_id: UserId,
    /// Attempts including this one.
    pub attempts: u32,
    pub lock_token: Uuid,
}

#[async_trait]
pub trait JobQueue: Send + Sync {
    /// Claims up to `max` due jobs, each the oldest of its chatroom, with a lease until
    /// `now + lease`, counting one attempt on each.
    async fn claim(
        &self,
        now: DateTime<Utc>,
        lease: Duration,
        max: u32,
    ) -> Result<Vec<ClaimedJob>, StoreError>;

    /// Extends the lease; false when this claim no longer holds the job.
    async fn renew(&self, job: &ClaimedJob, until: DateTime<Utc>) -> Result<bool, StoreError>;

    /// Gives the job back without counting the attempt (the worker is shutting down).
    async fn release(&self, job: &ClaimedJob, now: DateTime<Utc>) -> Result<(), StoreError>;

    /// Schedules another attempt at `run_at`, if this claim still holds the job.
    async fn retry_later(
        &self,
        job: &ClaimedJob,
        run_at: DateTime<Utc>,
        error: &str,
    ) -> Result<(), StoreError>;

    /// The conversation a reply answers: up to `limit` messages of its chatroom before it,
    /// leaving out failed and unfinished replies, oldest first.
    async fn history(&self, job: &ClaimedJob, limit: u32) -> Result<Vec<Message>, StoreError>;

    /// Marks the reply `streaming` (from `pending`).
    async fn mark_streaming(&self, job: &ClaimedJob, now: DateTime<Utc>) -> Result<(), StoreError>;

    /// In one transaction: completes the reply if it is still unfinished, bumps the chatroom's
    /// activity and removes the job. Returns the final reply, or `None` when another run had
    /// already finished it (a job may run twice; only one run completes it).
    async fn complete(
        &self,
        job: &ClaimedJob,
        content: &str,
        meta: &ReplyMeta,
        now: DateTime<Utc>,
    ) -> Result<Option<Message>, StoreError>;

    /// In one transaction: fails the reply if it is still unfinished, gives its prompt back to
    /// the day it was taken from (once: the day is cleared), and removes the job.
    async fn fail(
        &self,
        job: &ClaimedJob,
        error: &MessageError,
        now: DateTime<Utc>,
    ) -> Result<Option<Message>, StoreError>;

    /// Jobs waiting (queued) and claimed under a live lease (running) at `now`.
    async fn counts(&self, now: DateTime<Utc>) -> Result<(u64, u64), StoreError>;

    /// When the next job not yet due becomes due, if any.
    async fn next_run_at(&self) -> Result<Option<DateTime<Utc>>, StoreError>;

    /// Returns when new work may have arrived (a job was queued by any process), or after
    /// `max_wait`.
    async fn wait_for_work(&self, max_wait: Duration);
}
