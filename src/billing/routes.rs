//! HTTP handlers of billing: the Stripe webhook and the subscription's status.

use axum::extract::{DefaultBodyLimit, State};
use axum::http::HeaderMap;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::service;
use crate::error::Result;
use crate::http::caller::AuthUser;
use crate::http::extract::{AppBytes, AppJson, OptionalJson};
use crate::http::problem::Problem;
use crate::http::state::AppState;
use crate::quota::model::Usage;
use crate::users::model::Tier;

/// Stripe events can be larger than the API's usual body limit (invoices with many lines).
const WEBHOOK_BODY_LIMIT: usize = 1024 * 1024;

pub(crate) fn router() -> OpenApiRouter<AppState> {
    let webhook = OpenApiRouter::new()
        .routes(routes!(stripe_webhook))
        .layer(DefaultBodyLimit::max(WEBHOOK_BODY_LIMIT));
    OpenApiRouter::new()
        .routes(routes!(subscribe_pro))
        .routes(routes!(subscription_status))
        .routes(routes!(list_plans))
        .routes(routes!(cancel_subscription))
        .routes(routes!(reactivate_subscription))
        .routes(routes!(billing_portal))
        .merge(webhook)
}

#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct SubscriptionStatusResponse {
    pub(crate) tier: Tier,
    /// The Stripe subscription status (`active`, `past_due`, `canceled`, …), or `null`.
    pub(crate) status: Option<String>,
    pub(crate) current_period_end: Option<DateTime<Utc>>,
    pub(crate) cancel_at_period_end: bool,
    pub(crate) usage: Usage,
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

#[derive(Debug, Default, Deserialize, ToSchema)]
pub(crate) struct SubscribeRequest {
    /// Where Stripe sends the user after paying (absolute http(s) URL); default
    /// `PUBLIC_URL/?checkout=success&session_id={CHECKOUT_SESSION_ID}`.
    pub(crate) success_url: Option<String>,
    /// Where Stripe sends the user on cancel; default `PUBLIC_URL/?checkout=cancel`.
    pub(crate) cancel_url: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct CheckoutResponse {
    /// Send the user here to pay.
    pub(crate) checkout_url: String,
    pub(crate) session_id: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct PriceView {
    /// In the currency's smallest unit.
    #[schema(example = 999)]
    pub(crate) amount: i64,
    #[schema(example = "usd")]
    pub(crate) currency: String,
    #[schema(example = "month")]
    pub(crate) interval: String,
}

#[derive(Debug, Serialize, ToSchema)]
#[schema(as = Plan)]
pub(crate) struct PlanView {
    pub(crate) id: Tier,
    pub(crate) name: String,
    /// Prompts per UTC day; `null` is unlimited.
    pub(crate) daily_limit: Option<u32>,
    /// `null` for the free plan, and for Pro when billing is off.
    pub(crate) price: Option<PriceView>,
}

#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct PlansResponse {
    pub(crate) plans: Vec<PlanView>,
}

#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct PortalResponse {
    /// The Stripe Billing Portal session.
    pub(crate) url: String,
}

/// Starts a Stripe Checkout for Pro; send the user to `checkout_url`. The Pro tier starts when
/// Stripe confirms the payment (webhook).
#[utoipa::path(post, path = "/subscribe/pro", tag = "billing", security(("bearer" = [])),
    request_body(content = SubscribeRequest, description = "Optional; an empty body is fine"),
    responses(
        (status = 200, body = CheckoutResponse),
        (status = 409, description = "`already_subscribed`", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "`validation_failed`: a return URL is not an absolute http(s) URL", body = Problem, content_type = "application/problem+json"),
        (status = 502, description = "`billing_unavailable`: Stripe failed or could not be reached", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "`billing_not_configured`", body = Problem, content_type = "application/problem+json"),
    ))]
async fn subscribe_pro(
    State(state): State<AppState>,
    AuthUser(who): AuthUser,
    OptionalJson(request): OptionalJson<SubscribeRequest>,
) -> Result<AppJson<CheckoutResponse>> {
    // The body is optional: none means the defaults.
    let request = request.unwrap_or_default();
    let session =
        service::subscribe_pro(&state, who.user_id, request.success_url, request.cancel_url)
            .await?;
    Ok(AppJson(CheckoutResponse {
        checkout_url: session.url,
        session_id: session.id,
    }))
}

/// The plans: Basic and Pro, with Pro's price as Stripe has it.
#[utoipa::path(get, path = "/subscription/plans", tag = "billing",
    responses((status = 200, body = PlansResponse)))]
async fn list_plans(State(state): State<AppState>) -> AppJson<PlansResponse> {
    let price = service::pro_price(&state).await.map(|p| PriceView {
        amount: p.amount,
        currency: p.currency,
        interval: p.interval,
    });
    AppJson(PlansResponse {
        plans: vec![
            PlanView {
                id: Tier::Basic,
                name: "Basic".into(),
                daily_limit: state.quota.basic,
                price: None,
            },
            PlanView {
                id: Tier::Pro,
                name: "Pro".into(),
                daily_limit: state.quota.pro,
                price,
            },
        ],
    })
}

/// Cancels at the end of the current period (Pro until then).
#[utoipa::path(post, path = "/subscription/cancel", tag = "billing", security(("bearer" = [])),
    responses(
        (status = 200, body = SubscriptionStatusResponse),
        (status = 409, description = "`no_subscription`", body = Problem, content_type = "application/problem+json"),
        (status = 502, description = "`billing_unavailable`", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "`billing_not_configured`", body = Problem, content_type = "application/problem+json"),
    ))]
async fn cancel_subscription(
    State(state): State<AppState>,
    AuthUser(who): AuthUser,
) -> Result<AppJson<SubscriptionStatusResponse>> {
    Ok(AppJson(service::cancel(&state, who.user_id).await?.into()))
}

/// Undoes a scheduled cancellation.
#[utoipa::path(post, path = "/subscription/reactivate", tag = "billing", security(("bearer" = [])),
    responses(
        (status = 200, body = SubscriptionStatusResponse),
        (status = 409, description = "`not_cancelling` or `no_subscription`", body = Problem, content_type = "application/problem+json"),
        (status = 502, description = "`billing_unavailable`", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "`billing_not_configured`", body = Problem, content_type = "application/problem+json"),
    ))]
async fn reactivate_subscription(
    State(state): State<AppState>,
    AuthUser(who): AuthUser,
) -> Result<AppJson<SubscriptionStatusResponse>> {
    Ok(AppJson(
        service::reactivate(&state, who.user_id).await?.into(),
    ))
}

/// A Stripe Billing Portal link (payment methods, invoices, cancellation).
#[utoipa::path(post, path = "/subscription/portal", tag = "billing", security(("bearer" = [])),
    responses(
        (status = 200, body = PortalResponse),
        (status = 409, description = "`no_subscription`: no billing account yet", body = Problem, content_type = "application/problem+json"),
        (status = 502, description = "`billing_unavailable`", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "`billing_not_configured`", body = Problem, content_type = "application/problem+json"),
    ))]
async fn billing_portal(
    State(state): State<AppState>,
    AuthUser(who): AuthUser,
) -> Result<AppJson<PortalResponse>> {
    Ok(AppJson(PortalResponse {
        url: service::portal(&state, who.user_id).await?,
    }))
}

#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct WebhookReceived {
    pub(crate) received: bool,
}

/// The caller's plan and subscription.
#[utoipa::path(get, path = "/subscription/status", tag = "billing", security(("bearer" = [])),
    responses(
        (status = 200, body = SubscriptionStatusResponse),
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
        (status = 400, description = "`invalid_signature`", body = Problem, content_type = "application/problem+json"),
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
