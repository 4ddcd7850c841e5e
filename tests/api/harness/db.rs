//! Databases for tests: which servers the suites use, `backend_tests!`, and [`TestDb`], a
//! fresh database per test (a temporary SQLite file or a PostgreSQL schema), dropped after.

use gemchat::config::Config;
use uuid::Uuid;

pub const JWT_SECRET: &str = "test-secret-0123456789abcdef0123456789abcdef";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// The PostgreSQL server tests use; `None` skips the PostgreSQL half off CI. Under `CI=true`
/// a missing or unreachable server fails the run instead.
pub fn postgres_url() -> Option<String> {
    let url = std::env::var("TEST_DATABASE_URL")
        .ok()
        .filter(|u| !u.is_empty());
    if url.is_none() && is_ci() {
        panic!("CI=true but TEST_DATABASE_URL is not set: the PostgreSQL suite must run in CI");
    }
    url
}

/// The Redis server tests use; `None` skips the Redis tests off CI, and under `CI=true` a
/// missing `TEST_REDIS_URL` fails the run.
pub fn redis_url() -> Option<String> {
    let url = std::env::var("TEST_REDIS_URL")
        .ok()
        .filter(|u| !u.is_empty());
    if url.is_none() && is_ci() {
        panic!("CI=true but TEST_REDIS_URL is not set: the Redis suite must run in CI");
    }
    url
}

pub fn is_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true" || v == "1")
}

/// Runs each named `async fn(Backend)` once per backend.
#[macro_export]
macro_rules! backend_tests {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name($crate::harness::Backend::Sqlite).await
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    if $crate::harness::postgres_url().is_some() {
                        super::$name($crate::harness::Backend::Postgres).await
                    }
                }
            )*
        }
    };
}

/// A fresh, empty database for one test, removed when dropped.
pub struct TestDb {
    pub url: String,
    cleanup: Cleanup,
}

enum Cleanup {
    Dir(std::path::PathBuf),
    /// `DROP <what>` on the admin connection (a schema, or a whole database).
    Sql {
        admin_url: String,
        drop: String,
    },
}

impl TestDb {
    pub async fn create(backend: Backend) -> Self {
        match backend {
            Backend::Sqlite => {
                let dir = std::env::temp_dir().join(format!("gemchat-test-{}", Uuid::now_v7()));
                let url = format!("sqlite://{}/gemchat.db", dir.display());
                Self {
                    url,
                    cleanup: Cleanup::Dir(dir),
                }
            }
            Backend::Postgres => {
                let admin_url = postgres_url().expect("PostgreSQL tests need TEST_DATABASE_URL");
                let schema = format!("test_{}", Uuid::now_v7().simple());
                let mut admin = connect_admin(&admin_url).await;
                sqlx::query(sqlx::AssertSqlSafe(format!("CREATE SCHEMA {schema}")))
                    .execute(&mut admin)
                    .await
                    .expect("creating the test schema");
                let separator = if admin_url.contains('?') { '&' } else { '?' };
                let url = format!("{admin_url}{separator}options[search_path]={schema}");
                Self {
                    url,
                    cleanup: Cleanup::Sql {
                        admin_url,
                        drop: format!("DROP SCHEMA {schema} CASCADE"),
                    },
                }
            }
        }
    }

    /// A PostgreSQL database of its own, for tests that watch database-wide traffic (such as
    /// `NOTIFY`), which a schema beside other tests' would mix up.
    pub async fn own_postgres_database() -> Option<Self> {
        let admin_url = postgres_url()?;
        let name = format!("gemchat_test_{}", Uuid::now_v7().simple());
        let mut admin = connect_admin(&admin_url).await;
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
            .execute(&mut admin)
            .await
            .expect("creating the test database");
        let mut url = url::Url::parse(&admin_url).expect("TEST_DATABASE_URL is a URL");
        url.set_path(&name);
        Some(Self {
            url: url.to_string(),
            cleanup: Cleanup::Sql {
                admin_url,
                drop: format!("DROP DATABASE {name} WITH (FORCE)"),
            },
        })
    }
}

async fn connect_admin(url: &str) -> sqlx::PgConnection {
    use sqlx::Connection;
    match sqlx::PgConnection::connect(url).await {
        Ok(conn) => conn,
        Err(err) => panic!("cannot reach PostgreSQL at TEST_DATABASE_URL: {err}"),
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        match &self.cleanup {
            Cleanup::Dir(dir) => {
                let _ = std::fs::remove_dir_all(dir);
            }
            Cleanup::Sql { admin_url, drop } => {
                let (admin_url, drop) = (admin_url.clone(), drop.clone());
                // Drop runs inside the test's runtime; a thread with its own runtime can block.
                let _ = std::thread::spawn(move || {
                    let Ok(runtime) = tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build()
                    else {
                        return;
                    };
                    runtime.block_on(async {
                        let mut admin = connect_admin(&admin_url).await;
                        let _ = sqlx::query(sqlx::AssertSqlSafe(drop))
                            .execute(&mut admin)
                            .await;
                    });
                })
                .join();
            }
        }
    }
}

/// The configuration every test starts from.
pub fn test_config(db: &TestDb) -> Config {
    let mut config = Config::defaults();
    config.database_url = db.url.clone();
    config.jwt_secret = Some(gemchat::config::Secret::new(JWT_SECRET));
    // Tests drive many requests from one address; the limit tests set their own.
    config.rate_limit_auth_per_minute = 1_000_000;
    config.rate_limit_per_minute = 1_000_000;
    // Replies come at once; tests that need a paced stream use their own provider.
    config.echo_chunk_delay_ms = 0;
    config.data_dir = std::env::temp_dir().join(format!("gemchat-test-data-{}", Uuid::now_v7()));
    config
}

/// Every table that holds an account's data (with SQLite's search index).
pub const ACCOUNT_TABLES: [&str; 12] = [
    "users",
    "otps",
    "otp_sends",
    "sessions",
    "daily_usage",
    "chatrooms",
    "messages",
    "jobs",
    "uploads",
    "message_attachments",
    "subscriptions",
    "stripe_events",
];

/// How many rows each of [`ACCOUNT_TABLES`] holds (plus `messages_fts` on SQLite), read
/// straight from the database at `url`.
pub async fn row_counts(url: &str) -> std::collections::BTreeMap<String, i64> {
    let mut tables: Vec<&str> = ACCOUNT_TABLES.to_vec();
    if url.starts_with("sqlite:") {
        tables.push("messages_fts");
        let pool = sqlx::SqlitePool::connect(url).await.expect("open");
        count_rows(&pool, &tables).await
    } else {
        let pool = sqlx::PgPool::connect(url).await.expect("connect");
        count_rows(&pool, &tables).await
    }
}

/// `SELECT COUNT(*)` of each table, then closes the pool.
async fn count_rows<DB: sqlx::Database>(
    pool: &sqlx::Pool<DB>,
    tables: &[&str],
) -> std::collections::BTreeMap<String, i64>
where
    for<'c> &'c mut DB::Connection: sqlx::Executor<'c, Database = DB>,
    i64: sqlx::Type<DB> + for<'r> sqlx::Decode<'r, DB>,
    (i64,): for<'r> sqlx::FromRow<'r, DB::Row>,
    DB::Arguments: sqlx::IntoArguments<DB>,
{
    let mut counts = std::collections::BTreeMap::new();
    for table in tables {
        let sql = format!("SELECT COUNT(*) FROM {table}");
        let (count,): (i64,) = sqlx::query_as(sqlx::AssertSqlSafe(sql))
            .fetch_one(pool)
            .await
            .expect(table);
        counts.insert((*table).to_owned(), count);
    }
    pool.close().await;
    counts
}
