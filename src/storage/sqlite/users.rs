//! `UserRepo` on SQLite.

use async_trait::async_trait;
use chrono::{DateTime, NaiveDate, Utc};
use uuid::Uuid;

use super::{SqliteStore, from_micros, micros};
use crate::storage::StoreError;
use crate::users::model::{MobileNumber, Tier, User, UserId};
use crate::users::repo::UserRepo;

#[derive(sqlx::FromRow)]
struct UserRow {
    id: Uuid,
    mobile_number: String,
    name: Option<String>,
    password_hash: Option<String>,
    is_pro: bool,
    created_at: i64,
    updated_at: i64,
}

/// A user with one day's usage (`find_with_usage`).
#[derive(sqlx::FromRow)]
struct UserUsageRow {
    #[sqlx(flatten)]
    user: UserRow,
    used_today: i64,
}

impl From<UserRow> for User {
    fn from(row: UserRow) -> Self {
        Self {
            id: UserId(row.id),
            mobile_number: MobileNumber::from_trusted(row.mobile_number),
            name: row.name,
            password_hash: row.password_hash,
            tier: if row.is_pro { Tier::Pro } else { Tier::Basic },
            created_at: from_micros(row.created_at),
            updated_at: from_micros(row.updated_at),
        }
    }
}

/// The columns a `UserRow` reads (from `users u`), the tier derived: whether any subscription
/// of the user grants Pro at `$2`.
macro_rules! user_columns {
    () => {
        "u.id, u.mobile_number, u.name, u.password_hash, u.created_at, u.updated_at, \
         EXISTS (SELECT 1 FROM subscriptions s WHERE s.user_id = u.id AND s.pro_until > $2) AS is_pro"
    };
}

#[async_trait]
impl UserRepo for SqliteStore {
    async fn insert(&self, user: &User) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO users (id, mobile_number, name, password_hash, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(user.id.0)
        .bind(user.mobile_number.as_str())
        .bind(user.name.as_deref())
        .bind(user.password_hash.as_deref())
        .bind(micros(user.created_at))
        .bind(micros(user.updated_at))
        .execute(&self.writer)
        .await?;
        Ok(())
    }

    async fn find_by_id(&self, id: UserId, now: DateTime<Utc>) -> Result<Option<User>, StoreError> {
        let row: Option<UserRow> = sqlx::query_as(concat!(
            "SELECT ",
            user_columns!(),
            " FROM users u WHERE u.id = $1"
        ))
        .bind(id.0)
        .bind(micros(now))
        .fetch_optional(&self.reader)
        .await?;
        Ok(row.map(User::from))
    }

    async fn find_with_usage(
        &self,
        id: UserId,
        now: DateTime<Utc>,
        day: NaiveDate,
    ) -> Result<Option<(User, u32)>, StoreError> {
        let row: Option<UserUsageRow> = sqlx::query_as(concat!(
            "SELECT ",
            user_columns!(),
            ", COALESCE((SELECT d.used FROM daily_usage d WHERE d.user_id = u.id AND d.day = $3), 0) \
             AS used_today FROM users u WHERE u.id = $1"
        ))
        .bind(id.0)
        .bind(micros(now))
        .bind(day.to_string())
        .fetch_optional(&self.reader)
        .await?;
        Ok(row.map(|r| (User::from(r.user), u32::try_from(r.used_today).unwrap_or(0))))
    }

    async fn find_by_mobile(
        &self,
        mobile: &MobileNumber,
        now: DateTime<Utc>,
    ) -> Result<Option<User>, StoreError> {
        let row: Option<UserRow> = sqlx::query_as(concat!(
            "SELECT ",
            user_columns!(),
            " FROM users u WHERE u.mobile_number = $1"
        ))
        .bind(mobile.as_str())
        .bind(micros(now))
        .fetch_optional(&self.reader)
        .await?;
        Ok(row.map(User::from))
    }

    async fn update_name(
        &self,
        id: UserId,
        name: &str,
        now: DateTime<Utc>,
    ) -> Result<User, StoreError> {
        let updated = sqlx::query("UPDATE users SET name = $2, updated_at = $3 WHERE id = $1")
            .bind(id.0)
            .bind(name)
            .bind(micros(now))
            .execute(&self.writer)
            .await?;
        if updated.rows_affected() != 1 {
            return Err(StoreError::NotFound);
        }
        self.find_by_id(id, now).await?.ok_or(StoreError::NotFound)
    }
}
