//! gemchat's API tests: one binary (linking the app once), one module per area. Every test in
//! `backend_tests!` runs on SQLite and, when `TEST_DATABASE_URL` is set (always in CI), on
//! PostgreSQL.

mod fakes;
mod harness;
mod limits;

mod account;
mod admin;
mod auth;
mod billing;
mod branches;
mod chat;
mod conversation;
mod edge;
mod events;
mod gemini;
mod gemini_stream;
mod hardening;
mod migrations;
mod outage;
mod scale;
mod serve;
mod sessions;
mod slow_clients;
mod sms;
mod storage;
mod storage_billing;
mod storage_chat;
mod subscriptions;
mod titles;
mod uploads;
mod users;
mod web;
mod worker;
