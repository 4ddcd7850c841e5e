//! The job worker: claims due jobs of every kind (up to `WORKER_CONCURRENCY` in flight, as
//! async tasks), keeps their leases renewed, and hands each to the [`JobHandler`] of its kind.
//! `run_next` runs a single job, for tests.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinSet;
use tracing::Instrument;

use super::queue::ClaimedJob;
use crate::app::App;
use crate::metrics::JOB_OUTCOMES;
use crate::storage::error::StoreError;

/// Runs the jobs of one kind.
#[async_trait]
pub trait JobHandler: Send + Sync {
    /// The `kind` of the jobs it runs.
    fn kind(&self) -> &'static str;

    /// One attempt at the job. The handler ends it itself (`finish`, `retry_later`, or in the
    /// transaction that stores its result). A storage error leaves the job to run again when
    /// its lease lapses.
    async fn run(&self, app: &App, job: &ClaimedJob) -> Result<(), StoreError>;

    /// Before the worker hands an interrupted job back at shutdown: undoes what the attempt
    /// left visible.
    async fn before_release(&self, _app: &App, _job: &ClaimedJob) -> Result<(), StoreError> {
        Ok(())
    }
}

/// The handler of every kind of job this process runs.
#[derive(Clone, Default)]
pub struct Handlers(HashMap<&'static str, Arc<dyn JobHandler>>);

impl Handlers {
    pub fn with(mut self, handler: impl JobHandler + 'static) -> Self {
        self.0.insert(handler.kind(), Arc::new(handler));
        self
    }

    fn of(&self, job: &ClaimedJob) -> Option<Arc<dyn JobHandler>> {
        self.0.get(job.kind.as_str()).cloned()
    }
}

/// A job of a kind this process has no handler for (a newer version queued it) waits this
/// long for a process that has one.
const UNKNOWN_KIND_RETRY: Duration = Duration::from_secs(60);

/// Counts how a job attempt ended (`gemchat_job_outcomes_total{outcome}`).
pub(crate) fn count_outcome(name: &'static str) {
    metrics::counter!(JOB_OUTCOMES, "outcome" => name).increment(1);
}

/// Ends a job whose payload cannot be read (a bug, or a shape this version does not know):
/// counted, logged and dropped, since every attempt would fail the same way.
pub(crate) async fn drop_unreadable(
    app: &App,
    job: &ClaimedJob,
    error: &serde_json::Error,
) -> Result<(), StoreError> {
    count_outcome("bad_payload");
    tracing::error!(kind = %job.kind, error = %error, "a job's payload is unreadable; dropping it");
    app.store.jobs.finish(job).await?;
    Ok(())
}

/// The longest a worker sleeps without looking for due jobs (a safety net for lost wake-ups).
const MAX_IDLE: Duration = Duration::from_secs(5);

/// Under load, a claim waits for `concurrency / CLAIM_BATCH_DIVISOR` free places...
const CLAIM_BATCH_DIVISOR: usize = 8;
/// ...or for a free slot to have waited this long.
const FILL_DELAY: Duration = Duration::from_millis(10);

/// Whether to claim now: when a batch of places is free, when nothing is held (no finishing
/// reply will free more), or when a free place has waited `FILL_DELAY`.
fn claim_is_due(free: usize, batch: usize, idle: bool, free_for: Duration) -> bool {
    free > 0 && (free >= batch || idle || free_for >= FILL_DELAY)
}

/// After a failed claim the next waits this long, doubling up to `MAX_CLAIM_BACKOFF`.
const FIRST_CLAIM_BACKOFF: Duration = Duration::from_millis(50);
const MAX_CLAIM_BACKOFF: Duration = Duration::from_secs(2);

async fn sleep_until_some(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// Claims one due job, if any, and runs it to the end. Returns whether there was one.
pub async fn run_next(app: &Arc<App>, handlers: &Handlers) -> anyhow::Result<bool> {
    let claimed = app.store.jobs.claim(app.clock.now(), lease(app), 1).await?;
    let Some(job) = claimed.into_iter().next() else {
        return Ok(false);
    };
    let slot = Arc::new(Semaphore::new(1));
    run_job(Arc::clone(app), handlers.clone(), job, slot).await;
    Ok(true)
}

/// How a job's task ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ran {
    /// Nothing of the job is left for this worker to give back: its handler ran, or its lease
    /// passed to another worker while it waited.
    Ended,
    /// The worker stopped while it waited for a slot: it is handed back.
    NotStarted,
}

fn lease(app: &App) -> Duration {
    Duration::from_secs(app.config.job_lease_seconds)
}

/// Runs jobs until `stop` becomes true; then claims nothing more, lets the jobs in flight
/// finish for up to `WORKER_SHUTDOWN_GRACE`, and hands back the rest (they run again at once
/// elsewhere, without counting the interrupted attempt).
///
/// Under load, free places are filled in batches (see [`claim_is_due`]): the claim is the
/// worker's most expensive statement, and one per finished reply kept the database busier
/// than the replies themselves.
///
/// Up to `WORKER_CONCURRENCY` jobs run at once (the slots); the worker holds up to two batches
/// more, claimed ahead, each waiting for a slot under its renewed lease. A slot that frees
/// takes a waiting job at once instead of waiting for the next claim: without them every slot
/// sat empty for the batch's wait and the claim's round trip, 6-15% of a 50 ms reply's cycle
/// (`bench/`, scenario 6). Claimed ahead only while there is a backlog: a claim takes what is
/// due, no more.
pub async fn run_until_stopped(app: Arc<App>, handlers: Handlers, mut stop: watch::Receiver<bool>) {
    let concurrency = app.config.worker_concurrency as usize;
    let batch = (concurrency / CLAIM_BATCH_DIVISOR).max(1);
    let slots = Arc::new(Semaphore::new(concurrency));
    let held_at_most = concurrency + 2 * batch;
    let mut in_flight: JoinSet<Ran> = JoinSet::new();
    let mut held: HashMap<tokio::task::Id, ClaimedJob> = HashMap::new();
    // Since when slots have been free without a claim that could fill them.
    let mut free_since: Option<tokio::time::Instant> = None;
    let mut claim_backoff = FIRST_CLAIM_BACKOFF;
    tracing::info!(concurrency, "job worker started");
    while !*stop.borrow() {
        while let Some(done) = in_flight.try_join_next_with_id() {
            forget_finished(&mut held, done);
        }
        let free = held_at_most.saturating_sub(in_flight.len());
        if free == 0 {
            free_since = None;
        } else if free_since.is_none() {
            free_since = Some(tokio::time::Instant::now());
        }
        let due = free_since
            .is_some_and(|since| claim_is_due(free, batch, in_flight.is_empty(), since.elapsed()));
        let mut claimed_all = false;
        if due {
            let free_u32 = u32::try_from(free).unwrap_or(u32::MAX);
            match app
                .store
                .jobs
                .claim(app.clock.now(), lease(&app), free_u32)
                .await
            {
                Ok(jobs) => {
                    claim_backoff = FIRST_CLAIM_BACKOFF;
                    claimed_all = jobs.len() == free;
                    for job in jobs {
                        let handle = in_flight.spawn(run_job(
                            Arc::clone(&app),
                            handlers.clone(),
                            job.clone(),
                            Arc::clone(&slots),
                        ));
                        held.insert(handle.id(), job);
                    }
                    // Whatever is still free waits for work now, not for a batch.
                    free_since = None;
                }
                Err(err) => {
                    // Not at once again: a failing claim (the database going away) would
                    // otherwise spin, logging as fast as it fails.
                    tracing::error!(error = %err, retry_in = ?claim_backoff, "cannot claim jobs");
                    tokio::select! {
                        _ = stop.changed() => {}
                        () = tokio::time::sleep(claim_backoff) => {}
                    }
                    claim_backoff = (claim_backoff * 2).min(MAX_CLAIM_BACKOFF);
                    continue;
                }
            }
        }
        if claimed_all {
            continue;
        }
        let free = held_at_most.saturating_sub(in_flight.len());
        let idle = if free > 0 && due {
            idle_wait(&app).await
        } else {
            MAX_IDLE
        };
        let batch_deadline = free_since.map(|since| since + FILL_DELAY);
        tokio::select! {
            _ = stop.changed() => {}
            Some(done) = in_flight.join_next_with_id(), if !in_flight.is_empty() => {
                forget_finished(&mut held, done);
            }
            () = app.store.jobs.wait_for_work(idle), if free > 0 => {}
            () = sleep_until_some(batch_deadline), if !due && free > 0 => {}
        }
    }
    tracing::info!(in_flight = in_flight.len(), "job worker stopping");
    // The jobs waiting for a slot start no more: they end at once and are handed back.
    slots.close();
    let grace = tokio::time::sleep(Duration::from_secs(app.config.worker_shutdown_grace));
    tokio::pin!(grace);
    while !in_flight.is_empty() {
        tokio::select! {
            Some(done) = in_flight.join_next_with_id() => forget_finished(&mut held, done),
            () = &mut grace => break,
        }
    }
    in_flight.abort_all();
    while let Some(done) = in_flight.join_next_with_id().await {
        forget_finished(&mut held, done);
    }
    for job in held.into_values() {
        if let Some(handler) = handlers.of(&job)
            && let Err(err) = handler.before_release(&app, &job).await
        {
            tracing::warn!(error = %err, job_id = %job.id.0, "could not undo an interrupted attempt");
        }
        match app.store.jobs.release(&job, app.clock.now()).await {
            Ok(()) => {
                count_outcome("handed_back");
                tracing::info!(job_id = %job.id.0, "handed a job back");
            }
            Err(err) => {
                tracing::warn!(error = %err, job_id = %job.id.0, "could not hand a job back; its lease will lapse")
            }
        }
    }
    // The lanes of the jobs finished while stopping are free, and this worker takes no more.
    app.store.jobs.wake_all().await;
    tracing::info!("job worker stopped");
}

/// Drops the record of a job whose task ran it (it ended on its own, not aborted).
fn forget_finished(
    held: &mut HashMap<tokio::task::Id, ClaimedJob>,
    done: Result<(tokio::task::Id, Ran), tokio::task::JoinError>,
) {
    match done {
        Ok((id, Ran::Ended)) => {
            held.remove(&id);
        }
        // Never started: still held, handed back by the caller.
        Ok((_, Ran::NotStarted)) => {}
        Err(err) if err.is_panic() => {
            tracing::error!(error = %err, "a job task panicked; its lease will lapse and it runs again");
            held.remove(&err.id());
        }
        // Aborted: still held, handed back by the caller.
        Err(_) => {}
    }
}

/// How long to wait for work: until the next scheduled job, at most [`MAX_IDLE`].
async fn idle_wait(app: &App) -> Duration {
    match app.store.jobs.next_run_at().await {
        Ok(Some(next)) => (next - app.clock.now())
            .to_std()
            .unwrap_or(Duration::ZERO)
            .min(MAX_IDLE),
        _ => MAX_IDLE,
    }
}

/// Runs one claimed job by the handler of its kind once a slot is free, renewing its lease
/// from the claim on. `NotStarted` when the slots closed (the worker stops) before it had one.
async fn run_job(app: Arc<App>, handlers: Handlers, job: ClaimedJob, slots: Arc<Semaphore>) -> Ran {
    let span = tracing::info_span!(
        "job",
        job_id = %job.id.0,
        kind = %job.kind,
        attempt = job.attempts,
    );
    async {
        let renewals = keep_lease(&app, &job);
        tokio::pin!(renewals);
        let slot = tokio::select! {
            slot = slots.acquire() => slot,
            () = &mut renewals => {
                count_outcome("lost_lease");
                tracing::warn!("lost the job's lease while it waited for a slot");
                return Ran::Ended;
            }
        };
        let Ok(_slot) = slot else {
            return Ran::NotStarted;
        };
        let Some(handler) = handlers.of(&job) else {
            postpone_unknown(&app, &job).await;
            return Ran::Ended;
        };
        let finished = tokio::select! {
            result = handler.run(&app, &job) => Some(result),
            () = &mut renewals => None,
        };
        match finished {
            Some(Ok(())) => {}
            None => {
                count_outcome("lost_lease");
                tracing::warn!("lost the job's lease; leaving it to its new owner");
            }
            Some(Err(err)) => tracing::error!(error = %err, "job failed on storage; it runs again when its lease lapses"),
        }
        Ran::Ended
    }
    .instrument(span)
    .await
}

/// A job no handler here knows: left for a process that has one.
async fn postpone_unknown(app: &App, job: &ClaimedJob) {
    count_outcome("unknown_kind");
    tracing::warn!("no handler for this kind of job here; postponing it");
    let run_at =
        app.clock.now() + chrono::Duration::from_std(UNKNOWN_KIND_RETRY).unwrap_or_default();
    let error = format!("no handler for jobs of kind {:?}", job.kind);
    if let Err(err) = app.store.jobs.retry_later(job, run_at, &error).await {
        tracing::warn!(error = %err, "could not postpone the job; its lease will lapse");
    }
}

/// Renews the lease every third of its length; returns when the lease is lost.
async fn keep_lease(app: &App, job: &ClaimedJob) {
    let lease = lease(app);
    let mut tick = tokio::time::interval(lease / 3);
    tick.tick().await;
    loop {
        tick.tick().await;
        let until = app.clock.now() + chrono::Duration::from_std(lease).unwrap_or_default();
        match app.store.jobs.renew(job, until).await {
            Ok(true) => {}
            Ok(false) => return,
            Err(err) => tracing::warn!(error = %err, "could not renew a lease; trying again"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn claims_wait_for_a_batch_only_while_replies_are_running() {
        let none = Duration::ZERO;
        assert!(!claim_is_due(0, 8, true, FILL_DELAY), "nothing free");
        assert!(claim_is_due(8, 8, false, none), "a full batch");
        assert!(!claim_is_due(3, 8, false, none), "a partial batch waits");
        assert!(claim_is_due(3, 8, false, FILL_DELAY), "but not for long");
        assert!(
            claim_is_due(1, 8, true, none),
            "an idle worker claims at once"
        );
    }
}
