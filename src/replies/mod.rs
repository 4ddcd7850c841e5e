//! A reply's life, in one place: the reply job queued with its prompt ([`model`]), what it
//! stores ([`repo`]: the conversation it answers, streaming, completion, failure), how it runs
//! ([`job`]: the AI stream relayed to the chatroom's listeners, retries, the final outcome)
//! and the content streamed so far ([`progress`]). The queue and worker loop it plugs into are
//! job-agnostic (`jobs/`).

pub(crate) mod job;
pub mod model;
pub(crate) mod progress;
pub(crate) mod repo;
