//! Chatrooms: a user's conversations, their names, and the cached list.

pub mod model;
pub(crate) mod repo;
pub(crate) mod routes;
pub(crate) mod service;
pub(crate) mod title;
