//! The uploads storage port.

use async_trait::async_trait;

use super::model::{Upload, UploadId};
use crate::jobs::queue::NewJob;
use crate::storage::error::StoreError;
use crate::users::model::UserId;

#[async_trait]
pub trait UploadRepo: Send + Sync {
    /// Records an upload whose bytes are stored, and queues `expiry` (its deletion should no
    /// prompt carry it by then) in the same transaction.
    async fn insert(&self, upload: &Upload, expiry: &NewJob) -> Result<(), StoreError>;

    /// One of the user's uploads.
    async fn find(&self, user: UserId, id: UploadId) -> Result<Option<Upload>, StoreError>;

    /// Those of `ids` that have a row (whoever owns them).
    async fn existing(&self, ids: &[UploadId]) -> Result<Vec<UploadId>, StoreError>;

    /// Those of `ids` that are the user's, in the order asked.
    async fn owned(&self, user: UserId, ids: &[UploadId]) -> Result<Vec<Upload>, StoreError>;

    /// Deletes the upload unless a prompt carries it. `Some(key)`: the upload is gone (now or
    /// before) and its bytes may go; `None`: a prompt carries it, it stays.
    async fn delete_unattached(
        &self,
        user: UserId,
        id: UploadId,
    ) -> Result<Option<String>, StoreError>;
}
