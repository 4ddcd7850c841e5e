//! Chatrooms, messages, the daily quota and replies by the worker (with the `echo` provider).

use std::sync::Arc;

use axum::http::Method;
use serde_json::{Value, json};

use crate::backend_tests;
use crate::harness::{Backend, TestApp, reply_of};

backend_tests!(
    chatrooms_are_created_listed_renamed_and_deleted_by_their_owner_only,
    chatroom_input_is_validated,
    the_cached_list_is_never_stale_for_its_owner,
    a_prompt_is_stored_queued_and_answered,
    history_pages_backwards_with_a_cursor,
    sixth_prompt_of_the_day_is_rejected_for_basic_users,
    concurrent_sends_take_exactly_the_prompts_left,
    waiting_returns_the_finished_reply,
    prompt_input_is_validated,
    replies_in_one_chatroom_are_produced_in_order,
    only_failed_replies_can_be_retried,
    a_finished_reply_moves_its_chatroom_up_the_list,
);

async fn chatrooms_are_created_listed_renamed_and_deleted_by_their_owner_only(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let (alice, _) = app.new_user().await;
    let (bob, _) = app.new_user().await;
    let created = app
        .post("/chatroom", Some(&alice), json!({"name": "  Trip  "}))
        .await;
    let room = created.assert_status(201).clone();
    assert_eq!(room["name"], "Trip");
    assert_eq!(room["last_message_at"], Value::Null);
    let id = room["id"].as_str().unwrap_or_default().to_owned();

    let fetched = app.get(&format!("/chatroom/{id}"), Some(&alice)).await;
    let body = fetched.assert_status(200);
    assert_eq!(body["name"], "Trip");
    assert_eq!(body["messages"], json!([]));

    // Bob cannot see, rename, delete or write to it: exactly as if it did not exist.
    let path = format!("/chatroom/{id}");
    app.get(&path, Some(&bob))
        .await
        .assert_problem(404, "not_found");
    app.request(Method::PATCH, &path, Some(&bob), Some(json!({"name": "x"})))
        .await
        .assert_problem(404, "not_found");
    app.request(Method::DELETE, &path, Some(&bob), None)
        .await
        .assert_problem(404, "not_found");
    app.post(
        &format!("{path}/message"),
        Some(&bob),
        json!({"content": "hi"}),
    )
    .await
    .assert_problem(404, "not_found");
    app.get(&format!("{path}/messages"), Some(&bob))
        .await
        .assert_problem(404, "not_found");
    let bobs = app.get("/chatroom", Some(&bob)).await;
    assert_eq!(bobs.assert_status(200)["chatrooms"], json!([]));

    let renamed = app
        .request(
            Method::PATCH,
            &path,
            Some(&alice),
            Some(json!({"name": "Goa"})),
        )
        .await;
    assert_eq!(renamed.assert_status(200)["name"], "Goa");
    let deleted = app.request(Method::DELETE, &path, Some(&alice), None).await;
    assert_eq!(deleted.status.as_u16(), 204);
    app.get(&path, Some(&alice))
        .await
        .assert_problem(404, "not_found");
    app.get("/chatroom/not-a-uuid", Some(&alice))
        .await
        .assert_problem(400, "malformed_request");
    app.get("/chatroom", None)
        .await
        .assert_problem(401, "unauthorized");
}

async fn chatroom_input_is_validated(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let (token, _) = app.new_user().await;
    for bad in [
        json!({"name": ""}),
        json!({"name": "   "}),
        json!({"name": "x".repeat(101)}),
        json!({"name": 7}),
    ] {
        app.post("/chatroom", Some(&token), bad)
            .await
            .assert_problem(422, "validation_failed");
    }
    let list = app.get("/chatroom", Some(&token)).await;
    assert_eq!(list.assert_status(200)["chatrooms"], json!([]));
    // Without a name (contract v2) a room is created, to be titled after its first reply.
    let unnamed = app.post("/chatroom", Some(&token), json!({})).await;
    assert_eq!(unnamed.assert_status(201)["name"], "New chat");
}

/// The caller's chatroom list (200).
async fn list_of(app: &TestApp, token: &str) -> Value {
    app.get("/chatroom", Some(token))
        .await
        .assert_status(200)
        .clone()
}

fn names(list: &Value) -> Vec<String> {
    list["chatrooms"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|room| room["name"].as_str().map(str::to_owned))
        .collect()
}

async fn the_cached_list_is_never_stale_for_its_owner(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let (token, _) = app.new_user().await;
    let list = || list_of(&app, &token);
    assert!(names(&list().await).is_empty());
    let first = app.chatroom(&token, "first").await;
    assert_eq!(names(&list().await), ["first"]);
    // The test clock stands still unless moved; activity is ordered by time.
    app.clock.advance(chrono::Duration::seconds(1));
    let second = app.chatroom(&token, "second").await;
    assert_eq!(
        names(&list().await),
        ["second", "first"],
        "newest activity first"
    );
    // A message moves its chatroom to the top.
    app.clock.advance(chrono::Duration::seconds(1));
    app.send_message(&token, &first, "hello").await;
    let after_message = list().await;
    assert_eq!(names(&after_message), ["first", "second"]);
    assert!(after_message["chatrooms"][0]["last_message_at"].is_string());
    app.request(
        Method::PATCH,
        &format!("/chatroom/{second}"),
        Some(&token),
        Some(json!({"name": "renamed"})),
    )
    .await
    .assert_status(200);
    assert_eq!(names(&list().await), ["first", "renamed"]);
    app.request(
        Method::DELETE,
        &format!("/chatroom/{first}"),
        Some(&token),
        None,
    )
    .await;
    assert_eq!(names(&list().await), ["renamed"]);
}

async fn a_finished_reply_moves_its_chatroom_up_the_list(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let (token, _) = app.new_user().await;
    let list = || list_of(&app, &token);
    let first = app.chatroom(&token, "first").await;
    app.clock.advance(chrono::Duration::seconds(1));
    app.send_message(&token, &first, "hello").await;
    app.clock.advance(chrono::Duration::seconds(1));
    app.chatroom(&token, "second").await;
    // Read (and cached) before the reply exists.
    assert_eq!(names(&list().await), ["second", "first"]);

    app.clock.advance(chrono::Duration::seconds(1));
    assert_eq!(app.drain_jobs().await, 1);
    let after = list().await;
    assert_eq!(
        names(&after),
        ["first", "second"],
        "the reply is the newest activity"
    );
    let last = after["chatrooms"][0]["last_message_at"]
        .as_str()
        .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok());
    assert_eq!(last, Some(app.clock_now().into()), "the reply's time");
}

async fn a_prompt_is_stored_queued_and_answered(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let (token, _) = app.new_user().await;
    let room = app.chatroom(&token, "chat").await;
    let sent = app
        .post(
            &format!("/chatroom/{room}/message"),
            Some(&token),
            json!({"content": " Who wrote Dune? "}),
        )
        .await;
    let body = sent.assert_status(202).clone();
    assert_eq!(sent.header("ratelimit-limit"), Some("5"));
    assert_eq!(sent.header("ratelimit-remaining"), Some("4"));
    assert!(
        sent.header("ratelimit-reset")
            .and_then(|r| r.parse::<u64>().ok())
            .is_some()
    );
    assert_eq!(body["message"]["role"], "user");
    assert_eq!(body["message"]["content"], "Who wrote Dune?");
    assert_eq!(body["message"]["status"], "completed");
    assert_eq!(body["reply"]["role"], "model");
    assert_eq!(body["reply"]["status"], "pending");
    assert_eq!(body["reply"]["content"], "");
    assert_eq!(body["usage"]["used_today"], 1);
    assert_eq!(body["usage"]["remaining"], 4);

    assert_eq!(app.drain_jobs().await, 1);
    let history = app
        .get(&format!("/chatroom/{room}/messages"), Some(&token))
        .await;
    let messages = history.assert_status(200)["messages"].clone();
    assert_eq!(messages.as_array().map(Vec::len), Some(2));
    assert_eq!(messages[0]["id"], body["message"]["id"]);
    assert_eq!(messages[1]["id"], body["reply"]["id"]);
    assert_eq!(messages[1]["status"], "completed");
    let reply = messages[1]["content"].as_str().unwrap_or_default();
    assert!(
        reply.contains("offline") && reply.ends_with("You said: Who wrote Dune?"),
        "{reply}"
    );
    assert!(messages[1].get("error").is_none());

    let me = app.get("/user/me", Some(&token)).await;
    assert_eq!(me.assert_status(200)["usage"]["used_today"], 1);
    let shown = app.get(&format!("/chatroom/{room}"), Some(&token)).await;
    assert_eq!(shown.assert_status(200)["messages"], messages);
}

async fn history_pages_backwards_with_a_cursor(backend: Backend) {
    let app = TestApp::spawn_with(backend, |c| c.basic_daily_limit = 10).await;
    let (token, _) = app.new_user().await;
    let room = app.chatroom(&token, "long").await;
    for i in 0..3 {
        app.send_message(&token, &room, &format!("prompt {i}"))
            .await;
    }
    let path = format!("/chatroom/{room}/messages");
    let first = app.get(&format!("{path}?limit=4"), Some(&token)).await;
    let first = first.assert_status(200).clone();
    let contents: Vec<&str> = first["messages"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|m| m["content"].as_str())
        .collect();
    assert_eq!(
        contents,
        ["prompt 1", "", "prompt 2", ""],
        "the latest four, oldest first"
    );
    let cursor = first["next_before"].as_str().unwrap_or_default().to_owned();
    assert_eq!(first["messages"][0]["id"], cursor.as_str());
    let rest = app
        .get(&format!("{path}?limit=4&before={cursor}"), Some(&token))
        .await;
    let rest = rest.assert_status(200).clone();
    assert_eq!(rest["messages"].as_array().map(Vec::len), Some(2));
    assert_eq!(rest["messages"][0]["content"], "prompt 0");
    assert_eq!(rest["next_before"], Value::Null);
    for bad in ["limit=0", "limit=101", "limit=x", "before=nope"] {
        app.get(&format!("{path}?{bad}"), Some(&token))
            .await
            .assert_problem(422, "validation_failed");
    }
}

async fn sixth_prompt_of_the_day_is_rejected_for_basic_users(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let (token, _) = app.new_user().await;
    let room = app.chatroom(&token, "quota").await;
    for _ in 0..5 {
        app.send_message(&token, &room, "again").await;
    }
    let refused = app
        .post(
            &format!("/chatroom/{room}/message"),
            Some(&token),
            json!({"content": "one more"}),
        )
        .await;
    refused.assert_problem(429, "daily_limit_reached");
    let detail = refused.body["detail"].as_str().unwrap_or_default();
    assert!(
        detail.contains("Daily limit of 5 prompts reached on the Basic plan"),
        "{detail}"
    );
    let retry_after: i64 = refused
        .header("retry-after")
        .and_then(|v| v.parse().ok())
        .unwrap_or(-1);
    let midnight = (app.clock_now().date_naive() + chrono::Days::new(1))
        .and_hms_opt(0, 0, 0)
        .map(|t| (t.and_utc() - app.clock_now()).num_seconds());
    assert!(
        midnight.is_some_and(|m| (retry_after - m).abs() <= 1),
        "{retry_after} vs {midnight:?}"
    );
    // Nothing was stored by the refused send.
    let history = app
        .get(
            &format!("/chatroom/{room}/messages?limit=100"),
            Some(&token),
        )
        .await;
    assert_eq!(
        history.assert_status(200)["messages"]
            .as_array()
            .map(Vec::len),
        Some(10)
    );
    // A new UTC day brings the prompts back.
    app.clock.advance(chrono::Duration::days(1));
    app.send_message(&token, &room, "tomorrow").await;
}

async fn concurrent_sends_take_exactly_the_prompts_left(backend: Backend) {
    let app = Arc::new(TestApp::spawn(backend).await);
    let (token, _) = app.new_user().await;
    let room = app.chatroom(&token, "race").await;
    let sends = (0..16).map(|i| {
        let app = Arc::clone(&app);
        let (token, room) = (token.clone(), room.clone());
        tokio::spawn(async move {
            app.post(
                &format!("/chatroom/{room}/message"),
                Some(&token),
                json!({"content": format!("n{i}")}),
            )
            .await
            .status
            .as_u16()
        })
    });
    let mut statuses: Vec<u16> = futures::future::join_all(sends)
        .await
        .into_iter()
        .map(|s| s.unwrap_or(0))
        .collect();
    statuses.sort_unstable();
    assert_eq!(
        statuses.iter().filter(|s| **s == 202).count(),
        5,
        "{statuses:?}"
    );
    assert_eq!(
        statuses.iter().filter(|s| **s == 429).count(),
        11,
        "{statuses:?}"
    );
    let me = app.get("/user/me", Some(&token)).await;
    assert_eq!(me.assert_status(200)["usage"]["used_today"], 5);
}

async fn waiting_returns_the_finished_reply(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let worker = app.start_worker();
    let (token, _) = app.new_user().await;
    let room = app.chatroom(&token, "wait").await;
    let sent = app
        .post(
            &format!("/chatroom/{room}/message?wait=true&timeout=20"),
            Some(&token),
            json!({"message": "ping"}),
        )
        .await;
    let body = sent.assert_status(200).clone();
    assert_eq!(body["reply"]["status"], "completed");
    assert!(
        body["reply"]["content"]
            .as_str()
            .is_some_and(|c| c.ends_with("You said: ping"))
    );
    assert_eq!(sent.header("ratelimit-remaining"), Some("4"));
    worker.stop().await;
}

async fn prompt_input_is_validated(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let (token, _) = app.new_user().await;
    let room = app.chatroom(&token, "v").await;
    let path = format!("/chatroom/{room}/message");
    for bad in [
        json!({"content": ""}),
        json!({"content": "  "}),
        json!({"content": "x".repeat(8001)}),
        json!({}),
    ] {
        app.post(&path, Some(&token), bad)
            .await
            .assert_problem(422, "validation_failed");
    }
    for query in [
        "?wait=true&timeout=0",
        "?wait=true&timeout=61",
        "?timeout=5",
        "?wait=maybe",
    ] {
        app.post(
            &format!("{path}{query}"),
            Some(&token),
            json!({"content": "hi"}),
        )
        .await
        .assert_problem(422, "validation_failed");
    }
    // None of the refused sends took a prompt.
    let me = app.get("/user/me", Some(&token)).await;
    assert_eq!(me.assert_status(200)["usage"]["used_today"], 0);
    app.post(
        &format!("/chatroom/{}/message", uuid::Uuid::now_v7()),
        Some(&token),
        json!({"content": "x"}),
    )
    .await
    .assert_problem(404, "not_found");
}

async fn replies_in_one_chatroom_are_produced_in_order(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let (token, _) = app.new_user().await;
    let room = app.chatroom(&token, "order").await;
    let other = app.chatroom(&token, "other").await;
    let first = app.send_message(&token, &room, "first").await;
    let second = app.send_message(&token, &room, "second").await;
    let elsewhere = app.send_message(&token, &other, "elsewhere").await;
    // While the first reply of a room is claimed, its second is not claimable; other rooms are.
    let lease = std::time::Duration::from_secs(60);
    let claimed = app
        .app
        .store()
        .jobs
        .claim(app.clock_now(), lease, 10)
        .await
        .expect("claim");
    let mut replies: Vec<String> = claimed
        .iter()
        .map(|j| reply_of(j).reply_id.to_string())
        .collect();
    replies.sort();
    let mut expected = vec![
        first["reply"]["id"].as_str().unwrap_or_default().to_owned(),
        elsewhere["reply"]["id"]
            .as_str()
            .unwrap_or_default()
            .to_owned(),
    ];
    expected.sort();
    assert_eq!(replies, expected);
    assert!(
        app.app
            .store()
            .jobs
            .claim(app.clock_now(), lease, 10)
            .await
            .expect("claim")
            .is_empty()
    );
    for job in &claimed {
        app.app
            .store()
            .jobs
            .release(job, app.clock_now())
            .await
            .expect("release");
    }
    app.drain_jobs().await;
    let history = app
        .get(&format!("/chatroom/{room}/messages"), Some(&token))
        .await;
    let messages = history.assert_status(200)["messages"].clone();
    assert_eq!(messages[3]["id"], second["reply"]["id"]);
    assert!(
        messages[3]["content"]
            .as_str()
            .is_some_and(|c| c.ends_with("second"))
    );
}

async fn only_failed_replies_can_be_retried(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let (token, _) = app.new_user().await;
    let room = app.chatroom(&token, "retry").await;
    let sent = app.send_message(&token, &room, "hello").await;
    app.drain_jobs().await;
    let reply = sent["reply"]["id"].as_str().unwrap_or_default();
    let prompt = sent["message"]["id"].as_str().unwrap_or_default();
    for (id, code, status) in [
        (reply, "not_retryable", 409),
        (prompt, "not_retryable", 409),
    ] {
        app.request(
            Method::POST,
            &format!("/chatroom/{room}/messages/{id}/retry"),
            Some(&token),
            None,
        )
        .await
        .assert_problem(status, code);
    }
    let unknown = uuid::Uuid::now_v7();
    app.request(
        Method::POST,
        &format!("/chatroom/{room}/messages/{unknown}/retry"),
        Some(&token),
        None,
    )
    .await
    .assert_problem(404, "not_found");
}

mod search {
    use serde_json::Value;

    use crate::backend_tests;
    use crate::harness::{Backend, TestApp};

    backend_tests!(
        search_finds_own_messages_by_words_with_snippets,
        search_follows_deletes_and_validates
    );

    fn contents(results: &Value) -> Vec<String> {
        results["results"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|r| r["message"]["content"].as_str().map(str::to_owned))
            .collect()
    }

    async fn search_finds_own_messages_by_words_with_snippets(backend: Backend) {
        let app = TestApp::spawn_with(backend, |c| c.basic_daily_limit = 20).await;
        let (token, _) = app.new_user().await;
        let (other, _) = app.new_user().await;
        let room = app.chatroom(&token, "Travel").await;
        app.send_message(&token, &room, "Plan a trip to the mountains of Himachal")
            .await;
        app.send_message(&token, &room, "What should I pack for a beach holiday?")
            .await;
        app.drain_jobs().await;
        let theirs = app.chatroom(&other, "Theirs").await;
        app.send_message(&other, &theirs, "mountains are lovely")
            .await;

        let found = app.get("/search?q=mountains", Some(&token)).await;
        let found = found.assert_status(200).clone();
        let hits = contents(&found);
        // The prompt and the echo reply that repeats it; never the other user's message.
        assert_eq!(hits.len(), 2, "{found}");
        assert!(
            hits.iter()
                .all(|c| c.contains("mountains") && !c.starts_with("mountains are"))
        );
        let first = &found["results"][0];
        assert_eq!(first["chatroom"]["name"], "Travel");
        assert_eq!(first["chatroom"]["id"], room.as_str());
        assert!(
            first["snippet"]
                .as_str()
                .is_some_and(|s| s.contains("**mountains**")),
            "{first}"
        );
        let roles: Vec<&str> = found["results"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|r| r["message"]["role"].as_str())
            .collect();
        assert!(roles.contains(&"user") && roles.contains(&"model"));

        // All words are required; punctuation and operators never break the query.
        assert_eq!(
            contents(
                &app.get("/search?q=beach%20holiday", Some(&token))
                    .await
                    .assert_status(200)
                    .clone()
            )
            .len(),
            2
        );
        assert!(
            contents(
                &app.get("/search?q=beach%20mountains", Some(&token))
                    .await
                    .assert_status(200)
                    .clone()
            )
            .is_empty()
        );
        for odd in [
            "%22unbalanced",
            "AND%20OR%20NOT",
            "*",
            "%28%29%3A%5E",
            "-beach",
            "mountains%22",
        ] {
            app.get(&format!("/search?q={odd}"), Some(&token))
                .await
                .assert_status(200);
        }
        let limited = app.get("/search?q=mountains&limit=1", Some(&token)).await;
        assert_eq!(contents(&limited.assert_status(200).clone()).len(), 1);
    }

    async fn search_follows_deletes_and_validates(backend: Backend) {
        let app = TestApp::spawn(backend).await;
        let (token, _) = app.new_user().await;
        let room = app.chatroom(&token, "temp").await;
        app.send_message(&token, &room, "ephemeral words here")
            .await;
        assert_eq!(
            contents(
                &app.get("/search?q=ephemeral", Some(&token))
                    .await
                    .assert_status(200)
                    .clone()
            )
            .len(),
            1
        );
        app.request(
            axum::http::Method::DELETE,
            &format!("/chatroom/{room}"),
            Some(&token),
            None,
        )
        .await;
        assert!(
            contents(
                &app.get("/search?q=ephemeral", Some(&token))
                    .await
                    .assert_status(200)
                    .clone()
            )
            .is_empty()
        );
        for bad in [
            "/search",
            "/search?q=",
            "/search?q=%20%20",
            "/search?q=x&limit=0",
            "/search?q=x&limit=51",
        ] {
            app.get(bad, Some(&token))
                .await
                .assert_problem(422, "validation_failed");
        }
        let long = "a".repeat(201);
        app.get(&format!("/search?q={long}"), Some(&token))
            .await
            .assert_problem(422, "validation_failed");
        app.get("/search?q=x", None)
            .await
            .assert_problem(401, "unauthorized");
    }
}

/// With Redis, each process keeps the lists it served in memory under the version Redis held,
/// and serves one again only while the version it reads with the request's rate limit is the
/// same: a change made through any process is seen by every other at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_list_kept_in_memory_is_fresh_on_every_process() {
    let Some(redis) = crate::harness::redis_url() else {
        return;
    };
    let a = TestApp::spawn_with(Backend::Sqlite, |c| c.redis_url = Some(redis)).await;
    let b = a.sibling(|_| {}).await;
    let (token, _) = a.new_user().await;
    let first = a.chatroom(&token, "first").await;
    for app in [&a, &a, &b, &b] {
        assert_eq!(names(&list_of(app, &token).await), ["first"]);
    }
    b.request(
        Method::PATCH,
        &format!("/chatroom/{first}"),
        Some(&token),
        Some(json!({"name": "renamed"})),
    )
    .await
    .assert_status(200);
    assert_eq!(names(&list_of(&a, &token).await), ["renamed"]);
    a.clock.advance(chrono::Duration::seconds(1));
    b.chatroom(&token, "second").await;
    assert_eq!(names(&list_of(&a, &token).await), ["second", "renamed"]);
    a.clock.advance(chrono::Duration::seconds(1));
    a.send_message(&token, &first, "hello").await;
    assert_eq!(names(&list_of(&b, &token).await), ["renamed", "second"]);
    b.request(
        Method::DELETE,
        &format!("/chatroom/{first}"),
        Some(&token),
        None,
    )
    .await
    .assert_status(204);
    assert_eq!(names(&list_of(&a, &token).await), ["second"]);
}

/// A list kept in memory is served without reading it from Redis; and once Redis lost its data
/// (a restart), versions counted again from scratch never match a list kept from before.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_list_kept_in_memory_outlives_neither_its_version_nor_redis_data() {
    if crate::harness::redis_url().is_none() {
        return;
    }
    let redis = crate::harness::PrivateRedis::start().await;
    let port = redis.url.rsplit(':').next().unwrap_or_default().to_owned();
    let redis_cli = |args: Vec<String>| {
        let port = port.clone();
        async move {
            let out = tokio::process::Command::new("redis-cli")
                .args(["-p", &port])
                .args(args)
                .output()
                .await
                .expect("redis-cli runs");
            assert!(out.status.success());
            String::from_utf8_lossy(&out.stdout).into_owned()
        }
    };
    let app = TestApp::spawn_with(Backend::Sqlite, |c| c.redis_url = Some(redis.url.clone())).await;
    let (token, user) = app.new_user().await;
    let room = app.chatroom(&token, "kept").await;
    assert_eq!(names(&list_of(&app, &token).await), ["kept"]);

    // Behind the cache's back: the list gone from Redis, the room renamed in the database.
    let user_id = user["id"].as_str().unwrap_or_default().to_owned();
    let stored = redis_cli(vec![
        "--scan".into(),
        "--pattern".into(),
        format!("gemchat:rooms:{user_id}:*"),
    ])
    .await;
    for key in stored.lines().filter(|k| !k.is_empty()) {
        redis_cli(vec!["DEL".into(), key.into()]).await;
    }
    let pool = sqlx::SqlitePool::connect(&app.app.config().database_url)
        .await
        .expect("open the database");
    let renamed = sqlx::query("UPDATE chatrooms SET name = 'behind' WHERE id = ?")
        .bind(uuid::Uuid::parse_str(&room).unwrap_or_default())
        .execute(&pool)
        .await
        .expect("rename behind the cache");
    assert_eq!(renamed.rows_affected(), 1);
    assert_eq!(
        names(&list_of(&app, &token).await),
        ["kept"],
        "served from this process's memory"
    );

    // Redis loses everything; the epoch starts again when another user's list is read, and
    // this user's version counts up to where it was.
    redis_cli(vec!["FLUSHALL".into()]).await;
    let (other, _) = app.new_user().await;
    list_of(&app, &other).await;
    app.clock.advance(chrono::Duration::seconds(1));
    app.chatroom(&token, "new").await;
    assert_eq!(names(&list_of(&app, &token).await), ["new", "behind"]);
}
