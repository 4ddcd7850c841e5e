//! The PostgreSQL adapter: production and scale-out. One pool shared by every repository.

mod chat;

use std::time::Duration;

use anyhow::Context;
use async_trait::async_trait;
use chrono::{DateTime, NaiveDate, Utc};
use sqlx::Postgres;
use sqlx::postgres::{PgArguments, PgPool, PgPoolOptions, PgRow};
use uuid::Uuid;

use super::sql::{Connection, Dialect, Kind, Lock, Record, Statement, Transaction, Value};
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
// ---- The one SQL code path, on PostgreSQL ----

/// Binds `value` in PostgreSQL's own type.
fn bind_pg(
    query: sqlx::query::Query<'static, Postgres, PgArguments>,
    value: Value,
) -> sqlx::query::Query<'static, Postgres, PgArguments> {
    match value {
        Value::Null(Kind::Uuid) => query.bind(None::<Uuid>),
        Value::Null(Kind::Text) => query.bind(None::<String>),
        Value::Null(Kind::Int) => query.bind(None::<i64>),
        Value::Null(Kind::Bool) => query.bind(None::<bool>),
        Value::Null(Kind::Time) => query.bind(None::<DateTime<Utc>>),
        Value::Null(Kind::Date) => query.bind(None::<NaiveDate>),
        Value::Null(Kind::Bytes) => query.bind(None::<Vec<u8>>),
        Value::Bytes(v) => query.bind(v),
        Value::Uuid(v) => query.bind(v),
        Value::Text(v) => query.bind(v),
        Value::Int(v) => query.bind(v),
        Value::Bool(v) => query.bind(v),
        Value::Time(v) => query.bind(v),
        Value::Date(v) => query.bind(v),
    }
}

fn pg_query(statement: Statement) -> sqlx::query::Query<'static, Postgres, PgArguments> {
    let query = sqlx::query(sqlx::AssertSqlSafe(statement.sql));
    statement.args.into_iter().fold(query, bind_pg)
}

struct PgRecord(PgRow);

impl Record for PgRecord {
    fn value(&self, column: &str, kind: Kind) -> Result<Value, StoreError> {
        use sqlx::{Row, TypeInfo, ValueRef};
        let row = &self.0;
        if row.try_get_raw(column)?.is_null() {
            return Ok(Value::Null(kind));
        }
        Ok(match kind {
            Kind::Uuid => Value::Uuid(row.try_get(column)?),
            Kind::Text => Value::Text(row.try_get(column)?),
            Kind::Int => {
                let raw = row.try_get_raw(column)?;
                match raw.type_info().name() {
                    "INT2" => Value::Int(i64::from(row.try_get::<i16, _>(column)?)),
                    "INT4" => Value::Int(i64::from(row.try_get::<i32, _>(column)?)),
                    _ => Value::Int(row.try_get(column)?),
                }
            }
            Kind::Bool => Value::Bool(row.try_get(column)?),
            Kind::Time => Value::Time(row.try_get(column)?),
            Kind::Date => Value::Date(row.try_get(column)?),
            Kind::Bytes => Value::Bytes(row.try_get(column)?),
        })
    }
}

fn records(rows: Vec<PgRow>) -> Vec<Box<dyn Record>> {
    rows.into_iter()
        .map(|row| Box::new(PgRecord(row)) as Box<dyn Record>)
        .collect()
}

/// Statements on the pool, each on whichever connection is free.
struct OnPool<'a>(&'a PgPool);

#[async_trait]
impl Connection for OnPool<'_> {
    async fn execute(&mut self, statement: Statement) -> Result<u64, StoreError> {
        Ok(pg_query(statement).execute(self.0).await?.rows_affected())
    }

    async fn fetch_all(
        &mut self,
        statement: Statement,
    ) -> Result<Vec<Box<dyn Record>>, StoreError> {
        Ok(records(pg_query(statement).fetch_all(self.0).await?))
    }

    async fn fetch_optional(
        &mut self,
        statement: Statement,
    ) -> Result<Option<Box<dyn Record>>, StoreError> {
        let row = pg_query(statement).fetch_optional(self.0).await?;
        Ok(row.map(|row| Box::new(PgRecord(row)) as Box<dyn Record>))
    }
}

struct PgTransaction(sqlx::Transaction<'static, Postgres>);

#[async_trait]
impl Connection for PgTransaction {
    async fn execute(&mut self, statement: Statement) -> Result<u64, StoreError> {
        Ok(pg_query(statement)
            .execute(&mut *self.0)
            .await?
            .rows_affected())
    }

    async fn fetch_all(
        &mut self,
        statement: Statement,
    ) -> Result<Vec<Box<dyn Record>>, StoreError> {
        Ok(records(pg_query(statement).fetch_all(&mut *self.0).await?))
    }

    async fn fetch_optional(
        &mut self,
        statement: Statement,
    ) -> Result<Option<Box<dyn Record>>, StoreError> {
        let row = pg_query(statement).fetch_optional(&mut *self.0).await?;
        Ok(row.map(|row| Box::new(PgRecord(row)) as Box<dyn Record>))
    }
}

#[async_trait]
impl Transaction for PgTransaction {
    async fn commit(self: Box<Self>) -> Result<(), StoreError> {
        Ok(self.0.commit().await?)
    }
}

#[async_trait]
impl Dialect for PgStore {
    fn reads(&self) -> Box<dyn Connection + '_> {
        Box::new(OnPool(&self.pool))
    }

    fn writes(&self) -> Box<dyn Connection + '_> {
        Box::new(OnPool(&self.pool))
    }

    async fn begin(&self) -> Result<Box<dyn Transaction + '_>, StoreError> {
        Ok(Box::new(PgTransaction(self.pool.begin().await?)))
    }

    fn lock(&self, lock: Lock) -> &'static str {
        match lock {
            Lock::Update => " FOR UPDATE",
            Lock::NoKeyUpdate => " FOR NO KEY UPDATE",
        }
    }
}
