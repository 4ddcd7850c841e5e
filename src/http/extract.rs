//! Extractors whose rejections are problem+json: [`AppJson`], [`OptionalJson`], [`AppBytes`],
//! [`AppPath`], [`AppQuery`]; the caller ([`AuthUser`]) and where a request came from
//! ([`Client`]).

use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::StatusCode;
use axum::http::header;
use axum::http::request::Parts;
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::error::{AppError, FieldError};

/// JSON body extractor whose rejections are problem+json.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct AppJson<T>(pub T);

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
pub(crate) struct OptionalJson<T>(pub Option<T>);

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
pub(crate) struct AppBytes(pub bytes::Bytes);

impl<S: Send + Sync> FromRequest<S> for AppBytes {
    type Rejection = AppError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        match bytes::Bytes::from_request(req, state).await {
            Ok(body) => Ok(Self(body)),
            Err(rejection) if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE => {
                Err(AppError::PayloadTooLarge)
            }
            Err(rejection) if crate::http::middleware::is_body_timeout(&rejection) => {
                Err(AppError::RequestTimeout)
            }
            Err(rejection) => Err(AppError::MalformedRequest(rejection.body_text())),
        }
    }
}

/// Path extractor whose rejections are problem+json.
#[derive(Debug)]
pub(crate) struct AppPath<T>(pub T);

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
pub(crate) struct AppQuery<T>(pub T);

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
