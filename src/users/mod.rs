//! Users: the account, its profile and its plan.

pub mod model;
pub mod repo;
pub mod routes;
pub mod service;
