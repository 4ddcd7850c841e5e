//! The one error type of the HTTP edge and the services: [`AppError`], written to clients as
//! RFC 9457 problem details with a stable `code`. Only `IntoResponse` here chooses status codes.
//! Also the `AppJson` / `AppPath` / `AppQuery` extractors that map axum's rejections into it.

use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use serde::de::DeserializeOwned;
use utoipa::ToSchema;

use crate::storage::StoreError;

/// Result of a service call.
pub type Result<T, E = AppError> = std::result::Result<T, E>;

/// One field that failed validation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct FieldError {
    /// The request field, as named in the JSON body or query.
    pub field: String,
    pub message: String,
}

impl FieldError {
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            message: message.into(),
        }
    }
}

/// Every way a request can fail, by meaning. Internal causes are logged, never sent.
#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error("malformed request: {0}")]
    MalformedRequest(String),
    #[error("validation failed")]
    Validation(Vec<FieldError>),
    /// A mobile number that cannot exist (422 `invalid_mobile_number`).
    #[error("invalid mobile number: {0}")]
    InvalidMobileNumber(String),
    #[error("payload too large")]
    PayloadTooLarge,
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
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}

impl AppError {
    /// A single-field validation failure.
    pub fn invalid(field: &str, message: &str) -> Self {
        Self::Validation(vec![FieldError::new(field, message)])
    }

    fn status(&self) -> StatusCode {
        match self {
            Self::MalformedRequest(_) => StatusCode::BAD_REQUEST,
            Self::Validation(_) | Self::InvalidMobileNumber(_) => StatusCode::UNPROCESSABLE_ENTITY,
            Self::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
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
            Self::BillingUnavailable(_) => StatusCode::BAD_GATEWAY,
            Self::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The stable, machine-readable code clients branch on.
    pub fn code(&self) -> &'static str {
        match self {
            Self::MalformedRequest(_) => "malformed_request",
            Self::Validation(_) => "validation_failed",
            Self::InvalidMobileNumber(_) => "invalid_mobile_number",
            Self::PayloadTooLarge => "payload_too_large",
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
            Self::Internal(_) => "internal_error",
        }
    }

    fn detail(&self) -> String {
        match self {
            Self::MalformedRequest(why) => why.clone(),
            Self::Validation(_) => "The request body or query failed validation.".into(),
            Self::InvalidMobileNumber(why) => format!("The mobile number {why}."),
            Self::PayloadTooLarge => "The request body is larger than the server accepts.".into(),
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

/// The problem+json body (RFC 9457) as documented in the OpenAPI spec.
#[derive(Debug, Serialize, ToSchema)]
pub struct Problem {
    #[schema(example = "about:blank")]
    pub r#type: &'static str,
    #[schema(example = "Unprocessable Entity")]
    pub title: String,
    #[schema(example = 422)]
    pub status: u16,
    pub detail: String,
    /// Stable machine-readable error code.
    #[schema(example = "validation_failed")]
    pub code: &'static str,
    /// Present on `validation_failed`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub errors: Option<Vec<FieldError>>,
}

pub const PROBLEM_JSON: &str = "application/problem+json";

/// Seconds a client is told to wait after a 503 for the database.
pub const DATABASE_RETRY_AFTER: u64 = 2;

/// Response extension: this response is a 503 because the database could not be reached.
#[derive(Debug, Clone, Copy)]
pub struct DatabaseFailed;

impl IntoResponse for AppError {
    fn into_response(self) -> Response {
        let status = self.status();
        match &self {
            Self::Internal(cause) => tracing::error!(error = ?cause, "internal error"),
            Self::BillingUnavailable(cause) => tracing::error!(error = %cause, "Stripe failed"),
            _ => {}
        }
        let problem = Problem {
            r#type: "about:blank",
            title: status.canonical_reason().unwrap_or("Error").to_owned(),
            status: status.as_u16(),
            detail: self.detail(),
            code: self.code(),
            errors: match &self {
                Self::Validation(errors) => Some(errors.clone()),
                Self::InvalidMobileNumber(why) => {
                    Some(vec![FieldError::new("mobile_number", why.clone())])
                }
                _ => None,
            },
        };
        let body = serde_json::to_vec(&problem).unwrap_or_default();
        let mut response = (status, body).into_response();
        let headers = response.headers_mut();
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(PROBLEM_JSON));
        match &self {
            Self::Unauthorized => {
                headers.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            }
            Self::RequestTimeout => {
                // The rest of the body may still be on its way: this connection is done.
                headers.insert(header::CONNECTION, HeaderValue::from_static("close"));
            }
            Self::RateLimited { retry_after, .. } => {
                headers.insert(header::RETRY_AFTER, HeaderValue::from(*retry_after));
            }
            Self::DatabaseUnavailable => {
                headers.insert(header::RETRY_AFTER, HeaderValue::from(DATABASE_RETRY_AFTER));
                // Tells the database gate's middleware that the database failed this request.
                response.extensions_mut().insert(DatabaseFailed);
            }
            _ => {}
        }
        response
    }
}

/// JSON body extractor whose rejections are problem+json.
#[derive(Debug, Clone, Copy, Default)]
pub struct AppJson<T>(pub T);

impl<T, S> FromRequest<S> for AppJson<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = AppError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        if !has_json_content_type(req.headers()) {
            return Err(AppError::MalformedRequest(
                "Expected `Content-Type: application/json`.".into(),
            ));
        }
        let AppBytes(body) = AppBytes::from_request(req, state).await?;
        parse_json(&body).map(Self)
    }
}

/// A JSON body that may be absent: an empty (or all-whitespace) body is `None`; anything else
/// must be `application/json` and parse like [`AppJson`].
#[derive(Debug, Clone, Default)]
pub struct OptionalJson<T>(pub Option<T>);

impl<T, S> FromRequest<S> for OptionalJson<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = AppError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let json = has_json_content_type(req.headers());
        let AppBytes(body) = AppBytes::from_request(req, state).await?;
        if body.iter().all(u8::is_ascii_whitespace) {
            return Ok(Self(None));
        }
        if !json {
            return Err(AppError::MalformedRequest(
                "Expected `Content-Type: application/json`.".into(),
            ));
        }
        parse_json(&body).map(|value| Self(Some(value)))
    }
}

/// `application/json`, or any `application/*+json`.
fn has_json_content_type(headers: &axum::http::HeaderMap) -> bool {
    let Some(value) = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
    else {
        return false;
    };
    let essence = value
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    essence == "application/json"
        || essence
            .strip_prefix("application/")
            .is_some_and(|sub| sub.ends_with("+json"))
}

/// Parses a JSON body: invalid JSON (bad syntax, invalid UTF-8, anything after the value) is
/// 400 `malformed_request`; JSON of the wrong shape, or with a NUL character in any string, is
/// 422 `validation_failed` naming the field.
fn parse_json<T: DeserializeOwned>(body: &[u8]) -> Result<T, AppError> {
    let value = match axum::Json::<T>::from_bytes(body) {
        Ok(axum::Json(value)) => value,
        Err(JsonRejection::JsonDataError(err)) => {
            // Well-formed JSON of the wrong shape (missing field, wrong type): a validation error.
            return Err(AppError::Validation(vec![shape_error(&err.body_text())]));
        }
        Err(other) => return Err(AppError::MalformedRequest(other.body_text())),
    };
    if let Some(field) = nul_field(body) {
        return Err(AppError::Validation(vec![FieldError::new(
            field,
            "must not contain the NUL character (U+0000)",
        )]));
    }
    Ok(value)
}

/// The field of the first string (or key) holding U+0000, in a body that parsed as JSON. NUL
/// is refused everywhere at the edge: PostgreSQL text cannot hold it, and no client has a
/// reason to send it. The bytes are scanned first, so the common body costs one pass.
fn nul_field(body: &[u8]) -> Option<String> {
    if !body.windows(6).any(|w| w.eq_ignore_ascii_case(b"\\u0000")) {
        return None;
    }
    let value: serde_json::Value = serde_json::from_slice(body).ok()?;
    nul_path(&value, String::new())
}

fn nul_path(value: &serde_json::Value, path: String) -> Option<String> {
    let name = |path: String| {
        if path.is_empty() {
            "body".to_owned()
        } else {
            path
        }
    };
    match value {
        serde_json::Value::String(text) => text.contains('\0').then(|| name(path)),
        serde_json::Value::Array(items) => items
            .iter()
            .enumerate()
            .find_map(|(i, item)| nul_path(item, format!("{path}[{i}]"))),
        serde_json::Value::Object(fields) => fields.iter().find_map(|(key, item)| {
            let field = if path.is_empty() {
                key.clone()
            } else {
                format!("{path}.{key}")
            };
            if key.contains('\0') {
                return Some(name(path.clone()));
            }
            nul_path(item, field)
        }),
        _ => None,
    }
}

/// Names the field in serde's message about a body of the wrong shape. axum reports the path
/// (`name: invalid type …`) for type errors and the field in backticks for missing ones.
fn shape_error(text: &str) -> FieldError {
    let message = text
        .strip_prefix("Failed to deserialize the JSON body into the target type: ")
        .unwrap_or(text);
    if let Some(rest) = message.strip_prefix("missing field `")
        && let Some((field, _)) = rest.split_once('`')
    {
        return FieldError::new(field, "is required");
    }
    match message.split_once(": ") {
        Some((path, why)) if !path.contains(' ') && path != "." => FieldError::new(path, why),
        _ => FieldError::new("body", message),
    }
}

impl<T: Serialize> IntoResponse for AppJson<T> {
    fn into_response(self) -> Response {
        axum::Json(self.0).into_response()
    }
}

/// Raw body extractor (for signed payloads) whose rejections are problem+json.
#[derive(Debug)]
pub struct AppBytes(pub bytes::Bytes);

impl<S: Send + Sync> FromRequest<S> for AppBytes {
    type Rejection = AppError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        match bytes::Bytes::from_request(req, state).await {
            Ok(body) => Ok(Self(body)),
            Err(rejection) if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE => {
                Err(AppError::PayloadTooLarge)
            }
            Err(rejection) if crate::server::is_body_timeout(&rejection) => {
                Err(AppError::RequestTimeout)
            }
            Err(rejection) => Err(AppError::MalformedRequest(rejection.body_text())),
        }
    }
}

/// Path extractor whose rejections are problem+json.
#[derive(Debug)]
pub struct AppPath<T>(pub T);

impl<T, S> FromRequestParts<S> for AppPath<T>
where
    T: DeserializeOwned + Send,
    S: Send + Sync,
{
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        match axum::extract::Path::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Path(value)) => Ok(Self(value)),
            Err(PathRejection::FailedToDeserializePathParams(err)) => Err(
                AppError::MalformedRequest(format!("Invalid path parameter: {}", err.body_text())),
            ),
            Err(other) => Err(AppError::Internal(anyhow::anyhow!(
                "path extraction failed: {}",
                other.body_text()
            ))),
        }
    }
}

/// Query extractor whose rejections are problem+json (422: the query is well-formed but wrong).
#[derive(Debug)]
pub struct AppQuery<T>(pub T);

impl<T, S> FromRequestParts<S> for AppQuery<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let query = parts.uri.query().unwrap_or_default();
        if query.contains("%00") {
            let field = url::form_urlencoded::parse(query.as_bytes())
                .find(|(key, value)| key.contains('\0') || value.contains('\0'))
                .map_or_else(|| "query".to_owned(), |(key, _)| key.into_owned());
            return Err(AppError::invalid(
                &field,
                "must not contain the NUL character (U+0000)",
            ));
        }
        match axum::extract::Query::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Query(value)) => Ok(Self(value)),
            Err(QueryRejection::FailedToDeserializeQueryString(err)) => {
                Err(AppError::invalid("query", &err.body_text()))
            }
            Err(other) => Err(AppError::MalformedRequest(other.body_text())),
        }
    }
}

/// Documents the refusals every operation can meet, whatever its handler: 429 `rate_limited`
/// (the abuse limits: per client IP on the unauthenticated auth routes, per user on every
/// authenticated operation) and 503 `unavailable` (the database cannot be reached; every
/// operation that needs it).
pub fn document_common_errors(doc: &mut utoipa::openapi::OpenApi) {
    use utoipa::openapi::RefOr;
    const RATE_LIMITED: &str = "`rate_limited`: too many requests from this client or user this minute, with `Retry-After`";
    const UNAVAILABLE: &str = "`unavailable`: the database cannot be reached; try again after \
                               `Retry-After` seconds";
    for (path, item) in &mut doc.paths.paths {
        let operations = [
            &mut item.get,
            &mut item.post,
            &mut item.put,
            &mut item.patch,
            &mut item.delete,
        ];
        for operation in operations.into_iter().flatten() {
            let authenticated = operation.security.as_ref().is_some_and(|s| !s.is_empty());
            let mut refusals = Vec::new();
            if authenticated || crate::ratelimit::AUTH_ROUTES.contains(&path.as_str()) {
                refusals.push(("429", RATE_LIMITED));
            }
            if crate::storage::gate::needs_database(path) {
                refusals.push(("503", UNAVAILABLE));
            }
            for (status, text) in refusals {
                match operation.responses.responses.get_mut(status) {
                    Some(RefOr::T(response)) if !response.description.contains(text) => {
                        response.description = format!("{}; or {text}", response.description);
                    }
                    Some(_) => {}
                    None => {
                        operation
                            .responses
                            .responses
                            .insert(status.to_owned(), RefOr::T(refusal(text)));
                    }
                }
            }
        }
    }
}

/// A problem+json response with a `Retry-After` header.
fn refusal(description: &str) -> utoipa::openapi::Response {
    use utoipa::openapi::{
        ContentBuilder, HeaderBuilder, ObjectBuilder, Ref, ResponseBuilder, Type,
    };
    ResponseBuilder::new()
        .description(description)
        .header(
            "Retry-After",
            HeaderBuilder::new()
                .schema(Some(
                    ObjectBuilder::new()
                        .schema_type(Type::Integer)
                        .minimum(Some(0)),
                ))
                .description(Some("Seconds to wait before trying again"))
                .build(),
        )
        .content(
            PROBLEM_JSON,
            ContentBuilder::new()
                .schema(Some(Ref::from_schema_name("Problem")))
                .build(),
        )
        .build()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shape_errors_name_their_field() {
        let prefix = "Failed to deserialize the JSON body into the target type: ";
        assert_eq!(
            shape_error(&format!("{prefix}missing field `otp` at line 1 column 2")),
            FieldError::new("otp", "is required")
        );
        assert_eq!(
            shape_error(&format!(
                "{prefix}name: invalid type: integer `1`, expected a string"
            ))
            .field,
            "name"
        );
        assert_eq!(
            shape_error(&format!(
                "{prefix}invalid type: sequence, expected struct X"
            ))
            .field,
            "body"
        );
    }
}
