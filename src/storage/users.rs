//! `UserRepo`, once for both databases.

use async_trait::async_trait;
use chrono::{DateTime, NaiveDate, Utc};

use super::SqlStore;
use super::sql::{FromRecord, Record, Scalar, Statement, sql, to_u32};
use crate::chatrooms::model::ChatroomId;
use crate::storage::error::StoreError;
use crate::uploads::cleanup::DeleteObjects;
use crate::users::model::{MobileNumber, Tier, User, UserId};
use crate::users::repo::{DeletedAccount, Profile, UserRepo};

impl FromRecord for User {
    fn from_record(row: &dyn Record) -> Result<Self, StoreError> {
        Ok(Self {
            id: UserId(row.get("id")?),
            mobile_number: MobileNumber::from_trusted(row.get("mobile_number")?),
            name: row.get("name")?,
            password_hash: row.get("password_hash")?,
            tier: if row.get("is_pro")? {
                Tier::Pro
            } else {
                Tier::Basic
            },
            disabled: row.get("disabled")?,
            is_admin: row.get("is_admin")?,
            created_at: row.get("created_at")?,
            updated_at: row.get("updated_at")?,
        })
    }
}

impl FromRecord for Profile {
    fn from_record(row: &dyn Record) -> Result<Self, StoreError> {
        Ok(Self {
            user: User::from_record(row)?,
            used_today: to_u32(row.get("used_today")?),
            pro_until: row.get("pro_until")?,
        })
    }
}

/// The columns a `User` reads (from `users u`), the tier derived: whether any subscription of
/// the user grants Pro at `$2`.
macro_rules! user_columns {
    () => {
        "u.id, u.mobile_number, u.name, u.password_hash, u.created_at, u.updated_at, \
         u.disabled_at IS NOT NULL AS disabled, u.is_admin, (u.pro_override OR EXISTS (SELECT 1 FROM \
         subscriptions s WHERE s.user_id = u.id AND s.pro_until > $2)) AS is_pro"
    };
}
pub(crate) use user_columns;

#[async_trait]
impl UserRepo for SqlStore {
    async fn insert(&self, user: &User) -> Result<(), StoreError> {
        sql(
            "INSERT INTO users (id, mobile_number, name, password_hash, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(user.id.0)
        .bind(user.mobile_number.as_str())
        .bind(user.name.as_deref())
        .bind(user.password_hash.as_deref())
        .bind(user.created_at)
        .bind(user.updated_at)
        .execute(&mut *self.db.writes())
        .await?;
        Ok(())
    }

    async fn find_by_id(&self, id: UserId, now: DateTime<Utc>) -> Result<Option<User>, StoreError> {
        by_id(id, now).fetch_optional(&mut *self.db.reads()).await
    }

    async fn find_with_usage(
        &self,
        id: UserId,
        now: DateTime<Utc>,
        day: NaiveDate,
    ) -> Result<Option<Profile>, StoreError> {
        sql(concat!(
            "SELECT ",
            user_columns!(),
            ", COALESCE((SELECT d.used FROM daily_usage d WHERE d.user_id = u.id AND d.day = $3), 0) \
             AS used_today, (SELECT MAX(s.pro_until) FROM subscriptions s WHERE s.user_id = u.id) \
             AS pro_until FROM users u WHERE u.id = $1"
        ))
        .bind(id.0)
        .bind(now)
        .bind(day)
        .fetch_optional(&mut *self.db.reads())
        .await
    }

    async fn find_by_mobile(
        &self,
        mobile: &MobileNumber,
        now: DateTime<Utc>,
    ) -> Result<Option<User>, StoreError> {
        sql(concat!(
            "SELECT ",
            user_columns!(),
            " FROM users u WHERE u.mobile_number = $1"
        ))
        .bind(mobile.as_str())
        .bind(now)
        .fetch_optional(&mut *self.db.reads())
        .await
    }

    async fn update_name(
        &self,
        id: UserId,
        name: &str,
        now: DateTime<Utc>,
    ) -> Result<User, StoreError> {
        let updated = sql("UPDATE users SET name = $2, updated_at = $3 WHERE id = $1")
            .bind(id.0)
            .bind(name)
            .bind(now)
            .execute(&mut *self.db.writes())
            .await?;
        if updated != 1 {
            return Err(StoreError::NotFound);
        }
        // Read from the writer: a reader could lag behind the write just made.
        by_id(id, now).fetch_one(&mut *self.db.writes()).await
    }

    async fn delete(
        &self,
        id: UserId,
        now: DateTime<Utc>,
    ) -> Result<Option<DeletedAccount>, StoreError> {
        let mut tx = self.db.begin().await?;
        // Locks the user against concurrent sends and sign-ins; gone already: nothing to do.
        let Some(Scalar(_)) = sql(format!(
            "SELECT 1 AS value FROM users WHERE id = $1{}",
            self.locked(super::sql::Lock::Update)
        ))
        .bind(id.0)
        .fetch_optional::<Scalar<i64>>(&mut *tx)
        .await?
        else {
            return Ok(None);
        };
        let rooms: Vec<Scalar<uuid::Uuid>> =
            sql("SELECT id AS value FROM chatrooms WHERE user_id = $1")
                .bind(id.0)
                .fetch_all(&mut *tx)
                .await?;
        let files = super::uploads::uploads_of_user(&mut *tx, id).await?;
        // Every row of the account goes by cascade from its user row.
        sql("DELETE FROM users WHERE id = $1")
            .bind(id.0)
            .execute(&mut *tx)
            .await?;
        // The bytes go through jobs that belong to no one, so they outlive the account; were
        // they lost anyway, the daily sweep finds objects without rows.
        for batch in files.chunks(DeleteObjects::MAX_KEYS) {
            if let Some(job) = DeleteObjects::queued(batch, now) {
                self.enqueue_in(&mut *tx, &job).await?;
            }
        }
        tx.commit().await?;
        self.wake_workers().await;
        Ok(Some(DeletedAccount {
            chatrooms: rooms.into_iter().map(|Scalar(id)| ChatroomId(id)).collect(),
            files: files.len(),
        }))
    }
}

/// The user with this id, its tier as of `now`.
fn by_id(id: UserId, now: DateTime<Utc>) -> Statement {
    sql(concat!(
        "SELECT ",
        user_columns!(),
        " FROM users u WHERE u.id = $1"
    ))
    .bind(id.0)
    .bind(now)
}
