//! Uploads: files a user sends with prompts. The row is the metadata; the bytes are in the
//! object store under [`Upload::key`].

use std::fmt;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::users::model::UserId;

/// An upload's id (UUIDv7).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct UploadId(pub Uuid);

impl UploadId {
    pub(crate) fn new() -> Self {
        Self(Uuid::now_v7())
    }
}

impl fmt::Display for UploadId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// Most files one prompt may carry.
pub(crate) const MAX_PER_PROMPT: usize = 4;

/// An uploaded file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Upload {
    pub id: UploadId,
    pub user_id: UserId,
    /// For display only (cleaned: no path, no control characters).
    pub name: String,
    pub mime_type: String,
    pub size: u64,
    /// What the file costs in a model's context (an estimate).
    pub tokens: u32,
    pub created_at: DateTime<Utc>,
}

impl Upload {
    /// Where its bytes are in the object store.
    pub(crate) fn key(&self) -> String {
        object_key(self.user_id, self.id)
    }

    pub(crate) fn is_image(&self) -> bool {
        self.mime_type.starts_with("image/")
    }
}

/// The object-store key of an upload: under its owner, so an account's files share a prefix.
pub(crate) fn object_key(user: UserId, id: UploadId) -> String {
    format!("{user}/{id}")
}
