//! HTTP handlers of `/user/*`, and the `User` shape shared with the auth responses.

use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use super::model::{Tier, User};
use super::service;
use crate::cache::{self, Known, View};
use crate::error::Result;
use crate::http::caller::AuthUser;
use crate::http::extract::{AppJson, AppQuery};
use crate::http::problem::Problem;
use crate::http::state::AppState;
use crate::quota::model::{Usage, UsageDay};

pub(crate) fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(get_me, update_me, delete_me))
        .routes(routes!(get_usage))
        .routes(routes!(export_me))
}

/// A user as clients see it.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[schema(as = User)]
pub(crate) struct UserResponse {
    pub(crate) id: Uuid,
    #[schema(example = "+919876543210")]
    pub(crate) mobile_number: String,
    pub(crate) name: Option<String>,
    pub(crate) tier: Tier,
    pub(crate) has_password: bool,
    pub(crate) created_at: DateTime<Utc>,
}

impl From<User> for UserResponse {
    fn from(user: User) -> Self {
        Self {
            id: user.id.0,
            has_password: user.has_password(),
            mobile_number: user.mobile_number.as_str().to_owned(),
            name: user.name,
            tier: user.tier,
            created_at: user.created_at,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct MeResponse {
    #[serde(flatten)]
    pub(crate) user: UserResponse,
    pub(crate) usage: Usage,
    /// Whether the caller holds the admin role (`/admin/*`); only here, on the caller's own
    /// account.
    pub(crate) is_admin: bool,
}

#[derive(Debug, Deserialize, ToSchema)]
pub(crate) struct UpdateMeRequest {
    /// 1 to 100 characters after trimming.
    #[schema(min_length = 1, max_length = 100)]
    pub(crate) name: String,
}

/// The caller's account and today's prompt usage.
#[utoipa::path(get, path = "/user/me", tag = "user", security(("bearer" = [])),
    responses(
        (status = 200, body = MeResponse),
    ))]
async fn get_me(
    State(state): State<AppState>,
    AuthUser(who): AuthUser,
    known: Option<axum::Extension<Known>>,
) -> Result<Response> {
    let current = known.map(|axum::Extension(Known(version))| version);
    let body = cache::cached(&state, who.user_id, View::Me, current, async || {
        let me = service::me(&state, who.user_id).await?;
        let response = MeResponse {
            is_admin: me.user.is_admin,
            user: me.user.into(),
            usage: me.usage,
        };
        Ok((response, Some(me.changes_at)))
    })
    .await?;
    Ok(([(header::CONTENT_TYPE, "application/json")], body).into_response())
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub(crate) struct UsageQuery {
    /// How many days back, today included: 1 to 90 (default 30).
    #[param(minimum = 1, maximum = 90)]
    pub(crate) days: Option<u32>,
}

#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct UsageHistory {
    /// Newest first; days without use are zeros.
    pub(crate) days: Vec<UsageDay>,
}

/// The caller's use per UTC day: prompts taken and the tokens of their replies (input,
/// output, thinking), for charts and budgets.
#[utoipa::path(get, path = "/user/me/usage", tag = "user", security(("bearer" = [])),
    params(UsageQuery),
    responses(
        (status = 200, body = UsageHistory),
        (status = 422, description = "`validation_failed`: `days` outside 1 to 90, or an unknown parameter", body = Problem, content_type = "application/problem+json"),
    ))]
async fn get_usage(
    State(state): State<AppState>,
    AuthUser(who): AuthUser,
    AppQuery(query): AppQuery<UsageQuery>,
) -> Result<AppJson<UsageHistory>> {
    let days = service::history(&state, who.user_id, query.days.unwrap_or(30)).await?;
    Ok(AppJson(UsageHistory { days }))
}

/// Renames the caller.
#[utoipa::path(patch, path = "/user/me", tag = "user", security(("bearer" = [])),
    request_body = UpdateMeRequest,
    responses(
        (status = 200, body = UserResponse),
        (status = 422, description = "`validation_failed`", body = Problem, content_type = "application/problem+json"),
    ))]
async fn update_me(
    State(state): State<AppState>,
    AuthUser(who): AuthUser,
    AppJson(body): AppJson<UpdateMeRequest>,
) -> Result<AppJson<UserResponse>> {
    let user = service::rename(&state, who.user_id, &body.name).await?;
    Ok(AppJson(user.into()))
}

/// Erases the caller's account: chatrooms, messages, attachments and their files, sessions,
/// codes and usage. A Stripe subscription is cancelled at once first. Needs a token issued in
/// the last 10 minutes. The mobile number can sign up again afterwards.
#[utoipa::path(delete, path = "/user/me", tag = "user", security(("bearer" = [])),
    responses(
        (status = 204, description = "The account is gone; every token of it stops working"),
        (status = 401, description = "`unauthorized` (also when the account is already deleted)", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "`reauthentication_required`: the token is older than 10 minutes; sign in again", body = Problem, content_type = "application/problem+json"),
        (status = 502, description = "`billing_unavailable`: Stripe failed; nothing was deleted", body = Problem, content_type = "application/problem+json"),
    ))]
async fn delete_me(State(state): State<AppState>, AuthUser(who): AuthUser) -> Result<StatusCode> {
    service::delete_account(&state, who).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Everything the account holds as one JSON document, to keep or take elsewhere: the user,
/// the subscription, the sessions and every chatroom with every message of every branch
/// (files listed with a `download_path`). Streamed: any history size, flat memory.
#[utoipa::path(get, path = "/user/me/export", tag = "user", security(("bearer" = [])),
    responses(
        (status = 200, description = "`{\"user\", \"subscription\", \"sessions\", \"chatrooms\": [Chatroom plus \"messages\": [Message]], \"exported_at\"}`, as an attachment", content_type = "application/json"),
        (status = 401, description = "`unauthorized`", body = Problem, content_type = "application/problem+json"),
    ))]
async fn export_me(
    State(state): State<AppState>,
    AuthUser(who): AuthUser,
) -> Result<axum::response::Response> {
    use axum::http::{HeaderValue, header};
    use axum::response::IntoResponse;
    let export = super::export::export(state.0.clone(), who).await?;
    let disposition = format!("attachment; filename=\"{}\"", export.file_name);
    let headers = [
        (
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        ),
        (
            header::CONTENT_DISPOSITION,
            HeaderValue::from_str(&disposition)
                .unwrap_or_else(|_| HeaderValue::from_static("attachment")),
        ),
        (header::CACHE_CONTROL, HeaderValue::from_static("no-store")),
    ];
    Ok((headers, axum::body::Body::from_stream(export.body)).into_response())
}
