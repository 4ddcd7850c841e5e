//! Who is calling: [`AuthUser`] (a valid bearer token, counted against the per-user limit),
//! [`PerIpLimit`] (the per-client-IP limit of the public auth routes) and [`Client`] (where a
//! request came from).

use std::net::SocketAddr;

use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::header::{AUTHORIZATION, USER_AGENT};
use axum::http::request::Parts;

use crate::auth::model::ClientInfo;
use crate::auth::tokens::Authenticated;
use crate::error::AppError;
use crate::http::state::AppState;
use crate::ratelimit::Scope;

/// The caller, proven by `Authorization: Bearer <jwt>`; rejects with 401 `unauthorized`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct AuthUser(pub Authenticated);

impl FromRequestParts<AppState> for AuthUser {
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, AppError> {
        let token = bearer_token_of(&parts.headers).ok_or(AppError::Unauthorized)?;
        let who = state.auth.authenticate(token).await?;
        tracing::Span::current().record("user_id", tracing::field::display(who.user_id));
        let limit = state.config.rate_limit_per_minute;
        match state
            .limiter
            .hit_user(who.user_id, limit, state.clock.now())
            .await
        {
            Ok(Some(version)) => {
                parts.extensions.insert(crate::cache::Known(version));
            }
            Ok(None) => {}
            Err(retry_after) => return Err(crate::ratelimit::refused(Scope::User, retry_after)),
        }
        Ok(AuthUser(who))
    }
}

/// The bearer token of a request's `Authorization` header.
pub(crate) fn bearer_token_of(headers: &axum::http::HeaderMap) -> Option<&str> {
    headers
        .get(AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(bearer_token)
}

/// The per-client-IP limit (`RATE_LIMIT_AUTH_PER_MINUTE`) of the routes anyone may call
/// unauthenticated: every public `/auth/*` handler takes it first. An unauthenticated
/// operation tagged `auth` is documented with its 429 for this reason.
#[derive(Debug, Clone, Copy)]
pub(crate) struct PerIpLimit;

impl FromRequestParts<AppState> for PerIpLimit {
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, AppError> {
        let ip = client_ip(&parts.headers, &parts.extensions, state.config.trust_proxy)
            .unwrap_or_else(|| "unknown".into());
        let limit = state.config.rate_limit_auth_per_minute;
        match state
            .limiter
            .hit(Scope::Auth, &ip, limit, state.clock.now())
            .await
        {
            Ok(()) => Ok(Self),
            Err(retry_after) => Err(crate::ratelimit::refused(Scope::Auth, retry_after)),
        }
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
pub(crate) struct Client(pub ClientInfo);

/// The client's IP: the peer address, or with `trust_proxy` the last `X-Forwarded-For` entry
/// (the address our proxy saw; entries before it are whatever the client claimed).
pub(crate) fn client_ip(
    headers: &axum::http::HeaderMap,
    extensions: &axum::http::Extensions,
    trust_proxy: bool,
) -> Option<String> {
    if trust_proxy
        && let Some(forwarded) = headers
            .get_all("x-forwarded-for")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .map(str::trim)
            .rfind(|v| v.parse::<std::net::IpAddr>().is_ok())
    {
        return Some(forwarded.to_owned());
    }
    extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map(|ConnectInfo(addr)| addr.ip().to_string())
}

impl FromRequestParts<AppState> for Client {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let ip = client_ip(&parts.headers, &parts.extensions, state.config.trust_proxy);
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

/// The caller, proven an admin: a valid token (401 `unauthorized` otherwise) of a user who
/// holds the admin role now (403 `forbidden` otherwise). The role is read from the database on
/// every request, so a revocation applies at once.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Admin(pub Authenticated);

impl FromRequestParts<AppState> for Admin {
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, AppError> {
        let AuthUser(who) = AuthUser::from_request_parts(parts, state).await?;
        if state.store.admin.is_admin(who.user_id).await? {
            Ok(Admin(who))
        } else {
            Err(AppError::Forbidden)
        }
    }
}
