//! The account's own rights (issue 15): deleting it (everything it owns, at once, on every
//! process, Stripe first) and taking its data out (a streamed export of every branch).

use std::sync::Arc;
use std::time::Duration;

use axum::http::Method;
use gemchat::config::{AiProviderKind, Secret};
use gemchat::messages::model::MessageId;
use serde_json::{Value, json};
use wiremock::matchers::{method, path};
use wiremock::{Mock, ResponseTemplate};

use crate::backend_tests;
use crate::billing::{deliver_signed, subscription_event};
use crate::branches::control;
use crate::fakes::{FakeStripe, GEMINI_KEY, STRIPE_KEY};
use crate::gemini_stream::StreamingGemini;
use crate::harness::{
    Backend, TestApp, TestResponse, eventually, postgres_url, random_mobile, redis_url, row_counts,
    token_of,
};
use crate::uploads::{PDF, PNG, send_with, spawn};

backend_tests!(
    deleting_an_account_erases_everything_it_owns_and_frees_the_number,
    deleting_needs_a_recent_sign_in_and_happens_once,
    a_subscription_is_cancelled_first_and_a_stripe_failure_deletes_nothing,
    deleting_during_a_streaming_reply_stops_it_and_leaves_nothing,
    an_export_holds_every_branch_every_room_and_where_the_files_are,
    an_empty_account_exports_empty_lists,
    a_long_history_exports_whole_across_pages,
);

async fn delete_me(app: &TestApp, token: &str) -> TestResponse {
    app.request(Method::DELETE, "/user/me", Some(token), None)
        .await
}

async fn deleting_an_account_erases_everything_it_owns_and_frees_the_number(backend: Backend) {
    let app = spawn(backend, |_| {}).await;
    let url = app.app.config().database_url.clone();
    // Bob stays, with a room, a file and a reply.
    let (bob, _) = app.new_user().await;
    let bob_room = app.chatroom(&bob, "bob's").await;
    let bob_file = app.uploaded(&bob, "dot.png", PNG).await;
    send_with(&app, &bob, &bob_room, "hi", &[&bob_file])
        .await
        .assert_status(202);
    app.drain_jobs().await;
    let before = row_counts(&url).await;
    let objects_before = app.stored_objects().await;

    // Alice: two rooms, files attached and not, two sessions, a reset code waiting.
    let mobile = random_mobile();
    let alice_user = app.signup(&mobile, Some("a long password")).await;
    let alice = app.otp_login(&mobile).await;
    let login = json!({"mobile_number": mobile, "password": "a long password"});
    let second = token_of(&app.post("/auth/login", None, login).await);
    app.after_cooldown();
    app.request_code("forgot-password", &mobile).await;
    for name in ["trip", "work"] {
        let room = app.chatroom(&alice, name).await;
        let png = app.uploaded(&alice, "dot.png", PNG).await;
        let pdf = app.uploaded(&alice, "report.pdf", PDF).await;
        send_with(&app, &alice, &room, "look", &[&png, &pdf])
            .await
            .assert_status(202);
        app.send_message(&alice, &room, "and then?").await;
    }
    app.uploaded(&alice, "never-sent.png", PNG).await;
    app.drain_jobs().await;
    let during = row_counts(&url).await;
    for table in [
        "users",
        "sessions",
        "chatrooms",
        "messages",
        "uploads",
        "otps",
    ] {
        assert!(during[table] > before[table], "{table}: {during:?}");
    }
    assert_eq!(app.stored_objects().await, objects_before + 5);

    delete_me(&app, &alice).await.assert_status(204);
    for token in [&alice, &second] {
        app.get("/user/me", Some(token))
            .await
            .assert_problem(401, "unauthorized");
    }
    app.drain_jobs().await;
    assert_eq!(
        row_counts(&url).await,
        before,
        "not one row of Alice is left"
    );
    assert_eq!(
        app.stored_objects().await,
        objects_before,
        "her files are gone, Bob's stay"
    );
    let bobs = app.get(&format!("/chatroom/{bob_room}"), Some(&bob)).await;
    assert_eq!(
        bobs.assert_status(200)["messages"].as_array().map(Vec::len),
        Some(2)
    );
    let file = app.get(&format!("/uploads/{bob_file}"), Some(&bob)).await;
    assert_eq!(file.bytes.as_ref(), PNG);

    // The number signs up again as a new account, with nothing of the old one.
    app.after_cooldown();
    let again = app.signup(&mobile, None).await;
    assert_ne!(again["id"], alice_user["id"]);
    let token = app.otp_login(&mobile).await;
    let rooms = app.get("/chatroom", Some(&token)).await;
    assert_eq!(rooms.assert_status(200)["chatrooms"], json!([]));
}

async fn deleting_needs_a_recent_sign_in_and_happens_once(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let mobile = random_mobile();
    app.signup(&mobile, None).await;
    let old = app.otp_login(&mobile).await;
    app.chatroom(&old, "kept").await;
    app.clock
        .advance(chrono::Duration::minutes(10) + chrono::Duration::seconds(1));
    let refused = delete_me(&app, &old).await;
    refused.assert_problem(403, "reauthentication_required");
    let rooms = app.get("/chatroom", Some(&old)).await;
    assert_eq!(
        rooms.assert_status(200)["chatrooms"]
            .as_array()
            .map(Vec::len),
        Some(1),
        "nothing was deleted"
    );

    let fresh = app.otp_login(&mobile).await;
    delete_me(&app, &fresh).await.assert_status(204);
    delete_me(&app, &fresh)
        .await
        .assert_problem(401, "unauthorized");
    delete_me(&app, &old)
        .await
        .assert_problem(401, "unauthorized");
}

async fn a_subscription_is_cancelled_first_and_a_stripe_failure_deletes_nothing(backend: Backend) {
    let stripe = FakeStripe::start().await;
    let app = crate::subscriptions::stripe_app(backend, stripe.server.uri()).await;
    let (token, user) = app.new_user().await;
    let period_end = (app.clock_now() + chrono::Duration::days(30)).timestamp();
    deliver_signed(
        &app,
        &subscription_event(
            "evt_1",
            "customer.subscription.created",
            100,
            Some(&user),
            "active",
            period_end,
        ),
    )
    .await;
    let me = app.get("/user/me", Some(&token)).await;
    assert_eq!(me.assert_status(200)["tier"], "pro");

    // Stripe fails once: 502, and the account is whole.
    Mock::given(method("DELETE"))
        .and(path("/v1/subscriptions/sub_test_1"))
        .respond_with(
            ResponseTemplate::new(500)
                .set_body_json(json!({"error": {"type": "api_error", "message": "boom"}})),
        )
        .up_to_n_times(1)
        .with_priority(1)
        .mount(&stripe.server)
        .await;
    let failed = delete_me(&app, &token).await;
    failed.assert_problem(502, "billing_unavailable");
    assert!(!String::from_utf8_lossy(&failed.bytes).contains("boom"));
    let me = app.get("/user/me", Some(&token)).await;
    assert_eq!(me.assert_status(200)["tier"], "pro", "nothing was deleted");

    // Stripe answers: the subscription ends at once, the customer (and its phone) goes.
    Mock::given(method("DELETE"))
        .and(path("/v1/subscriptions/sub_test_1"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "id": "sub_test_1", "object": "subscription", "status": "canceled"})))
        .mount(&stripe.server)
        .await;
    Mock::given(method("DELETE"))
        .and(path("/v1/customers/cus_test_1"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "id": "cus_test_1", "object": "customer", "deleted": true})))
        .mount(&stripe.server)
        .await;
    delete_me(&app, &token).await.assert_status(204);
    let calls: Vec<(String, String)> = stripe
        .server
        .received_requests()
        .await
        .unwrap_or_default()
        .iter()
        .filter(|r| r.method.as_str() == "DELETE")
        .map(|r| {
            (
                r.url.path().to_owned(),
                r.headers
                    .get("authorization")
                    .map(|v| v.to_str().unwrap_or_default().to_owned())
                    .unwrap_or_default(),
            )
        })
        .collect();
    let bearer = format!("Bearer {STRIPE_KEY}");
    assert_eq!(
        calls,
        [
            ("/v1/subscriptions/sub_test_1".to_owned(), bearer.clone()),
            ("/v1/subscriptions/sub_test_1".to_owned(), bearer.clone()),
            ("/v1/customers/cus_test_1".to_owned(), bearer),
        ]
    );
    let counts = row_counts(&app.app.config().database_url).await;
    assert_eq!((counts["users"], counts["subscriptions"]), (0, 0));
    // Stripe's later word about the ended subscription is acknowledged and changes nothing.
    deliver_signed(
        &app,
        &subscription_event(
            "evt_2",
            "customer.subscription.deleted",
            200,
            Some(&user),
            "canceled",
            period_end,
        ),
    )
    .await;
    assert_eq!(row_counts(&app.app.config().database_url).await["users"], 0);
}

async fn deleting_during_a_streaming_reply_stops_it_and_leaves_nothing(backend: Backend) {
    let gemini = StreamingGemini::start().await;
    let uri = gemini.uri.clone();
    let app = TestApp::spawn_with(backend, move |config| {
        config.ai_provider = Some(AiProviderKind::Gemini);
        config.gemini_api_key = Some(Secret::new(GEMINI_KEY));
        config.gemini_base_url = uri;
    })
    .await;
    let (token, _) = app.new_user().await;
    let room = app.chatroom(&token, "story").await;
    let sent = app.send_message(&token, &room, "tell me a story").await;
    let reply_id = MessageId(
        sent["reply"]["id"]
            .as_str()
            .and_then(|id| id.parse().ok())
            .unwrap_or_default(),
    );
    let worker_app = Arc::clone(&app.app);
    let worker = tokio::spawn(async move {
        gemchat::jobs::worker::run_next(&worker_app, &gemchat::job_handlers()).await
    });
    let call = gemini.next_call().await;
    call.send("Once upon ").await;
    eventually(Duration::from_secs(5), "the delta was streamed", || async {
        app.app.progress().get(reply_id).await.as_deref() == Some("Once upon ")
    })
    .await;

    delete_me(&app, &token).await.assert_status(204);
    call.closed_by_client(Duration::from_secs(2)).await;
    assert!(worker.await.expect("the worker").expect("a job ran"));
    app.drain_jobs().await;
    let counts = row_counts(&app.app.config().database_url).await;
    assert!(
        counts.values().all(|count| *count == 0),
        "nothing is left behind: {counts:?}"
    );
    assert_eq!(app.app.progress().get(reply_id).await, None);
}

/// Every process refuses the deleted account's tokens at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deleted_accounts_tokens_stop_on_every_process() {
    let (Some(_), Some(redis)) = (postgres_url(), redis_url()) else {
        return;
    };
    let a = TestApp::spawn_with(Backend::Postgres, |c| c.redis_url = Some(redis.clone())).await;
    let b = a.sibling(|c| c.redis_url = Some(redis.clone())).await;
    let (token, _) = a.new_user().await;
    // Process B has the session cached as live.
    b.get("/user/me", Some(&token)).await.assert_status(200);
    delete_me(&a, &token).await.assert_status(204);
    eventually(
        Duration::from_secs(10),
        "B refuses the deleted account's token",
        || async { b.get("/user/me", Some(&token)).await.status.as_u16() == 401 },
    )
    .await;
}

/// Downloads the export and checks how it is served.
async fn export(app: &TestApp, token: &str) -> Value {
    let response = app.get("/user/me/export", Some(token)).await;
    assert_eq!(response.status.as_u16(), 200, "{:?}", response.body);
    assert_eq!(response.header("content-type"), Some("application/json"));
    let disposition = response.header("content-disposition").unwrap_or_default();
    assert!(
        disposition.starts_with("attachment; filename=\"gemchat-export-"),
        "{disposition}"
    );
    assert_eq!(response.header("cache-control"), Some("no-store"));
    serde_json::from_slice(&response.bytes).expect("the export is one JSON document")
}

async fn an_export_holds_every_branch_every_room_and_where_the_files_are(backend: Backend) {
    let app = spawn(backend, |_| {}).await;
    let (bob, _) = app.new_user().await;
    app.chatroom(&bob, "bob's secret").await;
    let mobile = random_mobile();
    let user = app.signup(&mobile, None).await;
    let token = app.otp_login(&mobile).await;
    app.after_cooldown();
    app.otp_login(&mobile).await;

    let room = app.chatroom(&token, "trip").await;
    let png = app.uploaded(&token, "dot.png", PNG).await;
    let sent = send_with(&app, &token, &room, "look at this", &[&png]).await;
    let sent = sent.assert_status(202).clone();
    app.drain_jobs().await;
    // A second version of the reply, and an edited prompt with its own reply: three branches.
    app.post(
        &control(&room, &sent["reply"], "regenerate"),
        Some(&token),
        json!({}),
    )
    .await
    .assert_status(202);
    app.drain_jobs().await;
    app.post(
        &control(&room, &sent["message"], "edit"),
        Some(&token),
        json!({"content": "look at this instead"}),
    )
    .await
    .assert_status(202);
    app.drain_jobs().await;
    let empty = app.chatroom(&token, "empty").await;

    let document = export(&app, &token).await;
    let keys: Vec<&str> = document
        .as_object()
        .map(|o| o.keys().map(String::as_str).collect())
        .unwrap_or_default();
    assert_eq!(
        keys,
        [
            "chatrooms",
            "exported_at",
            "sessions",
            "subscription",
            "user"
        ]
    );
    assert_eq!(document["user"]["id"], user["id"]);
    assert_eq!(document["user"]["mobile_number"], json!(mobile));
    assert_eq!(document["subscription"]["tier"], "basic");
    assert_eq!(document["sessions"].as_array().map(Vec::len), Some(2));
    let rooms = document["chatrooms"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let names: Vec<&str> = rooms.iter().filter_map(|r| r["name"].as_str()).collect();
    assert_eq!(names.len(), 2, "{names:?}");
    assert!(
        names.contains(&"trip") && names.contains(&"empty"),
        "Bob's room stays out: {names:?}"
    );
    let trip = rooms
        .iter()
        .find(|r| r["id"] == json!(room))
        .expect("the room");
    let messages = trip["messages"].as_array().cloned().unwrap_or_default();
    assert_eq!(
        messages.len(),
        5,
        "two prompts, three replies: {messages:#?}"
    );
    assert!(messages.iter().all(|m| m["status"] != "pending"));
    let prompts: Vec<&Value> = messages.iter().filter(|m| m["role"] == "user").collect();
    assert_eq!(prompts.len(), 2);
    assert_eq!(
        prompts[0]["versions"]["ids"].as_array().map(Vec::len),
        Some(2)
    );
    let file = &prompts[0]["attachments"][0];
    assert_eq!(file["id"], json!(png));
    assert_eq!(file["mime_type"], "image/png");
    let download = file["download_path"].as_str().expect("a download path");
    assert_eq!(download, format!("/uploads/{png}"));
    let bytes = app.get(download, Some(&token)).await;
    assert_eq!(bytes.bytes.as_ref(), PNG);
    let replies = messages.iter().filter(|m| m["role"] == "model").count();
    assert_eq!(replies, 3);
    let empty = rooms
        .iter()
        .find(|r| r["id"] == json!(empty))
        .expect("the empty room");
    assert_eq!(empty["messages"], json!([]));
    assert!(document["exported_at"].as_str().is_some());
}

async fn an_empty_account_exports_empty_lists(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let (token, user) = app.new_user().await;
    let document = export(&app, &token).await;
    assert_eq!(document["user"]["id"], user["id"]);
    assert_eq!(document["chatrooms"], json!([]));
    assert_eq!(document["subscription"]["status"], Value::Null);
    app.get("/user/me/export", None)
        .await
        .assert_problem(401, "unauthorized");
}

async fn a_long_history_exports_whole_across_pages(backend: Backend) {
    let app = TestApp::spawn_with(backend, |config| config.basic_daily_limit = 1_000).await;
    let (token, _) = app.new_user().await;
    let room = app.chatroom(&token, "long").await;
    // 250 exchanges: 500 messages, more than two pages of the export's reads.
    for i in 0..250 {
        app.send_message(&token, &room, &format!("prompt number {i}"))
            .await;
    }
    app.drain_jobs().await;
    let document = export(&app, &token).await;
    let messages = document["chatrooms"][0]["messages"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert_eq!(messages.len(), 500);
    let ids: Vec<&str> = messages.iter().filter_map(|m| m["id"].as_str()).collect();
    let mut sorted = ids.clone();
    sorted.sort_unstable();
    sorted.dedup();
    assert_eq!(sorted, ids, "oldest first, each once");
    assert_eq!(messages[0]["content"], "prompt number 0");
    assert_eq!(messages[498]["content"], "prompt number 249");
}
