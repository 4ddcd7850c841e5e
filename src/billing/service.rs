//! Billing use cases: the subscription's status, and Stripe webhooks (verified, applied once).

use std::sync::Arc;

use sha2::{Digest, Sha256};

use super::gateway::{CheckoutRequest, CheckoutSession, GatewayError, PaymentGateway, Price};
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
pub(crate) async fn receive_webhook(
    app: &App,
    signature_header: Option<&str>,
    body: &[u8],
) -> Result<()> {
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
            app.user_cache.invalidate(user).await;
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
pub(crate) struct Status {
    pub(crate) tier: Tier,
    pub(crate) subscription: Option<Subscription>,
    pub(crate) usage: Usage,
}

pub(crate) async fn status(app: &App, user: UserId) -> Result<Status> {
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

fn gateway(app: &App) -> Result<&Arc<dyn PaymentGateway>> {
    app.payments.as_ref().ok_or(AppError::BillingNotConfigured)
}

fn unavailable(err: GatewayError) -> AppError {
    AppError::BillingUnavailable(err.0)
}

/// An absolute http(s) URL a client may ask Stripe to send its user back to.
fn return_url(field: &str, url: Option<String>, default: String) -> Result<String> {
    let Some(url) = url else {
        return Ok(default);
    };
    let valid = url.len() <= 2048
        && url::Url::parse(&url)
            .is_ok_and(|u| matches!(u.scheme(), "http" | "https") && u.has_host());
    if valid {
        Ok(url)
    } else {
        Err(AppError::invalid(
            field,
            "must be an absolute http(s) URL of at most 2048 characters",
        ))
    }
}

/// The user's Stripe customer, created once and reused for every later checkout.
async fn customer_for(
    app: &App,
    gateway: &Arc<dyn PaymentGateway>,
    user: UserId,
) -> Result<String> {
    if let Some(customer) = app.store.billing.customer_of(user).await? {
        return Ok(customer);
    }
    let account = app
        .store
        .users
        .find_by_id(user, app.clock.now())
        .await?
        .ok_or(AppError::Unauthorized)?;
    let created = gateway
        .create_customer(
            &user.to_string(),
            account.mobile_number.as_str(),
            &format!("customer-{user}"),
        )
        .await
        .map_err(unavailable)?;
    // Concurrent requests may both create; the idempotency key makes them the same customer,
    // and the first one stored wins either way.
    Ok(app.store.billing.link_customer(user, &created).await?)
}

/// Starts a Stripe Checkout for Pro.
pub(crate) async fn subscribe_pro(
    app: &App,
    user: UserId,
    success_url: Option<String>,
    cancel_url: Option<String>,
) -> Result<CheckoutSession> {
    let gateway = gateway(app)?;
    let price = app
        .config
        .stripe_price_id
        .clone()
        .ok_or(AppError::BillingNotConfigured)?;
    let base = app.public_url();
    let success_url = return_url(
        "success_url",
        success_url,
        format!("{base}/?checkout=success&session_id={{CHECKOUT_SESSION_ID}}"),
    )?;
    let cancel_url = return_url("cancel_url", cancel_url, format!("{base}/?checkout=cancel"))?;
    let now = app.clock.now();
    // Active, trialing or past due (even past its period: Stripe is still collecting): a
    // second subscription would charge twice.
    if let Some(subscription) = app.store.billing.subscription_of(user).await?
        && subscription.status.blocks_checkout()
    {
        return Err(AppError::Conflict {
            code: "already_subscribed",
            detail: "You already have a Pro subscription; manage it in the billing portal.",
        });
    }
    let customer = customer_for(app, gateway, user).await?;
    let request = CheckoutRequest {
        customer,
        price,
        user_id: user.to_string(),
        success_url,
        cancel_url,
    };
    // The same intent on the same day is one session, however often the button is pressed.
    let mut intent = Sha256::new();
    for part in [
        &request.customer,
        &request.price,
        &request.success_url,
        &request.cancel_url,
    ] {
        intent.update(part.as_bytes());
        intent.update([0]);
    }
    let key = format!(
        "checkout-{user}-{}-{}",
        &hex::encode(intent.finalize())[..16],
        now.format("%Y%m%d")
    );
    gateway
        .create_checkout_session(&request, &key)
        .await
        .map_err(unavailable)
}

/// The user's subscription that can still be changed, or 409 `no_subscription`.
async fn live_subscription(app: &App, user: UserId) -> Result<Subscription> {
    app.store
        .billing
        .subscription_of(user)
        .await?
        .filter(|s| !s.status.is_terminal())
        .ok_or(AppError::Conflict {
            code: "no_subscription",
            detail: "There is no subscription to change.",
        })
}

async fn set_cancel(
    app: &App,
    user: UserId,
    subscription: &Subscription,
    cancel: bool,
) -> Result<Status> {
    let gateway = gateway(app)?;
    let now = app.clock.now();
    let key = format!("cancel-{}-{cancel}-{}", subscription.id, now.timestamp());
    let mut update = gateway
        .set_cancel_at_period_end(&subscription.id, cancel, &key)
        .await
        .map_err(unavailable)?;
    // Stripe's answer is the state as of now.
    update.created = now.timestamp();
    app.store.billing.apply_update(&update, now).await?;
    app.user_cache.invalidate(user).await;
    status(app, user).await
}

/// Schedules the subscription to end with its current period.
pub(crate) async fn cancel(app: &App, user: UserId) -> Result<Status> {
    gateway(app)?;
    let subscription = live_subscription(app, user).await?;
    set_cancel(app, user, &subscription, true).await
}

/// Undoes a scheduled cancellation.
pub(crate) async fn reactivate(app: &App, user: UserId) -> Result<Status> {
    gateway(app)?;
    let subscription = live_subscription(app, user).await?;
    if !subscription.cancel_at_period_end {
        return Err(AppError::Conflict {
            code: "not_cancelling",
            detail: "The subscription is not scheduled to cancel.",
        });
    }
    set_cancel(app, user, &subscription, false).await
}

/// Ends what Stripe holds for an account about to be deleted: its subscription at once,
/// then its customer (and the phone number on it). Nothing when billing is off; a Stripe
/// failure is 502 `billing_unavailable`, and the account stays.
pub(crate) async fn forget_customer(app: &App, user: UserId) -> Result<()> {
    let Some(gateway) = &app.payments else {
        return Ok(());
    };
    let subscription = app.store.billing.subscription_of(user).await?;
    let mut customers: Vec<String> = app
        .store
        .billing
        .customer_of(user)
        .await?
        .into_iter()
        .collect();
    if let Some(subscription) = subscription {
        if !subscription.status.is_terminal() {
            gateway
                .cancel_subscription_now(&subscription.id)
                .await
                .map_err(unavailable)?;
        }
        if !customers.contains(&subscription.customer_id) {
            customers.push(subscription.customer_id);
        }
    }
    for customer in customers {
        gateway
            .delete_customer(&customer)
            .await
            .map_err(unavailable)?;
    }
    Ok(())
}

/// A Stripe Billing Portal link for the user.
pub(crate) async fn portal(app: &App, user: UserId) -> Result<String> {
    let gateway = gateway(app)?;
    let customer = app
        .store
        .billing
        .customer_of(user)
        .await?
        .ok_or(AppError::Conflict {
            code: "no_subscription",
            detail: "There is no billing account yet; subscribe first.",
        })?;
    gateway
        .create_portal_session(&customer, &format!("{}/", app.public_url()))
        .await
        .map_err(unavailable)
}

/// Pro's price, read from Stripe once; `None` when billing is off or Stripe cannot say.
pub(crate) async fn pro_price(app: &App) -> Option<Price> {
    let gateway = app.payments.as_ref()?;
    let price_id = app.config.stripe_price_id.as_deref()?;
    let price = app
        .pro_price
        .get_or_try_init(|| gateway.price(price_id))
        .await;
    match price {
        Ok(price) => Some(price.clone()),
        Err(err) => {
            tracing::warn!(error = %err, "could not read Pro's price from Stripe");
            None
        }
    }
}
