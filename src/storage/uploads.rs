//! `UploadRepo`, and the attachments of messages, once for both databases.

use async_trait::async_trait;

use super::SqlStore;
use super::sql::{Connection, FromRecord, Record, Scalar, sql};
use crate::chatrooms::model::ChatroomId;
use crate::jobs::queue::NewJob;
use crate::messages::model::MessageId;
use crate::storage::error::StoreError;
use crate::uploads::model::{Upload, UploadId, object_key};
use crate::uploads::repo::UploadRepo;
use crate::users::model::UserId;

/// The columns an `Upload` reads, of the uploads table as `u`.
const UPLOAD_COLUMNS: &str = "u.id, u.user_id, u.name, u.mime_type, u.size, u.tokens, u.created_at";

impl FromRecord for Upload {
    fn from_record(row: &dyn Record) -> Result<Self, StoreError> {
        Ok(Self {
            id: UploadId(row.get("id")?),
            user_id: UserId(row.get("user_id")?),
            name: row.get("name")?,
            mime_type: row.get("mime_type")?,
            size: u64::try_from(row.get::<i64>("size")?).unwrap_or(0),
            tokens: super::sql::to_u32(row.get("tokens")?),
            created_at: row.get("created_at")?,
        })
    }
}

/// An attachment as read with its message.
struct Attached {
    message_id: MessageId,
    upload: Upload,
}

impl FromRecord for Attached {
    fn from_record(row: &dyn Record) -> Result<Self, StoreError> {
        Ok(Self {
            message_id: MessageId(row.get("message_id")?),
            upload: Upload::from_record(row)?,
        })
    }
}

/// `$first, $first+1, …` for `count` values.
fn placeholders(first: usize, count: usize) -> String {
    let list: Vec<String> = (first..first + count).map(|i| format!("${i}")).collect();
    list.join(", ")
}

/// The files each of `messages` carries, in order, as (message, upload) pairs.
pub(super) async fn attachments_of(
    on: &mut dyn Connection,
    messages: &[MessageId],
) -> Result<Vec<(MessageId, Upload)>, StoreError> {
    if messages.is_empty() {
        return Ok(Vec::new());
    }
    let mut lookup = sql(format!(
        "SELECT a.message_id, {UPLOAD_COLUMNS} FROM message_attachments a \
         JOIN uploads u ON u.id = a.upload_id WHERE a.message_id IN ({}) \
         ORDER BY a.message_id, a.position",
        placeholders(1, messages.len())
    ));
    for message in messages {
        lookup = lookup.bind(message.0);
    }
    let found: Vec<Attached> = lookup.fetch_all(on).await?;
    Ok(found
        .into_iter()
        .map(|a| (a.message_id, a.upload))
        .collect())
}

/// Attaches `uploads` to `message`, in order, each only if it is still `user`'s: `false` (and
/// the caller rolls back) when one is gone. On PostgreSQL the reference holds the upload's
/// row against a concurrent expiry until the transaction ends.
pub(super) async fn attach(
    on: &mut dyn Connection,
    user: UserId,
    message: MessageId,
    uploads: &[UploadId],
) -> Result<bool, StoreError> {
    for (position, upload) in uploads.iter().enumerate() {
        let inserted = sql(
            "INSERT INTO message_attachments (message_id, position, upload_id) \
             SELECT $1, $2, id FROM uploads WHERE id = $3 AND user_id = $4",
        )
        .bind(message.0)
        .bind(i64::try_from(position).unwrap_or(i64::MAX))
        .bind(upload.0)
        .bind(user.0)
        .execute(&mut *on)
        .await?;
        if inserted != 1 {
            return Ok(false);
        }
    }
    Ok(true)
}

/// Inside a transaction about to delete the user's `room`: the uploads that only its
/// prompts carry (their rows can go once the room's messages have).
pub(super) async fn uploads_only_in_room(
    on: &mut dyn Connection,
    user: UserId,
    room: ChatroomId,
) -> Result<Vec<Upload>, StoreError> {
    sql(format!(
        "SELECT {UPLOAD_COLUMNS} FROM uploads u WHERE u.user_id = $2 AND u.id IN ( \
             SELECT a.upload_id FROM message_attachments a \
             JOIN messages m ON m.id = a.message_id WHERE m.chatroom_id = $1) \
         AND NOT EXISTS (SELECT 1 FROM message_attachments a \
             JOIN messages m ON m.id = a.message_id \
             WHERE a.upload_id = u.id AND m.chatroom_id <> $1)"
    ))
    .bind(room.0)
    .bind(user.0)
    .fetch_all(on)
    .await
}

/// Every upload of `user`, attached or not.
pub(super) async fn uploads_of_user(
    on: &mut dyn Connection,
    user: UserId,
) -> Result<Vec<Upload>, StoreError> {
    sql(format!(
        "SELECT {UPLOAD_COLUMNS} FROM uploads u WHERE u.user_id = $1"
    ))
    .bind(user.0)
    .fetch_all(on)
    .await
}

/// Deletes the rows of `uploads` (no prompt carries them any more).
pub(super) async fn delete_rows(
    on: &mut dyn Connection,
    uploads: &[Upload],
) -> Result<(), StoreError> {
    for upload in uploads {
        sql("DELETE FROM uploads WHERE id = $1")
            .bind(upload.id.0)
            .execute(&mut *on)
            .await?;
    }
    Ok(())
}

#[async_trait]
impl UploadRepo for SqlStore {
    async fn insert(&self, upload: &Upload, expiry: &NewJob) -> Result<(), StoreError> {
        let mut tx = self.db.begin().await?;
        sql(
            "INSERT INTO uploads (id, user_id, name, mime_type, size, tokens, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(upload.id.0)
        .bind(upload.user_id.0)
        .bind(upload.name.as_str())
        .bind(upload.mime_type.as_str())
        .bind(i64::try_from(upload.size).unwrap_or(i64::MAX))
        .bind(upload.tokens)
        .bind(upload.created_at)
        .execute(&mut *tx)
        .await?;
        self.enqueue_in(&mut *tx, expiry).await?;
        tx.commit().await?;
        self.wake_workers().await;
        Ok(())
    }

    async fn find(&self, user: UserId, id: UploadId) -> Result<Option<Upload>, StoreError> {
        sql(format!(
            "SELECT {UPLOAD_COLUMNS} FROM uploads u WHERE u.id = $1 AND u.user_id = $2"
        ))
        .bind(id.0)
        .bind(user.0)
        .fetch_optional(&mut *self.db.reads())
        .await
    }

    async fn existing(&self, ids: &[UploadId]) -> Result<Vec<UploadId>, StoreError> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let mut lookup = sql(format!(
            "SELECT id AS value FROM uploads WHERE id IN ({})",
            placeholders(1, ids.len())
        ));
        for id in ids {
            lookup = lookup.bind(id.0);
        }
        let found: Vec<Scalar<uuid::Uuid>> = lookup.fetch_all(&mut *self.db.reads()).await?;
        Ok(found.into_iter().map(|Scalar(id)| UploadId(id)).collect())
    }

    async fn owned(&self, user: UserId, ids: &[UploadId]) -> Result<Vec<Upload>, StoreError> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let mut lookup = sql(format!(
            "SELECT {UPLOAD_COLUMNS} FROM uploads u WHERE u.user_id = $1 AND u.id IN ({})",
            placeholders(2, ids.len())
        ))
        .bind(user.0);
        for id in ids {
            lookup = lookup.bind(id.0);
        }
        let found: Vec<Upload> = lookup.fetch_all(&mut *self.db.reads()).await?;
        Ok(ids
            .iter()
            .filter_map(|id| found.iter().find(|u| u.id == *id).cloned())
            .collect())
    }

    async fn delete_unattached(
        &self,
        user: UserId,
        id: UploadId,
    ) -> Result<Option<String>, StoreError> {
        let mut tx = self.db.begin().await?;
        sql("DELETE FROM uploads WHERE id = $1 AND NOT EXISTS \
             (SELECT 1 FROM message_attachments WHERE upload_id = $1)")
        .bind(id.0)
        .execute(&mut *tx)
        .await?;
        let Scalar(kept): Scalar<bool> =
            sql("SELECT EXISTS (SELECT 1 FROM uploads WHERE id = $1) AS value")
                .bind(id.0)
                .fetch_one(&mut *tx)
                .await?;
        tx.commit().await?;
        Ok((!kept).then(|| object_key(user, id)))
    }
}
