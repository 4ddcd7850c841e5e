//! The SQLite adapter: the embedded default. WAL mode, one writer connection (SQLite allows one
//! writer at a time; queueing in the pool beats retrying on `SQLITE_BUSY`) and a reader pool.
//! Timestamps are stored as integer microseconds since the Unix epoch.

use std::str::FromStr;
use std::time::Duration;

use anyhow::Context;
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::Sqlite;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteQueryResult,
    SqliteSynchronous,
};

use super::driver::{Driver, InTransaction, OnPool};
use super::jobs::lane_is_free;
use super::messages::{message_columns, message_columns_of};
use super::sql::{Completion, Connection, Dialect, Kind, Lock, Statement, Transaction, Value, sql};
use crate::messages::search::{SearchQuery, Term};
use crate::storage::error::StoreError;

const READERS: u32 = 4;

pub(crate) struct SqliteStore {
    writer: SqlitePool,
    reader: SqlitePool,
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
        Ok(Self { writer, reader })
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

/// Timestamps are integer microseconds since the Unix epoch, days `YYYY-MM-DD` text.
impl Driver for Sqlite {
    fn stored_kind(kind: Kind) -> Kind {
        match kind {
            Kind::Time => Kind::Int,
            Kind::Date => Kind::Text,
            other => other,
        }
    }

    fn to_stored(value: Value) -> Value {
        match value {
            Value::Time(at) => Value::Int(micros(at)),
            Value::Date(day) => Value::Text(day.to_string()),
            Value::Null(kind) => Value::Null(Self::stored_kind(kind)),
            other => other,
        }
    }

    fn from_stored(value: Value, kind: Kind) -> Result<Value, StoreError> {
        match (value, kind) {
            (Value::Int(us), Kind::Time) => Ok(Value::Time(from_micros(us))),
            (Value::Text(day), Kind::Date) => day
                .parse()
                .map(Value::Date)
                .map_err(|err| StoreError::Backend(anyhow::anyhow!("a stored day: {err}"))),
            (value, _) => Ok(value),
        }
    }

    fn rows_affected(done: &SqliteQueryResult) -> u64 {
        done.rows_affected()
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
        Ok(Box::new(InTransaction(tx)))
    }

    fn lock(&self, _lock: Lock) -> Option<&'static str> {
        None
    }

    fn utc_day(&self, column: &str) -> String {
        format!("date(({column}) / 1000000, 'unixepoch')")
    }

    fn search(&self, query: &SearchQuery) -> Statement {
        sql(format!(
            "SELECT {}, c.name AS chatroom_name, \
             snippet(messages_fts, 0, '**', '**', ' … ', 24) AS snippet \
             FROM messages_fts \
             JOIN messages m ON m.rowid = messages_fts.rowid \
             JOIN chatrooms c ON c.id = m.chatroom_id \
             WHERE messages_fts MATCH $1 AND m.user_id = $2 AND m.on_path \
             ORDER BY bm25(messages_fts), m.id DESC LIMIT $3",
            message_columns_of("m")
        ))
        .bind(fts5_query(query))
    }

    fn claim(&self) -> Statement {
        // Every write goes through the one writer, so a plain UPDATE … RETURNING cannot race
        // another claim. One job of a lane at a time (see `lane_is_free!`).
        sql(concat!(
            "UPDATE jobs SET locked_until = $2, lock_token = randomblob(16), \
                 attempts = attempts + 1 \
             WHERE id IN ( \
                 SELECT j.id FROM jobs j \
                 WHERE j.run_at <= $1 AND (j.lock_token IS NULL OR j.locked_until < $1) \
                 AND ",
            lane_is_free!(),
            " ORDER BY j.run_at, j.id LIMIT $3) \
             RETURNING id, kind, payload, attempts, lock_token"
        ))
    }

    fn unflushed(&self) -> &'static str {
        ""
    }

    fn wake_workers(&self) -> Option<Statement> {
        None
    }

    fn completion(&self) -> Completion {
        // No data-modifying CTEs: three statements, but one trip to the writer's thread
        // instead of three while the write lock is held. `changes()` is what the first one
        // changed: the room's activity moves only if this run finished the reply.
        Completion::Statements(concat!(
            "UPDATE messages SET status = 'completed', content = $2, finish_reason = $3, \
             model_version = $4, prompt_tokens = $5, output_tokens = $6, total_tokens = $7, \
             updated_at = $8, thinking_tokens = $9, cached_tokens = $10 \
             WHERE id = $1 AND status IN ('pending', 'streaming') RETURNING ",
            message_columns!(),
            ", (SELECT name_source FROM chatrooms WHERE id = $12) AS room_name_source; \
             UPDATE chatrooms SET last_message_at = $8, activity_at = $8 \
             WHERE id = $12 AND changes() = 1; \
             DELETE FROM jobs WHERE id = $11;"
        ))
    }

    async fn wait_for_work(&self, local: &tokio::sync::Notify, max_wait: Duration) {
        // One process owns a SQLite database's workers, so an in-process wake-up suffices.
        tokio::select! {
            () = local.notified() => {}
            () = tokio::time::sleep(max_wait) => {}
        }
    }
}

/// A search in FTS5's query language: `("a" AND "b c") NOT "x" NOT "y"`. Every word is
/// quoted (letters and digits only), so no input can be an FTS5 syntax error; a quoted string
/// of several words is an FTS5 phrase.
fn fts5_query(query: &SearchQuery) -> String {
    let phrase = |term: &Term| format!("\"{}\"", term.words.join(" "));
    let required: Vec<String> = query.required.iter().map(phrase).collect();
    let mut fts = format!("({})", required.join(" AND "));
    for term in &query.excluded {
        fts.push_str(" NOT ");
        fts.push_str(&phrase(term));
    }
    fts
}
