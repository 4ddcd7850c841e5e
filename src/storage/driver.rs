//! How sqlx runs a [`Statement`] on either database, on a pool or in a transaction: binding
//! every [`Value`] and reading every row, written once, generic over the sqlx database. A
//! [`Driver`] says only how a database stores what it has no type for (SQLite keeps
//! timestamps as integer microseconds and days as text).

use async_trait::async_trait;
use chrono::{DateTime, NaiveDate, Utc};
use futures::future::BoxFuture;
use sqlx::{Database, Decode, Encode, Executor, IntoArguments, Pool, Row, Type};
use uuid::Uuid;

use super::error::StoreError;
use super::sql::{Answer, Connection, Kind, Record, Statement, Transaction, Value, Want};

/// What differs in how sqlx talks to a database; the rest is [`Sqlx`], for any driver.
pub(crate) trait Driver: Database {
    /// The kind a value of `kind` is stored as.
    fn stored_kind(kind: Kind) -> Kind {
        kind
    }

    /// A value as this database stores it.
    fn to_stored(value: Value) -> Value {
        value
    }

    /// A stored value back as the `kind` asked for.
    fn from_stored(value: Value, _kind: Kind) -> Result<Value, StoreError> {
        Ok(value)
    }

    fn rows_affected(done: &Self::QueryResult) -> u64;
}

type Run<'a, R> = BoxFuture<'a, Result<Answer<R>, StoreError>>;

/// Statements through sqlx on a database whose types cover every [`Kind`], as PostgreSQL's
/// and SQLite's do. The sqlx trait bounds are stated once, on the blanket impl below.
pub(crate) trait Sqlx: Driver {
    fn run_on_pool(pool: &Pool<Self>, statement: Statement, want: Want) -> Run<'_, Self::Row>;

    fn run_on_connection(
        connection: &mut Self::Connection,
        statement: Statement,
        want: Want,
    ) -> Run<'_, Self::Row>;

    /// The value of `column`, read as `kind`.
    fn read(row: &Self::Row, column: &str, kind: Kind) -> Result<Value, StoreError>;

    /// The statement as a sqlx query, its values bound as the database stores them.
    fn query(statement: Statement) -> sqlx::query::Query<'static, Self, Self::Arguments>;
}

impl<DB> Sqlx for DB
where
    DB: Driver,
    for<'c> &'c mut DB::Connection: Executor<'c, Database = DB>,
    DB::Arguments: IntoArguments<DB>,
    for<'r> &'r str: sqlx::ColumnIndex<DB::Row>,
    Uuid: for<'q> Encode<'q, DB> + for<'r> Decode<'r, DB> + Type<DB>,
    String: for<'q> Encode<'q, DB> + for<'r> Decode<'r, DB> + Type<DB>,
    i64: for<'q> Encode<'q, DB> + for<'r> Decode<'r, DB> + Type<DB>,
    i32: for<'r> Decode<'r, DB> + Type<DB>,
    bool: for<'q> Encode<'q, DB> + for<'r> Decode<'r, DB> + Type<DB>,
    DateTime<Utc>: for<'q> Encode<'q, DB> + for<'r> Decode<'r, DB> + Type<DB>,
    NaiveDate: for<'q> Encode<'q, DB> + for<'r> Decode<'r, DB> + Type<DB>,
    Vec<u8>: for<'q> Encode<'q, DB> + for<'r> Decode<'r, DB> + Type<DB>,
    Option<Uuid>: for<'q> Encode<'q, DB> + Type<DB>,
    Option<String>: for<'q> Encode<'q, DB> + Type<DB>,
    Option<i64>: for<'q> Encode<'q, DB> + Type<DB>,
    Option<bool>: for<'q> Encode<'q, DB> + Type<DB>,
    Option<DateTime<Utc>>: for<'q> Encode<'q, DB> + Type<DB>,
    Option<NaiveDate>: for<'q> Encode<'q, DB> + Type<DB>,
    Option<Vec<u8>>: for<'q> Encode<'q, DB> + Type<DB>,
{
    fn run_on_pool(pool: &Pool<Self>, statement: Statement, want: Want) -> Run<'_, Self::Row> {
        run(pool, statement, want)
    }

    fn run_on_connection(
        connection: &mut Self::Connection,
        statement: Statement,
        want: Want,
    ) -> Run<'_, Self::Row> {
        run(connection, statement, want)
    }

    fn read(row: &Self::Row, column: &str, kind: Kind) -> Result<Value, StoreError> {
        // One lookup and decode per column: NULL comes back as `None`.
        fn or_null<T>(value: Option<T>, wrap: fn(T) -> Value, kind: Kind) -> Value {
            value.map_or(Value::Null(kind), wrap)
        }
        let stored_kind = DB::stored_kind(kind);
        let stored = match stored_kind {
            Kind::Uuid => or_null(row.try_get(column)?, Value::Uuid, stored_kind),
            Kind::Text => or_null(row.try_get(column)?, Value::Text, stored_kind),
            // Counts are BIGINT; most stored numbers are INTEGER on PostgreSQL.
            Kind::Int => match row.try_get::<Option<i64>, _>(column) {
                Ok(value) => or_null(value, Value::Int, stored_kind),
                Err(_) => or_null(
                    row.try_get::<Option<i32>, _>(column)?.map(i64::from),
                    Value::Int,
                    stored_kind,
                ),
            },
            Kind::Bool => or_null(row.try_get(column)?, Value::Bool, stored_kind),
            Kind::Time => or_null(row.try_get(column)?, Value::Time, stored_kind),
            Kind::Date => or_null(row.try_get(column)?, Value::Date, stored_kind),
            Kind::Bytes => or_null(row.try_get(column)?, Value::Bytes, stored_kind),
        };
        if let Value::Null(_) = stored {
            return Ok(Value::Null(kind));
        }
        DB::from_stored(stored, kind)
    }

    fn query(statement: Statement) -> sqlx::query::Query<'static, Self, Self::Arguments> {
        let query = sqlx::query(sqlx::AssertSqlSafe(statement.sql));
        statement
            .args
            .into_iter()
            .fold(query, |query, value| match DB::to_stored(value) {
                Value::Null(Kind::Uuid) => query.bind(None::<Uuid>),
                Value::Null(Kind::Text) => query.bind(None::<String>),
                Value::Null(Kind::Int) => query.bind(None::<i64>),
                Value::Null(Kind::Bool) => query.bind(None::<bool>),
                Value::Null(Kind::Time) => query.bind(None::<DateTime<Utc>>),
                Value::Null(Kind::Date) => query.bind(None::<NaiveDate>),
                Value::Null(Kind::Bytes) => query.bind(None::<Vec<u8>>),
                Value::Uuid(v) => query.bind(v),
                Value::Text(v) => query.bind(v),
                Value::Int(v) => query.bind(v),
                Value::Bool(v) => query.bind(v),
                Value::Time(v) => query.bind(v),
                Value::Date(v) => query.bind(v),
                Value::Bytes(v) => query.bind(v),
            })
    }
}

/// A row as the shared code reads it.
struct SqlxRecord<DB: Database>(DB::Row);

impl<DB: Sqlx> Record for SqlxRecord<DB> {
    fn value(&self, column: &str, kind: Kind) -> Result<Value, StoreError> {
        DB::read(&self.0, column, kind)
    }
}

/// Runs a statement on anything sqlx runs queries on (a pool, a connection).
fn run<'e, DB: Sqlx, E>(executor: E, statement: Statement, want: Want) -> Run<'e, DB::Row>
where
    E: Executor<'e, Database = DB> + 'e,
    DB::Arguments: IntoArguments<DB>,
{
    Box::pin(async move {
        let query = DB::query(statement);
        Ok(match want {
            Want::RowsAffected => {
                Answer::RowsAffected(DB::rows_affected(&query.execute(executor).await?))
            }
            Want::Rows => Answer::Rows(query.fetch_all(executor).await?),
            Want::AtMostOneRow => {
                Answer::Rows(query.fetch_optional(executor).await?.into_iter().collect())
            }
        })
    })
}

/// The rows of an answer as the shared code reads them.
fn records<DB: Sqlx>(answer: Answer<DB::Row>) -> Answer<Box<dyn Record>> {
    match answer {
        Answer::Rows(rows) => Answer::Rows(
            rows.into_iter()
                .map(|row| Box::new(SqlxRecord::<DB>(row)) as Box<dyn Record>)
                .collect(),
        ),
        Answer::RowsAffected(n) => Answer::RowsAffected(n),
    }
}

/// Statements on a pool, each on whichever connection is free.
pub(crate) struct OnPool<'a, DB: Database>(pub(crate) &'a Pool<DB>);

/// Statements in one transaction (rolled back if dropped uncommitted).
pub(crate) struct InTransaction<DB: Database>(pub(crate) sqlx::Transaction<'static, DB>);

#[async_trait]
impl<DB: Sqlx> Connection for OnPool<'_, DB> {
    async fn run(
        &mut self,
        statement: Statement,
        want: Want,
    ) -> Result<Answer<Box<dyn Record>>, StoreError> {
        DB::run_on_pool(self.0, statement, want)
            .await
            .map(records::<DB>)
    }
}

#[async_trait]
impl<DB: Sqlx> Connection for InTransaction<DB> {
    async fn run(
        &mut self,
        statement: Statement,
        want: Want,
    ) -> Result<Answer<Box<dyn Record>>, StoreError> {
        DB::run_on_connection(&mut self.0, statement, want)
            .await
            .map(records::<DB>)
    }
}

#[async_trait]
impl<DB: Sqlx> Transaction for InTransaction<DB> {
    async fn commit(self: Box<Self>) -> Result<(), StoreError> {
        Ok(self.0.commit().await?)
    }
}
