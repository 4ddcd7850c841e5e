//! Replies from Gemini, through the real adapter against a fake Gemini over HTTP: what is sent,
//! how each kind of failure is handled, ordering, and a worker that dies mid-reply.

use std::sync::Arc;
use std::time::Duration;

use axum::http::Method;
use gemchat::config::{AiProviderKind, Config, Secret};
use serde_json::{Value, json};
use wiremock::matchers::body_string_contains;

use crate::backend_tests;
use crate::fakes::{FakeGemini, GEMINI_KEY, api_error, rate_limited, sse_blocked, sse_reply};
use crate::harness::{Backend, TestApp, eventually};

backend_tests!(
    the_conversation_goes_to_gemini_and_the_streamed_reply_is_stored,
    an_overloaded_gemini_is_retried_until_it_answers,
    a_rate_limit_waits_for_the_delay_gemini_asks_for,
    a_rate_limit_holds_every_reply_off_not_only_the_one_that_met_it,
    rejected_and_blocked_prompts_fail_at_once_give_the_prompt_back_and_can_be_retried,
    retries_end_after_job_max_attempts_with_the_prompt_given_back,
    a_worker_killed_mid_reply_leaves_exactly_one_completed_reply,
    replies_in_a_room_keep_their_order_when_the_first_is_slow,
);

async fn with_gemini(
    backend: Backend,
    gemini: &FakeGemini,
    configure: impl FnOnce(&mut Config),
) -> TestApp {
    let uri = gemini.uri();
    TestApp::spawn_with(backend, move |config| {
        config.ai_provider = Some(AiProviderKind::Gemini);
        config.gemini_api_key = Some(Secret::new(GEMINI_KEY));
        config.gemini_base_url = uri;
        config.ai_system_prompt = "You are a test assistant.".into();
        configure(config);
    })
    .await
}

async fn history(app: &TestApp, token: &str, room: &str) -> Value {
    let page = app
        .get(&format!("/chatroom/{room}/messages?limit=100"), Some(token))
        .await;
    page.assert_status(200)["messages"].clone()
}

async fn used_today(app: &TestApp, token: &str) -> Value {
    app.get("/user/me", Some(token)).await.assert_status(200)["usage"]["used_today"].clone()
}

/// Lets any retry delay pass on the test clock.
fn later(app: &TestApp, seconds: i64) {
    app.clock.advance(chrono::Duration::seconds(seconds));
}

async fn the_conversation_goes_to_gemini_and_the_streamed_reply_is_stored(backend: Backend) {
    let gemini = FakeGemini::start().await;
    FakeGemini::stream_call()
        .and(body_string_contains("Who wrote Dune?"))
        .and(wiremock::matchers::body_string_contains("Summarize"))
        .respond_with(sse_reply(&["Paul ", "Atreides ", "inherits Arrakis."]))
        .mount(&gemini.server)
        .await;
    FakeGemini::stream_call()
        .respond_with(sse_reply(&["Frank ", "Herbert."]))
        .mount(&gemini.server)
        .await;
    let app = with_gemini(backend, &gemini, |_| {}).await;
    let (token, user) = app.new_user().await;
    let room = app.chatroom(&token, "books").await;
    app.send_message(&token, &room, "Who wrote Dune?").await;
    app.drain_jobs().await;
    let second = app.send_message(&token, &room, "Summarize its plot.").await;
    app.drain_jobs().await;

    let requests = gemini.requests().await;
    assert_eq!(requests.len(), 2);
    assert_eq!(
        requests[0]["systemInstruction"]["parts"][0]["text"],
        "You are a test assistant."
    );
    assert_eq!(
        requests[1]["contents"],
        json!([
            {"role": "user", "parts": [{"text": "Who wrote Dune?"}]},
            {"role": "model", "parts": [{"text": "Frank Herbert."}]},
            {"role": "user", "parts": [{"text": "Summarize its plot."}]},
        ])
    );
    let received = gemini.server.received_requests().await.unwrap_or_default();
    assert!(
        received
            .iter()
            .all(|r| !r.url.as_str().contains(GEMINI_KEY)),
        "the key is never in the URL"
    );

    let messages = history(&app, &token, &room).await;
    assert_eq!(messages[3]["content"], "Paul Atreides inherits Arrakis.");
    assert_eq!(messages[3]["status"], "completed");
    // Usage, finish reason and model version are kept on the reply.
    let reply_id = second["reply"]["id"]
        .as_str()
        .and_then(|id| id.parse().ok())
        .unwrap_or_default();
    let user_id = user["id"]
        .as_str()
        .and_then(|id| id.parse().ok())
        .unwrap_or_default();
    let room_id = room.parse().unwrap_or_default();
    let stored = app
        .app
        .store()
        .messages
        .find(
            gemchat::users::model::UserId(user_id),
            gemchat::chatrooms::model::ChatroomId(room_id),
            gemchat::messages::model::MessageId(reply_id),
        )
        .await
        .expect("store")
        .expect("the reply");
    assert_eq!(stored.meta.finish_reason.as_deref(), Some("STOP"));
    assert_eq!(
        stored.meta.model_version.as_deref(),
        Some("gemini-2.5-flash-001")
    );
    assert_eq!(
        (
            stored.meta.prompt_tokens,
            stored.meta.output_tokens,
            stored.meta.total_tokens
        ),
        (Some(42), Some(57), Some(99))
    );
}

async fn an_overloaded_gemini_is_retried_until_it_answers(backend: Backend) {
    let gemini = FakeGemini::start().await;
    FakeGemini::stream_call()
        .respond_with(api_error(
            503,
            "UNAVAILABLE",
            "The model is overloaded.",
            json!([]),
        ))
        .up_to_n_times(2)
        .mount(&gemini.server)
        .await;
    FakeGemini::stream_call()
        .respond_with(sse_reply(&["finally"]))
        .mount(&gemini.server)
        .await;
    let app = with_gemini(backend, &gemini, |_| {}).await;
    let (token, _) = app.new_user().await;
    let room = app.chatroom(&token, "retry").await;
    app.send_message(&token, &room, "hello").await;
    for attempt in 1..=2 {
        assert_eq!(app.drain_jobs().await, 1, "attempt {attempt} ran");
        let reply = &history(&app, &token, &room).await[1];
        assert_eq!(reply["status"], "pending", "queued again after a 503");
        // Not due before its backoff has passed.
        assert_eq!(app.drain_jobs().await, 0);
        later(&app, 60);
    }
    assert_eq!(app.drain_jobs().await, 1);
    let reply = &history(&app, &token, &room).await[1];
    assert_eq!(reply["status"], "completed");
    assert_eq!(reply["content"], "finally");
    assert_eq!(gemini.requests().await.len(), 3);
    assert_eq!(used_today(&app, &token).await, 1);
}

/// A fake Gemini that answers the first call 429 with a `RetryInfo` of 23 s, then `reply`.
async fn rate_limited_once(reply: &str) -> FakeGemini {
    let gemini = FakeGemini::start().await;
    FakeGemini::stream_call()
        .respond_with(rate_limited("23s"))
        .up_to_n_times(1)
        .mount(&gemini.server)
        .await;
    FakeGemini::stream_call()
        .respond_with(sse_reply(&[reply]))
        .mount(&gemini.server)
        .await;
    gemini
}

async fn a_rate_limit_waits_for_the_delay_gemini_asks_for(backend: Backend) {
    let gemini = rate_limited_once("after the wait").await;
    let app = with_gemini(backend, &gemini, |_| {}).await;
    let (token, _) = app.new_user().await;
    let room = app.chatroom(&token, "rl").await;
    app.send_message(&token, &room, "hello").await;
    assert_eq!(app.drain_jobs().await, 1);
    // The exponential backoff would retry after ~2 s; Gemini asked for 23 s.
    later(&app, 20);
    assert_eq!(
        app.drain_jobs().await,
        0,
        "not retried before the requested delay"
    );
    later(&app, 5);
    assert_eq!(app.drain_jobs().await, 1);
    assert_eq!(
        history(&app, &token, &room).await[1]["content"],
        "after the wait"
    );
}

/// Gemini's rate limit is the project's: after one 429, replies that come due meanwhile wait
/// for the delay asked instead of each calling Gemini to be refused again.
async fn a_rate_limit_holds_every_reply_off_not_only_the_one_that_met_it(backend: Backend) {
    let gemini = rate_limited_once("answered").await;
    let app = with_gemini(backend, &gemini, |_| {}).await;
    let (token, _) = app.new_user().await;
    let (first, second) = (
        app.chatroom(&token, "first").await,
        app.chatroom(&token, "second").await,
    );
    app.send_message(&token, &first, "hello").await;
    app.send_message(&token, &second, "hello too").await;
    assert_eq!(app.drain_jobs().await, 2, "each reply was taken up once");
    assert_eq!(
        gemini.requests().await.len(),
        1,
        "the second reply did not call Gemini during the pause"
    );
    assert_eq!(history(&app, &token, &second).await[1]["status"], "pending");
    later(&app, 20);
    assert_eq!(app.drain_jobs().await, 0, "both wait for the delay asked");
    later(&app, 5);
    assert_eq!(app.drain_jobs().await, 2);
    for room in [&first, &second] {
        assert_eq!(history(&app, &token, room).await[1]["content"], "answered");
    }
    assert_eq!(gemini.requests().await.len(), 3);
}

/// Processes sharing Redis share the pause: a rate limit met by one holds the other's replies
/// off too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rate_limit_met_by_one_process_holds_off_the_others_through_redis() {
    if crate::harness::redis_url().is_none() {
        return;
    }
    let redis = crate::harness::PrivateRedis::start().await;
    let gemini = rate_limited_once("answered").await;
    let (url, other_url) = (redis.url.clone(), redis.url.clone());
    let one = with_gemini(Backend::Sqlite, &gemini, |c| c.redis_url = Some(url)).await;
    let other = with_gemini(Backend::Sqlite, &gemini, |c| c.redis_url = Some(other_url)).await;
    let (token, _) = one.new_user().await;
    let room = one.chatroom(&token, "limited").await;
    one.send_message(&token, &room, "hello").await;
    assert_eq!(one.drain_jobs().await, 1);
    assert_eq!(gemini.requests().await.len(), 1, "rate limited");

    let (token, _) = other.new_user().await;
    let room = other.chatroom(&token, "elsewhere").await;
    other.send_message(&token, &room, "hello").await;
    assert_eq!(other.drain_jobs().await, 1);
    assert_eq!(
        gemini.requests().await.len(),
        1,
        "held off by the other's pause"
    );
    assert_eq!(history(&other, &token, &room).await[1]["status"], "pending");
    later(&other, 25);
    assert_eq!(other.drain_jobs().await, 1);
    assert_eq!(
        history(&other, &token, &room).await[1]["content"],
        "answered"
    );
}

async fn rejected_and_blocked_prompts_fail_at_once_give_the_prompt_back_and_can_be_retried(
    backend: Backend,
) {
    let gemini = FakeGemini::start().await;
    FakeGemini::stream_call()
        .and(body_string_contains("bad request"))
        .respond_with(api_error(
            400,
            "INVALID_ARGUMENT",
            "Request contains an invalid argument.",
            json!([]),
        ))
        .up_to_n_times(1)
        .mount(&gemini.server)
        .await;
    FakeGemini::stream_call()
        .and(body_string_contains("unsafe"))
        .respond_with(sse_blocked())
        .mount(&gemini.server)
        .await;
    FakeGemini::stream_call()
        .respond_with(sse_reply(&["fine now"]))
        .mount(&gemini.server)
        .await;
    let app = with_gemini(backend, &gemini, |_| {}).await;
    let (token, _) = app.new_user().await;
    let room = app.chatroom(&token, "fail").await;
    let rejected = app.send_message(&token, &room, "bad request").await;
    assert_eq!(app.drain_jobs().await, 1);
    let reply = history(&app, &token, &room).await[1].clone();
    assert_eq!(reply["status"], "failed");
    assert_eq!(reply["error"]["code"], "ai_rejected");
    // Our own words for the code; Gemini's text stays in the log.
    assert_eq!(
        reply["error"]["message"],
        "The AI service could not process this prompt."
    );
    assert_eq!(
        used_today(&app, &token).await,
        0,
        "the failed reply gave its prompt back"
    );
    assert_eq!(gemini.requests().await.len(), 1, "a 400 is not retried");

    app.send_message(&token, &room, "something unsafe").await;
    app.drain_jobs().await;
    let blocked = history(&app, &token, &room).await[3].clone();
    assert_eq!(blocked["status"], "failed");
    assert_eq!(blocked["error"]["code"], "blocked");
    assert_eq!(used_today(&app, &token).await, 0);

    // Retrying re-queues the reply without taking a prompt.
    let reply_id = rejected["reply"]["id"].as_str().unwrap_or_default();
    let retried = app
        .request(
            Method::POST,
            &format!("/chatroom/{room}/messages/{reply_id}/retry"),
            Some(&token),
            None,
        )
        .await;
    let body = retried.assert_status(202).clone();
    assert_eq!(body["reply"]["status"], "pending");
    assert_eq!(body["message"]["content"], "bad request");
    assert_eq!(app.drain_jobs().await, 1);
    let retried_reply = history(&app, &token, &room).await[1].clone();
    assert_eq!(retried_reply["status"], "completed");
    assert_eq!(retried_reply["content"], "fine now");
    assert!(retried_reply.get("error").is_none());
    assert_eq!(used_today(&app, &token).await, 0);
}

async fn retries_end_after_job_max_attempts_with_the_prompt_given_back(backend: Backend) {
    let gemini = FakeGemini::start().await;
    FakeGemini::stream_call()
        .respond_with(api_error(
            500,
            "INTERNAL",
            "An internal error has occurred.",
            json!([]),
        ))
        .mount(&gemini.server)
        .await;
    let app = with_gemini(backend, &gemini, |c| c.job_max_attempts = 3).await;
    let (token, _) = app.new_user().await;
    let room = app.chatroom(&token, "down").await;
    app.send_message(&token, &room, "hello").await;
    for _ in 0..3 {
        assert_eq!(app.drain_jobs().await, 1);
        later(&app, 120);
    }
    assert_eq!(app.drain_jobs().await, 0, "no fourth attempt");
    let reply = history(&app, &token, &room).await[1].clone();
    assert_eq!(reply["status"], "failed");
    assert_eq!(reply["error"]["code"], "ai_unavailable");
    assert_eq!(gemini.requests().await.len(), 3);
    assert_eq!(used_today(&app, &token).await, 0);
}

async fn a_worker_killed_mid_reply_leaves_exactly_one_completed_reply(backend: Backend) {
    // The first call hangs long enough for the worker to be killed while it waits.
    let gemini = FakeGemini::hanging_once("from the second worker").await;
    let app = with_gemini(backend, &gemini, |c| c.job_lease_seconds = 2).await;
    let (token, _) = app.new_user().await;
    let room = app.chatroom(&token, "crash").await;
    app.send_message(&token, &room, "hello").await;

    let doomed_app = Arc::clone(&app.app);
    let doomed = tokio::spawn(async move {
        gemchat::jobs::worker::run_next(&doomed_app, &gemchat::job_handlers()).await
    });
    eventually(
        Duration::from_secs(10),
        "the first worker is mid-call",
        || async { !gemini.requests().await.is_empty() },
    )
    .await;
    doomed.abort();
    assert!(doomed.await.is_err_and(|e| e.is_cancelled()));
    // Its lease still holds: nobody else may take the job yet.
    assert_eq!(app.drain_jobs().await, 0);
    later(&app, 3);
    assert_eq!(app.drain_jobs().await, 1);
    let messages = history(&app, &token, &room).await;
    let replies: Vec<&Value> = messages
        .as_array()
        .into_iter()
        .flatten()
        .filter(|m| m["role"] == "model")
        .collect();
    assert_eq!(replies.len(), 1);
    assert_eq!(replies[0]["status"], "completed");
    assert_eq!(replies[0]["content"], "from the second worker");
    assert_eq!(app.drain_jobs().await, 0);
}

async fn replies_in_a_room_keep_their_order_when_the_first_is_slow(backend: Backend) {
    let gemini = FakeGemini::start().await;
    FakeGemini::stream_call()
        .and(body_string_contains("slow one"))
        .respond_with(sse_reply(&["slow answer"]).set_delay(Duration::from_millis(500)))
        .up_to_n_times(1)
        .mount(&gemini.server)
        .await;
    FakeGemini::stream_call()
        .respond_with(sse_reply(&["quick answer"]))
        .mount(&gemini.server)
        .await;
    let app = with_gemini(backend, &gemini, |c| c.worker_concurrency = 8).await;
    let worker = app.start_worker();
    let (token, _) = app.new_user().await;
    let room = app.chatroom(&token, "order").await;
    app.send_message(&token, &room, "slow one").await;
    app.send_message(&token, &room, "quick one").await;
    eventually(
        Duration::from_secs(20),
        "both replies are completed",
        || async {
            let messages = history(&app, &token, &room).await;
            messages[1]["status"] == "completed" && messages[3]["status"] == "completed"
        },
    )
    .await;
    // The second prompt was sent to Gemini only after the first reply was stored: its
    // history carries that reply.
    let requests = gemini.requests().await;
    assert_eq!(requests.len(), 2);
    assert_eq!(
        requests[1]["contents"][1],
        json!({"role": "model", "parts": [{"text": "slow answer"}]})
    );
    worker.stop().await;
}
