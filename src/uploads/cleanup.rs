//! Files leave the object store through the durable job queue, so a crash never strands them:
//! an upload that no prompt carries a day after it arrived is deleted (`upload.expire`, queued
//! with the upload), and the bytes of uploads whose last prompt went (a deleted chatroom) are
//! removed after the transaction that deleted their rows (`objects.delete`, queued in it). What
//! a crash can still leave (bytes stored, the row never committed) is found by a daily sweep
//! (`objects.sweep`): objects of the uploads' shape with no row, older than an hour, go.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::model::{Upload, UploadId};
use crate::app::App;
use crate::jobs::queue::{ClaimedJob, NewJob};
use crate::jobs::worker::{JobHandler, drop_unreadable};
use crate::objects::ObjectError;
use crate::storage::error::StoreError;
use crate::users::model::UserId;

/// How long an upload waits to be attached to a prompt.
pub(crate) const UNATTACHED_TTL: chrono::TimeDelta = chrono::TimeDelta::hours(24);

/// The payload of an expiry job.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExpireUpload {
    pub upload_id: UploadId,
    pub user_id: UserId,
}

impl ExpireUpload {
    pub const KIND: &'static str = "upload.expire";

    /// The job, due a day after `upload` arrived; it goes with its owner's account.
    pub(crate) fn queued(upload: &Upload) -> NewJob {
        let payload = Self {
            upload_id: upload.id,
            user_id: upload.user_id,
        };
        NewJob {
            key: Some(format!("{}:{}", Self::KIND, upload.id)),
            user_id: Some(upload.user_id),
            ..NewJob::new(Self::KIND, &payload, upload.created_at + UNATTACHED_TTL)
        }
    }
}

/// The payload of a job that removes objects whose rows are gone.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeleteObjects {
    pub keys: Vec<String>,
}

impl DeleteObjects {
    pub const KIND: &'static str = "objects.delete";
    /// Keys one job removes at most (an account's files are split over several jobs).
    pub(crate) const MAX_KEYS: usize = 1_000;

    /// The job for the bytes of `uploads`, due now. It belongs to no one, so it outlives the
    /// account whose deletion queued it.
    pub(crate) fn queued(uploads: &[Upload], now: DateTime<Utc>) -> Option<NewJob> {
        let keys: Vec<String> = uploads.iter().map(Upload::key).collect();
        (!keys.is_empty()).then(|| NewJob::new(Self::KIND, &Self { keys }, now))
    }
}

/// The sweep: one job, rescheduled by itself each day.
pub struct SweepObjects;

impl SweepObjects {
    pub const KIND: &'static str = "objects.sweep";
    const KEY: &'static str = "objects.sweep";

    /// How often the store is swept.
    const EVERY: chrono::TimeDelta = chrono::TimeDelta::hours(24);
    /// An object younger than this may be an upload whose row is being committed.
    const GRACE: chrono::TimeDelta = chrono::TimeDelta::hours(1);
    /// Rows looked up at once.
    const BATCH: usize = 500;

    /// Queues the sweep, due in an hour, unless it is queued already (every worker process
    /// asks at start; the key keeps one).
    pub async fn schedule(app: &App) -> Result<(), StoreError> {
        let job = NewJob {
            key: Some(Self::KEY.into()),
            ..NewJob::new(Self::KIND, &(), app.clock.now() + Self::GRACE)
        };
        app.store.jobs.enqueue(&job).await
    }
}

/// The upload an object key names (`<user id>/<upload id>`), if it has that shape.
fn upload_of(key: &str) -> Option<UploadId> {
    let (user, id) = key.split_once('/')?;
    uuid::Uuid::parse_str(user).ok()?;
    uuid::Uuid::parse_str(id).ok().map(UploadId)
}

/// Runs the `objects.sweep` job.
pub struct SweepHandler;

#[async_trait::async_trait]
impl JobHandler for SweepHandler {
    fn kind(&self) -> &'static str {
        SweepObjects::KIND
    }

    async fn run(&self, app: &App, job: &ClaimedJob) -> Result<(), StoreError> {
        let now = app.clock.now();
        let listed = match app.objects.list().await {
            Ok(listed) => listed,
            Err(err) => {
                tracing::warn!(error = %err, "the object store could not be listed; sweeping later");
                app.store
                    .jobs
                    .retry_later(job, now + SweepObjects::GRACE, &err.to_string())
                    .await?;
                return Ok(());
            }
        };
        // Only what has an upload's shape and is old enough: anything else in the bucket is
        // not ours to judge.
        let candidates: Vec<(UploadId, &str)> = listed
            .iter()
            .filter(|object| object.written_at < now - SweepObjects::GRACE)
            .filter_map(|object| upload_of(&object.key).map(|id| (id, object.key.as_str())))
            .collect();
        let mut removed = 0;
        for batch in candidates.chunks(SweepObjects::BATCH) {
            let ids: Vec<UploadId> = batch.iter().map(|(id, _)| *id).collect();
            let existing = app.store.uploads.existing(&ids).await?;
            for (id, key) in batch.iter().filter(|(id, _)| !existing.contains(id)) {
                if !remove(app, job, key).await? {
                    return Ok(());
                }
                tracing::info!(upload_id = %id, "an object without an upload was removed");
                removed += 1;
            }
        }
        tracing::info!(listed = listed.len(), removed, "object store swept");
        app.store
            .jobs
            .retry_later(job, now + SweepObjects::EVERY, "")
            .await?;
        Ok(())
    }
}

/// Runs `upload.expire` jobs.
pub struct ExpireHandler;

#[async_trait::async_trait]
impl JobHandler for ExpireHandler {
    fn kind(&self) -> &'static str {
        ExpireUpload::KIND
    }

    async fn run(&self, app: &App, job: &ClaimedJob) -> Result<(), StoreError> {
        let expire: ExpireUpload = match job.payload() {
            Ok(expire) => expire,
            Err(err) => return drop_unreadable(app, job, &err).await,
        };
        let uploads = &app.store.uploads;
        if let Some(key) = uploads
            .delete_unattached(expire.user_id, expire.upload_id)
            .await?
            && !remove(app, job, &key).await?
        {
            return Ok(());
        }
        app.store.jobs.finish(job).await?;
        Ok(())
    }
}

/// Runs `objects.delete` jobs.
pub struct DeleteObjectsHandler;

#[async_trait::async_trait]
impl JobHandler for DeleteObjectsHandler {
    fn kind(&self) -> &'static str {
        DeleteObjects::KIND
    }

    async fn run(&self, app: &App, job: &ClaimedJob) -> Result<(), StoreError> {
        let delete: DeleteObjects = match job.payload() {
            Ok(delete) => delete,
            Err(err) => return drop_unreadable(app, job, &err).await,
        };
        for key in &delete.keys {
            if !remove(app, job, key).await? {
                return Ok(());
            }
        }
        app.store.jobs.finish(job).await?;
        Ok(())
    }
}

/// Deletes the object `key`; `false` when the store failed and the job was put off (deleting
/// is idempotent: the next attempt starts over).
async fn remove(app: &App, job: &ClaimedJob, key: &str) -> Result<bool, StoreError> {
    match app.objects.delete(key).await {
        Ok(()) => Ok(true),
        Err(ObjectError::NotFound) => Ok(true),
        Err(ObjectError::Unavailable(why)) => {
            let wait = crate::jobs::retry::backoff(job.attempts, None, rand::random::<f64>());
            tracing::warn!(error = %why, retry_in = ?wait, "the object store refused a deletion");
            let run_at = app.clock.now() + chrono::Duration::from_std(wait).unwrap_or_default();
            app.store.jobs.retry_later(job, run_at, &why).await?;
            Ok(false)
        }
    }
}
