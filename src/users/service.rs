//! User use cases: the caller's profile with today's usage, renaming, and deleting the
//! account.

use chrono::{DateTime, Utc};

use super::model::{User, UserId, UserName};
use crate::app::App;
use crate::auth::tokens::Authenticated;
use crate::error::{AppError, Result};
use crate::messages::events::{self, RoomEvent};
use crate::quota::model::{self as quota, Usage, UsageDay, day_of};

/// The longest `GET /user/me` is served from the cache (which keeps it only with Redis). Every
/// write through the API moves the user's cache version, and so does `gemchat admin`; this
/// bounds what a version move that could not reach Redis leaves stale.
pub(crate) const ME_MAX_AGE: chrono::Duration = chrono::Duration::seconds(60);

/// What `GET /user/me` shows.
pub(crate) struct Me {
    pub(crate) user: User,
    pub(crate) usage: Usage,
    /// When time alone changes what this shows: today's usage resets at midnight, and a
    /// subscription's tier ends with its `pro_until` (bounded by [`ME_MAX_AGE`]).
    pub(crate) changes_at: DateTime<Utc>,
}

/// The user and today's prompt usage.
pub(crate) async fn me(app: &App, id: UserId) -> Result<Me> {
    let now = app.clock.now();
    let profile = app
        .store
        .users
        .find_with_usage(id, now, day_of(now))
        .await?
        .ok_or(AppError::Unauthorized)?;
    let user = profile.user;
    let usage = Usage::new(profile.used_today, app.quota.limit_for(user.tier), now);
    let tier_ends = profile.pro_until.filter(|end| *end > now);
    let changes_at = [Some(usage.resets_at), tier_ends, Some(now + ME_MAX_AGE)]
        .into_iter()
        .flatten()
        .min()
        .unwrap_or(now);
    Ok(Me {
        user,
        usage,
        changes_at,
    })
}

/// Most days `GET /user/me/usage` reports.
pub(crate) const MAX_HISTORY_DAYS: u32 = 90;

/// The user's use on each of the last `days` UTC days (today included), newest first, idle
/// days as zeros. 422 naming `days` outside 1 to 90.
pub(crate) async fn history(app: &App, user: UserId, days: u32) -> Result<Vec<UsageDay>> {
    if !(1..=MAX_HISTORY_DAYS).contains(&days) {
        return Err(AppError::invalid(
            "days",
            &format!("must be from 1 to {MAX_HISTORY_DAYS}"),
        ));
    }
    let today = day_of(app.clock.now());
    let first = today
        .checked_sub_days(chrono::Days::new(u64::from(days - 1)))
        .unwrap_or(today);
    let used = app.store.usage.history(user, first, today).await?;
    Ok(quota::history(today, days, &used))
}

/// Today's usage of `user`, read from the counter the quota check takes from.
pub(crate) async fn usage_of(app: &App, user: &User) -> Result<Usage> {
    let now = app.clock.now();
    let used = app.store.usage.used_on(user.id, day_of(now)).await?;
    Ok(Usage::new(used, app.quota.limit_for(user.tier), now))
}

pub(crate) async fn rename(app: &App, id: UserId, name: &str) -> Result<User> {
    let name = UserName::parse(name).map_err(|why| AppError::invalid("name", &why))?;
    let user = app
        .store
        .users
        .update_name(id, name.as_str(), app.clock.now())
        .await?;
    app.user_cache.invalidate(id).await;
    Ok(user)
}

/// How recent the sign-in behind a token must be for it to delete its account.
pub(crate) const RECENT_SIGN_IN: chrono::Duration = chrono::Duration::minutes(10);

/// Erases the caller's account: Stripe first (a failure leaves everything in place), then
/// every row in one transaction, the files through the job queue. Every token of the account
/// stops working at once on every process, and its chatrooms' streams and replies end.
pub(crate) async fn delete_account(app: &App, who: Authenticated) -> Result<()> {
    let now = app.clock.now();
    if now - who.issued_at > RECENT_SIGN_IN {
        return Err(AppError::ReauthenticationRequired);
    }
    crate::billing::service::forget_customer(app, who.user_id).await?;
    let deleted = app
        .store
        .users
        .delete(who.user_id, now)
        .await?
        .ok_or(AppError::Unauthorized)?;
    app.auth.forget_user(who.user_id).await;
    app.user_cache.invalidate(who.user_id).await;
    for room in &deleted.chatrooms {
        events::publish(app, *room, &RoomEvent::ChatroomDeleted).await;
    }
    tracing::info!(
        user_id = %who.user_id,
        chatrooms = deleted.chatrooms.len(),
        files = deleted.files,
        "account deleted"
    );
    Ok(())
}
