//! Administration use cases. Whoever calls them has been checked to be an admin (the HTTP
//! layer's [`crate::http::caller::Admin`]), except [`set_admin`], the command line's.

use super::model::{Action, AdminUser, AuditEntry, Stats, UserChange, UserQuery};
use crate::app::App;
use crate::error::{AppError, Result};
use crate::messages::model::Message;
use crate::quota::model::day_of;
use crate::storage::Store;
use crate::users::model::{MobileNumber, UserId};

/// Most rows a list returns at once.
pub(crate) const MAX_LIMIT: u32 = 100;
/// Rows a list returns when not told.
pub(crate) const DEFAULT_LIMIT: u32 = 50;

/// `limit` checked against 1 to 100 (default 50), named `field` when refused.
pub(crate) fn limit(limit: Option<u32>) -> Result<u32> {
    match limit {
        None => Ok(DEFAULT_LIMIT),
        Some(n) if (1..=MAX_LIMIT).contains(&n) => Ok(n),
        Some(_) => Err(AppError::invalid(
            "limit",
            &format!("must be from 1 to {MAX_LIMIT}"),
        )),
    }
}

/// What the command line did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RoleChange {
    Changed,
    AlreadySo,
    NoSuchUser,
}

/// Grants (or revokes) the admin role of the account with this number: the command line's
/// `gemchat admin grant|revoke <mobile>`.
pub async fn set_admin(
    store: &Store,
    mobile: &MobileNumber,
    admin: bool,
    now: chrono::DateTime<chrono::Utc>,
) -> anyhow::Result<RoleChange> {
    Ok(match store.admin.set_admin(mobile, admin, now).await? {
        None => RoleChange::NoSuchUser,
        Some(true) => RoleChange::Changed,
        Some(false) => RoleChange::AlreadySo,
    })
}

/// A page of users, newest first, and the cursor of the next page.
pub(crate) async fn users(
    app: &App,
    text: Option<String>,
    before: Option<UserId>,
    limit: u32,
) -> Result<(Vec<AdminUser>, Option<UserId>)> {
    let text = text
        .map(|t| t.trim().to_lowercase())
        .filter(|t| !t.is_empty());
    if text.as_ref().is_some_and(|t| t.chars().count() > 100) {
        return Err(AppError::invalid("q", "must be at most 100 characters"));
    }
    let now = app.clock.now();
    let query = UserQuery {
        text,
        before,
        limit,
    };
    let users = app.store.admin.users(&query, now, day_of(now)).await?;
    let next = (users.len() == limit as usize)
        .then(|| users.last().map(|u| u.user.id))
        .flatten();
    Ok((users, next))
}

/// Disables or enables a user, or gives or ends a complimentary Pro plan. A disabled user's
/// tokens stop on every process at once (their open event streams end with them).
pub(crate) async fn change_user(
    app: &App,
    admin: UserId,
    target: UserId,
    change: UserChange,
) -> Result<AdminUser> {
    if change == UserChange::default() {
        return Err(AppError::invalid(
            "body",
            "must set `disabled` or `pro_override`",
        ));
    }
    if admin == target && change.disabled == Some(true) {
        // The one change that would lock the last way back in out.
        return Err(AppError::invalid(
            "disabled",
            "an admin cannot disable their own account",
        ));
    }
    let now = app.clock.now();
    let (user, actions) = app
        .store
        .admin
        .change_user(admin, target, change, now, day_of(now))
        .await?
        .ok_or(AppError::NotFound)?;
    if actions.contains(&Action::Disable) {
        app.auth.forget_user(target).await;
    }
    if !actions.is_empty() {
        app.user_cache.invalidate(target).await;
    }
    for action in &actions {
        tracing::info!(admin_id = %admin, target = %target, action = action.as_str(), "admin change");
    }
    Ok(user)
}

pub(crate) async fn stats(app: &App) -> Result<Stats> {
    let now = app.clock.now();
    Ok(app.store.admin.stats(now, day_of(now)).await?)
}

pub(crate) async fn failed_replies(app: &App, limit: u32) -> Result<Vec<Message>> {
    Ok(app.store.admin.failed_replies(limit).await?)
}

pub(crate) async fn audit(
    app: &App,
    before: Option<uuid::Uuid>,
    limit: u32,
) -> Result<(Vec<AuditEntry>, Option<uuid::Uuid>)> {
    let entries = app.store.admin.audit(before, limit).await?;
    let next = (entries.len() == limit as usize)
        .then(|| entries.last().map(|e| e.id))
        .flatten();
    Ok((entries, next))
}
