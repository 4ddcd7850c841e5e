//! `OtpRepo` and `SessionRepo` on SQLite.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::{SqliteStore, from_micros, micros};
use crate::auth::model::{ClientInfo, Session, SessionId, SessionMethod};
use crate::auth::otp::{IssuePolicy, OtpAttempt, OtpPurpose, OtpRefusal};
use crate::auth::repo::{NewOtp, OtpRepo, Replacing, SessionRepo};
use crate::storage::StoreError;
use crate::users::model::UserId;

#[derive(sqlx::FromRow)]
struct AttemptRow {
    code_hash: Vec<u8>,
    expires_at: i64,
    attempts: i64,
}

#[async_trait]
impl OtpRepo for SqliteStore {
    async fn issue(
        &self,
        otp: &NewOtp,
        policy: &IssuePolicy,
    ) -> Result<Result<(), OtpRefusal>, StoreError> {
        // IMMEDIATE takes the write lock up front: the read of recent sends and the insert
        // cannot interleave with another process's.
        let mut tx = self.writer.begin_with("BEGIN IMMEDIATE").await?;
        let window_start = otp.created_at - IssuePolicy::WINDOW;
        let sent: Vec<i64> = sqlx::query_scalar(
            "SELECT issued_at FROM otp_sends WHERE user_id = $1 AND issued_at > $2",
        )
        .bind(otp.user_id.0)
        .bind(micros(window_start))
        .fetch_all(&mut *tx)
        .await?;
        let sent: Vec<DateTime<Utc>> = sent.into_iter().map(from_micros).collect();
        if let Err(refusal) = policy.check(&sent, otp.created_at) {
            return Ok(Err(refusal));
        }
        sqlx::query("DELETE FROM otp_sends WHERE user_id = $1 AND issued_at <= $2")
            .bind(otp.user_id.0)
            .bind(micros(window_start))
            .execute(&mut *tx)
            .await?;
        sqlx::query("INSERT INTO otp_sends (id, user_id, issued_at) VALUES ($1, $2, $3)")
            .bind(Uuid::now_v7())
            .bind(otp.user_id.0)
            .bind(micros(otp.created_at))
            .execute(&mut *tx)
            .await?;
        sqlx::query(
            "INSERT INTO otps (user_id, purpose, code_hash, attempts, created_at, expires_at) \
             VALUES ($1, $2, $3, 0, $4, $5) \
             ON CONFLICT (user_id, purpose) DO UPDATE SET code_hash = excluded.code_hash, \
             attempts = 0, created_at = excluded.created_at, expires_at = excluded.expires_at, \
             consumed_at = NULL",
        )
        .bind(otp.user_id.0)
        .bind(otp.purpose.as_str())
        .bind(&otp.code_hash)
        .bind(micros(otp.created_at))
        .bind(micros(otp.expires_at))
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(Ok(()))
    }

    async fn record_attempt(
        &self,
        user_id: UserId,
        purpose: OtpPurpose,
    ) -> Result<Option<OtpAttempt>, StoreError> {
        let row: Option<AttemptRow> = sqlx::query_as(
            "UPDATE otps SET attempts = attempts + 1 \
             WHERE user_id = $1 AND purpose = $2 AND consumed_at IS NULL \
             RETURNING code_hash, expires_at, attempts",
        )
        .bind(user_id.0)
        .bind(purpose.as_str())
        .fetch_optional(&self.writer)
        .await?;
        Ok(row.map(|row| OtpAttempt {
            code_hash: row.code_hash,
            expires_at: from_micros(row.expires_at),
            attempts: u32::try_from(row.attempts).unwrap_or(u32::MAX),
        }))
    }

    async fn consume(
        &self,
        user_id: UserId,
        purpose: OtpPurpose,
        code_hash: &[u8],
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "UPDATE otps SET consumed_at = $4 \
             WHERE user_id = $1 AND purpose = $2 AND consumed_at IS NULL AND code_hash = $3",
        )
        .bind(user_id.0)
        .bind(purpose.as_str())
        .bind(code_hash)
        .bind(micros(now))
        .execute(&self.writer)
        .await?;
        Ok(done.rows_affected() == 1)
    }
}

#[derive(sqlx::FromRow)]
struct SessionRow {
    id: Uuid,
    user_id: Uuid,
    method: String,
    created_at: i64,
    expires_at: i64,
    last_used_at: i64,
    ip: Option<String>,
    user_agent: Option<String>,
}

impl From<SessionRow> for Session {
    fn from(row: SessionRow) -> Self {
        Self {
            id: SessionId(row.id),
            user_id: UserId(row.user_id),
            method: SessionMethod::from_db(&row.method),
            created_at: from_micros(row.created_at),
            expires_at: from_micros(row.expires_at),
            last_used_at: from_micros(row.last_used_at),
            client: ClientInfo {
                ip: row.ip,
                user_agent: row.user_agent,
            },
        }
    }
}

fn insert_session(
    session: &Session,
) -> sqlx::query::Query<'_, sqlx::Sqlite, sqlx::sqlite::SqliteArguments> {
    sqlx::query(
        "INSERT INTO sessions \
         (id, user_id, method, created_at, expires_at, last_used_at, ip, user_agent) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
    )
    .bind(session.id.0)
    .bind(session.user_id.0)
    .bind(session.method.as_str())
    .bind(micros(session.created_at))
    .bind(micros(session.expires_at))
    .bind(micros(session.last_used_at))
    .bind(session.client.ip.clone())
    .bind(session.client.user_agent.clone())
}

#[async_trait]
impl SessionRepo for SqliteStore {
    async fn insert(&self, session: &Session) -> Result<(), StoreError> {
        insert_session(session).execute(&self.writer).await?;
        Ok(())
    }

    async fn touch(&self, id: SessionId, now: DateTime<Utc>) -> Result<Option<UserId>, StoreError> {
        let owner: Option<Uuid> = sqlx::query_scalar(
            "UPDATE sessions SET last_used_at = $2 \
             WHERE id = $1 AND revoked_at IS NULL AND expires_at > $2 RETURNING user_id",
        )
        .bind(id.0)
        .bind(micros(now))
        .fetch_optional(&self.writer)
        .await?;
        Ok(owner.map(UserId))
    }

    async fn list_live(
        &self,
        user_id: UserId,
        now: DateTime<Utc>,
    ) -> Result<Vec<Session>, StoreError> {
        let rows: Vec<SessionRow> = sqlx::query_as(
            "SELECT id, user_id, method, created_at, expires_at, last_used_at, ip, user_agent \
             FROM sessions WHERE user_id = $1 AND revoked_at IS NULL AND expires_at > $2 \
             ORDER BY id DESC",
        )
        .bind(user_id.0)
        .bind(micros(now))
        .fetch_all(&self.reader)
        .await?;
        Ok(rows.into_iter().map(Session::from).collect())
    }

    async fn revoke(
        &self,
        user_id: UserId,
        id: SessionId,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "UPDATE sessions SET revoked_at = $3 \
             WHERE id = $2 AND user_id = $1 AND revoked_at IS NULL AND expires_at > $3",
        )
        .bind(user_id.0)
        .bind(id.0)
        .bind(micros(now))
        .execute(&self.writer)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    async fn set_password_and_restart(
        &self,
        password_hash: &str,
        replacing: Replacing<'_>,
        session: &Session,
    ) -> Result<(), StoreError> {
        let mut tx = self.writer.begin_with("BEGIN IMMEDIATE").await?;
        let (any, expected) = match replacing {
            Replacing::Any => (true, None),
            Replacing::Exactly(hash) => (false, hash),
        };
        let updated = sqlx::query(
            "UPDATE users SET password_hash = $2, updated_at = $3 WHERE id = $1 \
             AND ($4 OR password_hash IS NOT DISTINCT FROM $5)",
        )
        .bind(session.user_id.0)
        .bind(password_hash)
        .bind(micros(session.created_at))
        .bind(any)
        .bind(expected)
        .execute(&mut *tx)
        .await?;
        if updated.rows_affected() != 1 {
            let exists: Option<i32> = sqlx::query_scalar("SELECT 1 FROM users WHERE id = $1")
                .bind(session.user_id.0)
                .fetch_optional(&mut *tx)
                .await?;
            return Err(match exists {
                Some(_) => StoreError::Conflict,
                None => StoreError::NotFound,
            });
        }
        sqlx::query(
            "UPDATE sessions SET revoked_at = $2 WHERE user_id = $1 AND revoked_at IS NULL",
        )
        .bind(session.user_id.0)
        .bind(micros(session.created_at))
        .execute(&mut *tx)
        .await?;
        insert_session(session).execute(&mut *tx).await?;
        tx.commit().await?;
        Ok(())
    }
}
