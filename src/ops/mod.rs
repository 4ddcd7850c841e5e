//! Operations endpoints: liveness, readiness, and the API's own documentation.

pub mod routes;
pub mod service;
