//! `/user/me`: the profile with usage, renaming, and the usage history.

use axum::http::Method;
use serde_json::json;

use crate::backend_tests;
use crate::harness::{Backend, TestApp};

backend_tests!(
    me_reports_the_user_and_todays_usage,
    renaming_validates_and_trims,
    the_usage_history_counts_each_days_prompts_and_tokens,
    me_served_from_memory_shows_every_change_at_once,
);

async fn me_reports_the_user_and_todays_usage(backend: Backend) {
    let app = TestApp::spawn_with(backend, |config| config.basic_daily_limit = 7).await;
    let (token, user) = app.new_user().await;
    let me = app.get("/user/me", Some(&token)).await;
    let body = me.assert_status(200);
    assert_eq!(body["id"], user["id"]);
    assert_eq!(body["mobile_number"], user["mobile_number"]);
    assert_eq!(body["tier"], "basic");
    assert_eq!(body["usage"]["used_today"], 0);
    assert_eq!(body["usage"]["daily_limit"], 7);
    assert_eq!(body["usage"]["remaining"], 7);
    let resets_at = body["usage"]["resets_at"].as_str().unwrap_or_default();
    let resets_at = chrono::DateTime::parse_from_rfc3339(resets_at).map(|t| t.to_utc());
    let tomorrow = (app.clock_now().date_naive() + chrono::Days::new(1))
        .and_hms_opt(0, 0, 0)
        .map(|t| t.and_utc());
    assert_eq!(resets_at.ok(), tomorrow);
}

async fn renaming_validates_and_trims(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let (token, _) = app.new_user().await;
    let renamed = app
        .request(
            Method::PATCH,
            "/user/me",
            Some(&token),
            Some(json!({"name": "  Ravi K  "})),
        )
        .await;
    assert_eq!(renamed.assert_status(200)["name"], "Ravi K");
    assert!(renamed.body.get("usage").is_none());
    for bad in [
        json!({"name": "   "}),
        json!({"name": "x".repeat(101)}),
        json!({"name": 5}),
        json!({}),
    ] {
        app.request(Method::PATCH, "/user/me", Some(&token), Some(bad))
            .await
            .assert_problem(422, "validation_failed");
    }
    let me = app.get("/user/me", Some(&token)).await;
    assert_eq!(me.assert_status(200)["name"], "Ravi K");
    app.request(Method::PATCH, "/user/me", None, Some(json!({"name": "x"})))
        .await
        .assert_problem(401, "unauthorized");
}

async fn the_usage_history_counts_each_days_prompts_and_tokens(backend: Backend) {
    // The token outlives the days the test skips over.
    let app = TestApp::spawn_with(backend, |config| config.jwt_ttl = 7 * 86_400).await;
    let (token, _) = app.new_user().await;
    let room = app.chatroom(&token, "days").await;
    app.send_message(&token, &room, "two days ago").await;
    app.drain_jobs().await;
    app.clock.advance(chrono::Duration::days(2));
    app.send_message(&token, &room, "today, first").await;
    app.send_message(&token, &room, "today, second").await;
    app.drain_jobs().await;

    let page = app
        .get(
            &format!("/chatroom/{room}/messages?limit=100"),
            Some(&token),
        )
        .await;
    let messages = page.assert_status(200)["messages"].clone();
    let tokens_of = |replies: &[usize], field: &str| -> u64 {
        let usage = |i: usize| messages[i]["usage"][field].as_u64().unwrap_or_default();
        replies.iter().map(|&i| usage(i)).sum()
    };
    let history = app.get("/user/me/usage?days=3", Some(&token)).await;
    let days = history.assert_status(200)["days"].clone();
    let today = app.clock_now().date_naive();
    let date = |back: u64| {
        let day = today
            .checked_sub_days(chrono::Days::new(back))
            .expect("a day");
        json!(day.to_string())
    };
    assert_eq!(days.as_array().map(Vec::len), Some(3));
    assert_eq!(days[0]["date"], date(0));
    assert_eq!(days[0]["prompts"], 2);
    assert_eq!(days[0]["input_tokens"], tokens_of(&[3, 5], "input_tokens"));
    assert_eq!(
        days[0]["output_tokens"],
        tokens_of(&[3, 5], "output_tokens")
    );
    assert!(days[0]["output_tokens"].as_u64().is_some_and(|n| n > 0));
    assert_eq!(days[0]["thinking_tokens"], 0);
    assert_eq!(
        days[1],
        json!({"date": date(1), "prompts": 0, "input_tokens": 0, "output_tokens": 0,
               "thinking_tokens": 0}),
        "an idle day is zeros"
    );
    assert_eq!(days[2]["date"], date(2));
    assert_eq!(days[2]["prompts"], 1);
    assert_eq!(days[2]["output_tokens"], tokens_of(&[1], "output_tokens"));

    let default = app.get("/user/me/usage", Some(&token)).await;
    assert_eq!(
        default.assert_status(200)["days"].as_array().map(Vec::len),
        Some(30)
    );
    for bad in ["days=0", "days=91", "days=ten", "days=3&extra=1"] {
        let refused = app
            .get(&format!("/user/me/usage?{bad}"), Some(&token))
            .await;
        refused.assert_problem(422, "validation_failed");
    }
    app.get("/user/me/usage", None)
        .await
        .assert_problem(401, "unauthorized");
}

/// With Redis, `GET /user/me` is kept in memory after the first read (without, it is read every
/// time): each change through the API shows in the next read, and so does midnight.
async fn me_served_from_memory_shows_every_change_at_once(backend: Backend) {
    let app = TestApp::spawn_with(backend, |config| {
        config.basic_daily_limit = 5;
        config.redis_url = crate::harness::redis_url();
    })
    .await;
    let (admin, _) = app.new_admin().await;
    let (token, user) = app.new_user().await;
    let me = async || {
        app.get("/user/me", Some(&token))
            .await
            .assert_status(200)
            .clone()
    };
    assert_eq!(me().await["name"], "Test User");
    assert_eq!(me().await["has_password"], false, "read again, from memory");

    app.request(
        Method::PATCH,
        "/user/me",
        Some(&token),
        Some(json!({"name": "Asha"})),
    )
    .await
    .assert_status(200);
    assert_eq!(me().await["name"], "Asha");

    let changed = app
        .post(
            "/auth/change-password",
            Some(&token),
            json!({"new_password": "a long secret"}),
        )
        .await;
    let token = crate::harness::token_of(&changed);
    let me = async || {
        app.get("/user/me", Some(&token))
            .await
            .assert_status(200)
            .clone()
    };
    let used = async || me().await["usage"]["used_today"].clone();
    assert_eq!(me().await["has_password"], true);

    // A prompt taken, then given back by cancelling its reply before it started.
    let room = app.chatroom(&token, "room").await;
    assert_eq!(used().await, 0);
    let sent = app.send_message(&token, &room, "hello").await;
    assert_eq!(used().await, 1);
    let id = sent["reply"]["id"].as_str().unwrap_or_default();
    app.post(
        &format!("/chatroom/{room}/messages/{id}/cancel"),
        Some(&token),
        json!({}),
    )
    .await
    .assert_status(200);
    assert_eq!(used().await, 0, "the cancelled reply gave its prompt back");

    // Given back by deleting the room whose reply had not started.
    app.after_cooldown();
    app.send_message(&token, &room, "again").await;
    assert_eq!(used().await, 1);
    app.request(
        Method::DELETE,
        &format!("/chatroom/{room}"),
        Some(&token),
        None,
    )
    .await
    .assert_status(204);
    assert_eq!(used().await, 0, "the deleted room gave its prompt back");

    // An admin's complimentary Pro.
    let path = format!("/admin/users/{}", user["id"].as_str().unwrap_or_default());
    app.request(
        Method::PATCH,
        &path,
        Some(&admin),
        Some(json!({"pro_override": true})),
    )
    .await
    .assert_status(200);
    let pro = me().await;
    assert_eq!(
        (pro["tier"].clone(), pro["usage"]["daily_limit"].clone()),
        (json!("pro"), json!(null))
    );
    app.request(
        Method::PATCH,
        &path,
        Some(&admin),
        Some(json!({"pro_override": false})),
    )
    .await
    .assert_status(200);
    assert_eq!(me().await["tier"], "basic");

    // Midnight resets today's usage though nothing was written.
    let room = app.chatroom(&token, "another").await;
    app.after_cooldown();
    app.send_message(&token, &room, "late").await;
    assert_eq!(used().await, 1);
    let midnight = me().await["usage"]["resets_at"].as_str().map(str::to_owned);
    let midnight = midnight
        .and_then(|t| chrono::DateTime::parse_from_rfc3339(&t).ok())
        .map(|t| t.to_utc())
        .expect("resets_at");
    app.clock.advance(midnight - app.clock_now());
    assert_eq!(used().await, 0, "a new day");
}

/// With Redis, each process keeps `GET /user/me` in memory under the user's version, which the
/// rate limit reads in the same round trip: a change through either process shows on both.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn me_kept_in_memory_is_fresh_on_every_process() {
    let Some(redis) = crate::harness::redis_url() else {
        return;
    };
    let a = TestApp::spawn_with(Backend::Sqlite, |c| c.redis_url = Some(redis)).await;
    let b = a.sibling(|_| {}).await;
    let (token, _) = a.new_user().await;
    let me = async |app: &TestApp| {
        app.get("/user/me", Some(&token))
            .await
            .assert_status(200)
            .clone()
    };
    for app in [&a, &a, &b, &b] {
        assert_eq!(me(app).await["name"], "Test User");
    }
    b.request(
        Method::PATCH,
        "/user/me",
        Some(&token),
        Some(json!({"name": "Renamed"})),
    )
    .await
    .assert_status(200);
    assert_eq!(me(&a).await["name"], "Renamed");
    let room = a.chatroom(&token, "room").await;
    a.send_message(&token, &room, "hello").await;
    assert_eq!(me(&b).await["usage"]["used_today"], 1);
    assert_eq!(me(&a).await["usage"]["used_today"], 1);
}
