//! Identity: sign-up, one-time codes, passwords, tokens and sessions.

pub(crate) mod jwt;
pub mod model;
pub mod otp;
pub(crate) mod password;
pub mod repo;
pub(crate) mod routes;
pub(crate) mod service;
pub(crate) mod sms;
pub(crate) mod tokens;
pub(crate) mod twilio;
