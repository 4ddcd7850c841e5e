//! The reply worker: claims jobs (up to `WORKER_CONCURRENCY` in flight, as async tasks),
//! keeps their leases renewed, streams each reply from the AI provider to the chatroom's
//! listeners, and writes the result once. `run_next` runs a single job, for tests.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use tokio::sync::watch;
use tokio::task::JoinSet;
use tracing::Instrument;

use super::queue::ClaimedJob;
use super::retry;
use crate::ai::{AiError, Chunk, Conversation, Turn};
use crate::app::App;
use crate::messages::events::{self, RoomEvent};
use crate::messages::model::{Message, MessageError};
use crate::metrics::{AI_DURATION, AI_ERRORS, JOB_OUTCOMES};

fn count_outcome(name: &'static str) {
    metrics::counter!(JOB_OUTCOMES, "outcome" => name).increment(1);
}

/// The longest a worker sleeps without looking for due jobs (a safety net for lost wake-ups).
const MAX_IDLE: Duration = Duration::from_secs(5);

/// Under load, a claim waits for `concurrency / CLAIM_BATCH_DIVISOR` free slots...
const CLAIM_BATCH_DIVISOR: usize = 8;
/// ...or for a free slot to have waited this long.
const FILL_DELAY: Duration = Duration::from_millis(10);

/// Whether to claim now: when a batch of slots is free, when nothing is running (no finishing
/// reply will free more), or when a free slot has waited `FILL_DELAY`.
fn claim_is_due(free: usize, batch: usize, idle: bool, free_for: Duration) -> bool {
    free > 0 && (free >= batch || idle || free_for >= FILL_DELAY)
}

async fn sleep_until_some(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// How one attempt at a job ended.
enum Attempt {
    Finished,
    /// This run lost its lease (it took too long or the database was unreachable); another
    /// run owns the job now.
    LostLease,
}

/// Claims one due job, if any, and runs it to the end. Returns whether there was one.
pub async fn run_next(app: &Arc<App>) -> anyhow::Result<bool> {
    let claimed = app.store.jobs.claim(app.clock.now(), lease(app), 1).await?;
    let Some(job) = claimed.into_iter().next() else {
        return Ok(false);
    };
    run_job(Arc::clone(app), job).await;
    Ok(true)
}

fn lease(app: &App) -> Duration {
    Duration::from_secs(app.config.job_lease_seconds)
}

/// Runs jobs until `stop` becomes true; then claims nothing more, lets the jobs in flight
/// finish for up to `WORKER_SHUTDOWN_GRACE`, and hands back the rest (they run again at once
/// elsewhere, without counting the interrupted attempt).
///
/// Under load, free slots are filled in batches (see [`claim_is_due`]): the claim is the
/// worker's most expensive statement, and one per finished reply kept the database busier
/// than the replies themselves.
pub async fn run_until_stopped(app: Arc<App>, mut stop: watch::Receiver<bool>) {
    let concurrency = app.config.worker_concurrency as usize;
    let batch = (concurrency / CLAIM_BATCH_DIVISOR).max(1);
    let mut in_flight: JoinSet<()> = JoinSet::new();
    let mut held: HashMap<tokio::task::Id, ClaimedJob> = HashMap::new();
    // Since when slots have been free without a claim that could fill them.
    let mut free_since: Option<tokio::time::Instant> = None;
    tracing::info!(concurrency, "reply worker started");
    while !*stop.borrow() {
        while let Some(done) = in_flight.try_join_next_with_id() {
            forget_finished(&mut held, done);
        }
        let free = concurrency.saturating_sub(in_flight.len());
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
                    claimed_all = jobs.len() == free;
                    for job in jobs {
                        let handle = in_flight.spawn(run_job(Arc::clone(&app), job.clone()));
                        held.insert(handle.id(), job);
                    }
                    // Whatever is still free waits for work now, not for a batch.
                    free_since = None;
                }
                Err(err) => tracing::error!(error = %err, "cannot claim jobs"),
            }
        }
        if claimed_all {
            continue;
        }
        let free = concurrency.saturating_sub(in_flight.len());
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
    tracing::info!(in_flight = in_flight.len(), "reply worker stopping");
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
    tracing::info!("reply worker stopped");
}

/// Drops the record of a job whose task ended on its own (not aborted).
fn forget_finished(
    held: &mut HashMap<tokio::task::Id, ClaimedJob>,
    done: Result<(tokio::task::Id, ()), tokio::task::JoinError>,
) {
    match done {
        Ok((id, ())) => {
            held.remove(&id);
        }
        Err(err) if err.is_panic() => {
            tracing::error!(error = %err, "a reply task panicked; its lease will lapse and it runs again");
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

/// Runs one claimed job, renewing its lease meanwhile.
async fn run_job(app: Arc<App>, job: ClaimedJob) {
    let span = tracing::info_span!(
        "reply",
        job_id = %job.id.0,
        message_id = %job.reply_id,
        chatroom_id = %job.chatroom_id,
        attempt = job.attempts,
    );
    async {
        let renewals = keep_lease(&app, &job);
        let attempt = tokio::select! {
            result = attempt(&app, &job) => result,
            () = renewals => Ok(Attempt::LostLease),
        };
        match attempt {
            Ok(Attempt::Finished) => {}
            Ok(Attempt::LostLease) => {
                count_outcome("lost_lease");
                tracing::warn!("lost the job's lease; leaving it to its new owner");
            }
            Err(err) => tracing::error!(error = %err, "job failed on storage; it runs again when its lease lapses"),
        }
    }
    .instrument(span)
    .await;
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

/// One attempt: generate, then record the outcome.
async fn attempt(
    app: &App,
    job: &ClaimedJob,
) -> Result<Attempt, crate::storage::error::StoreError> {
    let outcome = generate(app, job).await?;
    app.progress.clear(job.reply_id).await;
    let now = app.clock.now();
    match outcome {
        Ok(Some(reply)) => {
            count_outcome("completed");
            tracing::info!("reply completed");
            // The reply is the room's newest activity: the owner's cached list is stale.
            app.list_cache.invalidate(job.user_id).await;
            events::publish(app, job.chatroom_id, &RoomEvent::completed(&reply)).await;
        }
        Ok(None) => {
            count_outcome("already_finished");
            tracing::info!("reply was already finished by another run");
        }
        Err(AiError::Retryable {
            kind,
            message,
            retry_after,
        }) if job.attempts < app.config.job_max_attempts => {
            count_outcome("retried");
            let wait = retry::backoff(job.attempts, retry_after, rand::random::<f64>());
            tracing::warn!(kind, error = %message, retry_in = ?wait, "AI call failed; retrying later");
            let run_at = now + chrono::Duration::from_std(wait).unwrap_or_default();
            app.store
                .jobs
                .retry_later(job, run_at, &format!("{kind}: {message}"))
                .await?;
        }
        Err(error) => {
            count_outcome("failed");
            tracing::warn!(error = %error, "reply failed");
            let error = final_error(&error);
            if let Some(reply) = app.store.jobs.fail(job, &error, now).await? {
                app.list_cache.invalidate(job.user_id).await;
                events::publish(app, job.chatroom_id, &RoomEvent::failed(&reply)).await;
            }
        }
    }
    Ok(Attempt::Finished)
}

/// What a failed reply tells its user: our own words per code. The provider's text (which
/// may name internals, or change wording at any time) stays in the log.
fn final_error(error: &AiError) -> MessageError {
    let code = match error {
        AiError::Retryable { .. } => "ai_unavailable",
        AiError::Permanent { code, .. } => code,
    };
    let message = match code {
        "ai_unavailable" => {
            "The AI service could not answer after several attempts; try again later."
        }
        "ai_quota_exhausted" => "The AI service has used up its quota for today; try again later.",
        "ai_rejected" => "The AI service could not process this prompt.",
        "blocked" => "The AI declined to answer this prompt (blocked by its safety filters).",
        "empty_response" => "The AI finished without an answer; try again.",
        _ => "The reply could not be produced.",
    };
    MessageError {
        code: code.into(),
        message: message.into(),
    }
}

/// Streams the reply from the provider to the chatroom's listeners and stores it when done.
/// The outer error is storage; the inner one the provider's.
async fn generate(
    app: &App,
    job: &ClaimedJob,
) -> Result<Result<Option<Message>, AiError>, crate::storage::error::StoreError> {
    let history = app
        .store
        .jobs
        .history(job, app.config.ai_context_messages)
        .await?;
    let conversation = Conversation {
        system: app.config.ai_system_prompt.clone(),
        turns: history
            .into_iter()
            .filter(|m| !m.content.is_empty())
            .map(|m| Turn {
                role: m.role,
                text: m.content,
            })
            .collect(),
    };
    app.store.jobs.mark_streaming(job, app.clock.now()).await?;
    let started = std::time::Instant::now();
    let result = stream_reply(app, job, conversation).await;
    metrics::histogram!(AI_DURATION).record(started.elapsed().as_secs_f64());
    if let Ok(Err(error)) = &result {
        let kind = match error {
            AiError::Retryable { kind, .. } => *kind,
            AiError::Permanent { code, .. } => *code,
        };
        metrics::counter!(AI_ERRORS, "kind" => kind).increment(1);
    }
    result
}

/// Relays the provider's stream to the chatroom and stores the reply when it ends.
async fn stream_reply(
    app: &App,
    job: &ClaimedJob,
    conversation: Conversation,
) -> Result<Result<Option<Message>, AiError>, crate::storage::error::StoreError> {
    // A new attempt streams from the start.
    app.progress.clear(job.reply_id).await;
    let mut stream = match app.ai.stream_reply(conversation).await {
        Ok(stream) => stream,
        Err(err) => return Ok(Err(err)),
    };
    let mut content = String::new();
    let mut offset = 0;
    while let Some(chunk) = stream.next().await {
        match chunk {
            Ok(Chunk::Delta(delta)) => {
                let event = RoomEvent::ReplyDelta {
                    message_id: job.reply_id.0,
                    delta: delta.clone(),
                    offset,
                };
                offset += delta.chars().count();
                content.push_str(&delta);
                // Recorded before it is published: a listener that reads the progress after
                // subscribing misses nothing (see the events route).
                app.progress.append(job.reply_id, &delta).await;
                events::publish(app, job.chatroom_id, &event).await;
            }
            Ok(Chunk::Done(meta)) => {
                let reply = app
                    .store
                    .jobs
                    .complete(job, &content, &meta, app.clock.now())
                    .await?;
                return Ok(Ok(reply));
            }
            Err(err) => return Ok(Err(err)),
        }
    }
    Ok(Err(AiError::Retryable {
        kind: "dropped_stream",
        message: "the reply stream ended early".into(),
        retry_after: None,
    }))
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
