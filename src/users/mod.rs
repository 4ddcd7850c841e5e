//! Users: the account, its profile and its plan.

pub(crate) mod export;
pub mod model;
pub(crate) mod repo;
pub(crate) mod routes;
pub(crate) mod service;
