//! The one SQL code path of both databases. A [`Statement`] is SQL text (portable: `$1`
//! placeholders, `RETURNING`, `ON CONFLICT`) plus [`Value`] arguments; it runs on a
//! [`Connection`] that each backend implements, binding every value in that database's natural
//! type (a timestamp is `timestamptz` on PostgreSQL and integer microseconds on SQLite), and
//! its rows are read back through [`Record`] in the same terms. Repositories are written once
//! over this (`storage/*.rs`); what really differs between the databases (locking clauses,
//! full-text search, the job claim, wake-ups) is the [`Dialect`] of each backend.
//! See docs/adr/001-one-sql-code-path.md for why this and not sqlx's `Any` or generics.

use std::borrow::Cow;

use async_trait::async_trait;
use chrono::{DateTime, NaiveDate, Utc};
use uuid::Uuid;

use super::error::StoreError;
use crate::messages::search::SearchQuery;

/// The types a column or an argument can have.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Uuid,
    Text,
    Int,
    Bool,
    Time,
    Date,
    Bytes,
}

/// An argument, or a value read from a row.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Value {
    /// A NULL of a known type (PostgreSQL types its parameters).
    Null(Kind),
    Uuid(Uuid),
    Text(String),
    Int(i64),
    Bool(bool),
    Time(DateTime<Utc>),
    Date(NaiveDate),
    Bytes(Vec<u8>),
}

/// A Rust type with a column type: written as a [`Value`], read back from one.
pub(crate) trait SqlType: Sized {
    const KIND: Kind;
    fn into_value(self) -> Value;
    /// `None` when the value is NULL or of another kind.
    fn from_value(value: Value) -> Option<Self>;
}

macro_rules! sql_type {
    ($rust:ty, $kind:ident) => {
        impl SqlType for $rust {
            const KIND: Kind = Kind::$kind;
            fn into_value(self) -> Value {
                Value::$kind(self)
            }
            fn from_value(value: Value) -> Option<Self> {
                match value {
                    Value::$kind(inner) => Some(inner),
                    _ => None,
                }
            }
        }
    };
}

sql_type!(Uuid, Uuid);
sql_type!(String, Text);
sql_type!(i64, Int);
sql_type!(bool, Bool);
sql_type!(DateTime<Utc>, Time);
sql_type!(NaiveDate, Date);
sql_type!(Vec<u8>, Bytes);

impl<T: SqlType> From<T> for Value {
    fn from(value: T) -> Self {
        value.into_value()
    }
}

impl<T: SqlType> From<Option<T>> for Value {
    fn from(value: Option<T>) -> Self {
        value.map_or(Value::Null(T::KIND), T::into_value)
    }
}

impl From<&str> for Value {
    fn from(value: &str) -> Self {
        Value::Text(value.to_owned())
    }
}

impl From<Option<&str>> for Value {
    fn from(value: Option<&str>) -> Self {
        value.map_or(Value::Null(Kind::Text), Value::from)
    }
}

impl From<&[u8]> for Value {
    fn from(value: &[u8]) -> Self {
        Value::Bytes(value.to_vec())
    }
}

impl From<u32> for Value {
    fn from(value: u32) -> Self {
        Value::Int(i64::from(value))
    }
}

impl From<Option<u32>> for Value {
    fn from(value: Option<u32>) -> Self {
        value.map_or(Value::Null(Kind::Int), Value::from)
    }
}

/// SQL text and its arguments, `$1` first.
#[derive(Debug)]
pub(crate) struct Statement {
    pub(crate) sql: Cow<'static, str>,
    pub(crate) args: Vec<Value>,
}

/// A statement with no arguments yet.
pub(crate) fn sql(text: impl Into<Cow<'static, str>>) -> Statement {
    Statement {
        sql: text.into(),
        args: Vec::new(),
    }
}

impl Statement {
    /// Adds the next argument.
    pub(crate) fn bind(mut self, value: impl Into<Value>) -> Self {
        self.args.push(value.into());
        self
    }

    /// Runs it; the number of rows it changed.
    pub(crate) async fn execute(self, on: &mut dyn Connection) -> Result<u64, StoreError> {
        Ok(match on.run(self, Want::RowsAffected).await? {
            Answer::RowsAffected(n) => n,
            Answer::Rows(rows) => rows.len() as u64,
        })
    }

    pub(crate) async fn fetch_all<T: FromRecord>(
        self,
        on: &mut dyn Connection,
    ) -> Result<Vec<T>, StoreError> {
        rows(on.run(self, Want::Rows).await?)
    }

    pub(crate) async fn fetch_optional<T: FromRecord>(
        self,
        on: &mut dyn Connection,
    ) -> Result<Option<T>, StoreError> {
        let rows = rows(on.run(self, Want::AtMostOneRow).await?)?;
        Ok(rows.into_iter().next())
    }

    pub(crate) async fn fetch_one<T: FromRecord>(
        self,
        on: &mut dyn Connection,
    ) -> Result<T, StoreError> {
        self.fetch_optional(on).await?.ok_or(StoreError::NotFound)
    }
}

fn rows<T: FromRecord>(answer: Answer<Box<dyn Record>>) -> Result<Vec<T>, StoreError> {
    match answer {
        Answer::Rows(rows) => rows
            .iter()
            .map(|row| T::from_record(row.as_ref()))
            .collect(),
        Answer::RowsAffected(_) => Ok(Vec::new()),
    }
}

/// What a statement is run for.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Want {
    RowsAffected,
    Rows,
    AtMostOneRow,
}

/// What it gave.
pub(crate) enum Answer<R> {
    RowsAffected(u64),
    Rows(Vec<R>),
}

/// Where statements run: a pool, or one transaction.
#[async_trait]
pub(crate) trait Connection: Send {
    async fn run(
        &mut self,
        statement: Statement,
        want: Want,
    ) -> Result<Answer<Box<dyn Record>>, StoreError>;
}

/// A transaction: dropped without `commit`, it rolls back.
#[async_trait]
pub(crate) trait Transaction: Connection {
    async fn commit(self: Box<Self>) -> Result<(), StoreError>;
}

/// One row as a backend read it.
pub(crate) trait Record: Send {
    /// The column's value, decoded as `kind` (NULL as `Value::Null`).
    fn value(&self, column: &str, kind: Kind) -> Result<Value, StoreError>;
}

impl dyn Record + '_ {
    /// The column as `T`; NULL or another type is an error (use `Option<T>` for nullable
    /// columns).
    pub(crate) fn get<T: Column>(&self, column: &str) -> Result<T, StoreError> {
        T::read(self, column)
    }
}

/// What a column can be read as: an [`SqlType`], or an `Option` of one.
pub(crate) trait Column: Sized {
    fn read(record: &dyn Record, column: &str) -> Result<Self, StoreError>;
}

impl<T: SqlType> Column for T {
    fn read(record: &dyn Record, column: &str) -> Result<Self, StoreError> {
        let value = record.value(column, T::KIND)?;
        T::from_value(value)
            .ok_or_else(|| StoreError::Backend(anyhow::anyhow!("column {column}: unexpected NULL")))
    }
}

impl<T: SqlType> Column for Option<T> {
    fn read(record: &dyn Record, column: &str) -> Result<Self, StoreError> {
        match record.value(column, T::KIND)? {
            Value::Null(_) => Ok(None),
            value => T::from_value(value).map(Some).ok_or_else(|| {
                StoreError::Backend(anyhow::anyhow!("column {column}: unexpected type"))
            }),
        }
    }
}

/// A type built from one row.
pub(crate) trait FromRecord: Sized + Send {
    fn from_record(record: &dyn Record) -> Result<Self, StoreError>;
}

/// A row of one column named `value` (`SELECT count(*) AS value …`).
pub(crate) struct Scalar<T>(pub(crate) T);

impl<T: Column + Send> FromRecord for Scalar<T> {
    fn from_record(record: &dyn Record) -> Result<Self, StoreError> {
        record.get("value").map(Scalar)
    }
}

/// A count or another integer that must fit `u32` (negative or NULL reads as 0).
pub(crate) fn to_u32(value: i64) -> u32 {
    u32::try_from(value).unwrap_or(if value < 0 { 0 } else { u32::MAX })
}

/// What differs between the databases, and how statements reach each.
#[async_trait]
pub(crate) trait Dialect: Send + Sync {
    /// Where reads go (SQLite: the reader pool).
    fn reads(&self) -> Box<dyn Connection + '_>;
    /// Where single writes go (SQLite: the one writer; elsewhere where reads go).
    fn writes(&self) -> Box<dyn Connection + '_> {
        self.reads()
    }
    /// A write transaction (SQLite: `BEGIN IMMEDIATE`, so it holds the write lock at once).
    async fn begin(&self) -> Result<Box<dyn Transaction + '_>, StoreError>;
    /// Appended to a `SELECT` inside a transaction, to lock what it read until the end; `None`
    /// where a write transaction already excludes every other writer (SQLite), so a statement
    /// that only takes a lock can be skipped.
    fn lock(&self, lock: Lock) -> Option<&'static str>;

    /// For an `UPDATE` of the job queue's bookkeeping, which a crash of the database server
    /// may lose because the next attempt redoes it (a claim, a lease renewed, a reply marked
    /// streaming): a `FROM` item that lets the statement's own transaction commit without
    /// waiting for its WAL to reach the disk (PostgreSQL's `synchronous_commit = off`, for
    /// that transaction only). Never for what an answer to a client stands on. Empty where a
    /// commit does not wait for a flush of its own (SQLite's WAL mode at `synchronous =
    /// NORMAL`).
    fn unflushed(&self) -> &'static str;

    /// The UTC day (a `date` column) of the time column `column`.
    fn utc_day(&self, column: &str) -> String;

    /// The full-text search for `query`, with `$1` bound; the caller binds the user (`$2`)
    /// and the limit (`$3`). Rows: the message columns, `chatroom_name` and `snippet`
    /// (matches wrapped in `**`), best first.
    fn search(&self, query: &SearchQuery) -> Statement;

    /// The claim of due jobs, each the oldest of its lane, without two workers taking the
    /// same one; the caller binds now (`$1`), the lease's end (`$2`) and how many (`$3`). Rows:
    /// `id, kind, payload, attempts, lock_token`.
    fn claim(&self) -> Statement;

    /// A statement, run after the commit that queued work, that wakes the workers of other
    /// processes (PostgreSQL's `NOTIFY`); `None` where one process owns the workers.
    fn wake_workers(&self) -> Option<Statement>;

    /// How a reply is completed (binds as the shared `UPDATE messages` of `complete`, then
    /// the job `$11` and the chatroom `$12`): the reply stored, its job deleted and its room
    /// bumped (only if this run finished the reply), returning the message and the room's
    /// `room_name_source`.
    fn completion(&self) -> Completion;

    /// Whether the server answers at all, even while every pooled connection is busy (for
    /// the database gate); by default, a query through the read pool.
    async fn probe(&self) -> Result<(), StoreError> {
        sql("SELECT 1").execute(&mut *self.reads()).await?;
        Ok(())
    }

    /// Waits until work may be there: this process queued some (`local`), another process
    /// announced some, or `max_wait` passed.
    async fn wait_for_work(&self, local: &tokio::sync::Notify, max_wait: std::time::Duration);
}

/// A reply's completion, in as few round trips as the database allows.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Completion {
    /// One statement, atomic by itself (data-modifying CTEs).
    Statement(&'static str),
    /// Several statements sent as one call, inside a transaction the caller opens; the first
    /// returns the row.
    Statements(&'static str),
}

/// Row locks (PostgreSQL's names).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Lock {
    /// ` FOR UPDATE`: the rows will be updated or deleted.
    Update,
    /// ` FOR NO KEY UPDATE`: serialises writers of the row without blocking inserts that
    /// merely reference it.
    NoKeyUpdate,
}
