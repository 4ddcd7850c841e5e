//! Billing: Pro subscriptions through Stripe.

pub mod gateway;
pub mod model;
pub mod repo;
pub mod routes;
pub mod service;
pub mod signature;
pub mod stripe;
