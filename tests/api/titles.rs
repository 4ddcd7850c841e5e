//! Titles (issue 13): a chatroom created without a name is "New chat" until its first reply
//! completes; then a title from the first exchange names it, in the background, announced as
//! `chatroom.updated`, never counted, never over a name the user set.

use gemchat::config::{AiProviderKind, Secret};
use serde_json::{Value, json};
use wiremock::ResponseTemplate;

use crate::backend_tests;
use crate::fakes::{FakeGemini, GEMINI_KEY, api_error, sse_reply};
use crate::harness::{Backend, SseClient, TestApp};

backend_tests!(
    an_unnamed_room_is_titled_after_its_first_reply,
    a_title_never_replaces_a_name_the_user_set,
    gemini_writes_the_title_in_one_cheap_call,
    a_title_that_cannot_be_made_leaves_the_default_name,
);

async fn unnamed_room(app: &TestApp, token: &str) -> String {
    let created = app.post("/chatroom", Some(token), json!({})).await;
    let created = created.assert_status(201);
    assert_eq!(created["name"], "New chat");
    created["id"].as_str().unwrap_or_default().to_owned()
}

async fn room(app: &TestApp, token: &str, id: &str) -> Value {
    app.get(&format!("/chatroom/{id}"), Some(token))
        .await
        .assert_status(200)
        .clone()
}

async fn with_gemini(backend: Backend, gemini: &FakeGemini) -> TestApp {
    let uri = gemini.uri();
    TestApp::spawn_with(backend, move |config| {
        config.ai_provider = Some(AiProviderKind::Gemini);
        config.gemini_api_key = Some(Secret::new(GEMINI_KEY));
        config.gemini_base_url = uri;
    })
    .await
}

async fn an_unnamed_room_is_titled_after_its_first_reply(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let (token, _) = app.new_user().await;
    let id = unnamed_room(&app, &token).await;
    // No body at all is fine too.
    let bare = app
        .request(axum::http::Method::POST, "/chatroom", Some(&token), None)
        .await;
    assert_eq!(bare.assert_status(201)["name"], "New chat");
    let (addr, _server) = app.serve_tcp().await;
    let mut events = SseClient::connect(addr, &id, &token, None).await;
    app.send_message(&token, &id, "Plan a **three-day** trip to Goa, please")
        .await;
    assert_eq!(app.drain_jobs().await, 2, "the reply, then its title");
    let updated = events.until("chatroom.updated").await;
    let updated = updated.last().expect("the event");
    assert_eq!(updated.data["name"], "Plan a three-day trip to Goa");
    assert!(updated.id.is_some(), "every event has an id");
    assert_eq!(
        room(&app, &token, &id).await["name"],
        "Plan a three-day trip to Goa"
    );
    let list = app.get("/chatroom", Some(&token)).await;
    let list = list.assert_status(200);
    assert!(
        list["chatrooms"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|r| r["name"] == "Plan a three-day trip to Goa")
    );
    let me = app.get("/user/me", Some(&token)).await;
    let me = me.assert_status(200);
    assert_eq!(me["usage"]["used_today"], 1, "a title is not a prompt");
    // Later replies leave the title alone.
    app.send_message(&token, &id, "And a fourth day?").await;
    assert_eq!(app.drain_jobs().await, 1);
    assert_eq!(
        room(&app, &token, &id).await["name"],
        "Plan a three-day trip to Goa"
    );
}

async fn a_title_never_replaces_a_name_the_user_set(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let (token, _) = app.new_user().await;
    let id = unnamed_room(&app, &token).await;
    app.send_message(&token, &id, "Something to title").await;
    let renamed = app
        .request(
            axum::http::Method::PATCH,
            &format!("/chatroom/{id}"),
            Some(&token),
            Some(json!({"name": "Mine"})),
        )
        .await;
    renamed.assert_status(200);
    app.drain_jobs().await;
    assert_eq!(room(&app, &token, &id).await["name"], "Mine");
    // A named room never asks for a title.
    let named = app.chatroom(&token, "Named").await;
    app.send_message(&token, &named, "hello").await;
    assert_eq!(app.drain_jobs().await, 1, "the reply only");
    assert_eq!(room(&app, &token, &named).await["name"], "Named");
}

async fn gemini_writes_the_title_in_one_cheap_call(backend: Backend) {
    let gemini = FakeGemini::start().await;
    FakeGemini::stream_call()
        .respond_with(sse_reply(&["Goa in three days: ", "beaches, forts, food."]))
        .mount(&gemini.server)
        .await;
    FakeGemini::complete_call()
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "candidates": [{"content": {"parts": [{"text": "\"Three Days in Goa.\"\n"}], "role": "model"},
                            "finishReason": "STOP"}],
        })))
        .mount(&gemini.server)
        .await;
    let app = with_gemini(backend, &gemini).await;
    let (token, _) = app.new_user().await;
    let id = unnamed_room(&app, &token).await;
    app.send_message(&token, &id, "Plan three days in Goa")
        .await;
    app.drain_jobs().await;
    assert_eq!(room(&app, &token, &id).await["name"], "Three Days in Goa");
    let requests = gemini.requests().await;
    let title = requests.last().expect("the title call");
    assert_eq!(
        title["generationConfig"]["thinkingConfig"]["thinkingBudget"],
        0
    );
    assert!(
        title["generationConfig"]["maxOutputTokens"]
            .as_u64()
            .is_some_and(|n| n <= 64)
    );
    let turns: Vec<&str> = title["contents"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|t| t["parts"][0]["text"].as_str())
        .collect();
    assert_eq!(
        turns,
        [
            "Plan three days in Goa",
            "Goa in three days: beaches, forts, food."
        ]
    );
}

async fn a_title_that_cannot_be_made_leaves_the_default_name(backend: Backend) {
    let gemini = FakeGemini::start().await;
    FakeGemini::stream_call()
        .respond_with(sse_reply(&["Sure."]))
        .mount(&gemini.server)
        .await;
    FakeGemini::complete_call()
        .respond_with(api_error(400, "INVALID_ARGUMENT", "bad request", json!([])))
        .mount(&gemini.server)
        .await;
    let app = with_gemini(backend, &gemini).await;
    let (token, _) = app.new_user().await;
    let id = unnamed_room(&app, &token).await;
    app.send_message(&token, &id, "hello").await;
    assert_eq!(
        app.drain_jobs().await,
        2,
        "the reply, and one try at a title"
    );
    assert_eq!(room(&app, &token, &id).await["name"], "New chat");
    let jobs = app
        .app
        .store()
        .jobs
        .counts(app.clock_now())
        .await
        .expect("counts");
    assert_eq!(jobs, (0, 0), "nothing left to retry");
}
