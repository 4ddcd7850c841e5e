//! The object store port: where attachment bytes live, by key. One adapter ([`store`]) covers
//! a local folder and S3 (or any S3-compatible service) through the `object_store` crate,
//! chosen by `STORAGE_URL`.

pub(crate) mod store;

use async_trait::async_trait;
use bytes::Bytes;
use futures::stream::BoxStream;

/// Why the object store could not do what was asked.
#[derive(Debug, thiserror::Error)]
pub enum ObjectError {
    /// No object under that key.
    #[error("no such object")]
    NotFound,
    /// The store did not answer, or answered with an error: worth trying again later.
    #[error("the object store is unavailable: {0}")]
    Unavailable(String),
}

/// An object's bytes as they arrive.
pub type ByteStream = BoxStream<'static, Result<Bytes, ObjectError>>;

#[async_trait]
pub trait Objects: Send + Sync {
    /// Starts writing the object `key`: nothing is visible under it until `finish`.
    async fn writer(&self, key: &str) -> Result<Box<dyn ObjectWriter>, ObjectError>;

    /// The object's bytes, streamed.
    async fn read(&self, key: &str) -> Result<ByteStream, ObjectError>;

    /// The object's bytes, whole (for a request to the AI provider).
    async fn read_all(&self, key: &str) -> Result<Bytes, ObjectError>;

    /// Deletes the object; one that is not there is fine.
    async fn delete(&self, key: &str) -> Result<(), ObjectError>;

    /// Whether the object `key` is there.
    async fn exists(&self, key: &str) -> Result<bool, ObjectError>;

    /// Every object in the store, with when it was last written.
    async fn list(&self) -> Result<Vec<Listed>, ObjectError>;
}

/// An object found by [`Objects::list`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listed {
    pub key: String,
    pub written_at: chrono::DateTime<chrono::Utc>,
}

/// An object being written.
#[async_trait]
pub trait ObjectWriter: Send {
    async fn write(&mut self, chunk: Bytes) -> Result<(), ObjectError>;

    /// Makes the object visible, whole.
    async fn finish(self: Box<Self>) -> Result<(), ObjectError>;

    /// Drops what was written (best effort: the store's own clean-up catches the rest).
    async fn abort(self: Box<Self>);
}
