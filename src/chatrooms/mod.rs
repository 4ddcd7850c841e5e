//! Chatrooms: a user's conversations, their names, and the cached list.

pub mod model;
pub mod repo;
pub mod routes;
pub mod service;
