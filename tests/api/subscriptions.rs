//! Subscribing, cancelling and the billing portal, through the real Stripe adapter against a
//! fake Stripe over HTTP.

use axum::http::Method;
use gemchat::config::Secret;
use serde_json::{Value, json};
use wiremock::{Mock, ResponseTemplate};

use crate::backend_tests;
use crate::billing::{WEBHOOK_SECRET, checkout_completed, deliver_signed, subscription_event};
use crate::fakes::{FakeStripe, PRO_PRICE, STRIPE_KEY, form};
use crate::harness::{Backend, TestApp};

backend_tests!(
    checkout_sends_the_documented_fields_and_one_session_per_double_click,
    the_customer_is_reused_after_a_cancellation,
    a_subscribed_user_cannot_check_out_again,
    cancel_and_reactivate_set_cancel_at_period_end,
    the_portal_opens_for_customers_only,
    plans_read_the_price_from_stripe_once,
    billing_off_answers_503_and_plans_have_no_price,
    stripe_failures_answer_502_without_stripe_details,
    return_urls_are_validated,
);

pub(crate) async fn stripe_app(backend: Backend, stripe_base: String) -> TestApp {
    TestApp::spawn_with(backend, move |config| {
        config.stripe_secret_key = Some(Secret::new(STRIPE_KEY));
        config.stripe_price_id = Some(PRO_PRICE.into());
        config.stripe_webhook_secret = Some(Secret::new(WEBHOOK_SECRET));
        config.stripe_api_base = stripe_base;
        config.public_url = Some("https://chat.example.com".into());
    })
    .await
}

async fn subscribe(app: &TestApp, token: &str, body: Value) -> crate::harness::TestResponse {
    app.post("/subscribe/pro", Some(token), body).await
}

async fn checkout_sends_the_documented_fields_and_one_session_per_double_click(backend: Backend) {
    let stripe = FakeStripe::start().await;
    let app = stripe_app(backend, stripe.server.uri()).await;
    let (token, user) = app.new_user().await;
    let first = subscribe(&app, &token, json!({})).await;
    let body = first.assert_status(200).clone();
    assert_eq!(
        body["checkout_url"],
        "https://checkout.stripe.com/c/pay/cs_test_123"
    );
    assert_eq!(body["session_id"], "cs_test_123");
    subscribe(&app, &token, json!({})).await.assert_status(200);

    let customers = stripe.calls("/v1/customers").await;
    assert_eq!(customers.len(), 1, "one customer per user");
    assert_eq!(
        form(&customers[0])
            .get("metadata[user_id]")
            .map(String::as_str),
        user["id"].as_str()
    );
    let sessions = stripe.calls("/v1/checkout/sessions").await;
    assert_eq!(sessions.len(), 2);
    let fields = form(&sessions[0]);
    let user_id = user["id"].as_str().unwrap_or_default();
    for (name, value) in [
        ("mode", "subscription"),
        ("customer", "cus_new_1"),
        ("line_items[0][price]", PRO_PRICE),
        ("line_items[0][quantity]", "1"),
        ("client_reference_id", user_id),
        ("metadata[user_id]", user_id),
        ("subscription_data[metadata][user_id]", user_id),
        (
            "success_url",
            "https://chat.example.com/?checkout=success&session_id={CHECKOUT_SESSION_ID}",
        ),
        ("cancel_url", "https://chat.example.com/?checkout=cancel"),
    ] {
        assert_eq!(fields.get(name).map(String::as_str), Some(value), "{name}");
    }
    let keys: Vec<Option<&str>> = sessions
        .iter()
        .map(|r| {
            r.headers
                .get("idempotency-key")
                .and_then(|v| v.to_str().ok())
        })
        .collect();
    assert!(keys[0].is_some());
    assert_eq!(
        keys[0], keys[1],
        "a double click asks Stripe for the same session"
    );
    assert!(
        sessions[0]
            .headers
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("application/x-www-form-urlencoded"))
    );
}

async fn the_customer_is_reused_after_a_cancellation(backend: Backend) {
    let stripe = FakeStripe::start().await;
    let app = stripe_app(backend, stripe.server.uri()).await;
    let (token, user) = app.new_user().await;
    subscribe(&app, &token, json!({})).await.assert_status(200);
    let mut completed = checkout_completed("evt_c", &user, 100);
    completed["data"]["object"]["customer"] = json!("cus_new_1");
    deliver_signed(&app, &completed).await;
    let mut deleted = subscription_event(
        "evt_d",
        "customer.subscription.deleted",
        200,
        Some(&user),
        "canceled",
        1,
    );
    deleted["data"]["object"]["customer"] = json!("cus_new_1");
    deliver_signed(&app, &deleted).await;
    let me = app.get("/user/me", Some(&token)).await;
    assert_eq!(me.assert_status(200)["tier"], "basic");

    subscribe(&app, &token, json!({})).await.assert_status(200);
    assert_eq!(
        stripe.calls("/v1/customers").await.len(),
        1,
        "no second customer"
    );
    let sessions = stripe.calls("/v1/checkout/sessions").await;
    assert_eq!(
        form(&sessions[1]).get("customer").map(String::as_str),
        Some("cus_new_1")
    );
}

async fn a_subscribed_user_cannot_check_out_again(backend: Backend) {
    let stripe = FakeStripe::start().await;
    let app = stripe_app(backend, stripe.server.uri()).await;
    let (token, user) = app.new_user().await;
    deliver_signed(&app, &checkout_completed("evt_c", &user, 100)).await;
    subscribe(&app, &token, json!({}))
        .await
        .assert_problem(409, "already_subscribed");
    assert!(stripe.calls("/v1/checkout/sessions").await.is_empty());
}

async fn cancel_and_reactivate_set_cancel_at_period_end(backend: Backend) {
    let stripe = FakeStripe::start().await;
    let app = stripe_app(backend, stripe.server.uri()).await;
    let (token, user) = app.new_user().await;
    app.post("/subscription/cancel", Some(&token), json!({}))
        .await
        .assert_problem(409, "no_subscription");
    let period_end = (app.clock_now() + chrono::Duration::days(30)).timestamp();
    deliver_signed(
        &app,
        &subscription_event(
            "evt_s",
            "customer.subscription.created",
            100,
            Some(&user),
            "active",
            period_end,
        ),
    )
    .await;
    app.post("/subscription/reactivate", Some(&token), json!({}))
        .await
        .assert_problem(409, "not_cancelling");

    let cancelled = app
        .post("/subscription/cancel", Some(&token), json!({}))
        .await;
    let body = cancelled.assert_status(200).clone();
    assert_eq!(body["cancel_at_period_end"], true);
    assert_eq!(body["tier"], "pro", "Pro until the period ends");
    assert_eq!(body["status"], "active");
    let calls = stripe.calls("/v1/subscriptions/sub_test_1").await;
    assert_eq!(
        form(&calls[0])
            .get("cancel_at_period_end")
            .map(String::as_str),
        Some("true")
    );

    let reactivated = app
        .post("/subscription/reactivate", Some(&token), json!({}))
        .await;
    assert_eq!(
        reactivated.assert_status(200)["cancel_at_period_end"],
        false
    );
    let calls = stripe.calls("/v1/subscriptions/sub_test_1").await;
    assert_eq!(
        form(&calls[1])
            .get("cancel_at_period_end")
            .map(String::as_str),
        Some("false")
    );
    let status = app.get("/subscription/status", Some(&token)).await;
    assert_eq!(status.assert_status(200)["cancel_at_period_end"], false);
}

async fn the_portal_opens_for_customers_only(backend: Backend) {
    let stripe = FakeStripe::start().await;
    let app = stripe_app(backend, stripe.server.uri()).await;
    let (token, user) = app.new_user().await;
    app.request(Method::POST, "/subscription/portal", Some(&token), None)
        .await
        .assert_problem(409, "no_subscription");
    deliver_signed(&app, &checkout_completed("evt_c", &user, 100)).await;
    let portal = app
        .request(Method::POST, "/subscription/portal", Some(&token), None)
        .await;
    assert_eq!(
        portal.assert_status(200)["url"],
        "https://billing.stripe.com/p/session/test_1"
    );
    let calls = stripe.calls("/v1/billing_portal/sessions").await;
    let fields = form(&calls[0]);
    assert_eq!(
        fields.get("customer").map(String::as_str),
        Some("cus_test_1")
    );
    assert_eq!(
        fields.get("return_url").map(String::as_str),
        Some("https://chat.example.com/")
    );
}

async fn plans_read_the_price_from_stripe_once(backend: Backend) {
    let stripe = FakeStripe::start().await;
    let app = stripe_app(backend, stripe.server.uri()).await;
    for _ in 0..3 {
        let plans = app.get("/subscription/plans", None).await;
        let plans = plans.assert_status(200).clone();
        assert_eq!(
            plans["plans"][0],
            json!({"id": "basic", "name": "Basic", "daily_limit": 5, "price": null})
        );
        assert_eq!(plans["plans"][1]["id"], "pro");
        assert_eq!(plans["plans"][1]["daily_limit"], Value::Null);
        assert_eq!(
            plans["plans"][1]["price"],
            json!({"amount": 999, "currency": "usd", "interval": "month"})
        );
    }
    assert_eq!(
        stripe.calls(&format!("/v1/prices/{PRO_PRICE}")).await.len(),
        1
    );
}

async fn billing_off_answers_503_and_plans_have_no_price(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let (token, _) = app.new_user().await;
    subscribe(&app, &token, json!({}))
        .await
        .assert_problem(503, "billing_not_configured");
    for path in [
        "/subscription/cancel",
        "/subscription/reactivate",
        "/subscription/portal",
    ] {
        app.request(Method::POST, path, Some(&token), None)
            .await
            .assert_problem(503, "billing_not_configured");
    }
    let plans = app.get("/subscription/plans", None).await;
    assert_eq!(plans.assert_status(200)["plans"][1]["price"], Value::Null);
    let status = app.get("/subscription/status", Some(&token)).await;
    let status = status.assert_status(200).clone();
    assert_eq!(status["tier"], "basic");
    assert_eq!(status["status"], Value::Null);
}

async fn stripe_failures_answer_502_without_stripe_details(backend: Backend) {
    let stripe = wiremock::MockServer::start().await;
    Mock::given(wiremock::matchers::any())
        .respond_with(ResponseTemplate::new(500).set_body_json(json!({"error": {
            "type": "api_error", "message": "Something secret went wrong at Stripe"}})))
        .mount(&stripe)
        .await;
    let app = stripe_app(backend, stripe.uri()).await;
    let (token, _) = app.new_user().await;
    let failed = subscribe(&app, &token, json!({})).await;
    failed.assert_problem(502, "billing_unavailable");
    assert!(!failed.text.contains("secret") && !failed.text.contains("api_error"));

    // Unreachable: nothing listens on port 1.
    let offline = stripe_app(backend, "http://127.0.0.1:1".into()).await;
    let (token, _) = offline.new_user().await;
    subscribe(&offline, &token, json!({}))
        .await
        .assert_problem(502, "billing_unavailable");
    let plans = offline.get("/subscription/plans", None).await;
    assert_eq!(plans.assert_status(200)["plans"][1]["price"], Value::Null);
}

async fn return_urls_are_validated(backend: Backend) {
    let stripe = FakeStripe::start().await;
    let app = stripe_app(backend, stripe.server.uri()).await;
    let (token, _) = app.new_user().await;
    for body in [
        json!({"success_url": "javascript:alert(1)"}),
        json!({"cancel_url": "/relative"}),
        json!({"success_url": 5}),
    ] {
        subscribe(&app, &token, body)
            .await
            .assert_problem(422, "validation_failed");
    }
    let custom = subscribe(
        &app,
        &token,
        json!({"success_url": "https://app.example.com/done"}),
    )
    .await;
    custom.assert_status(200);
    let sessions = stripe.calls("/v1/checkout/sessions").await;
    assert_eq!(
        form(&sessions[0]).get("success_url").map(String::as_str),
        Some("https://app.example.com/done")
    );
}
