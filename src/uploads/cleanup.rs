//! Files leave the object store through the durable job queue, so a crash never strands them:
//! an upload that no prompt carries a day after it arrived is deleted (`upload.expire`, queued
//! with the upload), and the bytes of uploads whose last prompt went (a deleted chatroom) are
//! removed after the transaction that deleted their rows (`objects.delete`, queued in it).

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::model::{Upload, UploadId};
use crate::app::App;
use crate::jobs::queue::{ClaimedJob, NewJob};
use crate::jobs::worker::{JobHandler, count_outcome};
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

    /// The job for the bytes of `uploads`, due now. It belongs to no one, so it outlives the
    /// account whose deletion queued it.
    pub(crate) fn queued(uploads: &[Upload], now: DateTime<Utc>) -> Option<NewJob> {
        let keys: Vec<String> = uploads.iter().map(Upload::key).collect();
        (!keys.is_empty()).then(|| NewJob::new(Self::KIND, &Self { keys }, now))
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
        let Ok(expire) = job.payload::<ExpireUpload>() else {
            return drop_unreadable(app, job).await;
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
        let Ok(delete) = job.payload::<DeleteObjects>() else {
            return drop_unreadable(app, job).await;
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

async fn drop_unreadable(app: &App, job: &ClaimedJob) -> Result<(), StoreError> {
    count_outcome("bad_payload");
    tracing::error!(kind = %job.kind, "a job's payload is unreadable; dropping it");
    app.store.jobs.finish(job).await?;
    Ok(())
}
