//! `JobQueue`, once for both databases: queueing, leases, retries. Claiming and waking differ
//! per database (see the dialects).

use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use super::SqlStore;
use super::sql::{Connection, FromRecord, Record, Scalar, sql, to_u32};
use crate::jobs::queue::{ClaimedJob, JobId, JobQueue, NewJob};
use crate::storage::error::StoreError;

impl FromRecord for ClaimedJob {
    fn from_record(row: &dyn Record) -> Result<Self, StoreError> {
        Ok(Self {
            id: JobId(row.get("id")?),
            kind: row.get("kind")?,
            payload: row.get("payload")?,
            attempts: to_u32(row.get("attempts")?),
            lock_token: row.get("lock_token")?,
        })
    }
}

/// The claim's condition on a job `j` of a lane: no other job of the lane is claimed (even with
/// a lapsed lease), and an unclaimed job is the lane's oldest. Jobs can commit out of id order
/// (two API processes writing one room at once), so the oldest job may arrive while a newer
/// one runs: it waits for that one instead of making the claim break the one-claim-per-lane
/// index (which failed every claim of the batch while the newer job ran). A lapsed claim is
/// taken over first, oldest or not.
///
/// Two probes, each answered by an index without reading the lane's other jobs: the claimed
/// job of the lane (`jobs_one_claimed_per_lane`), then an older one (`jobs_lane`, the range
/// below `j.id`). One probe for both read every job of the lane for each lane's oldest; with
/// a backlog of ~30 jobs per lane, that was most of the claim's cost (3.2 against 1.4 ms).
macro_rules! lane_is_free {
    () => {
        "NOT EXISTS (SELECT 1 FROM jobs o WHERE o.lane = j.lane AND o.lock_token IS NOT NULL \
             AND o.id <> j.id) \
         AND (j.lock_token IS NOT NULL \
             OR NOT EXISTS (SELECT 1 FROM jobs o WHERE o.lane = j.lane AND o.id < j.id))"
    };
}
pub(crate) use lane_is_free;

struct Counts(i64, i64);

impl FromRecord for Counts {
    fn from_record(row: &dyn Record) -> Result<Self, StoreError> {
        Ok(Self(row.get("queued")?, row.get("running")?))
    }
}

fn lease_end(now: DateTime<Utc>, lease: Duration) -> DateTime<Utc> {
    now + chrono::Duration::from_std(lease).unwrap_or(chrono::Duration::seconds(60))
}

impl SqlStore {
    /// After a commit that queued work or freed a lane: wakes this process's workers, and on
    /// PostgreSQL those of every other process (a `NOTIFY`). Best-effort: the commit stands
    /// whatever happens here, and a lost wake-up is caught by the workers' poll.
    ///
    /// The `NOTIFY` is a transaction of its own, never part of the one that stores the work:
    /// PostgreSQL serialises the commits of every transaction that notifies, each holding a
    /// global lock through its WAL flush. Inside the sends' and the replies' transactions it
    /// was the bottleneck of both under load (`bench/`, scenario 6: most completing replies
    /// waited on that lock). Alone, a `NOTIFY` writes no data, so its commit is not flushed.
    pub(super) async fn wake_workers(&self) {
        self.local_jobs.notify_one();
        if let Some(notify) = self.db.wake_workers()
            && let Err(err) = notify.execute(&mut *self.db.writes()).await
        {
            tracing::warn!(error = %err, "could not wake the workers of other processes; they find the work when they next look");
        }
    }

    /// Queues `job` as part of the caller's transaction; the caller wakes workers after the
    /// commit ([`Self::wake_workers`]). A job whose key is already queued is not queued twice.
    pub(super) async fn enqueue_in(
        &self,
        tx: &mut dyn Connection,
        job: &NewJob,
    ) -> Result<(), StoreError> {
        sql(
            "INSERT INTO jobs (id, kind, payload, lane, key, user_id, chatroom_id, attempts, \
             run_at, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7, 0, $8, $8) \
             ON CONFLICT (key) DO NOTHING",
        )
        .bind(job.id.0)
        .bind(job.kind)
        .bind(job.payload.as_str())
        .bind(job.lane.as_deref())
        .bind(job.key.as_deref())
        .bind(job.user_id.map(|user| user.0))
        .bind(job.chatroom_id.map(|room| room.0))
        .bind(job.run_at)
        .execute(&mut *tx)
        .await?;
        Ok(())
    }

    /// Removes the queued job named `key`, if any, as part of the caller's transaction (the
    /// caller wakes workers after the commit: the next job of its lane is first in line now).
    pub(super) async fn remove_in(
        &self,
        tx: &mut dyn Connection,
        key: &str,
    ) -> Result<(), StoreError> {
        sql("DELETE FROM jobs WHERE key = $1")
            .bind(key)
            .execute(&mut *tx)
            .await?;
        Ok(())
    }

    /// Removes a job that is done, as part of the caller's transaction.
    pub(super) async fn finish_in(
        &self,
        tx: &mut dyn Connection,
        job: JobId,
    ) -> Result<(), StoreError> {
        sql("DELETE FROM jobs WHERE id = $1")
            .bind(job.0)
            .execute(&mut *tx)
            .await?;
        Ok(())
    }
}

#[async_trait]
impl JobQueue for SqlStore {
    async fn enqueue(&self, job: &NewJob) -> Result<(), StoreError> {
        let mut tx = self.db.begin().await?;
        self.enqueue_in(&mut *tx, job).await?;
        tx.commit().await?;
        self.wake_workers().await;
        Ok(())
    }

    async fn claim(
        &self,
        now: DateTime<Utc>,
        lease: Duration,
        max: u32,
    ) -> Result<Vec<ClaimedJob>, StoreError> {
        self.db
            .claim()
            .bind(now)
            .bind(lease_end(now, lease))
            .bind(max)
            .fetch_all(&mut *self.db.writes())
            .await
    }

    async fn renew(&self, job: &ClaimedJob, until: DateTime<Utc>) -> Result<bool, StoreError> {
        // Not flushed: a renewal lost with the server shortens the lease, and a second run is
        // what leases already allow for (only one run can end the job).
        let done = sql(format!(
            "UPDATE jobs SET locked_until = $3{} WHERE id = $1 AND lock_token = $2",
            self.db.unflushed()
        ))
        .bind(job.id.0)
        .bind(job.lock_token)
        .bind(until)
        .execute(&mut *self.db.writes())
        .await?;
        Ok(done == 1)
    }

    async fn release(&self, job: &ClaimedJob, run_at: DateTime<Utc>) -> Result<(), StoreError> {
        let mut tx = self.db.begin().await?;
        sql(
            "UPDATE jobs SET locked_until = NULL, lock_token = NULL, run_at = $3, \
             attempts = CASE WHEN attempts > 0 THEN attempts - 1 ELSE 0 END \
             WHERE id = $1 AND lock_token = $2",
        )
        .bind(job.id.0)
        .bind(job.lock_token)
        .bind(run_at)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        self.wake_workers().await;
        Ok(())
    }

    async fn retry_later(
        &self,
        job: &ClaimedJob,
        run_at: DateTime<Utc>,
        error: &str,
    ) -> Result<bool, StoreError> {
        let done = sql(
            "UPDATE jobs SET locked_until = NULL, lock_token = NULL, run_at = $3, \
             last_error = $4 WHERE id = $1 AND lock_token = $2",
        )
        .bind(job.id.0)
        .bind(job.lock_token)
        .bind(run_at)
        .bind(error)
        .execute(&mut *self.db.writes())
        .await?;
        Ok(done == 1)
    }

    async fn finish(&self, job: &ClaimedJob) -> Result<bool, StoreError> {
        let mut tx = self.db.begin().await?;
        let done = sql("DELETE FROM jobs WHERE id = $1 AND lock_token = $2")
            .bind(job.id.0)
            .bind(job.lock_token)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        self.wake_workers().await;
        Ok(done == 1)
    }

    async fn counts(&self, now: DateTime<Utc>) -> Result<(u64, u64), StoreError> {
        let Counts(queued, running) = sql(
            "SELECT count(*) FILTER (WHERE lock_token IS NULL OR locked_until < $1) AS queued, \
             count(*) FILTER (WHERE lock_token IS NOT NULL AND locked_until >= $1) AS running \
             FROM jobs",
        )
        .bind(now)
        .fetch_one(&mut *self.db.reads())
        .await?;
        Ok((
            u64::try_from(queued).unwrap_or(0),
            u64::try_from(running).unwrap_or(0),
        ))
    }

    async fn next_run_at(&self) -> Result<Option<DateTime<Utc>>, StoreError> {
        let Scalar(next) = sql(
            "SELECT min(CASE WHEN lock_token IS NULL THEN run_at ELSE locked_until END) AS value \
             FROM jobs",
        )
        .fetch_one::<Scalar<Option<DateTime<Utc>>>>(&mut *self.db.reads())
        .await?;
        Ok(next)
    }

    async fn wake_all(&self) {
        self.wake_workers().await;
    }

    async fn wait_for_work(&self, max_wait: Duration) {
        self.db.wait_for_work(&self.local_jobs, max_wait).await;
    }
}
