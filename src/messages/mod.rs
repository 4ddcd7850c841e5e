//! Messages: prompts and AI replies in a chatroom, their history and the send use case.

pub mod events;
pub mod model;
pub mod repo;
pub mod routes;
pub mod search;
pub mod service;
pub mod stream;
