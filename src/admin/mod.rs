//! Administration: the admin role (granted on the command line only), user management
//! (disable, a complimentary Pro plan), statistics, failed replies and the audit log.

pub mod model;
pub(crate) mod repo;
pub(crate) mod routes;
pub(crate) mod service;
