//! Billing: Pro subscriptions through Stripe.

pub(crate) mod gateway;
pub mod model;
pub mod repo;
pub(crate) mod routes;
pub(crate) mod service;
pub mod signature;
pub mod stripe;
