//! `UserRepo` on SQLite.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
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
    tier: String,
    created_at: i64,
    updated_at: i64,
}

impl From<UserRow> for User {
    fn from(row: UserRow) -> Self {
        Self {
            id: UserId(row.id),
            mobile_number: MobileNumber::from_trusted(row.mobile_number),
            name: row.name,
            password_hash: row.password_hash,
            tier: Tier::from_db(&row.tier),
            created_at: from_micros(row.created_at),
            updated_at: from_micros(row.updated_at),
        }
    }
}

#[async_trait]
impl UserRepo for SqliteStore {
    async fn insert(&self, user: &User) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO users (id, mobile_number, name, password_hash, tier, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(user.id.0)
        .bind(user.mobile_number.as_str())
        .bind(user.name.as_deref())
        .bind(user.password_hash.as_deref())
        .bind(user.tier.as_str())
        .bind(micros(user.created_at))
        .bind(micros(user.updated_at))
        .execute(&self.writer)
        .await?;
        Ok(())
    }

    async fn find_by_id(&self, id: UserId) -> Result<Option<User>, StoreError> {
        let row: Option<UserRow> = sqlx::query_as(
            "SELECT id, mobile_number, name, password_hash, tier, created_at, updated_at \
             FROM users WHERE id = $1",
        )
        .bind(id.0)
        .fetch_optional(&self.reader)
        .await?;
        Ok(row.map(User::from))
    }

    async fn find_by_mobile(&self, mobile: &MobileNumber) -> Result<Option<User>, StoreError> {
        let row: Option<UserRow> = sqlx::query_as(
            "SELECT id, mobile_number, name, password_hash, tier, created_at, updated_at \
             FROM users WHERE mobile_number = $1",
        )
        .bind(mobile.as_str())
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
        let row: UserRow = sqlx::query_as(
            "UPDATE users SET name = $2, updated_at = $3 WHERE id = $1 \
             RETURNING id, mobile_number, name, password_hash, tier, created_at, updated_at",
        )
        .bind(id.0)
        .bind(name)
        .bind(micros(now))
        .fetch_one(&self.writer)
        .await?;
        Ok(row.into())
    }
}
