//! The durable job queue that produces AI replies, and the worker that runs it. Jobs live in
//! the primary database (enqueued in the same transaction as the prompt), are claimed with a
//! renewed lease, retried with backoff, and run strictly in order within a chatroom.

pub mod queue;
pub mod retry;
pub mod worker;
