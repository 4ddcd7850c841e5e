//! Stripe webhooks as Stripe sends them: signed, duplicated, out of order; and what the tier
//! they decide means for the quota.

use axum::body::Body;
use axum::http::{Method, Request};
use gemchat::config::Secret;
use serde_json::{Value, json};

use crate::backend_tests;
use crate::harness::{Backend, TestApp, TestResponse};

pub const WEBHOOK_SECRET: &str = "whsec_test_gemchat_secret";

backend_tests!(
    a_completed_checkout_makes_the_user_pro_without_a_daily_limit,
    bad_signatures_are_refused_and_change_nothing,
    a_rotated_signature_header_is_accepted,
    a_replayed_event_changes_nothing,
    a_late_older_update_never_revives_a_deleted_subscription,
    past_due_keeps_pro_until_the_period_ends,
    a_tier_kept_in_memory_ends_with_its_period,
    a_subscription_is_linked_by_its_customer_when_metadata_is_missing,
    unknown_events_and_users_are_acknowledged,
    webhooks_without_a_configured_secret_are_503,
);

pub async fn billing_app(backend: Backend) -> TestApp {
    TestApp::spawn_with(backend, |config| {
        config.stripe_webhook_secret = Some(Secret::new(format!("whsec_old_one,{WEBHOOK_SECRET}")));
    })
    .await
}

/// Posts `body` to the webhook with the given `Stripe-Signature` header.
pub async fn deliver(app: &TestApp, body: &str, signature: Option<String>) -> TestResponse {
    let mut request = Request::builder()
        .method(Method::POST)
        .uri("/webhook/stripe")
        .header("content-type", "application/json");
    if let Some(signature) = signature {
        request = request.header("stripe-signature", signature);
    }
    app.send(request.body(Body::from(body.to_owned())).expect("request"))
        .await
}

/// The header Stripe would send for `body` now.
pub fn sign_now(app: &TestApp, body: &str) -> String {
    let t = app.clock_now().timestamp();
    format!(
        "t={t},v1={}",
        gemchat::billing::signature::sign(WEBHOOK_SECRET, t, body.as_bytes())
    )
}

/// Delivers a correctly signed event and expects 200.
pub async fn deliver_signed(app: &TestApp, event: &Value) {
    let body = event.to_string();
    let response = deliver(app, &body, Some(sign_now(app, &body))).await;
    assert_eq!(response.assert_status(200)["received"], true);
}

pub fn event(id: &str, kind: &str, created: i64, object: Value) -> Value {
    json!({"id": id, "object": "event", "api_version": "2025-03-31.basil", "created": created,
           "livemode": false, "type": kind, "data": {"object": object}})
}

pub fn checkout_completed(id: &str, user: &Value, created: i64) -> Value {
    event(
        id,
        "checkout.session.completed",
        created,
        json!({
            "id": "cs_test_1", "object": "checkout.session", "mode": "subscription", "status": "complete",
            "payment_status": "paid", "client_reference_id": user["id"], "customer": "cus_test_1",
            "subscription": "sub_test_1", "metadata": {"user_id": user["id"]}
        }),
    )
}

pub fn subscription_event(
    id: &str,
    kind: &str,
    created: i64,
    user: Option<&Value>,
    status: &str,
    period_end: i64,
) -> Value {
    let metadata = user.map_or(json!({}), |u| json!({"user_id": u["id"]}));
    event(
        id,
        kind,
        created,
        json!({
            "id": "sub_test_1", "object": "subscription", "customer": "cus_test_1", "status": status,
            "cancel_at_period_end": false, "metadata": metadata,
            "items": {"object": "list", "data": [{"id": "si_1", "object": "subscription_item",
                "price": {"id": "price_pro", "object": "price", "unit_amount": 999, "currency": "usd"},
                "quantity": 1, "current_period_start": period_end - 2_592_000, "current_period_end": period_end}]}
        }),
    )
}

async fn tier(app: &TestApp, token: &str) -> Value {
    app.get("/user/me", Some(token)).await.assert_status(200)["tier"].clone()
}

fn in_days(app: &TestApp, days: i64) -> i64 {
    (app.clock_now() + chrono::Duration::days(days)).timestamp()
}

async fn a_completed_checkout_makes_the_user_pro_without_a_daily_limit(backend: Backend) {
    let app = billing_app(backend).await;
    let (token, user) = app.new_user().await;
    assert_eq!(tier(&app, &token).await, "basic");
    deliver_signed(&app, &checkout_completed("evt_checkout", &user, 100)).await;
    assert_eq!(tier(&app, &token).await, "pro");
    let status = app.get("/subscription/status", Some(&token)).await;
    let status = status.assert_status(200).clone();
    assert_eq!(status["tier"], "pro");
    assert_eq!(status["status"], "active");
    assert_eq!(status["usage"]["daily_limit"], Value::Null);

    let room = app.chatroom(&token, "pro").await;
    for i in 0..7 {
        let sent = app
            .post(
                &format!("/chatroom/{room}/message"),
                Some(&token),
                json!({"content": format!("n{i}")}),
            )
            .await;
        sent.assert_status(202);
        // Every 2xx of the send endpoint carries the headers; an unlimited plan reports a
        // limit no day can reach.
        assert_eq!(sent.header("ratelimit-limit"), Some("2147483647"));
        let remaining = (2_147_483_647 - (i + 1)).to_string();
        assert_eq!(sent.header("ratelimit-remaining"), Some(remaining.as_str()));
        assert!(sent.header("ratelimit-reset").is_some());
    }
    let me = app.get("/user/me", Some(&token)).await;
    assert_eq!(me.assert_status(200)["usage"]["used_today"], 7);
    assert_eq!(me.body["usage"]["remaining"], Value::Null);
}

async fn bad_signatures_are_refused_and_change_nothing(backend: Backend) {
    let app = billing_app(backend).await;
    let (token, user) = app.new_user().await;
    let body = checkout_completed("evt_bad", &user, 100).to_string();
    let now = app.clock_now().timestamp();
    let stale_t = now - 301;
    let stale = format!(
        "t={stale_t},v1={}",
        gemchat::billing::signature::sign(WEBHOOK_SECRET, stale_t, body.as_bytes())
    );
    let wrong_secret = format!(
        "t={now},v1={}",
        gemchat::billing::signature::sign("whsec_wrong", now, body.as_bytes())
    );
    let tampered = body.replace("cus_test_1", "cus_evil");
    for (payload, header) in [
        (body.as_str(), None),
        (body.as_str(), Some(wrong_secret)),
        (body.as_str(), Some(stale)),
        (tampered.as_str(), Some(sign_now(&app, &body))),
        (body.as_str(), Some("t=oops".to_owned())),
    ] {
        deliver(&app, payload, header)
            .await
            .assert_problem(400, "invalid_signature");
    }
    assert_eq!(tier(&app, &token).await, "basic");
    // The refused deliveries did not use up the event id.
    deliver_signed(&app, &checkout_completed("evt_bad", &user, 100)).await;
    assert_eq!(tier(&app, &token).await, "pro");
}

async fn a_rotated_signature_header_is_accepted(backend: Backend) {
    let app = billing_app(backend).await;
    let (token, user) = app.new_user().await;
    let body = checkout_completed("evt_rotated", &user, 100).to_string();
    let t = app.clock_now().timestamp();
    let old = gemchat::billing::signature::sign("whsec_retired", t, body.as_bytes());
    let new = gemchat::billing::signature::sign(WEBHOOK_SECRET, t, body.as_bytes());
    let response = deliver(&app, &body, Some(format!("t={t},v1={old},v1={new}"))).await;
    response.assert_status(200);
    assert_eq!(tier(&app, &token).await, "pro");
}

async fn a_replayed_event_changes_nothing(backend: Backend) {
    let app = billing_app(backend).await;
    let (token, user) = app.new_user().await;
    let failed = event(
        "evt_failed",
        "invoice.payment_failed",
        500,
        json!({
        "id": "in_1", "object": "invoice", "customer": "cus_test_1",
        "parent": {"subscription_details": {"subscription": "sub_test_1"}}}),
    );
    let paid = event(
        "evt_paid",
        "invoice.paid",
        500,
        json!({
        "id": "in_2", "object": "invoice", "customer": "cus_test_1", "subscription": "sub_test_1"}),
    );
    deliver_signed(
        &app,
        &subscription_event(
            "evt_created",
            "customer.subscription.created",
            400,
            Some(&user),
            "active",
            in_days(&app, 30),
        ),
    )
    .await;
    deliver_signed(&app, &failed).await;
    let status = app.get("/subscription/status", Some(&token)).await;
    assert_eq!(status.assert_status(200)["status"], "past_due");
    deliver_signed(&app, &paid).await;
    // The same failure delivered again (same second as the payment) must not undo it.
    deliver_signed(&app, &failed).await;
    let status = app.get("/subscription/status", Some(&token)).await;
    assert_eq!(status.assert_status(200)["status"], "active");
    assert_eq!(tier(&app, &token).await, "pro");
}

async fn a_late_older_update_never_revives_a_deleted_subscription(backend: Backend) {
    let app = billing_app(backend).await;
    let (token, user) = app.new_user().await;
    let period_end = in_days(&app, 20);
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
    assert_eq!(tier(&app, &token).await, "pro");
    deliver_signed(
        &app,
        &subscription_event(
            "evt_3",
            "customer.subscription.deleted",
            300,
            Some(&user),
            "canceled",
            period_end,
        ),
    )
    .await;
    deliver_signed(
        &app,
        &subscription_event(
            "evt_2",
            "customer.subscription.updated",
            200,
            Some(&user),
            "active",
            period_end,
        ),
    )
    .await;
    assert_eq!(tier(&app, &token).await, "basic");
    let status = app.get("/subscription/status", Some(&token)).await;
    assert_eq!(status.assert_status(200)["status"], "canceled");
    assert_eq!(status.body["usage"]["daily_limit"], 5);
}

/// Delivers a subscription update that leaves `user` past due until `period_end`.
async fn deliver_past_due(app: &TestApp, event_id: &str, user: &Value, period_end: i64) {
    let event = subscription_event(
        event_id,
        "customer.subscription.updated",
        100,
        Some(user),
        "past_due",
        period_end,
    );
    deliver_signed(app, &event).await;
}

async fn past_due_keeps_pro_until_the_period_ends(backend: Backend) {
    let app = billing_app(backend).await;
    let (token, user) = app.new_user().await;
    let period_end = in_days(&app, 1);
    deliver_past_due(&app, "evt_pd", &user, period_end).await;
    assert_eq!(tier(&app, &token).await, "pro");
    let status = app.get("/subscription/status", Some(&token)).await;
    assert_eq!(
        status.assert_status(200)["current_period_end"]
            .as_str()
            .map(|t| t.starts_with(
                &chrono::DateTime::from_timestamp(period_end, 0)
                    .unwrap_or_default()
                    .format("%Y-%m-%dT%H:%M:%S")
                    .to_string()
            )),
        Some(true)
    );
    app.clock.advance(chrono::Duration::days(2));
    assert_eq!(
        tier(&app, &token).await,
        "basic",
        "the grace ends with the period"
    );
}

/// With Redis, `GET /user/me` is kept in memory: a webhook shows in the next read, and a grace
/// period's end shows as it passes, though nothing is written then.
async fn a_tier_kept_in_memory_ends_with_its_period(backend: Backend) {
    let app = TestApp::spawn_with(backend, |config| {
        config.stripe_webhook_secret = Some(Secret::new(WEBHOOK_SECRET));
        config.redis_url = crate::harness::redis_url();
    })
    .await;
    let (token, user) = app.new_user().await;
    assert_eq!(tier(&app, &token).await, "basic");
    assert_eq!(tier(&app, &token).await, "basic");
    let period_end = (app.clock_now() + chrono::Duration::seconds(30)).timestamp();
    deliver_past_due(&app, "evt_grace", &user, period_end).await;
    assert_eq!(tier(&app, &token).await, "pro");
    assert_eq!(tier(&app, &token).await, "pro");
    app.clock.advance(chrono::Duration::seconds(31));
    assert_eq!(tier(&app, &token).await, "basic", "the period ended");
}

async fn a_subscription_is_linked_by_its_customer_when_metadata_is_missing(backend: Backend) {
    let app = billing_app(backend).await;
    let (token, user) = app.new_user().await;
    let mut unpaid = checkout_completed("evt_checkout_unpaid", &user, 100);
    unpaid["data"]["object"]["payment_status"] = json!("unpaid");
    deliver_signed(&app, &unpaid).await;
    assert_eq!(
        tier(&app, &token).await,
        "basic",
        "an unpaid checkout grants nothing"
    );
    deliver_signed(
        &app,
        &subscription_event(
            "evt_sub",
            "customer.subscription.created",
            200,
            None,
            "active",
            in_days(&app, 30),
        ),
    )
    .await;
    assert_eq!(tier(&app, &token).await, "pro");
}

async fn unknown_events_and_users_are_acknowledged(backend: Backend) {
    let app = billing_app(backend).await;
    let (token, _) = app.new_user().await;
    deliver_signed(
        &app,
        &event("evt_charge", "charge.succeeded", 100, json!({"id": "ch_1"})),
    )
    .await;
    let stranger = json!({"id": uuid::Uuid::now_v7()});
    deliver_signed(
        &app,
        &subscription_event(
            "evt_stranger",
            "customer.subscription.created",
            100,
            Some(&stranger),
            "active",
            in_days(&app, 30),
        ),
    )
    .await;
    deliver_signed(
        &app,
        &checkout_completed("evt_stranger_checkout", &stranger, 100),
    )
    .await;
    assert_eq!(tier(&app, &token).await, "basic");
    let body = json!({"not": "an event"}).to_string();
    deliver(&app, &body, Some(sign_now(&app, &body)))
        .await
        .assert_problem(400, "malformed_request");
}

async fn webhooks_without_a_configured_secret_are_503(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let body = event("evt_x", "charge.succeeded", 1, json!({})).to_string();
    deliver(&app, &body, Some("t=1,v1=00".into()))
        .await
        .assert_problem(503, "billing_not_configured");
}
