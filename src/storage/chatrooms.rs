//! `ChatroomRepo`, once for both databases.

use async_trait::async_trait;
use chrono::{DateTime, NaiveDate, Utc};

use super::SqlStore;
use super::sql::{FromRecord, Lock, Record, Scalar, sql};
use crate::chatrooms::model::{Chatroom, ChatroomId, NameSource};
use crate::chatrooms::repo::ChatroomRepo;
use crate::storage::error::StoreError;
use crate::uploads::cleanup::DeleteObjects;
use crate::users::model::UserId;

impl FromRecord for Chatroom {
    fn from_record(row: &dyn Record) -> Result<Self, StoreError> {
        Ok(Self {
            id: ChatroomId(row.get("id")?),
            user_id: UserId(row.get("user_id")?),
            name: row.get("name")?,
            name_source: NameSource::from_db(&row.get::<String>("name_source")?),
            created_at: row.get("created_at")?,
            updated_at: row.get("updated_at")?,
            last_message_at: row.get("last_message_at")?,
        })
    }
}

/// The columns a `Chatroom` reads.
macro_rules! chatroom_columns {
    () => {
        "id, user_id, name, name_source, created_at, updated_at, last_message_at"
    };
}

#[async_trait]
impl ChatroomRepo for SqlStore {
    async fn create(&self, room: &Chatroom, max_per_user: u32) -> Result<bool, StoreError> {
        let mut tx = self.db.begin().await?;
        // Serialise creations per user so the count cannot be raced past the limit.
        self.lock_user(&mut *tx, room.user_id).await?;
        let Scalar(count) = sql("SELECT count(*) AS value FROM chatrooms WHERE user_id = $1")
            .bind(room.user_id.0)
            .fetch_one::<Scalar<i64>>(&mut *tx)
            .await?;
        if count >= i64::from(max_per_user) {
            return Ok(false);
        }
        sql("INSERT INTO chatrooms \
             (id, user_id, name, name_source, created_at, updated_at, last_message_at, \
             activity_at) VALUES ($1, $2, $3, $4, $5, $6, NULL, $5)")
        .bind(room.id.0)
        .bind(room.user_id.0)
        .bind(room.name.as_str())
        .bind(room.name_source.as_str())
        .bind(room.created_at)
        .bind(room.updated_at)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(true)
    }

    async fn list(&self, user: UserId) -> Result<Vec<Chatroom>, StoreError> {
        sql(concat!(
            "SELECT ",
            chatroom_columns!(),
            " FROM chatrooms \
             WHERE user_id = $1 ORDER BY activity_at DESC, id DESC"
        ))
        .bind(user.0)
        .fetch_all(&mut *self.db.reads())
        .await
    }

    async fn find(&self, user: UserId, id: ChatroomId) -> Result<Option<Chatroom>, StoreError> {
        sql(concat!(
            "SELECT ",
            chatroom_columns!(),
            " FROM chatrooms WHERE id = $1 AND user_id = $2"
        ))
        .bind(id.0)
        .bind(user.0)
        .fetch_optional(&mut *self.db.reads())
        .await
    }

    async fn rename(
        &self,
        user: UserId,
        id: ChatroomId,
        name: &str,
        now: DateTime<Utc>,
    ) -> Result<Option<Chatroom>, StoreError> {
        sql(concat!(
            "UPDATE chatrooms SET name = $3, name_source = 'user', updated_at = $4 \
             WHERE id = $1 AND user_id = $2 RETURNING ",
            chatroom_columns!()
        ))
        .bind(id.0)
        .bind(user.0)
        .bind(name)
        .bind(now)
        .fetch_optional(&mut *self.db.writes())
        .await
    }

    async fn set_title(
        &self,
        id: ChatroomId,
        title: &str,
        now: DateTime<Utc>,
    ) -> Result<Option<Chatroom>, StoreError> {
        sql(concat!(
            "UPDATE chatrooms SET name = $2, name_source = 'title', updated_at = $3 \
             WHERE id = $1 AND name_source = 'default' RETURNING ",
            chatroom_columns!()
        ))
        .bind(id.0)
        .bind(title)
        .bind(now)
        .fetch_optional(&mut *self.db.writes())
        .await
    }

    async fn delete(
        &self,
        user: UserId,
        id: ChatroomId,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let mut tx = self.db.begin().await?;
        // The files only this room's prompts carry go with it: their rows after the messages'
        // cascade, their bytes through a job queued in this transaction.
        let files = super::uploads::uploads_only_in_room(&mut *tx, user, id).await?;
        // Replies still queued will never be produced: their prompts go back to the days they
        // were taken from (a reply already streaming has reached the model, and counts).
        let days: Vec<Scalar<NaiveDate>> = sql(format!(
            "SELECT quota_day AS value FROM messages WHERE chatroom_id = $1 AND user_id = $2 \
             AND role = 'model' AND status = 'pending' AND quota_day IS NOT NULL{}",
            self.locked(Lock::Update)
        ))
        .bind(id.0)
        .bind(user.0)
        .fetch_all(&mut *tx)
        .await?;
        let done = sql("DELETE FROM chatrooms WHERE id = $1 AND user_id = $2")
            .bind(id.0)
            .bind(user.0)
            .execute(&mut *tx)
            .await?;
        if done != 1 {
            return Ok(false);
        }
        super::uploads::delete_rows(&mut *tx, &files).await?;
        if let Some(job) = DeleteObjects::queued(&files, now) {
            self.enqueue_in(&mut *tx, &job).await?;
        }
        let days = days.into_iter().map(|Scalar(day)| day).collect();
        for (day, count) in crate::storage::tally(days) {
            sql(
                "UPDATE daily_usage SET used = CASE WHEN used > $3 THEN used - $3 ELSE 0 END \
                 WHERE user_id = $1 AND day = $2",
            )
            .bind(user.0)
            .bind(day)
            .bind(count)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        self.wake_workers().await;
        Ok(true)
    }
}
