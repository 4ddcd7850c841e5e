//! Billing: Pro subscriptions through Stripe.

pub mod signature;
