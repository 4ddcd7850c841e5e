//! HTTP handlers of `/user/*`, and the `User` shape shared with the auth responses.

use axum::extract::State;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use super::model::{Tier, User};
use super::service;
use crate::error::Result;
use crate::http::caller::AuthUser;
use crate::http::extract::AppJson;
use crate::http::problem::Problem;
use crate::http::state::AppState;
use crate::quota::model::Usage;

pub(crate) fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(get_me, update_me))
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
) -> Result<AppJson<MeResponse>> {
    let (user, usage) = service::me(&state, who.user_id).await?;
    Ok(AppJson(MeResponse {
        user: user.into(),
        usage,
    }))
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
