//! The job queue port: durable background work of any kind. A job is a `kind` (which handler
//! runs it) and a JSON `payload` (its arguments); it is claimed under a lease that its worker
//! renews, retried at a later time when its handler says so, and removed when done. Jobs that
//! share a lane run one at a time, oldest first.

use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::Serialize;
use serde::de::DeserializeOwned;
use uuid::Uuid;

use crate::chatrooms::model::ChatroomId;
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

/// A job to queue.
#[derive(Debug, Clone)]
pub struct NewJob {
    pub id: JobId,
    /// Names the handler that runs it.
    pub kind: &'static str,
    /// Its arguments, as JSON.
    pub payload: String,
    /// Jobs of one lane run one at a time, oldest first; `None`: as soon as it is due.
    pub lane: Option<String>,
    /// What the job is about (`reply:<id>`), if it has a name: at most one queued job per key,
    /// and the handle to remove it by.
    pub key: Option<String>,
    /// The user and chatroom it belongs to: it is removed with them.
    pub user_id: Option<UserId>,
    pub chatroom_id: Option<ChatroomId>,
    pub run_at: DateTime<Utc>,
}

impl NewJob {
    /// A job of `kind` with `payload`, due at `run_at`, in no lane and belonging to no one.
    pub fn new(kind: &'static str, payload: &impl Serialize, run_at: DateTime<Utc>) -> Self {
        Self {
            id: JobId::new(),
            kind,
            // A payload is plain data: serialising it cannot fail.
            payload: serde_json::to_string(payload).unwrap_or_default(),
            lane: None,
            key: None,
            user_id: None,
            chatroom_id: None,
            run_at,
        }
    }
}

/// A job this worker holds the lease of. `lock_token` identifies this claim: a run whose lease
/// lapsed and was claimed again can no longer renew, reschedule or finish it.
#[derive(Debug, Clone)]
pub struct ClaimedJob {
    pub id: JobId,
    pub kind: String,
    pub(crate) payload: String,
    /// Attempts including this one.
    pub attempts: u32,
    pub lock_token: Uuid,
}

impl ClaimedJob {
    /// The payload as its handler's type.
    pub fn payload<T: DeserializeOwned>(&self) -> Result<T, serde_json::Error> {
        serde_json::from_str(&self.payload)
    }
}

#[async_trait]
pub trait JobQueue: Send + Sync {
    /// Queues a job (and wakes the workers of every process); nothing when a job with its key
    /// is queued already.
    async fn enqueue(&self, job: &NewJob) -> Result<(), StoreError>;

    /// Claims up to `max` due jobs, each the oldest of its lane, with a lease until
    /// `now + lease`, counting one attempt on each.
    async fn claim(
        &self,
        now: DateTime<Utc>,
        lease: Duration,
        max: u32,
    ) -> Result<Vec<ClaimedJob>, StoreError>;

    /// Extends the lease; false when this claim no longer holds the job.
    async fn renew(&self, job: &ClaimedJob, until: DateTime<Utc>) -> Result<bool, StoreError>;

    /// Gives the job back without counting the attempt, due at `run_at` (now when the worker
    /// is shutting down; the end of a pause of the AI provider).
    async fn release(&self, job: &ClaimedJob, run_at: DateTime<Utc>) -> Result<(), StoreError>;

    /// Schedules another attempt at `run_at`, if this claim still holds the job; whether it
    /// did.
    async fn retry_later(
        &self,
        job: &ClaimedJob,
        run_at: DateTime<Utc>,
        error: &str,
    ) -> Result<bool, StoreError>;

    /// Removes a job that is done (or given up on), if this claim still holds it.
    async fn finish(&self, job: &ClaimedJob) -> Result<bool, StoreError>;

    /// Jobs waiting (queued) and claimed under a live lease (running) at `now`.
    async fn counts(&self, now: DateTime<Utc>) -> Result<(u64, u64), StoreError>;

    /// When the next job not yet due becomes due, if any.
    async fn next_run_at(&self) -> Result<Option<DateTime<Utc>>, StoreError>;

    /// Wakes the workers of every process, as queuing a job does: a worker that stops wakes
    /// the others, since the lanes of the jobs it finished are free (finishing a reply wakes
    /// only its own process, whose worker has a slot free for the lane's next job).
    async fn wake_all(&self);

    /// Returns when new work may have arrived (a job was queued by any process), or after
    /// `max_wait`.
    async fn wait_for_work(&self, max_wait: Duration);
}
