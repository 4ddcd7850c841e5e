//! Administration's domain types.

use chrono::{DateTime, Utc};
use serde::Serialize;
use utoipa::ToSchema;
use uuid::Uuid;

use crate::users::model::{User, UserId};

/// A user as an admin sees them.
#[derive(Debug, Clone)]
pub struct AdminUser {
    pub user: User,
    pub pro_override: bool,
    /// Prompts taken today (UTC).
    pub used_today: u32,
    /// The last use of any of the user's sessions (kept to within a minute).
    pub last_seen_at: Option<DateTime<Utc>>,
}

/// Which users to list: `q` in the number or the name, newest first, before a cursor.
#[derive(Debug, Clone)]
pub struct UserQuery {
    /// Lower-cased; matched anywhere in the number or the name.
    pub text: Option<String>,
    pub before: Option<UserId>,
    pub limit: u32,
}

/// An admin's change to a user; `None` leaves that setting as it is.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct UserChange {
    pub disabled: Option<bool>,
    pub pro_override: Option<bool>,
}

/// What the audit log records, by name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    GrantAdmin,
    RevokeAdmin,
    Disable,
    Enable,
    CompPro,
    EndCompPro,
}

impl Action {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::GrantAdmin => "admin.grant",
            Self::RevokeAdmin => "admin.revoke",
            Self::Disable => "user.disable",
            Self::Enable => "user.enable",
            Self::CompPro => "user.pro_override.on",
            Self::EndCompPro => "user.pro_override.off",
        }
    }
}

/// One line of the audit log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct AuditEntry {
    pub id: Uuid,
    /// The admin who made the change; null for a change made on the command line.
    pub admin_id: Option<Uuid>,
    /// `admin.grant`, `admin.revoke`, `user.disable`, `user.enable`, `user.pro_override.on`,
    /// `user.pro_override.off`.
    #[schema(example = "user.disable")]
    pub action: String,
    /// The user the change applies to (their id).
    pub target: String,
    pub at: DateTime<Utc>,
}

/// The service at a glance.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, ToSchema)]
pub struct Stats {
    pub users: UserStats,
    /// Prompts taken today (UTC), all users.
    pub prompts_today: u64,
    pub tokens_today: TokenStats,
    pub replies: ReplyStats,
    pub queue: QueueStats,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, ToSchema)]
pub struct UserStats {
    pub total: u64,
    /// On Pro now (a subscription or a complimentary plan).
    pub pro: u64,
    /// Took at least one prompt today (UTC).
    pub active_today: u64,
}

/// Tokens of the replies created today (UTC).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, ToSchema)]
pub struct TokenStats {
    pub input: u64,
    pub output: u64,
    pub thinking: u64,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, ToSchema)]
pub struct ReplyStats {
    pub pending: u64,
    pub streaming: u64,
    /// Replies created in the last 24 hours that failed.
    pub failed_24h: u64,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, ToSchema)]
pub struct QueueStats {
    /// Jobs due now, of every kind (replies, titles, file clean-up).
    pub depth: u64,
    /// How long the oldest due job has waited; 0 when none is due.
    pub oldest_age_seconds: u64,
}
