//! `OtpRepo` and `SessionRepo`, once for both databases.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::SqlStore;
use super::sql::{Connection, FromRecord, Record, Scalar, sql, to_u32};
use crate::auth::model::{ClientInfo, Session, SessionId, SessionMethod};
use crate::auth::otp::{IssuePolicy, OtpAttempt, OtpPurpose, OtpRefusal};
use crate::auth::repo::{NewOtp, OtpRepo, OtpSend, Replacing, SessionRepo};
use crate::storage::error::StoreError;
use crate::users::model::UserId;

impl FromRecord for OtpAttempt {
    fn from_record(row: &dyn Record) -> Result<Self, StoreError> {
        Ok(Self {
            code_hash: row.get("code_hash")?,
            expires_at: row.get("expires_at")?,
            attempts: to_u32(row.get("attempts")?),
        })
    }
}

#[async_trait]
impl OtpRepo for SqlStore {
    async fn reserve(
        &self,
        user_id: UserId,
        at: DateTime<Utc>,
        policy: &IssuePolicy,
    ) -> Result<Result<OtpSend, OtpRefusal>, StoreError> {
        let mut tx = self.db.begin().await?;
        // Serialise sends per user, so two concurrent requests cannot both pass the cooldown.
        self.lock_user(&mut *tx, user_id).await?;
        let window_start = at - IssuePolicy::WINDOW;
        let sent: Vec<Scalar<DateTime<Utc>>> =
            sql("SELECT issued_at AS value FROM otp_sends WHERE user_id = $1 AND issued_at > $2")
                .bind(user_id.0)
                .bind(window_start)
                .fetch_all(&mut *tx)
                .await?;
        let sent: Vec<DateTime<Utc>> = sent.into_iter().map(|Scalar(at)| at).collect();
        if let Err(refusal) = policy.check(&sent, at) {
            return Ok(Err(refusal));
        }
        sql("DELETE FROM otp_sends WHERE user_id = $1 AND issued_at <= $2")
            .bind(user_id.0)
            .bind(window_start)
            .execute(&mut *tx)
            .await?;
        let send = OtpSend(Uuid::now_v7());
        sql("INSERT INTO otp_sends (id, user_id, issued_at) VALUES ($1, $2, $3)")
            .bind(send.0)
            .bind(user_id.0)
            .bind(at)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(Ok(send))
    }

    async fn release(&self, send: OtpSend) -> Result<(), StoreError> {
        sql("DELETE FROM otp_sends WHERE id = $1")
            .bind(send.0)
            .execute(&mut *self.db.writes())
            .await?;
        Ok(())
    }

    async fn store(&self, otp: &NewOtp) -> Result<(), StoreError> {
        sql(
            "INSERT INTO otps (user_id, purpose, code_hash, attempts, created_at, expires_at) \
             VALUES ($1, $2, $3, 0, $4, $5) \
             ON CONFLICT (user_id, purpose) DO UPDATE SET code_hash = EXCLUDED.code_hash, \
             attempts = 0, created_at = EXCLUDED.created_at, expires_at = EXCLUDED.expires_at, \
             consumed_at = NULL",
        )
        .bind(otp.user_id.0)
        .bind(otp.purpose.as_str())
        .bind(otp.code_hash.as_slice())
        .bind(otp.created_at)
        .bind(otp.expires_at)
        .execute(&mut *self.db.writes())
        .await?;
        Ok(())
    }

    async fn record_attempt(
        &self,
        user_id: UserId,
        purpose: OtpPurpose,
    ) -> Result<Option<OtpAttempt>, StoreError> {
        sql("UPDATE otps SET attempts = attempts + 1 \
             WHERE user_id = $1 AND purpose = $2 AND consumed_at IS NULL \
             RETURNING code_hash, expires_at, attempts")
        .bind(user_id.0)
        .bind(purpose.as_str())
        .fetch_optional(&mut *self.db.writes())
        .await
    }

    async fn consume(
        &self,
        user_id: UserId,
        purpose: OtpPurpose,
        code_hash: &[u8],
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let done = sql("UPDATE otps SET consumed_at = $4 \
             WHERE user_id = $1 AND purpose = $2 AND consumed_at IS NULL AND code_hash = $3")
        .bind(user_id.0)
        .bind(purpose.as_str())
        .bind(code_hash)
        .bind(now)
        .execute(&mut *self.db.writes())
        .await?;
        Ok(done == 1)
    }
}

impl FromRecord for Session {
    fn from_record(row: &dyn Record) -> Result<Self, StoreError> {
        Ok(Self {
            id: SessionId(row.get("id")?),
            user_id: UserId(row.get("user_id")?),
            method: SessionMethod::from_db(&row.get::<String>("method")?),
            created_at: row.get("created_at")?,
            expires_at: row.get("expires_at")?,
            last_used_at: row.get("last_used_at")?,
            client: ClientInfo {
                ip: row.get("ip")?,
                user_agent: row.get("user_agent")?,
            },
        })
    }
}

async fn insert_session(session: &Session, on: &mut dyn Connection) -> Result<(), StoreError> {
    sql("INSERT INTO sessions \
         (id, user_id, method, created_at, expires_at, last_used_at, ip, user_agent) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)")
    .bind(session.id.0)
    .bind(session.user_id.0)
    .bind(session.method.as_str())
    .bind(session.created_at)
    .bind(session.expires_at)
    .bind(session.last_used_at)
    .bind(session.client.ip.as_deref())
    .bind(session.client.user_agent.as_deref())
    .execute(on)
    .await?;
    Ok(())
}

#[async_trait]
impl SessionRepo for SqlStore {
    async fn insert(&self, session: &Session) -> Result<(), StoreError> {
        insert_session(session, &mut *self.db.writes()).await
    }

    async fn touch(&self, id: SessionId, now: DateTime<Utc>) -> Result<Option<UserId>, StoreError> {
        // A session signed in while its account was being disabled is dead too.
        let owner: Option<Scalar<Uuid>> = sql("UPDATE sessions SET last_used_at = $2 \
             WHERE id = $1 AND revoked_at IS NULL AND expires_at > $2 AND NOT EXISTS \
             (SELECT 1 FROM users u WHERE u.id = sessions.user_id AND u.disabled_at IS NOT NULL) \
             RETURNING user_id AS value")
        .bind(id.0)
        .bind(now)
        .fetch_optional(&mut *self.db.writes())
        .await?;
        Ok(owner.map(|Scalar(user)| UserId(user)))
    }

    async fn list_live(
        &self,
        user_id: UserId,
        now: DateTime<Utc>,
    ) -> Result<Vec<Session>, StoreError> {
        sql(
            "SELECT id, user_id, method, created_at, expires_at, last_used_at, ip, user_agent \
             FROM sessions WHERE user_id = $1 AND revoked_at IS NULL AND expires_at > $2 \
             ORDER BY id DESC",
        )
        .bind(user_id.0)
        .bind(now)
        .fetch_all(&mut *self.db.reads())
        .await
    }

    async fn revoke(
        &self,
        user_id: UserId,
        id: SessionId,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let done = sql("UPDATE sessions SET revoked_at = $3 \
             WHERE id = $2 AND user_id = $1 AND revoked_at IS NULL AND expires_at > $3")
        .bind(user_id.0)
        .bind(id.0)
        .bind(now)
        .execute(&mut *self.db.writes())
        .await?;
        Ok(done == 1)
    }

    async fn set_password_and_restart(
        &self,
        password_hash: &str,
        replacing: Replacing<'_>,
        session: &Session,
    ) -> Result<(), StoreError> {
        let mut tx = self.db.begin().await?;
        let (any, expected) = match replacing {
            Replacing::Any => (true, None),
            Replacing::Exactly(hash) => (false, hash),
        };
        let updated = sql(
            "UPDATE users SET password_hash = $2, updated_at = $3 WHERE id = $1 \
             AND ($4 OR password_hash IS NOT DISTINCT FROM $5)",
        )
        .bind(session.user_id.0)
        .bind(password_hash)
        .bind(session.created_at)
        .bind(any)
        .bind(expected)
        .execute(&mut *tx)
        .await?;
        if updated != 1 {
            let exists: Option<Scalar<i64>> = sql("SELECT 1 AS value FROM users WHERE id = $1")
                .bind(session.user_id.0)
                .fetch_optional(&mut *tx)
                .await?;
            return Err(match exists {
                Some(_) => StoreError::Conflict,
                None => StoreError::NotFound,
            });
        }
        sql("UPDATE sessions SET revoked_at = $2 WHERE user_id = $1 AND revoked_at IS NULL")
            .bind(session.user_id.0)
            .bind(session.created_at)
            .execute(&mut *tx)
            .await?;
        insert_session(session, &mut *tx).await?;
        tx.commit().await?;
        Ok(())
    }
}
