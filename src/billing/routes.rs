//! HTTP handlers of billing: the Stripe webhook and the subscription's status.

use axum::extract::{DefaultBodyLimit, State};
use axum::http::HeaderMap;
use chrono::{DateTime, Utc};
use serde::Serialize;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::service;
use crate::app::AppState;
use crate::auth::extract::AuthUser;
use crate::error::{AppBytes, AppJson, Problem, Result};
use crate::quota::model::Usage;
use crate::users::model::Tier;

/// Stripe events can be larger than the API's usual body limit (invoices with many lines).
const WEBHOOK_BODY_LIMIT: usize = 1024 * 1024;

pub fn router() -> OpenApiRouter<AppState> {
    let webhook = OpenApiRouter::new()
        .routes(routes!(stripe_webhook))
        .layer(DefaultBodyLimit::max(WEBHOOK_BODY_LIMIT));
    OpenApiRouter::new()
        .routes(routes!(subscription_status))
        .merge(webhook)
}

#[derive(Debug, Serialize, ToSchema)]
pub struct SubscriptionStatusResponse {
    pub tier: Tier,
    /// The Stripe subscription status (`active`, `past_due`, `canceled`, …), or `null`.
    pub status: Option<String>,
    pub current_period_end: Option<DateTime<Utc>>,
    pub cancel_at_period_end: bool,
    pub usage: Usage,
}

impl From<service::Status> for SubscriptionStatusResponse {
    fn from(status: service::Status) -> Self {
        let subscription = status.subscription.as_ref();
        Self {
            tier: status.tier,
            status: subscription.map(|s| s.status.as_str().to_owned()),
            current_period_end: subscription.and_then(|s| s.current_period_end),
            cancel_at_period_end: subscription.is_some_and(|s| s.cancel_at_period_end),
            usage: status.usage,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct WebhookReceived {
    pub received: bool,
}

/// The caller's plan and subscription.
#[utoipa::path(get, path = "/subscription/status", tag = "billing", security(("bearer" = [])),
    responses(
        (status = 200, body = SubscriptionStatusResponse),
        (status = 401, description = "`unauthorized`", body = Problem, content_type = "application/problem+json"),
    ))]
async fn subscription_status(
    State(state): State<AppState>,
    AuthUser(who): AuthUser,
) -> Result<AppJson<SubscriptionStatusResponse>> {
    Ok(AppJson(service::status(&state, who.user_id).await?.into()))
}

/// Stripe's webhook: the raw event, verified against `Stripe-Signature`, applied at most once.
#[utoipa::path(post, path = "/webhook/stripe", tag = "billing",
    params(("Stripe-Signature" = String, Header, description = "t=…,v1=…")),
    request_body(content = String, content_type = "application/json", description = "A Stripe event, exactly as Stripe sent it"),
    responses(
        (status = 200, body = WebhookReceived),
        (status = 400, description = "`invalid_signature`, or `malformed_request`", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "`payload_too_large`", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "`billing_not_configured`", body = Problem, content_type = "application/problem+json"),
    ))]
async fn stripe_webhook(
    State(state): State<AppState>,
    headers: HeaderMap,
    AppBytes(body): AppBytes,
) -> Result<AppJson<WebhookReceived>> {
    let signature = headers
        .get("stripe-signature")
        .and_then(|value| value.to_str().ok());
    service::receive_webhook(&state, signature, &body).await?;
    Ok(AppJson(WebhookReceived { received: true }))
}
