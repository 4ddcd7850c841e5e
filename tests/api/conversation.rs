//! Conversations as trees (issue 13): every message says where it stands (parent, versions),
//! what a reply cost (usage, model), and the context a reply is sent with follows its path,
//! leaves refused exchanges out and fits the token budget.

use std::sync::Arc;
use std::time::Duration;

use gemchat::config::{AiProviderKind, Config, Secret};
use gemchat::messages::model::MessageId;
use serde_json::{Value, json};
use wiremock::ResponseTemplate;

use crate::backend_tests;
use crate::fakes::{FakeGemini, GEMINI_KEY, sse_blocked, sse_reply};
use crate::gemini_stream::StreamingGemini;
use crate::harness::{Backend, TestApp, eventually};

backend_tests!(
    every_message_says_where_it_stands_and_what_it_cost,
    a_blocked_prompt_never_rides_along_with_later_prompts,
    usage_keeps_thinking_and_cached_tokens_apart,
    the_context_fits_the_token_budget_newest_first,
    cancelling_a_streaming_reply_keeps_its_text_closes_the_ai_call_and_counts,
    cancelling_a_pending_reply_gives_its_prompt_back_and_the_next_starts,
    only_a_pending_or_streaming_reply_can_be_cancelled,
    a_room_answers_in_order_with_cancels_and_regenerations_mixed_in,
);

async fn with_gemini(
    backend: Backend,
    gemini: &FakeGemini,
    configure: impl FnOnce(&mut Config),
) -> TestApp {
    with_gemini_at(backend, gemini.uri(), configure).await
}

async fn with_gemini_at(
    backend: Backend,
    uri: String,
    configure: impl FnOnce(&mut Config),
) -> TestApp {
    TestApp::spawn_with(backend, move |config| {
        config.ai_provider = Some(AiProviderKind::Gemini);
        config.gemini_api_key = Some(Secret::new(GEMINI_KEY));
        config.gemini_base_url = uri;
        configure(config);
    })
    .await
}

async fn messages(app: &TestApp, token: &str, room: &str) -> Vec<Value> {
    let page = app
        .get(&format!("/chatroom/{room}/messages?limit=100"), Some(token))
        .await;
    let page = page.assert_status(200);
    page["messages"].as_array().cloned().unwrap_or_default()
}

/// The statuses of the room's messages along its path.
async fn statuses(app: &TestApp, token: &str, room: &str) -> Vec<Value> {
    let all = messages(app, token, room).await;
    all.iter().map(|m| m["status"].clone()).collect()
}

/// The texts of the turns of one request to Gemini.
fn turns(request: &Value) -> Vec<String> {
    request["contents"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|turn| {
            turn["parts"][0]["text"]
                .as_str()
                .unwrap_or_default()
                .to_owned()
        })
        .collect()
}

async fn every_message_says_where_it_stands_and_what_it_cost(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let (token, _) = app.new_user().await;
    let room = app.chatroom(&token, "tree").await;
    app.send_message(&token, &room, "first").await;
    app.send_message(&token, &room, "second").await;
    app.drain_jobs().await;
    let all = messages(&app, &token, &room).await;
    assert_eq!(all.len(), 4);
    let mut parent = Value::Null;
    for message in &all {
        assert_eq!(message["parent_id"], parent, "each follows the one before");
        assert_eq!(
            message["versions"],
            json!({"ids": [message["id"]], "index": 0})
        );
        assert_eq!(message["attachments"], json!([]));
        parent = message["id"].clone();
    }
    let (prompt, reply) = (&all[2], &all[3]);
    assert_eq!(prompt["usage"], Value::Null);
    assert_eq!(prompt["model"], Value::Null);
    assert_eq!(reply["model"], "echo");
    let usage = &reply["usage"];
    assert!(
        usage["input_tokens"].as_u64().is_some_and(|n| n > 0),
        "{usage}"
    );
    assert!(
        usage["output_tokens"].as_u64().is_some_and(|n| n > 0),
        "{usage}"
    );
    assert_eq!(
        (&usage["thinking_tokens"], &usage["cached_tokens"]),
        (&json!(0), &json!(0))
    );
}

async fn a_blocked_prompt_never_rides_along_with_later_prompts(backend: Backend) {
    let gemini = FakeGemini::start().await;
    FakeGemini::stream_call()
        .and(wiremock::matchers::body_string_contains("forbidden words"))
        .respond_with(sse_blocked())
        .mount(&gemini.server)
        .await;
    FakeGemini::stream_call()
        .respond_with(sse_reply(&["Happy ", "to help."]))
        .mount(&gemini.server)
        .await;
    let app = with_gemini(backend, &gemini, |_| {}).await;
    let (token, _) = app.new_user().await;
    let room = app.chatroom(&token, "blocked").await;
    app.send_message(&token, &room, "hello").await;
    app.drain_jobs().await;
    app.send_message(&token, &room, "forbidden words").await;
    app.drain_jobs().await;
    app.send_message(&token, &room, "something harmless").await;
    app.drain_jobs().await;

    let requests = gemini.requests().await;
    assert_eq!(requests.len(), 3);
    assert_eq!(
        turns(&requests[2]),
        ["hello", "Happy to help.", "something harmless"],
        "the refused exchange is left out"
    );
    let all = messages(&app, &token, &room).await;
    let statuses: Vec<&str> = all
        .iter()
        .map(|m| m["status"].as_str().unwrap_or(""))
        .collect();
    assert_eq!(
        statuses,
        [
            "completed",
            "completed",
            "completed",
            "failed",
            "completed",
            "completed"
        ]
    );
}

async fn usage_keeps_thinking_and_cached_tokens_apart(backend: Backend) {
    let gemini = FakeGemini::start().await;
    let last = json!({
        "candidates": [{"content": {"parts": [{"text": "Thought it through."}], "role": "model"},
                        "finishReason": "STOP", "index": 0}],
        "usageMetadata": {"promptTokenCount": 1200, "candidatesTokenCount": 40,
                          "thoughtsTokenCount": 300, "cachedContentTokenCount": 1000,
                          "totalTokenCount": 1540},
        "modelVersion": "gemini-2.5-pro-002",
    });
    let first = json!({
        "candidates": [{"content": {"parts": [{"text": "Hmm. "}], "role": "model"}, "index": 0}],
        "usageMetadata": {"promptTokenCount": 1200, "totalTokenCount": 1200},
    });
    FakeGemini::stream_call()
        .respond_with(
            ResponseTemplate::new(200)
                .insert_header("content-type", "text/event-stream")
                .set_body_string(format!("data: {first}\r\n\r\ndata: {last}\r\n\r\n")),
        )
        .mount(&gemini.server)
        .await;
    let app = with_gemini(backend, &gemini, |_| {}).await;
    let (token, _) = app.new_user().await;
    let room = app.chatroom(&token, "usage").await;
    app.send_message(&token, &room, "think hard").await;
    app.drain_jobs().await;
    let all = messages(&app, &token, &room).await;
    assert_eq!(all[1]["content"], "Hmm. Thought it through.");
    // The last chunk's counts are final; cached tokens are part of the input, not added to it.
    assert_eq!(
        all[1]["usage"],
        json!({"input_tokens": 1200, "output_tokens": 40, "thinking_tokens": 300,
               "cached_tokens": 1000})
    );
    assert_eq!(all[1]["model"], "gemini-2.5-pro-002");
}

async fn the_context_fits_the_token_budget_newest_first(backend: Backend) {
    let gemini = FakeGemini::start().await;
    FakeGemini::stream_call()
        .respond_with(sse_reply(&["ok"]))
        .mount(&gemini.server)
        .await;
    // The fake's replies count 57 output tokens each; prompts are estimated at 4 characters a
    // token.
    let app = with_gemini(backend, &gemini, |config| config.ai_context_tokens = 300).await;
    let (token, _) = app.new_user().await;
    let room = app.chatroom(&token, "budget").await;
    let long = "word ".repeat(160); // 800 characters: 200 tokens
    for prompt in ["short one", long.trim(), "short two", "short three"] {
        app.send_message(&token, &room, prompt).await;
        app.drain_jobs().await;
    }
    let requests = gemini.requests().await;
    assert_eq!(requests.len(), 4);
    // 3 (prompt) + 57 + 3 (short two's exchange) fit; the long exchange (200 + 57) does not,
    // and the walk stops there: no gap in the history.
    assert_eq!(turns(&requests[3]), ["short two", "ok", "short three"]);
    assert_eq!(
        turns(&requests[1]).len(),
        3,
        "a budget that fits sends everything"
    );
}

fn cancel_path(room: &str, message: &Value) -> String {
    let id = message["id"].as_str().unwrap_or_default();
    format!("/chatroom/{room}/messages/{id}/cancel")
}

async fn used_today(app: &TestApp, token: &str) -> Value {
    app.get("/user/me", Some(token)).await.assert_status(200)["usage"]["used_today"].clone()
}

async fn cancelling_a_streaming_reply_keeps_its_text_closes_the_ai_call_and_counts(
    backend: Backend,
) {
    let gemini = StreamingGemini::start().await;
    let app = with_gemini_at(backend, gemini.uri.clone(), |_| {}).await;
    let (token, _) = app.new_user().await;
    let room = app.chatroom(&token, "story").await;
    let sent = app.send_message(&token, &room, "tell me a story").await;
    let reply = sent["reply"].clone();
    let worker_app = Arc::clone(&app.app);
    let worker = tokio::spawn(async move {
        gemchat::jobs::worker::run_next(&worker_app, &gemchat::job_handlers()).await
    });
    let call = gemini.next_call().await;
    assert_eq!(turns(&call.body), ["tell me a story"]);
    call.send("Once upon ").await;
    let reply_id = MessageId(
        reply["id"]
            .as_str()
            .and_then(|id| id.parse().ok())
            .unwrap_or_default(),
    );
    eventually(Duration::from_secs(5), "the delta was streamed", || async {
        app.app.progress().get(reply_id).await.as_deref() == Some("Once upon ")
    })
    .await;

    let cancelled = app
        .post(&cancel_path(&room, &reply), Some(&token), json!({}))
        .await;
    let cancelled = cancelled.assert_status(200);
    assert_eq!(cancelled["status"], "cancelled");
    assert_eq!(cancelled["content"], "Once upon ", "the text so far stays");
    call.closed_by_client(Duration::from_secs(2)).await;
    assert!(worker.await.expect("the worker").expect("a job ran"));
    assert_eq!(
        used_today(&app, &token).await,
        1,
        "a reply cancelled mid-stream counts"
    );
    let again = app
        .post(&cancel_path(&room, &reply), Some(&token), json!({}))
        .await;
    assert_eq!(
        again.assert_status(200),
        cancelled,
        "cancelling again changes nothing"
    );
    let all = messages(&app, &token, &room).await;
    assert_eq!(all[1]["status"], "cancelled");
    assert_eq!(all[1]["content"], "Once upon ");
}

async fn cancelling_a_pending_reply_gives_its_prompt_back_and_the_next_starts(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let (token, _) = app.new_user().await;
    let room = app.chatroom(&token, "queue").await;
    let first = app.send_message(&token, &room, "first").await;
    app.send_message(&token, &room, "second").await;
    assert_eq!(used_today(&app, &token).await, 2);
    let cancelled = app
        .post(
            &cancel_path(&room, &first["reply"]),
            Some(&token),
            json!({}),
        )
        .await;
    let cancelled = cancelled.assert_status(200);
    assert_eq!(
        (&cancelled["status"], &cancelled["content"]),
        (&json!("cancelled"), &json!(""))
    );
    assert_eq!(
        used_today(&app, &token).await,
        1,
        "not started: the prompt is given back"
    );
    assert_eq!(
        app.drain_jobs().await,
        1,
        "only the second reply runs, at once"
    );
    let statuses = statuses(&app, &token, &room).await;
    assert_eq!(
        statuses,
        ["completed", "cancelled", "completed", "completed"]
    );
}

async fn only_a_pending_or_streaming_reply_can_be_cancelled(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let (token, _) = app.new_user().await;
    let room = app.chatroom(&token, "done").await;
    let sent = app.send_message(&token, &room, "hello").await;
    app.drain_jobs().await;
    for message in [&sent["reply"], &sent["message"]] {
        let refused = app
            .post(&cancel_path(&room, message), Some(&token), json!({}))
            .await;
        assert_eq!(refused.assert_status(409)["code"], "not_cancellable");
    }
    let unknown = json!({"id": uuid::Uuid::now_v7()});
    let missing = app
        .post(&cancel_path(&room, &unknown), Some(&token), json!({}))
        .await;
    assert_eq!(missing.assert_status(404)["code"], "not_found");
    let (stranger, _) = app.new_user().await;
    let foreign = app
        .post(
            &cancel_path(&room, &sent["reply"]),
            Some(&stranger),
            json!({}),
        )
        .await;
    assert_eq!(foreign.assert_status(404)["code"], "not_found");
    let all = messages(&app, &token, &room).await;
    assert_eq!(all[1]["status"], "completed", "nothing changed");
}

async fn a_room_answers_in_order_with_cancels_and_regenerations_mixed_in(backend: Backend) {
    let gemini = FakeGemini::start().await;
    FakeGemini::stream_call()
        .respond_with(|request: &wiremock::Request| {
            let body: Value = serde_json::from_slice(&request.body).unwrap_or_default();
            let asked = turns(&body).last().cloned().unwrap_or_default();
            sse_reply(&["re: ", &asked]).set_delay(Duration::from_millis(50))
        })
        .mount(&gemini.server)
        .await;
    let app = with_gemini(backend, &gemini, |config| config.worker_concurrency = 4).await;
    let (token, _) = app.new_user().await;
    let room = app.chatroom(&token, "order").await;
    let one = app.send_message(&token, &room, "one").await;
    app.drain_jobs().await;
    let again = app
        .post(
            &format!(
                "/chatroom/{room}/messages/{}/regenerate",
                one["reply"]["id"].as_str().unwrap_or("")
            ),
            Some(&token),
            json!({}),
        )
        .await;
    let again = again.assert_status(202);
    app.send_message(&token, &room, "two").await;
    app.post(
        &cancel_path(&room, &again["reply"]),
        Some(&token),
        json!({}),
    )
    .await
    .assert_status(200);
    app.send_message(&token, &room, "three").await;

    let worker = app.start_worker();
    eventually(Duration::from_secs(10), "every reply", || async {
        let all = messages(&app, &token, &room).await;
        all.len() == 6
            && all
                .iter()
                .all(|m| m["status"] != "pending" && m["status"] != "streaming")
    })
    .await;
    worker.stop().await;

    let requests = gemini.requests().await;
    let asked: Vec<Vec<String>> = requests.iter().skip(1).map(turns).collect();
    assert_eq!(
        asked,
        [
            vec!["two".to_owned()],
            vec!["two".into(), "re: two".into(), "three".into()],
        ],
        "in order, the cancelled regeneration never sent and left out of the context"
    );
    let statuses = statuses(&app, &token, &room).await;
    assert_eq!(
        statuses,
        [
            "completed",
            "cancelled",
            "completed",
            "completed",
            "completed",
            "completed"
        ]
    );
}
