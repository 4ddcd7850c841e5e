//! Storage ports of the auth domain: one-time codes and sessions.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::model::{Session, SessionId};
use super::otp::{IssuePolicy, OtpAttempt, OtpPurpose, OtpRefusal};
use crate::storage::error::StoreError;
use crate::users::model::UserId;

/// A code to store (only its keyed hash).
#[derive(Debug, Clone)]
pub struct NewOtp {
    pub user_id: UserId,
    pub purpose: OtpPurpose,
    pub code_hash: Vec<u8>,
    pub created_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
}

/// A send recorded against a user's cooldown and hourly cap, before the code goes out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OtpSend(pub Uuid);

#[async_trait]
pub trait OtpRepo: Send + Sync {
    /// In one transaction, serialised per user: checks `policy` against the codes sent to this
    /// user in the last hour and records a send at `at`. The code itself is stored only once
    /// it was delivered ([`OtpRepo::store`]); a failed delivery gives the send back
    /// ([`OtpRepo::release`]), so it spends no cooldown.
    async fn reserve(
        &self,
        user_id: UserId,
        at: DateTime<Utc>,
        policy: &IssuePolicy,
    ) -> Result<Result<OtpSend, OtpRefusal>, StoreError>;

    /// Forgets a reserved send whose code could not be delivered.
    async fn release(&self, send: OtpSend) -> Result<(), StoreError>;

    /// Makes a delivered code the live one of its user and purpose, replacing any earlier one.
    async fn store(&self, otp: &NewOtp) -> Result<(), StoreError>;

    /// Counts one attempt against the unconsumed code of this user and purpose, atomically,
    /// and returns the code's state after counting; `None` when there is no such code.
    async fn record_attempt(
        &self,
        user_id: UserId,
        purpose: OtpPurpose,
    ) -> Result<Option<OtpAttempt>, StoreError>;

    /// Marks the code used, if it is still unconsumed and still the one hashed `code_hash`.
    /// Returns false when a concurrent request consumed or replaced it first.
    async fn consume(
        &self,
        user_id: UserId,
        purpose: OtpPurpose,
        code_hash: &[u8],
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError>;
}

#[async_trait]
pub trait SessionRepo: Send + Sync {
    async fn insert(&self, session: &Session) -> Result<(), StoreError>;

    /// Records a use of the session at `now` and returns its owner, if it is live
    /// (neither revoked nor expired).
    async fn touch(&self, id: SessionId, now: DateTime<Utc>) -> Result<Option<UserId>, StoreError>;

    /// The user's live sessions, newest first.
    async fn list_live(
        &self,
        user_id: UserId,
        now: DateTime<Utc>,
    ) -> Result<Vec<Session>, StoreError>;

    /// Revokes one live session of the user; false if there is none with that id.
    async fn revoke(
        &self,
        user_id: UserId,
        id: SessionId,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError>;

    /// In one transaction: sets the user's password hash, revokes every session of the user,
    /// and starts `session`. With [`Replacing::Exactly`], only if the stored hash is still that
    /// one (else `Conflict`, and nothing changes): of concurrent changes, one wins.
    async fn set_password_and_restart(
        &self,
        password_hash: &str,
        replacing: Replacing<'_>,
        session: &Session,
    ) -> Result<(), StoreError>;
}

/// Which password a change may replace.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Replacing<'a> {
    /// Whatever is stored (a reset proven by a one-time code).
    Any,
    /// Only this hash (`None`: only while the account has no password yet).
    Exactly(Option<&'a str>),
}
