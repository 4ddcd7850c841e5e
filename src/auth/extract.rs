//! Extractors: [`AuthUser`] (a valid bearer token) and [`Client`] (where a request came from).

use std::net::SocketAddr;

use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::header::{AUTHORIZATION, USER_AGENT};
use axum::http::request::Parts;

use super::model::ClientInfo;
use super::tokens::Authenticated;
use crate::app::AppState;
use crate::error::AppError;

/// The caller, proven by `Authorization: Bearer <jwt>`; rejects with 401 `unauthorized`.
#[derive(Debug, Clone, Copy)]
pub struct AuthUser(pub Authenticated);

impl FromRequestParts<AppState> for AuthUser {
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, AppError> {
        let token = parts
            .headers
            .get(AUTHORIZATION)
            .and_then(|value| value.to_str().ok())
            .and_then(bearer_token)
            .ok_or(AppError::Unauthorized)?;
        let who = state.auth.authenticate(token).await?;
        tracing::Span::current().record("user_id", tracing::field::display(who.user_id));
        Ok(AuthUser(who))
    }
}

/// The token of an `Authorization` header value, if it uses the Bearer scheme.
fn bearer_token(value: &str) -> Option<&str> {
    let (scheme, token) = value.trim().split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

/// The longest user agent kept with a session.
const MAX_USER_AGENT: usize = 512;

/// Where a request came from, for the session history.
#[derive(Debug, Clone, Default)]
pub struct Client(pub ClientInfo);

impl<S: Send + Sync> FromRequestParts<S> for Client {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        let ip = parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map(|ConnectInfo(addr)| addr.ip().to_string());
        let user_agent = parts
            .headers
            .get(USER_AGENT)
            .and_then(|value| value.to_str().ok())
            .map(|ua| ua.chars().take(MAX_USER_AGENT).collect());
        Ok(Self(ClientInfo { ip, user_agent }))
    }
}

#[cfg(test)]
mod tests {
    use super::bearer_token;

    #[test]
    fn bearer_tokens_are_read_case_insensitively() {
        assert_eq!(bearer_token("Bearer abc"), Some("abc"));
        assert_eq!(bearer_token("bearer  abc "), Some("abc"));
        assert_eq!(bearer_token("Basic abc"), None);
        assert_eq!(bearer_token("Bearer"), None);
        assert_eq!(bearer_token("Bearer "), None);
    }
}
