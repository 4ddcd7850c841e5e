//! HTTP handlers of `/admin/*`: every one takes [`Admin`], so a caller without the role gets
//! 403 (401 without a valid token) whatever the client does.

use axum::extract::State;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use super::model::{AdminUser, AuditEntry, Stats, UserChange};
use super::service;
use crate::error::{AppError, Result};
use crate::http::caller::Admin;
use crate::http::extract::{AppJson, AppPath, AppQuery};
use crate::http::problem::Problem;
use crate::http::state::AppState;
use crate::messages::model::MessageView;
use crate::quota::model::Usage;
use crate::users::model::UserId;
use crate::users::routes::UserResponse;

pub(crate) fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_users))
        .routes(routes!(update_user))
        .routes(routes!(get_stats))
        .routes(routes!(list_replies))
        .routes(routes!(list_audit))
}

/// A user as an admin sees them.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = AdminUser)]
pub(crate) struct AdminUserView {
    #[serde(flatten)]
    user: UserResponse,
    disabled: bool,
    /// A complimentary Pro plan, whatever Stripe says.
    pro_override: bool,
    usage: Usage,
    /// The last use of any of the user's sessions (to within a minute); null if never.
    last_seen_at: Option<DateTime<Utc>>,
}

impl AdminUserView {
    fn new(state: &AppState, user: AdminUser) -> Self {
        let usage = Usage::new(
            user.used_today,
            state.quota.limit_for(user.user.tier),
            state.clock.now(),
        );
        Self {
            disabled: user.user.disabled,
            pro_override: user.pro_override,
            last_seen_at: user.last_seen_at,
            usage,
            user: user.user.into(),
        }
    }
}

/// A cursor: the id of the last row of the previous page (our ids are UUIDv7).
fn cursor(before: Option<&str>) -> Result<Option<Uuid>> {
    before
        .map(|text| match Uuid::parse_str(text) {
            Ok(id) if id.get_version_num() == 7 => Ok(id),
            _ => Err(AppError::invalid(
                "before",
                "must be the `next_before` of the previous page",
            )),
        })
        .transpose()
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub(crate) struct UsersQuery {
    /// Part of a mobile number or a name (case-insensitive).
    #[param(max_length = 100)]
    q: Option<String>,
    /// 1 to 100 (default 50).
    #[param(minimum = 1, maximum = 100)]
    limit: Option<u32>,
    /// The `next_before` of the previous page.
    before: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct UsersPage {
    users: Vec<AdminUserView>,
    /// The cursor of the next page; null on the last.
    next_before: Option<Uuid>,
}

/// Users, newest first, optionally those whose number or name contains `q`.
#[utoipa::path(get, path = "/admin/users", tag = "admin", security(("admin" = [])),
    params(UsersQuery),
    responses(
        (status = 200, body = UsersPage),
        (status = 403, description = "`forbidden`: the caller is not an admin", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "`validation_failed`: `limit` outside 1 to 100, a `before` that is not a cursor, or an unknown parameter", body = Problem, content_type = "application/problem+json"),
    ))]
async fn list_users(
    State(state): State<AppState>,
    Admin(_): Admin,
    AppQuery(query): AppQuery<UsersQuery>,
) -> Result<AppJson<UsersPage>> {
    let limit = service::limit(query.limit)?;
    let before = cursor(query.before.as_deref())?.map(UserId);
    let (users, next) = service::users(&state, query.q, before, limit).await?;
    Ok(AppJson(UsersPage {
        users: users
            .into_iter()
            .map(|u| AdminUserView::new(&state, u))
            .collect(),
        next_before: next.map(|id| id.0),
    }))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct UpdateUserRequest {
    /// `true` revokes every token of the account at once and refuses its sign-ins.
    disabled: Option<bool>,
    /// `true` makes the account Pro whatever Stripe says.
    pro_override: Option<bool>,
}

/// Disables or enables a user, or gives or ends a complimentary Pro plan; each change is
/// written to the audit log in the same transaction.
#[utoipa::path(patch, path = "/admin/users/{id}", tag = "admin", security(("admin" = [])),
    params(("id" = Uuid, Path, description = "The user")),
    request_body = UpdateUserRequest,
    responses(
        (status = 200, body = AdminUserView),
        (status = 403, description = "`forbidden`: the caller is not an admin", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "`not_found`: no such user", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "`validation_failed`: neither setting given, an unknown field, or an admin disabling their own account", body = Problem, content_type = "application/problem+json"),
    ))]
async fn update_user(
    State(state): State<AppState>,
    Admin(admin): Admin,
    AppPath(id): AppPath<Uuid>,
    AppJson(body): AppJson<UpdateUserRequest>,
) -> Result<AppJson<AdminUserView>> {
    let change = UserChange {
        disabled: body.disabled,
        pro_override: body.pro_override,
    };
    let user = service::change_user(&state, admin.user_id, UserId(id), change).await?;
    Ok(AppJson(AdminUserView::new(&state, user)))
}

/// The service at a glance: users, today's prompts and tokens, replies in flight and failed,
/// the job queue.
#[utoipa::path(get, path = "/admin/stats", tag = "admin", security(("admin" = [])),
    responses(
        (status = 200, body = Stats),
        (status = 403, description = "`forbidden`: the caller is not an admin", body = Problem, content_type = "application/problem+json"),
    ))]
async fn get_stats(State(state): State<AppState>, Admin(_): Admin) -> Result<AppJson<Stats>> {
    Ok(AppJson(service::stats(&state).await?))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub(crate) struct RepliesQuery {
    /// Only `failed` is listed.
    #[param(example = "failed")]
    status: Option<String>,
    /// 1 to 100 (default 50).
    #[param(minimum = 1, maximum = 100)]
    limit: Option<u32>,
}

/// A reply with its owner.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct AdminReply {
    #[serde(flatten)]
    message: MessageView,
    user_id: Uuid,
}

#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct RepliesPage {
    replies: Vec<AdminReply>,
}

/// Failed replies, newest first, with their error codes and owners.
#[utoipa::path(get, path = "/admin/replies", tag = "admin", security(("admin" = [])),
    params(RepliesQuery),
    responses(
        (status = 200, body = RepliesPage),
        (status = 403, description = "`forbidden`: the caller is not an admin", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "`validation_failed`: a `status` other than `failed`, `limit` outside 1 to 100, or an unknown parameter", body = Problem, content_type = "application/problem+json"),
    ))]
async fn list_replies(
    State(state): State<AppState>,
    Admin(_): Admin,
    AppQuery(query): AppQuery<RepliesQuery>,
) -> Result<AppJson<RepliesPage>> {
    if query.status.as_deref().is_some_and(|s| s != "failed") {
        return Err(AppError::invalid("status", "must be `failed`"));
    }
    let limit = service::limit(query.limit)?;
    let replies = service::failed_replies(&state, limit).await?;
    Ok(AppJson(RepliesPage {
        replies: replies
            .iter()
            .map(|m| AdminReply {
                message: m.into(),
                user_id: m.user_id.0,
            })
            .collect(),
    }))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub(crate) struct AuditQuery {
    /// 1 to 100 (default 50).
    #[param(minimum = 1, maximum = 100)]
    limit: Option<u32>,
    /// The `next_before` of the previous page.
    before: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct AuditPage {
    entries: Vec<AuditEntry>,
    /// The cursor of the next page; null on the last.
    next_before: Option<Uuid>,
}

/// The audit log, newest first: every admin change, with who made it and when.
#[utoipa::path(get, path = "/admin/audit", tag = "admin", security(("admin" = [])),
    params(AuditQuery),
    responses(
        (status = 200, body = AuditPage),
        (status = 403, description = "`forbidden`: the caller is not an admin", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "`validation_failed`: `limit` outside 1 to 100, a `before` that is not a cursor, or an unknown parameter", body = Problem, content_type = "application/problem+json"),
    ))]
async fn list_audit(
    State(state): State<AppState>,
    Admin(_): Admin,
    AppQuery(query): AppQuery<AuditQuery>,
) -> Result<AppJson<AuditPage>> {
    let limit = service::limit(query.limit)?;
    let before = cursor(query.before.as_deref())?;
    let (entries, next_before) = service::audit(&state, before, limit).await?;
    Ok(AppJson(AuditPage {
        entries,
        next_before,
    }))
}
