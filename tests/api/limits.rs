//! Abuse limits: per client IP on the unauthenticated auth routes, per user elsewhere, shared
//! across processes through Redis.

use axum::body::Body;
use axum::http::{Method, Request};
use serde_json::json;

use crate::backend_tests;
use crate::harness::{Backend, TestApp, TestResponse, postgres_url, random_mobile, redis_url};

backend_tests!(
    auth_routes_are_limited_per_client_ip,
    forwarded_addresses_count_only_behind_a_trusted_proxy,
    authenticated_requests_are_limited_per_user,
);

async fn send_otp_from(app: &TestApp, forwarded_for: Option<&str>) -> TestResponse {
    let mut request = Request::builder()
        .method(Method::POST)
        .uri("/auth/send-otp")
        .header("content-type", "application/json");
    if let Some(ip) = forwarded_for {
        request = request.header("x-forwarded-for", ip);
    }
    let body = json!({"mobile_number": random_mobile()}).to_string();
    app.send(request.body(Body::from(body)).expect("request"))
        .await
}

async fn auth_routes_are_limited_per_client_ip(backend: Backend) {
    let app = TestApp::spawn_with(backend, |c| c.rate_limit_auth_per_minute = 3).await;
    for _ in 0..3 {
        send_otp_from(&app, None)
            .await
            .assert_problem(404, "user_not_found");
    }
    let refused = send_otp_from(&app, None).await;
    refused.assert_problem(429, "rate_limited");
    let retry_after: u64 = refused
        .header("retry-after")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    assert!((1..=60).contains(&retry_after), "{retry_after}");
    // Other routes are not limited per IP.
    app.get("/health", None).await.assert_status(200);
    app.clock.advance(chrono::Duration::seconds(60));
    send_otp_from(&app, None)
        .await
        .assert_problem(404, "user_not_found");
}

async fn forwarded_addresses_count_only_behind_a_trusted_proxy(backend: Backend) {
    let direct = TestApp::spawn_with(backend, |c| c.rate_limit_auth_per_minute = 2).await;
    send_otp_from(&direct, Some("198.51.100.1"))
        .await
        .assert_status(404);
    send_otp_from(&direct, Some("198.51.100.2"))
        .await
        .assert_status(404);
    // Without TRUST_PROXY a client cannot pick a fresh address per request.
    send_otp_from(&direct, Some("198.51.100.3"))
        .await
        .assert_problem(429, "rate_limited");

    let proxied = TestApp::spawn_with(backend, |c| {
        c.rate_limit_auth_per_minute = 2;
        c.trust_proxy = true;
    })
    .await;
    for _ in 0..2 {
        send_otp_from(&proxied, Some("203.0.113.7, 198.51.100.1"))
            .await
            .assert_status(404);
    }
    send_otp_from(&proxied, Some("203.0.113.8, 198.51.100.1"))
        .await
        .assert_problem(429, "rate_limited");
    // The address the proxy saw is the last one; what the client claims before it is ignored.
    send_otp_from(&proxied, Some("198.51.100.2"))
        .await
        .assert_status(404);
}

async fn authenticated_requests_are_limited_per_user(backend: Backend) {
    let app = TestApp::spawn_with(backend, |c| c.rate_limit_per_minute = 4).await;
    let (alice, _) = app.new_user().await;
    let (bob, _) = app.new_user().await;
    for _ in 0..4 {
        app.get("/user/me", Some(&alice)).await.assert_status(200);
    }
    let refused = app.get("/chatroom", Some(&alice)).await;
    refused.assert_problem(429, "rate_limited");
    assert!(refused.header("retry-after").is_some());
    app.get("/user/me", Some(&bob)).await.assert_status(200);
    app.clock.advance(chrono::Duration::seconds(60));
    app.get("/user/me", Some(&alice)).await.assert_status(200);
}

/// Two processes sharing Redis share the counts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn limits_are_shared_across_processes_through_redis() {
    let (Some(_), Some(redis)) = (postgres_url(), redis_url()) else {
        return;
    };
    let a = TestApp::spawn_with(Backend::Postgres, |c| {
        c.redis_url = Some(redis.clone());
        c.rate_limit_per_minute = 4;
        c.rate_limit_auth_per_minute = 3;
        c.trust_proxy = true;
    })
    .await;
    let b = a.sibling(|_| {}).await;
    // Signing up goes through the auth routes from an unnamed address, whose Redis count other
    // tests share: do it on a process with a high limit.
    let setup = a
        .sibling(|c| c.rate_limit_auth_per_minute = 1_000_000)
        .await;
    let (token, _) = setup.new_user().await;
    a.get("/user/me", Some(&token)).await.assert_status(200);
    b.get("/user/me", Some(&token)).await.assert_status(200);
    a.get("/user/me", Some(&token)).await.assert_status(200);
    b.get("/user/me", Some(&token)).await.assert_status(200);
    a.get("/user/me", Some(&token))
        .await
        .assert_problem(429, "rate_limited");
    b.get("/user/me", Some(&token))
        .await
        .assert_problem(429, "rate_limited");

    // A fresh address (this run's own), counted on both processes.
    let ip = format!("10.{}.{}.{}", rand_octet(), rand_octet(), rand_octet());
    send_otp_from(&a, Some(&ip)).await.assert_status(404);
    send_otp_from(&b, Some(&ip)).await.assert_status(404);
    send_otp_from(&a, Some(&ip)).await.assert_status(404);
    send_otp_from(&b, Some(&ip))
        .await
        .assert_problem(429, "rate_limited");
}

fn rand_octet() -> u8 {
    uuid::Uuid::new_v4().as_bytes()[0]
}
