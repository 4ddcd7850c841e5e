//! HTTP handlers of `/auth/*`: extract, call the service, shape the response.

use axum::extract::State;
use axum::http::StatusCode;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use super::model::{Session, SessionId, SessionMethod};
use super::otp::OtpPurpose;
use super::service::{self, OtpIssued, SessionIssued, SignupInput};
use crate::config::OtpDelivery;
use crate::error::Result;
use crate::http::caller::{AuthUser, Client, PerIpLimit};
use crate::http::extract::{AppJson, AppPath};
use crate::http::problem::Problem;
use crate::http::state::AppState;
use crate::users::routes::UserResponse;

pub(crate) fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(signup))
        .routes(routes!(send_otp))
        .routes(routes!(verify_otp))
        .routes(routes!(login))
        .routes(routes!(forgot_password))
        .routes(routes!(reset_password))
        .routes(routes!(change_password))
        .routes(routes!(logout))
        .routes(routes!(list_sessions))
        .routes(routes!(revoke_session))
}

#[derive(Debug, Deserialize, ToSchema)]
pub(crate) struct SignupRequest {
    /// E.164, or national format read in `DEFAULT_REGION`.
    #[schema(example = "+919876543210", min_length = 1, max_length = 32)]
    pub(crate) mobile_number: String,
    /// 1 to 100 characters after trimming.
    #[schema(min_length = 1, max_length = 100)]
    pub(crate) name: Option<String>,
    /// 8 to 128 characters; optional (OTP-only accounts).
    #[schema(min_length = 8, max_length = 128)]
    pub(crate) password: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct SignupResponse {
    pub(crate) user: UserResponse,
}

#[derive(Debug, Deserialize, ToSchema)]
pub(crate) struct SendOtpRequest {
    #[schema(example = "+919876543210", min_length = 1, max_length = 32)]
    pub(crate) mobile_number: String,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub(crate) enum Delivery {
    /// Mocked SMS: the code is in this response.
    Response,
    /// Mocked SMS: the code went to the server's log.
    Log,
    /// A real text message was accepted by the SMS gateway.
    Sms,
}

#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct OtpIssuedResponse {
    /// The code itself, only with `OTP_DELIVERY=response` (SMS is mocked).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(example = "483920")]
    pub(crate) otp: Option<String>,
    /// Seconds the code stays valid.
    #[schema(example = 300)]
    pub(crate) expires_in: i64,
    pub(crate) delivery: Delivery,
}

impl From<OtpIssued> for OtpIssuedResponse {
    fn from(issued: OtpIssued) -> Self {
        Self {
            otp: issued.code,
            expires_in: issued.expires_in,
            delivery: match issued.delivery {
                OtpDelivery::Response => Delivery::Response,
                OtpDelivery::Log => Delivery::Log,
                OtpDelivery::Twilio => Delivery::Sms,
            },
        }
    }
}

#[derive(Debug, Deserialize, ToSchema)]
pub(crate) struct VerifyOtpRequest {
    #[schema(example = "+919876543210", min_length = 1, max_length = 32)]
    pub(crate) mobile_number: String,
    #[schema(example = "483920", pattern = "^[0-9]{6}$")]
    pub(crate) otp: String,
}

#[derive(Debug, Deserialize, ToSchema)]
pub(crate) struct LoginRequest {
    #[schema(example = "+919876543210", min_length = 1, max_length = 32)]
    pub(crate) mobile_number: String,
    pub(crate) password: String,
}

#[derive(Debug, Deserialize, ToSchema)]
pub(crate) struct ResetPasswordRequest {
    #[schema(example = "+919876543210", min_length = 1, max_length = 32)]
    pub(crate) mobile_number: String,
    /// A code from `/auth/forgot-password` (login codes are not accepted).
    #[schema(pattern = "^[0-9]{6}$")]
    pub(crate) otp: String,
    #[schema(min_length = 8, max_length = 128)]
    pub(crate) new_password: String,
}

#[derive(Debug, Deserialize, ToSchema)]
pub(crate) struct ChangePasswordRequest {
    /// Required when the account has a password.
    pub(crate) current_password: Option<String>,
    #[schema(min_length = 8, max_length = 128)]
    pub(crate) new_password: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub(crate) enum TokenType {
    Bearer,
}

#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct SessionResponse {
    pub(crate) token: String,
    pub(crate) token_type: TokenType,
    /// Seconds until the token expires.
    #[schema(example = 86400)]
    pub(crate) expires_in: i64,
    pub(crate) user: UserResponse,
}

impl From<SessionIssued> for SessionResponse {
    fn from(issued: SessionIssued) -> Self {
        Self {
            token: issued.token,
            token_type: TokenType::Bearer,
            expires_in: issued.expires_in,
            user: issued.user.into(),
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct SessionInfo {
    pub(crate) id: Uuid,
    pub(crate) created_at: DateTime<Utc>,
    pub(crate) expires_at: DateTime<Utc>,
    /// Kept to within a minute.
    pub(crate) last_used_at: DateTime<Utc>,
    pub(crate) ip: Option<String>,
    pub(crate) user_agent: Option<String>,
    pub(crate) method: SessionMethod,
    /// Whether this is the session of the token making the request.
    pub(crate) current: bool,
}

impl SessionInfo {
    pub(crate) fn new(session: Session, current: SessionId) -> Self {
        Self {
            id: session.id.0,
            created_at: session.created_at,
            expires_at: session.expires_at,
            last_used_at: session.last_used_at,
            ip: session.client.ip,
            user_agent: session.client.user_agent,
            method: session.method,
            current: session.id == current,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct SessionsResponse {
    pub(crate) sessions: Vec<SessionInfo>,
}

/// Creates an account. It does not sign in: ask for a code next.
#[utoipa::path(post, path = "/auth/signup", tag = "auth", request_body = SignupRequest,
    responses(
        (status = 201, body = SignupResponse),
        (status = 409, description = "`mobile_number_taken`", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "`validation_failed`, `invalid_mobile_number`, or `region_not_allowed` (`OTP_ALLOWED_REGIONS`)", body = Problem, content_type = "application/problem+json"),
    ))]
async fn signup(
    _: PerIpLimit,
    State(state): State<AppState>,
    AppJson(body): AppJson<SignupRequest>,
) -> Result<(StatusCode, AppJson<SignupResponse>)> {
    let user = service::signup(
        &state,
        SignupInput {
            mobile_number: body.mobile_number,
            name: body.name,
            password: body.password,
        },
    )
    .await?;
    Ok((
        StatusCode::CREATED,
        AppJson(SignupResponse { user: user.into() }),
    ))
}

/// Sends a sign-in code: by SMS with `OTP_DELIVERY=twilio`; mocked otherwise (returned in the
/// body with `OTP_DELIVERY=response`).
#[utoipa::path(post, path = "/auth/send-otp", tag = "auth", request_body = SendOtpRequest,
    responses(
        (status = 200, body = OtpIssuedResponse),
        (status = 404, description = "`user_not_found`", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "`invalid_mobile_number` (also when the SMS gateway says the number cannot receive texts) or `region_not_allowed` (`OTP_ALLOWED_REGIONS`)", body = Problem, content_type = "application/problem+json"),
        (status = 429, description = "`otp_cooldown` (30 s), `otp_rate_limited` (10 an hour) or `otp_region_limit` (`OTP_REGION_DAILY_LIMIT`), with `Retry-After`", body = Problem, content_type = "application/problem+json"),
        (status = 502, description = "`sms_unavailable`: the SMS could not be sent; no code is usable and no cooldown is spent", body = Problem, content_type = "application/problem+json"),
    ))]
async fn send_otp(
    _: PerIpLimit,
    State(state): State<AppState>,
    AppJson(body): AppJson<SendOtpRequest>,
) -> Result<AppJson<OtpIssuedResponse>> {
    let issued = service::send_otp(&state, &body.mobile_number, OtpPurpose::Login).await?;
    Ok(AppJson(issued.into()))
}

/// Exchanges a sign-in code for a token.
#[utoipa::path(post, path = "/auth/verify-otp", tag = "auth", request_body = VerifyOtpRequest,
    responses(
        (status = 200, body = SessionResponse),
        (status = 401, description = "`invalid_otp`: wrong, expired or used code", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "`validation_failed` or `invalid_mobile_number`", body = Problem, content_type = "application/problem+json"),
        (status = 429, description = "`otp_attempts_exceeded`: the fifth wrong code kills it", body = Problem, content_type = "application/problem+json"),
    ))]
async fn verify_otp(
    _: PerIpLimit,
    State(state): State<AppState>,
    Client(client): Client,
    AppJson(body): AppJson<VerifyOtpRequest>,
) -> Result<AppJson<SessionResponse>> {
    let issued = service::verify_otp(&state, &body.mobile_number, &body.otp, client).await?;
    Ok(AppJson(issued.into()))
}

/// Signs in with a password.
#[utoipa::path(post, path = "/auth/login", tag = "auth", request_body = LoginRequest,
    responses(
        (status = 200, body = SessionResponse),
        (status = 401, description = "`invalid_credentials`", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "`validation_failed` or `invalid_mobile_number`", body = Problem, content_type = "application/problem+json"),
    ))]
async fn login(
    _: PerIpLimit,
    State(state): State<AppState>,
    Client(client): Client,
    AppJson(body): AppJson<LoginRequest>,
) -> Result<AppJson<SessionResponse>> {
    let issued = service::login(&state, &body.mobile_number, body.password, client).await?;
    Ok(AppJson(issued.into()))
}

/// Sends a password-reset code (usable only with `/auth/reset-password`).
#[utoipa::path(post, path = "/auth/forgot-password", tag = "auth", request_body = SendOtpRequest,
    responses(
        (status = 200, body = OtpIssuedResponse),
        (status = 404, description = "`user_not_found`", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "`invalid_mobile_number` (also when the SMS gateway says the number cannot receive texts) or `region_not_allowed` (`OTP_ALLOWED_REGIONS`)", body = Problem, content_type = "application/problem+json"),
        (status = 429, description = "`otp_cooldown` (30 s), `otp_rate_limited` (10 an hour) or `otp_region_limit` (`OTP_REGION_DAILY_LIMIT`), with `Retry-After`", body = Problem, content_type = "application/problem+json"),
        (status = 502, description = "`sms_unavailable`: the SMS could not be sent; no code is usable and no cooldown is spent", body = Problem, content_type = "application/problem+json"),
    ))]
async fn forgot_password(
    _: PerIpLimit,
    State(state): State<AppState>,
    AppJson(body): AppJson<SendOtpRequest>,
) -> Result<AppJson<OtpIssuedResponse>> {
    let issued = service::send_otp(&state, &body.mobile_number, OtpPurpose::Reset).await?;
    Ok(AppJson(issued.into()))
}

/// Sets a new password with a reset code; revokes every earlier token.
#[utoipa::path(post, path = "/auth/reset-password", tag = "auth", request_body = ResetPasswordRequest,
    responses(
        (status = 200, body = SessionResponse),
        (status = 401, description = "`invalid_otp`", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "`validation_failed` or `invalid_mobile_number`", body = Problem, content_type = "application/problem+json"),
        (status = 429, description = "`otp_attempts_exceeded`", body = Problem, content_type = "application/problem+json"),
    ))]
async fn reset_password(
    _: PerIpLimit,
    State(state): State<AppState>,
    Client(client): Client,
    AppJson(body): AppJson<ResetPasswordRequest>,
) -> Result<AppJson<SessionResponse>> {
    let issued = service::reset_password(
        &state,
        &body.mobile_number,
        &body.otp,
        body.new_password,
        client,
    )
    .await?;
    Ok(AppJson(issued.into()))
}

/// Changes the password; revokes every earlier token, this one included.
#[utoipa::path(post, path = "/auth/change-password", tag = "auth", request_body = ChangePasswordRequest,
    security(("bearer" = [])),
    responses(
        (status = 200, body = SessionResponse),
        (status = 401, description = "`invalid_credentials`: a wrong current password", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "`validation_failed`", body = Problem, content_type = "application/problem+json"),
    ))]
async fn change_password(
    State(state): State<AppState>,
    AuthUser(who): AuthUser,
    Client(client): Client,
    AppJson(body): AppJson<ChangePasswordRequest>,
) -> Result<AppJson<SessionResponse>> {
    let issued = service::change_password(
        &state,
        who,
        body.current_password,
        body.new_password,
        client,
    )
    .await?;
    Ok(AppJson(issued.into()))
}

/// Revokes the token this request carries.
#[utoipa::path(post, path = "/auth/logout", tag = "auth", security(("bearer" = [])),
    responses(
        (status = 204, description = "Signed out"),
    ))]
async fn logout(State(state): State<AppState>, AuthUser(who): AuthUser) -> Result<StatusCode> {
    service::logout(&state, who).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Live sessions (unexpired, unrevoked), newest first: also the sign-in history.
#[utoipa::path(get, path = "/auth/sessions", tag = "auth", security(("bearer" = [])),
    responses(
        (status = 200, body = SessionsResponse),
    ))]
async fn list_sessions(
    State(state): State<AppState>,
    AuthUser(who): AuthUser,
) -> Result<AppJson<SessionsResponse>> {
    let sessions = service::list_sessions(&state, who).await?;
    Ok(AppJson(SessionsResponse {
        sessions: sessions
            .into_iter()
            .map(|s| SessionInfo::new(s, who.session_id))
            .collect(),
    }))
}

/// Revokes one of the caller's sessions (the current one included).
#[utoipa::path(delete, path = "/auth/sessions/{id}", tag = "auth", security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "Session id")),
    responses(
        (status = 204, description = "Revoked"),
        (status = 404, description = "`not_found`: no such live session of the caller", body = Problem, content_type = "application/problem+json"),
    ))]
async fn revoke_session(
    State(state): State<AppState>,
    AuthUser(who): AuthUser,
    AppPath(id): AppPath<Uuid>,
) -> Result<StatusCode> {
    service::revoke_session(&state, who, SessionId(id)).await?;
    Ok(StatusCode::NO_CONTENT)
}
