//! User use cases: the caller's profile with today's usage, and renaming.

use super::model::{User, UserId, UserName};
use crate::app::App;
use crate::error::{AppError, Result};
use crate::quota::model::{Usage, day_of};

/// The user and today's prompt usage.
pub(crate) async fn me(app: &App, id: UserId) -> Result<(User, Usage)> {
    let now = app.clock.now();
    let (user, used) = app
        .store
        .users
        .find_with_usage(id, now, day_of(now))
        .await?
        .ok_or(AppError::Unauthorized)?;
    let usage = Usage::new(used, app.quota.limit_for(user.tier), now);
    Ok((user, usage))
}

/// Today's usage of `user`, read from the counter the quota check takes from.
pub(crate) async fn usage_of(app: &App, user: &User) -> Result<Usage> {
    let now = app.clock.now();
    let used = app.store.usage.used_on(user.id, day_of(now)).await?;
    Ok(Usage::new(used, app.quota.limit_for(user.tier), now))
}

pub(crate) async fn rename(app: &App, id: UserId, name: &str) -> Result<User> {
    let name = UserName::parse(name).map_err(|why| AppError::invalid("name", &why))?;
    Ok(app
        .store
        .users
        .update_name(id, name.as_str(), app.clock.now())
        .await?)
}
