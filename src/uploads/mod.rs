//! Uploads: files (images, PDFs, text) that prompts carry to the model. Metadata in the
//! database, bytes in the object store (`crate::objects`).

pub mod cleanup;
pub(crate) mod model;
pub(crate) mod repo;
pub(crate) mod routes;
pub(crate) mod service;
pub(crate) mod sniff;
