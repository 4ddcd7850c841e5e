//! The HTTP edge: problem+json for every failure, body limits, request ids, health, readiness
//! and the OpenAPI document.

use axum::body::Body;
use axum::http::{Method, Request, header};
use serde_json::json;

use crate::backend_tests;
use crate::harness::{Backend, TestApp, redis_url};

backend_tests!(
    malformed_json_and_wrong_content_type_are_400,
    bodies_over_the_limit_are_413,
    unknown_routes_and_methods_are_problems,
    every_response_carries_a_request_id,
    health_and_readiness_answer,
    the_openapi_document_covers_every_route,
    docs_are_served_locally,
    responses_carry_security_headers,
    cors_allows_only_configured_origins,
    metrics_report_requests_jobs_cache_and_quota,
);

async fn malformed_json_and_wrong_content_type_are_400(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    for (content_type, body) in [
        ("application/json", "{\"mobile_number\": "),
        ("application/json", "not json"),
        ("text/plain", "{\"mobile_number\": \"+919876543210\"}"),
        ("application/json", ""),
    ] {
        let request = Request::builder()
            .method(Method::POST)
            .uri("/auth/signup")
            .header(header::CONTENT_TYPE, content_type)
            .body(Body::from(body))
            .unwrap_or_default();
        app.send(request)
            .await
            .assert_problem(400, "malformed_request");
    }
    // Well-formed JSON of the wrong shape is a validation error instead.
    app.post("/auth/signup", None, json!(["a list"]))
        .await
        .assert_problem(422, "validation_failed");
}

async fn bodies_over_the_limit_are_413(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let huge = json!({"mobile_number": "+919876543210", "name": "x".repeat(70 * 1024)});
    app.post("/auth/signup", None, huge)
        .await
        .assert_problem(413, "payload_too_large");
    // Nothing was created.
    app.signup("+919876543210", None).await;

    let small = TestApp::spawn_with(backend, |config| config.max_body_bytes = 100).await;
    small
        .post(
            "/auth/signup",
            None,
            json!({"mobile_number": "+919876543210", "name": "y".repeat(200)}),
        )
        .await
        .assert_problem(413, "payload_too_large");
}

async fn unknown_routes_and_methods_are_problems(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    app.get("/no/such/route", None)
        .await
        .assert_problem(404, "not_found");
    app.request(Method::DELETE, "/health", None, None)
        .await
        .assert_problem(405, "method_not_allowed");
}

async fn every_response_carries_a_request_id(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let generated = app.get("/health", None).await;
    let id = generated.header("x-request-id").unwrap_or_default();
    let uuid = uuid::Uuid::parse_str(id);
    assert_eq!(uuid.map(|u| u.get_version_num()).ok(), Some(4), "{id}");
    let next = app.get("/health", None).await;
    assert_ne!(next.header("x-request-id"), Some(id));
    let failed = app.get("/user/me", None).await;
    assert!(failed.header("x-request-id").is_some());
    let request = Request::builder()
        .uri("/nope")
        .header("x-request-id", "client-chosen-42")
        .body(Body::empty())
        .unwrap_or_default();
    let echoed = app.send(request).await;
    assert_eq!(echoed.header("x-request-id"), Some("client-chosen-42"));
}

async fn health_and_readiness_answer(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    assert_eq!(
        app.get("/health", None).await.assert_status(200)["status"],
        "ok"
    );
    let ready = app.get("/ready", None).await;
    assert_eq!(ready.assert_status(200)["status"], "ready");
    assert_eq!(ready.body["checked"], json!(["database"]));
}

async fn the_openapi_document_covers_every_route(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let doc = app.get("/openapi.json", None).await;
    let doc = doc.assert_status(200).clone();
    assert!(
        doc["openapi"]
            .as_str()
            .is_some_and(|v| v.starts_with("3.1"))
    );
    let expected = [
        ("post", "/auth/signup"),
        ("post", "/auth/send-otp"),
        ("post", "/auth/verify-otp"),
        ("post", "/auth/login"),
        ("post", "/auth/forgot-password"),
        ("post", "/auth/reset-password"),
        ("post", "/auth/change-password"),
        ("post", "/auth/logout"),
        ("get", "/auth/sessions"),
        ("delete", "/auth/sessions/{id}"),
        ("get", "/user/me"),
        ("patch", "/user/me"),
        ("get", "/health"),
        ("get", "/ready"),
        ("get", "/metrics"),
        ("post", "/chatroom"),
        ("get", "/chatroom"),
        ("get", "/chatroom/{id}"),
        ("patch", "/chatroom/{id}"),
        ("delete", "/chatroom/{id}"),
        ("get", "/chatroom/{id}/messages"),
        ("post", "/chatroom/{id}/message"),
        ("get", "/chatroom/{id}/events"),
        ("post", "/chatroom/{id}/messages/{message_id}/retry"),
        ("get", "/search"),
        ("post", "/subscribe/pro"),
        ("get", "/subscription/status"),
        ("get", "/subscription/plans"),
        ("post", "/subscription/cancel"),
        ("post", "/subscription/reactivate"),
        ("post", "/subscription/portal"),
        ("post", "/webhook/stripe"),
    ];
    for (method, path) in expected {
        let operation = &doc["paths"][path][method];
        let responses = &operation["responses"];
        assert!(responses.is_object(), "{method} {path} is documented");
        // The refusals any handler can meet are documented on every operation they reach.
        let limited = operation["security"].is_array()
            || (path.starts_with("/auth/") && !operation["security"].is_array());
        if limited {
            assert!(
                responses["429"]["description"]
                    .as_str()
                    .is_some_and(|d| d.contains("rate_limited")),
                "{method} {path} documents 429 rate_limited"
            );
        }
        if operation["security"].is_array() {
            assert!(
                responses["401"]["description"]
                    .as_str()
                    .is_some_and(|d| d.contains("unauthorized")),
                "{method} {path} documents 401 unauthorized"
            );
        }
        if operation["requestBody"].is_object() {
            for (status, code) in [
                ("400", "malformed_request"),
                ("413", "payload_too_large"),
                ("408", "request_timeout"),
            ] {
                assert!(
                    responses[status]["description"]
                        .as_str()
                        .is_some_and(|d| d.contains(code)),
                    "{method} {path} documents {status} {code}"
                );
            }
        }
        if path.contains('{') {
            assert!(
                responses["400"]["description"]
                    .as_str()
                    .is_some_and(|d| d.contains("malformed_request")),
                "{method} {path} documents 400 for a path parameter that is not a UUID"
            );
        }
        if !["/health", "/metrics"].contains(&path) {
            assert!(
                responses["503"]["description"]
                    .as_str()
                    .is_some_and(|d| d.contains("unavailable")),
                "{method} {path} documents 503 unavailable"
            );
        }
    }
    let me = &doc["paths"]["/user/me"]["get"];
    assert!(
        me["security"].is_array(),
        "authenticated routes declare bearer security"
    );
    assert!(me["responses"]["401"].is_object());
    for schema in [
        "User",
        "Problem",
        "SessionResponse",
        "Usage",
        "MeResponse",
        "Chatroom",
        "Message",
        "MessageAccepted",
        "SearchResponse",
        "SubscriptionStatusResponse",
        "Plan",
        "CheckoutResponse",
    ] {
        assert!(doc["components"]["schemas"][schema].is_object(), "{schema}");
    }
    assert_eq!(
        doc["components"]["securitySchemes"]["bearer"]["scheme"],
        "bearer"
    );
}

async fn docs_are_served_locally(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let page = app.get("/docs/", None).await;
    assert_eq!(page.status.as_u16(), 200);
    assert!(page.text.contains("swagger"), "the Swagger UI page");
    // Its assets come from this server, not a CDN.
    assert!(!page.text.contains("https://"), "no external scripts");
    let script = app.get("/docs/swagger-ui-bundle.js", None).await;
    assert_eq!(script.status.as_u16(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readiness_checks_redis_when_configured() {
    let Some(redis) = redis_url() else { return };
    let app = TestApp::spawn_with(Backend::Sqlite, |config| config.redis_url = Some(redis)).await;
    let ready = app.get("/ready", None).await;
    assert_eq!(
        ready.assert_status(200)["checked"],
        json!(["database", "redis"])
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_redis_fails_the_start_with_a_clear_error() {
    crate::harness::install_crypto();
    let db = crate::harness::TestDb::create(Backend::Sqlite).await;
    let mut config = crate::harness::test_config(&db);
    // Port 1 on loopback refuses connections.
    config.redis_url = Some("redis://127.0.0.1:1".into());
    let clock = std::sync::Arc::new(gemchat::clock::SystemClock);
    let started = gemchat::app::App::build(config, clock).await;
    let error = started.err().map(|e| format!("{e:#}")).unwrap_or_default();
    assert!(error.contains("Redis"), "{error}");
}

async fn responses_carry_security_headers(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    for response in [
        app.get("/health", None).await,
        app.get("/user/me", None).await,
    ] {
        assert_eq!(response.header("x-content-type-options"), Some("nosniff"));
        assert_eq!(response.header("x-frame-options"), Some("DENY"));
        assert_eq!(response.header("referrer-policy"), Some("no-referrer"));
        assert_eq!(response.header("cache-control"), Some("no-store"));
        assert!(
            response
                .header("content-security-policy")
                .is_some_and(|v| v.contains("default-src 'none'"))
        );
    }
    // The docs page keeps a policy that lets it run its own (local) scripts.
    let docs = app.get("/docs/", None).await;
    assert!(
        docs.header("content-security-policy")
            .is_none_or(|v| !v.contains("default-src 'none'"))
    );
}

fn preflight(origin: &str) -> Request<Body> {
    Request::builder()
        .method(Method::OPTIONS)
        .uri("/chatroom")
        .header("origin", origin)
        .header("access-control-request-method", "POST")
        .header(
            "access-control-request-headers",
            "authorization,content-type",
        )
        .body(Body::empty())
        .unwrap_or_default()
}

async fn cors_allows_only_configured_origins(backend: Backend) {
    let closed = TestApp::spawn(backend).await;
    let response = closed.send(preflight("https://app.example.com")).await;
    assert!(
        response.header("access-control-allow-origin").is_none(),
        "no CORS by default"
    );

    let open = TestApp::spawn_with(backend, |c| {
        c.cors_origins = Some("https://app.example.com, https://other.example".into())
    })
    .await;
    let allowed = open.send(preflight("https://app.example.com")).await;
    assert_eq!(
        allowed.header("access-control-allow-origin"),
        Some("https://app.example.com")
    );
    assert!(
        allowed
            .header("access-control-allow-headers")
            .is_some_and(|h| h.contains("authorization"))
    );
    let refused = open.send(preflight("https://evil.example")).await;
    assert!(refused.header("access-control-allow-origin").is_none());
    let request = Request::builder()
        .uri("/health")
        .header("origin", "https://other.example")
        .body(Body::empty())
        .unwrap_or_default();
    let simple = open.send(request).await;
    assert_eq!(
        simple.header("access-control-allow-origin"),
        Some("https://other.example")
    );
    assert!(
        simple
            .header("access-control-expose-headers")
            .is_some_and(|h| h.contains("x-request-id"))
    );
}

async fn metrics_report_requests_jobs_cache_and_quota(backend: Backend) {
    let app = TestApp::spawn_with(backend, |c| c.basic_daily_limit = 1).await;
    let (token, _) = app.new_user().await;
    let room = app.chatroom(&token, "metrics").await;
    app.get("/chatroom", Some(&token)).await.assert_status(200);
    app.get("/chatroom", Some(&token)).await.assert_status(200);
    app.send_message(&token, &room, "count me").await;
    let queued = app.get("/metrics", None).await;
    assert_eq!(queued.status.as_u16(), 200);
    assert!(
        queued
            .header("content-type")
            .is_some_and(|v| v.starts_with("text/plain"))
    );
    assert!(
        queued.text.contains("gemchat_jobs{state=\"queued\"}"),
        "{}",
        queued.text
    );
    app.post(
        &format!("/chatroom/{room}/message"),
        Some(&token),
        json!({"content": "over"}),
    )
    .await
    .assert_problem(429, "daily_limit_reached");
    app.drain_jobs().await;
    let text = app.get("/metrics", None).await.text;
    for expected in [
        "http_requests_total{method=\"GET\",route=\"/chatroom\",status=\"200\"}",
        "http_request_duration_seconds_bucket{method=\"POST\",route=\"/chatroom/{id}/message\",status=\"202\"",
        "gemchat_job_outcomes_total{outcome=\"completed\"}",
        "gemchat_ai_request_duration_seconds_bucket",
        "gemchat_cache_requests_total{cache=\"chatrooms\",result=\"hit\"}",
        "gemchat_cache_requests_total{cache=\"chatrooms\",result=\"miss\"}",
        "gemchat_quota_rejections_total{tier=\"basic\"}",
        "gemchat_sse_connections",
    ] {
        assert!(text.contains(expected), "missing {expected}");
    }
    // Concrete ids never become labels.
    assert!(!text.contains(&room));
}
