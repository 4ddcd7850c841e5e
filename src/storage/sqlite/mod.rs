//! The SQLite adapter: the embedded default. WAL mode, one writer connection (SQLite allows one
//! writer at a time; queueing in the pool beats retrying on `SQLITE_BUSY`) and a reader pool.
//! Timestamps are stored as integer microseconds since the Unix epoch.

mod chat;

use std::str::FromStr;
use std::time::Duration;

use anyhow::Context;
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::Sqlite;
use sqlx::sqlite::{
    SqliteArguments, SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions,
    SqliteRow, SqliteSynchronous,
};
use uuid::Uuid;

use super::sql::{Connection, Dialect, Kind, Lock, Record, Statement, Transaction, Value};
use super::{HealthCheck, StoreError};

const READERS: u32 = 4;

pub(crate) struct SqliteStore {
    writer: SqlitePool,
    reader: SqlitePool,
    /// Wakes the worker when work was queued or a chatroom's next job became first in line.
    local_jobs: tokio::sync::Notify,
}

impl SqliteStore {
    pub(crate) async fn connect(url: &str) -> anyhow::Result<Self> {
        let options = SqliteConnectOptions::from_str(url)
            .with_context(|| format!("parsing DATABASE_URL {url}"))?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            // NORMAL in WAL mode survives a process crash; only an OS crash can lose the
            // last transactions.
            .synchronous(SqliteSynchronous::Normal)
            .busy_timeout(Duration::from_secs(5))
            .foreign_keys(true);
        if let Some(dir) = options.get_filename().parent()
            && !dir.as_os_str().is_empty()
        {
            std::fs::create_dir_all(dir)
                .with_context(|| format!("creating the database folder {}", dir.display()))?;
        }
        let writer = while_busy(|| {
            SqlitePoolOptions::new()
                .max_connections(1)
                .acquire_timeout(Duration::from_secs(10))
                // A local file cannot drop a connection: no ping (a hop to the connection's
                // thread and back) before every query.
                .test_before_acquire(false)
                .connect_with(options.clone())
        })
        .await
        .with_context(|| format!("opening {url}"))?;
        let reader = while_busy(|| {
            SqlitePoolOptions::new()
                .max_connections(READERS)
                .acquire_timeout(Duration::from_secs(10))
                .test_before_acquire(false)
                .connect_with(options.clone().read_only(true))
        })
        .await
        .with_context(|| format!("opening {url} for reading"))?;
        Ok(Self {
            writer,
            reader,
            local_jobs: tokio::sync::Notify::new(),
        })
    }

    /// Applies pending migrations. SQLite has no advisory locks, so the whole run happens
    /// inside one `BEGIN IMMEDIATE` transaction: a second process starting at the same moment
    /// waits for the write lock, then finds the migrations applied.
    pub(crate) async fn migrate(&self) -> anyhow::Result<()> {
        let mut tx = self.writer.begin_with("BEGIN IMMEDIATE").await?;
        sqlx::migrate!("./migrations/sqlite")
            .run(&mut *tx)
            .await
            .context("migrating the SQLite database")?;
        tx.commit()
            .await
            .context("committing the SQLite migrations")
    }
}

#[async_trait]
impl HealthCheck for SqliteStore {
    async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1").execute(&self.reader).await?;
        Ok(())
    }
}

/// Runs `op`, again while SQLite refuses it for lack of a lock, for up to about five seconds.
/// Processes opening a brand-new database file at once race to switch it to WAL, and SQLite
/// answers `SQLITE_BUSY` to the losers without waiting for the busy timeout.
async fn while_busy<T, F, Fut>(mut op: F) -> Result<T, sqlx::Error>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, sqlx::Error>>,
{
    let mut retries = 0;
    loop {
        match op().await {
            Err(sqlx::Error::Database(db))
                if matches!(db.code().as_deref(), Some("5" | "6")) && retries < 50 =>
            {
                retries += 1;
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            result => return result,
        }
    }
}

/// A timestamp as stored: microseconds since the Unix epoch.
fn micros(at: DateTime<Utc>) -> i64 {
    at.timestamp_micros()
}

/// A stored timestamp back as a `DateTime`.
fn from_micros(value: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_micros(value).unwrap_or_default()
}

// ---- The one SQL code path, on SQLite ----

/// Binds `value` in SQLite's terms: timestamps as microseconds, days as `YYYY-MM-DD`.
fn bind_sqlite(
    query: sqlx::query::Query<'static, Sqlite, SqliteArguments>,
    value: Value,
) -> sqlx::query::Query<'static, Sqlite, SqliteArguments> {
    match value {
        Value::Null(Kind::Uuid) => query.bind(None::<Uuid>),
        Value::Null(Kind::Text | Kind::Date) => query.bind(None::<String>),
        Value::Null(Kind::Int | Kind::Time) => query.bind(None::<i64>),
        Value::Null(Kind::Bool) => query.bind(None::<bool>),
        Value::Null(Kind::Bytes) => query.bind(None::<Vec<u8>>),
        Value::Bytes(v) => query.bind(v),
        Value::Uuid(v) => query.bind(v),
        Value::Text(v) => query.bind(v),
        Value::Int(v) => query.bind(v),
        Value::Bool(v) => query.bind(v),
        Value::Time(v) => query.bind(micros(v)),
        Value::Date(v) => query.bind(v.to_string()),
    }
}

fn sqlite_query(statement: Statement) -> sqlx::query::Query<'static, Sqlite, SqliteArguments> {
    let query = sqlx::query(sqlx::AssertSqlSafe(statement.sql));
    statement.args.into_iter().fold(query, bind_sqlite)
}

struct SqliteRecord(SqliteRow);

impl Record for SqliteRecord {
    fn value(&self, column: &str, kind: Kind) -> Result<Value, StoreError> {
        use sqlx::{Row, ValueRef};
        let row = &self.0;
        if row.try_get_raw(column)?.is_null() {
            return Ok(Value::Null(kind));
        }
        Ok(match kind {
            Kind::Uuid => Value::Uuid(row.try_get(column)?),
            Kind::Text => Value::Text(row.try_get(column)?),
            Kind::Int => Value::Int(row.try_get(column)?),
            Kind::Bool => Value::Bool(row.try_get(column)?),
            Kind::Time => Value::Time(from_micros(row.try_get(column)?)),
            Kind::Bytes => Value::Bytes(row.try_get(column)?),
            Kind::Date => {
                let text: String = row.try_get(column)?;
                Value::Date(text.parse().map_err(|err| {
                    StoreError::Backend(anyhow::anyhow!("column {column}: {err}"))
                })?)
            }
        })
    }
}

fn records(rows: Vec<SqliteRow>) -> Vec<Box<dyn Record>> {
    rows.into_iter()
        .map(|row| Box::new(SqliteRecord(row)) as Box<dyn Record>)
        .collect()
}

/// Statements on a pool (the reader pool or the one writer).
struct OnPool<'a>(&'a SqlitePool);

#[async_trait]
impl Connection for OnPool<'_> {
    async fn execute(&mut self, statement: Statement) -> Result<u64, StoreError> {
        Ok(sqlite_query(statement)
            .execute(self.0)
            .await?
            .rows_affected())
    }

    async fn fetch_all(
        &mut self,
        statement: Statement,
    ) -> Result<Vec<Box<dyn Record>>, StoreError> {
        Ok(records(sqlite_query(statement).fetch_all(self.0).await?))
    }

    async fn fetch_optional(
        &mut self,
        statement: Statement,
    ) -> Result<Option<Box<dyn Record>>, StoreError> {
        let row = sqlite_query(statement).fetch_optional(self.0).await?;
        Ok(row.map(|row| Box::new(SqliteRecord(row)) as Box<dyn Record>))
    }
}

struct SqliteTransaction(sqlx::Transaction<'static, Sqlite>);

#[async_trait]
impl Connection for SqliteTransaction {
    async fn execute(&mut self, statement: Statement) -> Result<u64, StoreError> {
        Ok(sqlite_query(statement)
            .execute(&mut *self.0)
            .await?
            .rows_affected())
    }

    async fn fetch_all(
        &mut self,
        statement: Statement,
    ) -> Result<Vec<Box<dyn Record>>, StoreError> {
        Ok(records(
            sqlite_query(statement).fetch_all(&mut *self.0).await?,
        ))
    }

    async fn fetch_optional(
        &mut self,
        statement: Statement,
    ) -> Result<Option<Box<dyn Record>>, StoreError> {
        let row = sqlite_query(statement).fetch_optional(&mut *self.0).await?;
        Ok(row.map(|row| Box::new(SqliteRecord(row)) as Box<dyn Record>))
    }
}

#[async_trait]
impl Transaction for SqliteTransaction {
    async fn commit(self: Box<Self>) -> Result<(), StoreError> {
        Ok(self.0.commit().await?)
    }
}

#[async_trait]
impl Dialect for SqliteStore {
    fn reads(&self) -> Box<dyn Connection + '_> {
        Box::new(OnPool(&self.reader))
    }

    fn writes(&self) -> Box<dyn Connection + '_> {
        Box::new(OnPool(&self.writer))
    }

    async fn begin(&self) -> Result<Box<dyn Transaction + '_>, StoreError> {
        let tx = self.writer.begin_with("BEGIN IMMEDIATE").await?;
        Ok(Box::new(SqliteTransaction(tx)))
    }

    fn lock(&self, _lock: Lock) -> &'static str {
        ""
    }
}
