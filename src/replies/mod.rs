//! A reply's life, in one place: the reply job queued with its prompt ([`model`]), what it
//! stores ([`repo`]: the path it answers, streaming, completion, failure, cancellation), the
//! context it is sent with ([`context`]: its branch within the budgets), how it runs ([`job`]:
//! the AI stream relayed to the chatroom's listeners, closed when the reply is cancelled,
//! retries, the final outcome), the content streamed so far ([`progress`]) and the controls a
//! user has over it ([`service`], [`routes`]: cancel). The queue and worker loop it plugs into are
//! job-agnostic (`jobs/`).

pub(crate) mod context;
pub(crate) mod job;
pub mod model;
pub(crate) mod progress;
pub(crate) mod repo;
pub(crate) mod routes;
pub(crate) mod service;
pub(crate) mod stops;
