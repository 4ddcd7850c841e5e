//! `/user/me`: the profile with usage, and renaming.

use axum::http::Method;
use serde_json::json;

use crate::backend_tests;
use crate::harness::{Backend, TestApp};

backend_tests!(
    me_reports_the_user_and_todays_usage,
    renaming_validates_and_trims
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
