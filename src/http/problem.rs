//! Errors as clients see them: [`AppError`] written as RFC 9457 problem details
//! (`application/problem+json`) with a stable `code`, and the headers some errors carry.

use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::ToSchema;

use crate::error::{AppError, FieldError};

/// The problem+json body (RFC 9457) as documented in the OpenAPI spec.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct Problem {
    #[schema(example = "about:blank")]
    pub r#type: &'static str,
    #[schema(example = "Unprocessable Entity")]
    pub(crate) title: String,
    #[schema(example = 422)]
    pub(crate) status: u16,
    pub(crate) detail: String,
    /// Stable machine-readable error code.
    #[schema(example = "validation_failed")]
    pub(crate) code: &'static str,
    /// Present on `validation_failed`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) errors: Option<Vec<FieldError>>,
}

pub(crate) const PROBLEM_JSON: &str = "application/problem+json";

/// Seconds a client is told to wait after a 503 for the database.
pub(crate) const DATABASE_RETRY_AFTER: u64 = 2;

/// Response extension: this response is a 503 because the database could not be reached.
#[derive(Debug, Clone, Copy)]
pub(crate) struct DatabaseFailed;

impl IntoResponse for AppError {
    fn into_response(self) -> Response {
        let status = self.status();
        match &self {
            Self::Internal(cause) => tracing::error!(error = ?cause, "internal error"),
            Self::BillingUnavailable(cause) => tracing::error!(error = %cause, "Stripe failed"),
            Self::SmsUnavailable(cause) => tracing::error!(error = %cause, "SMS failed"),
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
