//! Billing use cases: the subscription's status, and Stripe webhooks (verified, applied once).

use chrono::{DateTime, Utc};

use super::model::{self, Subscription};
use super::repo::Applied;
use super::signature::{self, TOLERANCE_SECS};
use crate::app::App;
use crate::error::{AppError, Result};
use crate::quota::model::Usage;
use crate::users::model::{Tier, UserId};

/// The configured webhook signing secrets (several while one is rolled).
fn webhook_secrets(app: &App) -> Vec<&str> {
    app.config
        .stripe_webhook_secret
        .as_ref()
        .map(|secrets| {
            secrets
                .expose()
                .split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .collect()
        })
        .unwrap_or_default()
}

/// Verifies a webhook delivery against the raw body and applies its event once.
pub async fn receive_webhook(app: &App, signature_header: Option<&str>, body: &[u8]) -> Result<()> {
    let secrets = webhook_secrets(app);
    if secrets.is_empty() {
        return Err(AppError::BillingNotConfigured);
    }
    let now = app.clock.now();
    let header = signature_header.ok_or(AppError::InvalidSignature)?;
    if let Err(why) = signature::verify(header, body, &secrets, now.timestamp(), TOLERANCE_SECS) {
        tracing::warn!(reason = %why, "refused a Stripe webhook");
        return Err(AppError::InvalidSignature);
    }
    let event = model::parse_event(body).map_err(AppError::MalformedRequest)?;
    match app.store.billing.apply_event(&event, now).await? {
        Applied::Duplicate => {
            tracing::info!(event_id = %event.id, kind = %event.kind, "Stripe event seen before; ignored");
        }
        Applied::Applied { user: Some(user) } => {
            tracing::info!(event_id = %event.id, kind = %event.kind, user_id = %user, "Stripe event applied");
        }
        Applied::Applied { user: None }
            if event.update.is_some() || event.customer_link.is_some() =>
        {
            tracing::warn!(event_id = %event.id, kind = %event.kind, "Stripe event for no known user");
        }
        Applied::Applied { user: None } => {
            tracing::debug!(event_id = %event.id, kind = %event.kind, "Stripe event type not handled");
        }
    }
    Ok(())
}

/// A user's plan and subscription.
pub struct Status {
    pub tier: Tier,
    pub subscription: Option<Subscription>,
    pub usage: Usage,
}

pub async fn status(app: &App, user: UserId) -> Result<Status> {
    let account = app
        .store
        .users
        .find_by_id(user, app.clock.now())
        .await?
        .ok_or(AppError::Unauthorized)?;
    let usage = crate::users::service::usage_of(app, &account).await?;
    let subscription = app.store.billing.subscription_of(user).await?;
    Ok(Status {
        tier: account.tier,
        subscription,
        usage,
    })
}

/// Whether a subscription still needs its owner to pay: a second checkout would double-charge.
pub fn blocks_checkout(subscription: &Subscription, now: DateTime<Utc>) -> bool {
    subscription.status.blocks_checkout() && subscription.pro_until.is_some_and(|until| until > now)
}
