//! Session domain types: every issued token is a session row, keyed by the token's `jti`.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use crate::users::model::UserId;

/// A session's id, which is also its token's `jti` (UUIDv7).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct SessionId(pub Uuid);

impl SessionId {
    pub fn new() -> Self {
        Self(Uuid::now_v7())
    }
}

impl Default for SessionId {
    fn default() -> Self {
        Self::new()
    }
}

/// How a session was started.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum SessionMethod {
    Otp,
    Password,
    Reset,
    PasswordChange,
}

impl SessionMethod {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::Otp => "otp",
            Self::Password => "password",
            Self::Reset => "reset",
            Self::PasswordChange => "password_change",
        }
    }

    pub(crate) fn from_db(value: &str) -> Self {
        match value {
            "password" => Self::Password,
            "reset" => Self::Reset,
            "password_change" => Self::PasswordChange,
            _ => Self::Otp,
        }
    }
}

/// Where a sign-in came from, as far as the server can tell.
#[derive(Debug, Clone, Default)]
pub struct ClientInfo {
    pub ip: Option<String>,
    pub user_agent: Option<String>,
}

/// A session as stored.
#[derive(Debug, Clone)]
pub struct Session {
    pub id: SessionId,
    pub user_id: UserId,
    pub method: SessionMethod,
    pub created_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
    pub last_used_at: DateTime<Utc>,
    pub client: ClientInfo,
}
