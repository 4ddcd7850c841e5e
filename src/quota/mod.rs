//! The daily prompt quota: one `daily_usage` row per user per UTC day. This module reads it
//! for `/user/me`; taking a prompt happens atomically with the message write (chat issue).

pub mod model;
pub(crate) mod repo;
