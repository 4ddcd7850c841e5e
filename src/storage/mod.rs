//! Storage: [`Store`] holds one adapter per repository port, chosen by the `DATABASE_URL`
//! scheme (`sqlite:` or `postgres:`), and [`StoreError`], the one error every adapter returns.

mod admin;
mod auth;
mod billing;
mod branches;
mod chatrooms;
mod driver;
pub mod error;
mod jobs;
mod messages;
mod postgres;
mod replies;
mod sql;
mod sqlite;
mod uploads;
mod usage;
mod users;

use std::sync::Arc;

use async_trait::async_trait;

use crate::auth::repo::{OtpRepo, SessionRepo};
use crate::billing::repo::BillingRepo;
use crate::chatrooms::repo::ChatroomRepo;
use crate::jobs::queue::JobQueue;
use crate::messages::repo::{BranchRepo, MessageRepo};
use crate::quota::repo::UsageRepo;
use crate::replies::repo::ReplyRepo;
use crate::storage::error::StoreError;
use crate::uploads::repo::UploadRepo;
use crate::users::repo::UserRepo;

/// Answers whether the database is reachable.
#[async_trait]
pub trait HealthCheck: Send + Sync {
    /// A query through the pool (for `/ready`).
    async fn ping(&self) -> Result<(), StoreError>;

    /// A query that does not wait for the pool: whether the server answers at all, even while
    /// every pooled connection is busy (for the database gate).
    async fn probe(&self) -> Result<(), StoreError> {
        self.ping().await
    }
}

/// The repositories written once over the [`sql::Dialect`] of either database.
pub(crate) struct SqlStore {
    db: Arc<dyn sql::Dialect>,
    /// Wakes this process's workers when it queued work or a chatroom's next job became first
    /// in line (no round trip).
    local_jobs: tokio::sync::Notify,
}

impl SqlStore {
    /// The lock clause to append to a `SELECT` in a transaction (empty where none is needed).
    fn locked(&self, lock: sql::Lock) -> &'static str {
        self.db.lock(lock).unwrap_or_default()
    }

    /// Inside a transaction: serialises writers acting for `user` (on PostgreSQL a row lock
    /// that does not block inserts merely referencing the user; SQLite's write transaction
    /// already does). `NotFound` if there is no such user.
    async fn lock_user(
        &self,
        tx: &mut dyn sql::Connection,
        user: crate::users::model::UserId,
    ) -> Result<(), StoreError> {
        if let Some(lock) = self.db.lock(sql::Lock::NoKeyUpdate) {
            sql::sql(format!("SELECT 1 AS value FROM users WHERE id = $1{lock}"))
                .bind(user.0)
                .fetch_one::<sql::Scalar<i64>>(tx)
                .await?;
        }
        Ok(())
    }
}

#[async_trait]
impl HealthCheck for SqlStore {
    async fn ping(&self) -> Result<(), StoreError> {
        sql::sql("SELECT 1").execute(&mut *self.db.reads()).await?;
        Ok(())
    }

    async fn probe(&self) -> Result<(), StoreError> {
        self.db.probe().await
    }
}

/// The repositories, each behind its port.
#[derive(Clone)]
pub struct Store {
    pub users: Arc<dyn UserRepo>,
    pub admin: Arc<dyn crate::admin::repo::AdminRepo>,
    pub otps: Arc<dyn OtpRepo>,
    pub sessions: Arc<dyn SessionRepo>,
    pub usage: Arc<dyn UsageRepo>,
    pub chatrooms: Arc<dyn ChatroomRepo>,
    pub messages: Arc<dyn MessageRepo>,
    pub branches: Arc<dyn BranchRepo>,
    pub jobs: Arc<dyn JobQueue>,
    pub replies: Arc<dyn ReplyRepo>,
    pub billing: Arc<dyn BillingRepo>,
    pub uploads: Arc<dyn UploadRepo>,
    pub health: Arc<dyn HealthCheck>,
}

impl Store {
    /// Connects to the database named by `url` and, if `migrate`, brings its schema up to date
    /// (safe when several processes start at once).
    pub async fn connect(url: &str, migrate: bool) -> anyhow::Result<Self> {
        let db: Arc<dyn sql::Dialect> =
            if url.starts_with("postgres://") || url.starts_with("postgresql://") {
                let store = Arc::new(postgres::PgStore::connect(url).await?);
                if migrate {
                    store.migrate().await?;
                }
                store
            } else if url.starts_with("sqlite:") {
                let store = Arc::new(sqlite::SqliteStore::connect(url).await?);
                if migrate {
                    store.migrate().await?;
                }
                store
            } else {
                anyhow::bail!(
                    "DATABASE_URL must start with sqlite:, postgres:// or postgresql:// (got {})",
                    redact_url(url)
                )
            };
        let shared = Arc::new(SqlStore {
            db,
            local_jobs: tokio::sync::Notify::new(),
        });
        Ok(Self {
            users: shared.clone(),
            admin: shared.clone(),
            otps: shared.clone(),
            sessions: shared.clone(),
            usage: shared.clone(),
            chatrooms: shared.clone(),
            messages: shared.clone(),
            branches: shared.clone(),
            jobs: shared.clone(),
            replies: shared.clone(),
            billing: shared.clone(),
            uploads: shared.clone(),
            health: shared,
        })
    }
}

/// The URL with any password replaced, for messages and logs.
pub(crate) fn redact_url(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut parsed) if parsed.password().is_some() => {
            let _ = parsed.set_password(Some("***"));
            parsed.to_string()
        }
        Ok(parsed) => parsed.to_string(),
        Err(_) => "<unparseable url>".into(),
    }
}

/// How many times each value occurs, in first-seen order.
pub(crate) fn tally<T: PartialEq>(values: Vec<T>) -> Vec<(T, i64)> {
    let mut counts: Vec<(T, i64)> = Vec::new();
    for value in values {
        match counts.iter_mut().find(|(seen, _)| *seen == value) {
            Some((_, count)) => *count += 1,
            None => counts.push((value, 1)),
        }
    }
    counts
}
