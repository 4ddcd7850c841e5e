//! The durable job queue and the worker that runs it, for any kind of background work. Jobs
//! live in the primary database (queued in the same transaction as what asks for them), are
//! claimed under a renewed lease, retried with backoff, and run one at a time per lane. Each
//! kind plugs in a [`worker::JobHandler`]: the reply job (`replies/`) is the first.

pub mod queue;
pub(crate) mod retry;
pub mod worker;
