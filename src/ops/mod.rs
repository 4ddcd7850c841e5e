//! Operations endpoints: liveness, readiness, and the API's own documentation.

pub(crate) mod routes;
pub(crate) mod service;
