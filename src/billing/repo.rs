//! The billing storage port.

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use super::model::{StripeEvent, Subscription, SubscriptionUpdate};
use crate::storage::error::StoreError;
use crate::users::model::UserId;

/// What became of a webhook event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Applied {
    /// Applied now; `user` is the account it concerned, if one could be found.
    Applied { user: Option<UserId> },
    /// Seen before: nothing changed.
    Duplicate,
}

#[async_trait]
pub trait BillingRepo: Send + Sync {
    /// In one transaction: records the event id (once) and applies its change, linking the
    /// subscription to a user by the event's user id, the customer, or what is stored.
    async fn apply_event(
        &self,
        event: &StripeEvent,
        now: DateTime<Utc>,
    ) -> Result<Applied, StoreError>;

    /// Applies what Stripe's API answered about a subscription (after a change we asked for).
    async fn apply_update(
        &self,
        update: &SubscriptionUpdate,
        now: DateTime<Utc>,
    ) -> Result<Option<Subscription>, StoreError>;

    /// The user's most relevant subscription: a live one before ended ones, newest first.
    async fn subscription_of(&self, user: UserId) -> Result<Option<Subscription>, StoreError>;

    /// The user's Stripe customer id, if one was created.
    async fn customer_of(&self, user: UserId) -> Result<Option<String>, StoreError>;

    /// Stores `customer` as the user's Stripe customer unless one is stored already; returns
    /// the one stored (so concurrent creators agree on one).
    async fn link_customer(&self, user: UserId, customer: &str) -> Result<String, StoreError>;
}
