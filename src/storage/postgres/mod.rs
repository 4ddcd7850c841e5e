//! The PostgreSQL adapter: production and scale-out. One pool shared by every repository.

mod auth;
mod billing;
mod chat;
mod usage;
mod users;

use std::time::Duration;

use anyhow::Context;
use async_trait::async_trait;
use sqlx::postgres::{PgPool, PgPoolOptions};

use super::{HealthCheck, StoreError};

/// Connections per process. Two cores do not gain from more; several processes share the
/// server's default `max_connections = 100`.
const MAX_CONNECTIONS: u32 = 16;

/// A pooled connection idle longer than this is pinged before it is handed out.
const CHECK_IF_IDLE_FOR: Duration = Duration::from_secs(1);

/// How long a probe on a fresh connection may take before the server counts as unreachable.
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);

pub(crate) struct PgStore {
    pool: PgPool,
    /// Wakes this process's worker when this process queued work (no round trip).
    local_jobs: tokio::sync::Notify,
    /// The worker's `LISTEN gemchat_jobs` connection, opened on first wait.
    jobs_listener: tokio::sync::Mutex<Option<sqlx::postgres::PgListener>>,
}

impl PgStore {
    pub(crate) async fn connect(url: &str) -> anyhow::Result<Self> {
        let pool = PgPoolOptions::new()
            .max_connections(MAX_CONNECTIONS)
            .min_connections(1)
            .acquire_timeout(Duration::from_secs(5))
            // sqlx pings every connection it hands out (a round trip before each query) unless
            // told otherwise; it pings again on release regardless. Under load connections
            // are never idle long, so only one that sat idle is checked: after an outage (the
            // gate holds requests back meanwhile) a dead one is found here, not by a request.
            .test_before_acquire(false)
            .before_acquire(|conn, meta| {
                Box::pin(async move {
                    if meta.idle_for > CHECK_IF_IDLE_FOR {
                        sqlx::Connection::ping(conn).await?;
                    }
                    Ok(true)
                })
            })
            .connect(url)
            .await
            .with_context(|| format!("connecting to {}", super::redact_url(url)))?;
        Ok(Self {
            pool,
            local_jobs: tokio::sync::Notify::new(),
            jobs_listener: tokio::sync::Mutex::new(None),
        })
    }

    /// Applies pending migrations. sqlx holds a PostgreSQL advisory lock while it migrates, so
    /// concurrent starts wait for each other instead of failing.
    pub(crate) async fn migrate(&self) -> anyhow::Result<()> {
        sqlx::migrate!("./migrations/postgres")
            .run(&self.pool)
            .await
            .context("migrating the PostgreSQL database")
    }
}

#[async_trait]
impl HealthCheck for PgStore {
    async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    async fn probe(&self) -> Result<(), StoreError> {
        use sqlx::Connection;
        let options = self.pool.connect_options();
        let check = async {
            let mut conn = sqlx::PgConnection::connect_with(&options).await?;
            sqlx::query("SELECT 1").execute(&mut conn).await?;
            conn.close().await
        };
        match tokio::time::timeout(PROBE_TIMEOUT, check).await {
            Ok(answer) => Ok(answer?),
            Err(_) => Err(StoreError::Unavailable(anyhow::anyhow!(
                "no answer from PostgreSQL within {PROBE_TIMEOUT:?}"
            ))),
        }
    }
}
