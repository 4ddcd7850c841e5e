//! Billing: Pro subscriptions through Stripe.

pub(crate) mod gateway;
pub(crate) mod model;
pub(crate) mod repo;
pub(crate) mod routes;
pub(crate) mod service;
pub mod signature;
pub mod stripe;
