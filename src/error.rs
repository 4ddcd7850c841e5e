//! The one error type of the services: [`AppError`], by meaning, with the status and stable
//! `code` each meaning is answered with. `http::problem` writes it as RFC 9457 problem+json.

use axum::http::StatusCode;
use serde::Serialize;
use utoipa::ToSchema;

use crate::storage::error::StoreError;

/// Result of a service call.
pub(crate) type Result<T, E = AppError> = std::result::Result<T, E>;

/// One field that failed validation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub(crate) struct FieldError {
    /// The request field, as named in the JSON body or query.
    pub(crate) field: String,
    pub(crate) message: String,
}

impl FieldError {
    pub(crate) fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            message: message.into(),
        }
    }
}

/// Every way a request can fail, by meaning. Internal causes are logged, never sent.
#[derive(Debug, thiserror::Error)]
pub(crate) enum AppError {
    #[error("malformed request: {0}")]
    MalformedRequest(String),
    #[error("validation failed")]
    Validation(Vec<FieldError>),
    /// A mobile number that cannot exist (422 `invalid_mobile_number`).
    #[error("invalid mobile number: {0}")]
    InvalidMobileNumber(String),
    #[error("payload too large")]
    PayloadTooLarge,
    /// An upload over `UPLOAD_MAX_BYTES` (413 `payload_too_large`).
    #[error("file too large")]
    FileTooLarge(u64),
    /// An upload of a type that is not accepted (415 `unsupported_media_type`).
    #[error("unsupported media type: {0}")]
    UnsupportedMediaType(String),
    /// The request body did not arrive within `HTTP_BODY_TIMEOUT` (408; the connection closes).
    #[error("request timeout")]
    RequestTimeout,
    #[error("unauthorized")]
    Unauthorized,
    #[error("invalid credentials")]
    InvalidCredentials,
    #[error("invalid otp")]
    InvalidOtp,
    #[error("otp attempts exceeded")]
    OtpAttemptsExceeded,
    /// Too many requests; `retry_after` is in whole seconds.
    #[error("rate limited: {code}")]
    RateLimited {
        code: &'static str,
        detail: String,
        retry_after: u64,
    },
    #[error("not found")]
    NotFound,
    #[error("{code}")]
    NotFoundCode {
        code: &'static str,
        detail: &'static str,
    },
    #[error("route not found")]
    RouteNotFound,
    #[error("method not allowed")]
    MethodNotAllowed,
    #[error("conflict: {code}")]
    Conflict {
        code: &'static str,
        detail: &'static str,
    },
    #[error("service unavailable: {0}")]
    Unavailable(String),
    /// The database cannot be reached (503 `unavailable`, `Retry-After`).
    #[error("database unavailable")]
    DatabaseUnavailable,
    /// A Stripe webhook whose signature does not verify (400 `invalid_signature`).
    #[error("invalid signature")]
    InvalidSignature,
    /// Billing is off: no Stripe keys configured (503 `billing_not_configured`).
    #[error("billing not configured")]
    BillingNotConfigured,
    /// Stripe failed or could not be reached (502 `billing_unavailable`); the cause is logged.
    #[error("billing unavailable: {0}")]
    BillingUnavailable(String),
    /// The SMS gateway failed or could not be reached (502 `sms_unavailable`); the cause is
    /// logged.
    #[error("sms unavailable: {0}")]
    SmsUnavailable(String),
    /// A number of a region `OTP_ALLOWED_REGIONS` does not list (422 `region_not_allowed`).
    #[error("region not allowed")]
    RegionNotAllowed,
    /// The account was disabled by an admin (403 `account_disabled`).
    #[error("account disabled")]
    AccountDisabled,
    /// The caller may not do this (403 `forbidden`): an admin route for a non-admin.
    #[error("forbidden")]
    Forbidden,
    /// The token is too old for this (403 `reauthentication_required`): sign in again.
    #[error("reauthentication required")]
    ReauthenticationRequired,
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}

impl AppError {
    /// A single-field validation failure.
    pub(crate) fn invalid(field: &str, message: &str) -> Self {
        Self::Validation(vec![FieldError::new(field, message)])
    }

    /// The HTTP status this error is answered with.
    pub(crate) fn status(&self) -> StatusCode {
        match self {
            Self::MalformedRequest(_) => StatusCode::BAD_REQUEST,
            Self::Validation(_) | Self::InvalidMobileNumber(_) | Self::RegionNotAllowed => {
                StatusCode::UNPROCESSABLE_ENTITY
            }
            Self::PayloadTooLarge | Self::FileTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            Self::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Self::RequestTimeout => StatusCode::REQUEST_TIMEOUT,
            Self::Unauthorized | Self::InvalidCredentials | Self::InvalidOtp => {
                StatusCode::UNAUTHORIZED
            }
            Self::OtpAttemptsExceeded | Self::RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
            Self::NotFound | Self::NotFoundCode { .. } | Self::RouteNotFound => {
                StatusCode::NOT_FOUND
            }
            Self::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            Self::Conflict { .. } => StatusCode::CONFLICT,
            Self::Unavailable(_) | Self::DatabaseUnavailable | Self::BillingNotConfigured => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            Self::InvalidSignature => StatusCode::BAD_REQUEST,
            Self::ReauthenticationRequired | Self::AccountDisabled | Self::Forbidden => {
                StatusCode::FORBIDDEN
            }
            Self::BillingUnavailable(_) | Self::SmsUnavailable(_) => StatusCode::BAD_GATEWAY,
            Self::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The stable, machine-readable code clients branch on.
    pub(crate) fn code(&self) -> &'static str {
        match self {
            Self::MalformedRequest(_) => "malformed_request",
            Self::Validation(_) => "validation_failed",
            Self::InvalidMobileNumber(_) => "invalid_mobile_number",
            Self::PayloadTooLarge | Self::FileTooLarge(_) => "payload_too_large",
            Self::UnsupportedMediaType(_) => "unsupported_media_type",
            Self::RequestTimeout => "request_timeout",
            Self::Unauthorized => "unauthorized",
            Self::InvalidCredentials => "invalid_credentials",
            Self::InvalidOtp => "invalid_otp",
            Self::OtpAttemptsExceeded => "otp_attempts_exceeded",
            Self::RateLimited { code, .. } => code,
            Self::NotFound | Self::RouteNotFound => "not_found",
            Self::NotFoundCode { code, .. } => code,
            Self::MethodNotAllowed => "method_not_allowed",
            Self::Conflict { code, .. } => code,
            Self::Unavailable(_) | Self::DatabaseUnavailable => "unavailable",
            Self::InvalidSignature => "invalid_signature",
            Self::BillingNotConfigured => "billing_not_configured",
            Self::BillingUnavailable(_) => "billing_unavailable",
            Self::SmsUnavailable(_) => "sms_unavailable",
            Self::RegionNotAllowed => "region_not_allowed",
            Self::ReauthenticationRequired => "reauthentication_required",
            Self::AccountDisabled => "account_disabled",
            Self::Forbidden => "forbidden",
            Self::Internal(_) => "internal_error",
        }
    }

    /// The problem's `detail`: for people, never an internal cause.
    pub(crate) fn detail(&self) -> String {
        match self {
            Self::MalformedRequest(why) => why.clone(),
            Self::Validation(_) => "The request body or query failed validation.".into(),
            Self::InvalidMobileNumber(why) => format!("The mobile number {why}."),
            Self::PayloadTooLarge => "The request body is larger than the server accepts.".into(),
            Self::FileTooLarge(max) => {
                format!("The file is larger than the {max} bytes this server accepts.")
            }
            Self::UnsupportedMediaType(why) => why.clone(),
            Self::RequestTimeout => "The request body did not arrive in time.".into(),
            Self::Unauthorized => "A valid bearer token is required.".into(),
            Self::InvalidCredentials => "The mobile number or password is wrong.".into(),
            Self::InvalidOtp => "The code is wrong or has expired.".into(),
            Self::OtpAttemptsExceeded => {
                "Too many wrong codes; request a new one-time code.".into()
            }
            Self::RateLimited { detail, .. } => detail.clone(),
            Self::NotFound => "The resource does not exist.".into(),
            Self::NotFoundCode { detail, .. } => (*detail).into(),
            Self::RouteNotFound => "No route matches this path.".into(),
            Self::MethodNotAllowed => "This path does not accept that method.".into(),
            Self::Conflict { detail, .. } => (*detail).into(),
            Self::Unavailable(what) => format!("A dependency is unavailable: {what}."),
            Self::DatabaseUnavailable => "The database is unavailable; try again shortly.".into(),
            Self::InvalidSignature => "The Stripe-Signature header does not verify.".into(),
            Self::BillingNotConfigured => "Billing is not configured on this server.".into(),
            Self::BillingUnavailable(_) => {
                "The payment provider could not be reached; try again shortly.".into()
            }
            Self::SmsUnavailable(_) => {
                "The text message with the code could not be sent; try again shortly.".into()
            }
            Self::RegionNotAllowed => {
                "This server does not send codes to numbers of that region.".into()
            }
            Self::ReauthenticationRequired => {
                "This needs a recent sign-in: sign in again, then retry within 10 minutes.".into()
            }
            Self::AccountDisabled => "This account is disabled; contact the service's team.".into(),
            Self::Forbidden => "This needs the admin role.".into(),
            Self::Internal(_) => "An unexpected error occurred; it has been logged.".into(),
        }
    }
}

impl From<StoreError> for AppError {
    fn from(err: StoreError) -> Self {
        match err {
            StoreError::NotFound => Self::NotFound,
            StoreError::Conflict => Self::Conflict {
                code: "conflict",
                detail: "The resource changed or already exists.",
            },
            StoreError::Unavailable(cause) => {
                tracing::warn!(error = %cause, "database unavailable");
                Self::DatabaseUnavailable
            }
            StoreError::Backend(cause) => Self::Internal(cause),
        }
    }
}
