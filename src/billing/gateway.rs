//! The payment gateway port: the few Stripe calls billing makes.

use async_trait::async_trait;

use super::model::SubscriptionUpdate;

/// Stripe failed, refused, or could not be reached. The text is for the log only.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{0}")]
pub(crate) struct GatewayError(pub String);

/// A Checkout Session to create.
#[derive(Debug, Clone)]
pub(crate) struct CheckoutRequest {
    pub(crate) customer: String,
    pub(crate) price: String,
    pub(crate) user_id: String,
    pub(crate) success_url: String,
    pub(crate) cancel_url: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct CheckoutSession {
    pub(crate) id: String,
    pub(crate) url: String,
}

/// A recurring price, as Stripe describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Price {
    /// In the currency's smallest unit (cents).
    pub(crate) amount: i64,
    pub(crate) currency: String,
    pub(crate) interval: String,
}

#[async_trait]
pub(crate) trait PaymentGateway: Send + Sync {
    /// Creates a customer for `user_id`; the same `idempotency_key` never creates two.
    async fn create_customer(
        &self,
        user_id: &str,
        phone: &str,
        idempotency_key: &str,
    ) -> Result<String, GatewayError>;

    async fn create_checkout_session(
        &self,
        request: &CheckoutRequest,
        idempotency_key: &str,
    ) -> Result<CheckoutSession, GatewayError>;

    /// A Billing Portal session URL for the customer.
    async fn create_portal_session(
        &self,
        customer: &str,
        return_url: &str,
    ) -> Result<String, GatewayError>;

    /// Schedules (or clears) the subscription's cancellation at the end of its period and
    /// returns the subscription as Stripe now has it.
    async fn set_cancel_at_period_end(
        &self,
        subscription: &str,
        cancel: bool,
        idempotency_key: &str,
    ) -> Result<SubscriptionUpdate, GatewayError>;

    async fn price(&self, price_id: &str) -> Result<Price, GatewayError>;

    /// Cancels the subscription at once (no waiting for the period's end). One Stripe no
    /// longer has counts as cancelled.
    async fn cancel_subscription_now(&self, subscription: &str) -> Result<(), GatewayError>;

    /// Deletes the customer, and with it what Stripe holds about the person (the phone
    /// number). One Stripe no longer has counts as deleted.
    async fn delete_customer(&self, customer: &str) -> Result<(), GatewayError>;
}
