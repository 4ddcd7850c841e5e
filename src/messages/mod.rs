//! Messages: prompts and AI replies in a chatroom, their history and the send use case.

pub(crate) mod branches;
pub(crate) mod events;
pub mod model;
pub mod repo;
pub(crate) mod routes;
pub mod search;
pub(crate) mod service;
pub(crate) mod stream;
