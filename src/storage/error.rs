//! [`StoreError`], the one error every repository returns, by meaning; both databases map
//! their errors into it the same way. It depends on nothing else of gemchat, so every port
//! can name it.

/// What can go wrong in storage, by meaning; both backends map their errors the same way.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("not found")]
    NotFound,
    /// A unique or check constraint refused the write.
    #[error("conflict")]
    Conflict,
    /// The database could not be reached (connection refused, pool timed out).
    #[error("database unavailable: {0}")]
    Unavailable(anyhow::Error),
    #[error(transparent)]
    Backend(anyhow::Error),
}

impl From<sqlx::Error> for StoreError {
    fn from(err: sqlx::Error) -> Self {
        match &err {
            sqlx::Error::RowNotFound => Self::NotFound,
            sqlx::Error::Database(db) if db.is_unique_violation() => Self::Conflict,
            // PostgreSQL's connection errors (class 08) and shutdowns (57P01–57P03): the
            // database is going away, not refusing this request.
            sqlx::Error::Database(db)
                if db
                    .code()
                    .is_some_and(|code| code.starts_with("08") || code.starts_with("57P")) =>
            {
                Self::Unavailable(err.into())
            }
            sqlx::Error::Io(_)
            | sqlx::Error::Tls(_)
            | sqlx::Error::Protocol(_)
            | sqlx::Error::PoolTimedOut
            | sqlx::Error::PoolClosed
            | sqlx::Error::WorkerCrashed => Self::Unavailable(err.into()),
            _ => Self::Backend(err.into()),
        }
    }
}
