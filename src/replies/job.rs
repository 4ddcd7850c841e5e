//! The reply job: sends the conversation to the AI provider, relays the reply's stream to the
//! chatroom's listeners as it comes, and stores the outcome once: completed, retried later
//! with backoff, or failed (the prompt given back to the day's quota).

use futures::StreamExt;
use tracing::Instrument;

use super::context::{self, Budget};
use super::model::{KIND, ReplyJob};
use super::repo::Completed;
use super::stops::{Signal, StopWatch};
use crate::ai::pause;
use crate::ai::{AiError, Chunk, Conversation};
use crate::app::App;
use crate::chatrooms::title::TitleJob;
use crate::jobs::queue::ClaimedJob;
use crate::jobs::retry;
use crate::jobs::worker::{JobHandler, count_outcome, drop_unreadable};
use crate::messages::events::{self, RoomEvent};
use crate::messages::model::{Message, MessageError, MessageStatus};
use crate::metrics::{AI_DURATION, AI_ERRORS};
use crate::storage::error::StoreError;

/// Runs reply jobs.
pub(crate) struct ReplyHandler;

#[async_trait::async_trait]
impl JobHandler for ReplyHandler {
    fn kind(&self) -> &'static str {
        KIND
    }

    async fn run(&self, app: &App, job: &ClaimedJob) -> Result<(), StoreError> {
        let reply: ReplyJob = match job.payload() {
            Ok(reply) => reply,
            Err(err) => return drop_unreadable(app, job, &err).await,
        };
        let span = tracing::info_span!(
            "reply",
            message_id = %reply.reply_id,
            chatroom_id = %reply.chatroom_id,
        );
        attempt(app, job, &reply).instrument(span).await
    }

    /// An interrupted reply is `pending` again until its next attempt.
    async fn before_release(&self, app: &App, job: &ClaimedJob) -> Result<(), StoreError> {
        if let Ok(reply) = job.payload::<ReplyJob>() {
            let replies = &app.store.replies;
            replies
                .reset_to_pending(job, reply.reply_id, app.clock.now())
                .await?;
        }
        Ok(())
    }
}

/// One attempt: generate, then record the outcome. While the AI provider's rate limit holds
/// every call off, the reply goes back to the queue until then (its attempt not counted).
async fn attempt(app: &App, job: &ClaimedJob, reply: &ReplyJob) -> Result<(), StoreError> {
    // The pause is asked while the conversation is read: one wait instead of two, and a reply
    // that must wait has cost one read.
    let budget = Budget {
        messages: app.config.ai_context_messages,
        tokens: app.config.ai_context_tokens,
    };
    let (paused, path) = tokio::join!(
        pause::paused_at(app, app.clock.now()),
        app.store.replies.path_above(reply, budget.path_to_read()),
    );
    if let Some(until) = paused {
        count_outcome("paused");
        tracing::info!(%until, "AI calls are paused by a rate limit; the reply waits");
        return app.store.jobs.release(job, until).await;
    }
    let path = path?;
    let chosen = context::select(&path, budget);
    let outcome = generate(app, job, reply, &chosen).await?;
    // A completed reply is the room's newest activity: the owner's cached list is stale. Both
    // before the completion is announced, so a listener that reads the list on it sees it.
    let completed = matches!(outcome, Ok(Produced::Completed(_)));
    let list_is_stale = async {
        if completed {
            app.user_cache.invalidate(reply.user_id).await;
        }
    };
    tokio::join!(app.progress.clear(reply.reply_id), list_is_stale);
    let now = app.clock.now();
    if let Err(AiError::Retryable {
        kind: "rate_limited",
        retry_after,
        ..
    }) = &outcome
    {
        pause::after_rate_limit(app, now, *retry_after).await;
    }
    match outcome {
        Ok(Produced::Completed(done)) => {
            count_outcome("completed");
            tracing::info!("reply completed");
            events::publish(app, reply.chatroom_id, &RoomEvent::completed(&done.message)).await;
            if done.room_untitled {
                let title = TitleJob {
                    chatroom_id: reply.chatroom_id,
                    user_id: reply.user_id,
                };
                app.store.jobs.enqueue(&title.queued(now)).await?;
            }
        }
        Ok(Produced::Ended) => {
            count_outcome("already_finished");
            tracing::info!("reply had already ended (another run, or its user cancelled it)");
        }
        Ok(Produced::Cancelled) => {
            count_outcome("cancelled");
            tracing::info!("reply cancelled by its user; the AI stream is closed");
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
            let store = &app.store;
            store
                .replies
                .reset_to_pending(job, reply.reply_id, now)
                .await?;
            let error = format!("{kind}: {message}");
            store.jobs.retry_later(job, run_at, &error).await?;
        }
        Err(error) => {
            count_outcome("failed");
            tracing::warn!(error = %error, "reply failed");
            let error = final_error(&error);
            if let Some(failed) = app.store.replies.fail(job, reply, &error, now).await? {
                app.user_cache.invalidate(reply.user_id).await;
                events::publish(app, reply.chatroom_id, &RoomEvent::failed(&failed)).await;
            }
        }
    }
    Ok(())
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

/// What an attempt that got an answer (or was stopped) produced.
enum Produced {
    Completed(Box<Completed>),
    /// The reply had ended before this run could store it (another run finished it, or it
    /// was cancelled before streaming).
    Ended,
    /// Cancelled while this run streamed it: the stream was closed, nothing more is stored.
    Cancelled,
}

/// Tells when a reply is cancelled or its room deleted, whichever process does it: from the
/// process's stops (see `stops`), and from the database when stops may have been lost.
struct CancelWatch<'a> {
    app: &'a App,
    reply: &'a ReplyJob,
    stops: StopWatch,
}

impl<'a> CancelWatch<'a> {
    fn new(app: &'a App, reply: &'a ReplyJob) -> Self {
        Self {
            app,
            reply,
            stops: app
                .stops
                .watch(&app.events, reply.chatroom_id.0, reply.reply_id.0),
        }
    }

    /// Returns once the reply is cancelled or its room deleted; never otherwise. Cancel-safe.
    async fn cancelled(&mut self) {
        loop {
            match self.stops.next().await {
                Signal::Stop => return,
                Signal::Gap if self.stopped_in_store().await => return,
                Signal::Gap => {}
            }
        }
    }

    /// Whether the reply was cancelled, or is gone with its room or account.
    async fn stopped_in_store(&self) -> bool {
        let messages = &self.app.store.messages;
        let (user, room, id) = (
            self.reply.user_id,
            self.reply.chatroom_id,
            self.reply.reply_id,
        );
        match messages.find(user, room, id).await {
            Ok(Some(message)) => message.status == MessageStatus::Cancelled,
            Ok(None) => true,
            Err(_) => false,
        }
    }
}

/// The model for the reply's owner, by their plan as the attempt starts (a plan that lapses
/// while the reply streams does not change it): `PRO_GEMINI_MODEL` for Pro, when set; else
/// the provider's own.
async fn model_for(app: &App, reply: &ReplyJob) -> Result<Option<String>, StoreError> {
    let Some(pro_model) = &app.config.pro_gemini_model else {
        return Ok(None);
    };
    let owner = app
        .store
        .users
        .find_by_id(reply.user_id, app.clock.now())
        .await?;
    Ok(owner
        .filter(|user| user.tier == crate::users::model::Tier::Pro)
        .map(|_| pro_model.clone()))
}

/// Streams the reply from the provider to the chatroom's listeners and stores it when done.
/// `chosen` is the conversation above the reply that its context keeps. The outer error is
/// storage; the inner one the provider's.
async fn generate(
    app: &App,
    job: &ClaimedJob,
    reply: &ReplyJob,
    chosen: &[&Message],
) -> Result<Result<Produced, AiError>, StoreError> {
    let turns = match context::turns(app.objects.as_ref(), chosen).await {
        Ok(turns) => turns,
        // A file that cannot be read now is worth another attempt, like a dropped stream.
        Err(err) => {
            return Ok(Err(AiError::Retryable {
                kind: "file_store",
                message: err.to_string(),
                retry_after: None,
            }));
        }
    };
    let conversation = Conversation {
        system: app.config.ai_system_prompt.clone(),
        turns,
        model: model_for(app, reply).await?,
    };
    // Listening before the reply is marked streaming: a cancel from then on is heard.
    let mut watch = CancelWatch::new(app, reply);
    // A new attempt streams from the start: what an earlier one streamed is dropped first.
    let (marked, ()) = tokio::join!(
        app.store
            .replies
            .mark_streaming(reply.reply_id, app.clock.now()),
        app.progress.clear(reply.reply_id),
    );
    if !marked? {
        return Ok(Ok(Produced::Ended));
    }
    let started = std::time::Instant::now();
    let result = stream_reply(app, job, reply, conversation, &mut watch).await;
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

/// Tries an operation again, up to three times over ~0.7 s, while the database is unavailable.
/// A connection that died (a backend terminated, a failover) usually gives way to a fresh one
/// at once; the reply's text is not worth losing to it (the job would otherwise wait for its
/// lease to lapse and ask the AI again).
async fn retry_if_unavailable<T, F, Fut>(mut op: F) -> Result<T, StoreError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, StoreError>>,
{
    let mut delay = std::time::Duration::from_millis(100);
    for _ in 0..3 {
        match op().await {
            Err(StoreError::Unavailable(err)) => {
                tracing::warn!(error = %err, retry_in = ?delay, "cannot store the reply yet; trying again");
                tokio::time::sleep(delay).await;
                delay *= 2;
            }
            other => return other,
        }
    }
    op().await
}

/// Relays the provider's stream to the chatroom and stores the reply when it ends.
async fn stream_reply(
    app: &App,
    job: &ClaimedJob,
    reply: &ReplyJob,
    conversation: Conversation,
    watch: &mut CancelWatch<'_>,
) -> Result<Result<Produced, AiError>, StoreError> {
    // Dropping the stream (on a cancel) closes the HTTP response: the provider stops.
    let mut stream = tokio::select! {
        opened = app.ai.stream_reply(conversation) => match opened {
            Ok(stream) => stream,
            Err(err) => return Ok(Err(err)),
        },
        () = watch.cancelled() => return Ok(Ok(Produced::Cancelled)),
    };
    let mut content = String::new();
    let mut offset = 0;
    loop {
        let chunk = tokio::select! {
            chunk = stream.next() => chunk,
            () = watch.cancelled() => return Ok(Ok(Produced::Cancelled)),
        };
        let Some(chunk) = chunk else {
            break;
        };
        match chunk {
            Ok(Chunk::Delta(delta)) => {
                let event = RoomEvent::ReplyDelta {
                    message_id: reply.reply_id.0,
                    delta: delta.clone(),
                    offset,
                };
                offset += delta.chars().count();
                // Recorded before it is published: a listener that reads the progress after
                // subscribing misses nothing (see the events route).
                app.progress.append(reply.reply_id, &content, &delta).await;
                content.push_str(&delta);
                events::publish(app, reply.chatroom_id, &event).await;
            }
            Ok(Chunk::Done(meta)) => {
                let now = app.clock.now();
                let store = &app.store;
                let done = retry_if_unavailable(|| {
                    store.replies.complete(job, reply, &content, &meta, now)
                })
                .await?;
                return Ok(Ok(done.map_or(Produced::Ended, |done| {
                    Produced::Completed(Box::new(done))
                })));
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
    use std::sync::atomic::{AtomicU32, Ordering};

    use super::*;

    fn unavailable() -> StoreError {
        StoreError::Unavailable(anyhow::anyhow!("connection reset"))
    }

    #[tokio::test]
    async fn storing_is_tried_again_while_the_database_is_unavailable_then_given_up() {
        let calls = AtomicU32::new(0);
        let stored = retry_if_unavailable(|| async {
            let n = calls.fetch_add(1, Ordering::SeqCst);
            if n < 2 { Err(unavailable()) } else { Ok(n) }
        })
        .await;
        assert_eq!(stored.ok(), Some(2), "the third try stores it");

        calls.store(0, Ordering::SeqCst);
        let failed: Result<(), _> = retry_if_unavailable(|| async {
            calls.fetch_add(1, Ordering::SeqCst);
            Err(unavailable())
        })
        .await;
        assert!(matches!(failed, Err(StoreError::Unavailable(_))));
        assert_eq!(calls.load(Ordering::SeqCst), 4, "four tries in all");

        calls.store(0, Ordering::SeqCst);
        let conflict: Result<(), _> = retry_if_unavailable(|| async {
            calls.fetch_add(1, Ordering::SeqCst);
            Err(StoreError::Conflict)
        })
        .await;
        assert!(matches!(conflict, Err(StoreError::Conflict)));
        assert_eq!(
            calls.load(Ordering::SeqCst),
            1,
            "other errors are not retried"
        );
    }
}
