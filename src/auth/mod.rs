//! Identity: sign-up, one-time codes, passwords, tokens and sessions.

pub mod jwt;
pub mod model;
pub mod otp;
pub mod password;
pub mod repo;
pub mod routes;
pub mod service;
pub mod sms;
pub mod tokens;
