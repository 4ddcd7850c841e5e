//! The message tree's controls over HTTP (issue 13): regenerate and edit add versions beside
//! the old ones and make the new branch active; select switches branches; the context sent to
//! the AI follows the branch; bad requests change nothing.

use gemchat::config::{AiProviderKind, Secret};
use serde_json::{Value, json};

use crate::backend_tests;
use crate::fakes::{FakeGemini, GEMINI_KEY, sse_reply};
use crate::harness::{Backend, TestApp};

backend_tests!(
    regenerating_keeps_both_versions_counts_and_makes_the_new_one_active,
    editing_branches_and_select_shows_each_branch_with_its_continuation,
    the_context_follows_the_edited_branch,
    bad_branch_requests_change_nothing,
    a_regeneration_at_the_daily_limit_is_refused_and_stores_nothing,
    a_long_conversation_is_deleted_whole,
);

async fn path(app: &TestApp, token: &str, room: &str) -> Vec<Value> {
    let page = app
        .get(&format!("/chatroom/{room}/messages?limit=100"), Some(token))
        .await;
    page.assert_status(200)["messages"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

fn ids(messages: &[Value]) -> Vec<Value> {
    messages.iter().map(|m| m["id"].clone()).collect()
}

pub(crate) fn control(room: &str, message: &Value, what: &str) -> String {
    let id = message["id"].as_str().unwrap_or_default();
    format!("/chatroom/{room}/messages/{id}/{what}")
}

async fn used_today(app: &TestApp, token: &str) -> Value {
    app.get("/user/me", Some(token)).await.assert_status(200)["usage"]["used_today"].clone()
}

async fn regenerating_keeps_both_versions_counts_and_makes_the_new_one_active(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let (token, _) = app.new_user().await;
    let room = app.chatroom(&token, "again").await;
    let sent = app.send_message(&token, &room, "hello").await;
    app.drain_jobs().await;
    let (prompt, first) = (&sent["message"], &sent["reply"]);

    let again = app
        .post(
            &control(&room, first, "regenerate"),
            Some(&token),
            json!({}),
        )
        .await;
    let again = again.assert_status(202);
    let second = &again["reply"];
    assert_eq!(again["message"]["id"], prompt["id"], "the same prompt");
    assert_eq!(second["status"], "pending");
    assert_eq!(second["parent_id"], prompt["id"]);
    assert_eq!(
        second["versions"],
        json!({"ids": [first["id"], second["id"]], "index": 1})
    );
    assert_eq!(used_today(&app, &token).await, 2, "a regeneration counts");
    app.drain_jobs().await;
    let now = path(&app, &token, &room).await;
    assert_eq!(ids(&now), [prompt["id"].clone(), second["id"].clone()]);
    assert_eq!(now[1]["status"], "completed");
    assert_eq!(
        now[0]["versions"]["ids"],
        json!([prompt["id"]]),
        "one prompt"
    );

    let back = app
        .post(&control(&room, first, "select"), Some(&token), json!({}))
        .await;
    let back = back.assert_status(200);
    assert_eq!(back["id"].as_str(), Some(room.as_str()));
    let shown = back["messages"].as_array().cloned().unwrap_or_default();
    assert_eq!(ids(&shown), [prompt["id"].clone(), first["id"].clone()]);
    assert_eq!(shown[1]["versions"]["index"], 0);
    assert_eq!(
        ids(&path(&app, &token, &room).await),
        ids(&shown),
        "and it stays"
    );
}

async fn editing_branches_and_select_shows_each_branch_with_its_continuation(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let (token, _) = app.new_user().await;
    let room = app.chatroom(&token, "branches").await;
    let a = app.send_message(&token, &room, "first question").await;
    let b = app.send_message(&token, &room, "second question").await;
    app.drain_jobs().await;
    let old = path(&app, &token, &room).await;
    assert_eq!(old.len(), 4);

    let edited = app
        .post(
            &control(&room, &a["message"], "edit"),
            Some(&token),
            json!({"content": "first, better"}),
        )
        .await;
    let edited = edited.assert_status(202);
    let (new_prompt, new_reply) = (&edited["message"], &edited["reply"]);
    assert_eq!(new_prompt["content"], "first, better");
    assert_eq!(
        new_prompt["parent_id"],
        Value::Null,
        "beside the room's first prompt"
    );
    assert_eq!(
        new_prompt["versions"],
        json!({"ids": [a["message"]["id"], new_prompt["id"]], "index": 1})
    );
    assert_eq!(
        ids(&path(&app, &token, &room).await),
        [new_prompt["id"].clone(), new_reply["id"].clone()]
    );
    app.drain_jobs().await;
    let c = app.send_message(&token, &room, "third question").await;
    app.drain_jobs().await;
    assert_eq!(
        c["message"]["parent_id"], new_reply["id"],
        "a send follows the active branch"
    );
    let new_branch = path(&app, &token, &room).await;
    assert_eq!(new_branch.len(), 4);

    let old_again = app
        .post(
            &control(&room, &a["message"], "select"),
            Some(&token),
            json!({}),
        )
        .await;
    let old_again = old_again.assert_status(200);
    let shown = old_again["messages"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert_eq!(ids(&shown), ids(&old), "the old branch, whole");
    assert_eq!(shown[0]["versions"]["index"], 0);
    assert_eq!(shown[2]["id"], b["message"]["id"]);
    let new_again = app
        .post(
            &control(&room, new_prompt, "select"),
            Some(&token),
            json!({}),
        )
        .await;
    let shown = new_again.assert_status(200)["messages"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert_eq!(
        ids(&shown),
        ids(&new_branch),
        "the new branch, with what followed it"
    );
    // Search follows the active path too.
    let found = app.get("/search?q=second", Some(&token)).await;
    assert_eq!(
        found.assert_status(200)["results"],
        json!([]),
        "the old branch is not active"
    );
}

async fn the_context_follows_the_edited_branch(backend: Backend) {
    let gemini = FakeGemini::start().await;
    FakeGemini::stream_call()
        .respond_with(sse_reply(&["ok"]))
        .mount(&gemini.server)
        .await;
    let uri = gemini.uri();
    let app = TestApp::spawn_with(backend, move |config| {
        config.ai_provider = Some(AiProviderKind::Gemini);
        config.gemini_api_key = Some(Secret::new(GEMINI_KEY));
        config.gemini_base_url = uri;
    })
    .await;
    let (token, _) = app.new_user().await;
    let room = app.chatroom(&token, "context").await;
    app.send_message(&token, &room, "one").await;
    let two = app.send_message(&token, &room, "two").await;
    app.drain_jobs().await;
    app.post(
        &control(&room, &two["message"], "edit"),
        Some(&token),
        json!({"content": "two, edited"}),
    )
    .await
    .assert_status(202);
    app.drain_jobs().await;
    app.send_message(&token, &room, "three").await;
    app.drain_jobs().await;
    let requests = gemini.requests().await;
    let turns: Vec<&str> = requests[3]["contents"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|turn| turn["parts"][0]["text"].as_str().unwrap_or_default())
        .collect();
    assert_eq!(turns, ["one", "ok", "two, edited", "ok", "three"]);
}

async fn bad_branch_requests_change_nothing(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let (token, _) = app.new_user().await;
    let room = app.chatroom(&token, "bad").await;
    let done = app.send_message(&token, &room, "finished").await;
    app.drain_jobs().await;
    let pending = app.send_message(&token, &room, "still pending").await;
    let before = path(&app, &token, &room).await;
    let used = used_today(&app, &token).await;
    let empty = json!({"content": "   "});
    let cases = [
        (
            control(&room, &done["message"], "regenerate"),
            json!({}),
            422,
            "validation_failed",
        ),
        (
            control(&room, &done["reply"], "edit"),
            json!({"content": "x"}),
            422,
            "validation_failed",
        ),
        (
            control(&room, &done["message"], "edit"),
            empty,
            422,
            "validation_failed",
        ),
        (
            control(&room, &pending["reply"], "regenerate"),
            json!({}),
            409,
            "reply_in_progress",
        ),
        (
            control(&room, &json!({"id": uuid::Uuid::now_v7()}), "regenerate"),
            json!({}),
            404,
            "not_found",
        ),
        (
            control(&room, &json!({"id": uuid::Uuid::now_v7()}), "select"),
            json!({}),
            404,
            "not_found",
        ),
    ];
    for (path, body, status, code) in cases {
        let answer = app.post(&path, Some(&token), body).await;
        assert_eq!(answer.assert_status(status)["code"], code, "{path}");
    }
    let (stranger, _) = app.new_user().await;
    for what in ["regenerate", "select"] {
        let foreign = app
            .post(
                &control(&room, &done["reply"], what),
                Some(&stranger),
                json!({}),
            )
            .await;
        assert_eq!(foreign.assert_status(404)["code"], "not_found");
    }
    assert_eq!(path(&app, &token, &room).await, before, "nothing changed");
    assert_eq!(used_today(&app, &token).await, used);
}

async fn a_regeneration_at_the_daily_limit_is_refused_and_stores_nothing(backend: Backend) {
    let app = TestApp::spawn_with(backend, |config| config.basic_daily_limit = 1).await;
    let (token, _) = app.new_user().await;
    let room = app.chatroom(&token, "limit").await;
    let sent = app.send_message(&token, &room, "only one").await;
    app.drain_jobs().await;
    let before = path(&app, &token, &room).await;
    let refused = app
        .post(
            &control(&room, &sent["reply"], "regenerate"),
            Some(&token),
            json!({}),
        )
        .await;
    assert_eq!(refused.assert_status(429)["code"], "daily_limit_reached");
    let refused = app
        .post(
            &control(&room, &sent["message"], "edit"),
            Some(&token),
            json!({"content": "two"}),
        )
        .await;
    assert_eq!(refused.assert_status(429)["code"], "daily_limit_reached");
    assert_eq!(path(&app, &token, &room).await, before);
}

async fn a_long_conversation_is_deleted_whole(backend: Backend) {
    let app = TestApp::spawn_with(backend, |config| config.basic_daily_limit = 1_000).await;
    let (token, _) = app.new_user().await;
    let room = app.chatroom(&token, "long").await;
    // 1,200 messages, each the parent of the next: deeper than SQLite's trigger depth (1,000),
    // which a cascade along parent links would exceed.
    for n in 0..600 {
        app.send_message(&token, &room, &format!("message {n}"))
            .await;
    }
    let deleted = app
        .request(
            axum::http::Method::DELETE,
            &format!("/chatroom/{room}"),
            Some(&token),
            None,
        )
        .await;
    deleted.assert_status(204);
    let gone = app.get(&format!("/chatroom/{room}"), Some(&token)).await;
    assert_eq!(gone.assert_status(404)["code"], "not_found");
    let me = app.get("/user/me", Some(&token)).await;
    assert_eq!(
        me.assert_status(200)["usage"]["used_today"],
        0,
        "the queued prompts given back"
    );
}
