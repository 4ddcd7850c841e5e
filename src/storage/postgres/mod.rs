//! The PostgreSQL dialect: production and scale-out. One pool shared by every repository;
//! jobs are claimed with `FOR UPDATE SKIP LOCKED` and announced with `NOTIFY gemchat_jobs`.

use std::time::Duration;

use anyhow::Context;
use async_trait::async_trait;
use sqlx::Postgres;
use sqlx::postgres::{PgListener, PgPool, PgPoolOptions, PgQueryResult};

use super::driver::{Driver, InTransaction, OnPool};
use super::jobs::lane_is_free;
use super::messages::{message_columns, message_columns_of};
use super::sql::{Completion, Connection, Dialect, Lock, Statement, Transaction, sql};
use crate::messages::search::{SearchQuery, Term};
use crate::storage::error::StoreError;

/// Connections per process. Two cores do not gain from more; several processes share the
/// server's default `max_connections = 100`.
const MAX_CONNECTIONS: u32 = 16;

/// A pooled connection idle longer than this is pinged before it is handed out.
const CHECK_IF_IDLE_FOR: Duration = Duration::from_secs(1);

/// How long a probe on a fresh connection may take before the server counts as unreachable.
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);

pub(crate) struct PgStore {
    pool: PgPool,
    /// Wakes the worker on `NOTIFY gemchat_jobs`; started on the first wait.
    jobs_listener: std::sync::OnceLock<JobsListener>,
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
            jobs_listener: std::sync::OnceLock::new(),
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

impl Driver for Postgres {
    fn rows_affected(done: &PgQueryResult) -> u64 {
        done.rows_affected()
    }
}

#[async_trait]
impl Dialect for PgStore {
    fn reads(&self) -> Box<dyn Connection + '_> {
        Box::new(OnPool(&self.pool))
    }

    async fn begin(&self) -> Result<Box<dyn Transaction + '_>, StoreError> {
        Ok(Box::new(InTransaction(self.pool.begin().await?)))
    }

    fn lock(&self, lock: Lock) -> Option<&'static str> {
        Some(match lock {
            Lock::Update => " FOR UPDATE",
            Lock::NoKeyUpdate => " FOR NO KEY UPDATE",
        })
    }

    fn unflushed(&self) -> &'static str {
        " FROM (SELECT set_config('synchronous_commit', 'off', true)) AS unflushed"
    }

    fn utc_day(&self, column: &str) -> String {
        format!("(({column}) AT TIME ZONE 'UTC')::date")
    }

    fn search(&self, query: &SearchQuery) -> Statement {
        sql(format!(
            "SELECT {}, c.name AS chatroom_name, \
             ts_headline('simple', m.content, q, 'StartSel=**, StopSel=**, MaxWords=24, \
                 MinWords=8, MaxFragments=1, FragmentDelimiter=\" … \"') AS snippet \
             FROM messages m JOIN chatrooms c ON c.id = m.chatroom_id, \
                  to_tsquery('simple', $1) q \
             WHERE m.user_id = $2 AND m.on_path AND m.search @@ q \
             ORDER BY ts_rank(m.search, q) DESC, m.id DESC LIMIT $3",
            message_columns_of("m")
        ))
        .bind(tsquery(query))
    }

    fn claim(&self) -> Statement {
        // One job of a lane at a time (see `lane_is_free!`), so a chatroom's replies are
        // produced in order; SKIP LOCKED lets concurrent workers claim different jobs without
        // waiting. Not flushed (see `unflushed`): a claim lost with the server is claimed again.
        sql(concat!(
            "WITH next AS ( \
                 SELECT j.id FROM jobs j \
                 WHERE j.run_at <= $1 AND (j.lock_token IS NULL OR j.locked_until < $1) \
                 AND ",
            lane_is_free!(),
            " ORDER BY j.run_at, j.id LIMIT $3 FOR UPDATE SKIP LOCKED) \
             UPDATE jobs SET locked_until = $2, lock_token = gen_random_uuid(), \
                 attempts = jobs.attempts + 1 \
             FROM next, (SELECT set_config('synchronous_commit', 'off', true)) AS unflushed \
             WHERE jobs.id = next.id \
             RETURNING jobs.id, jobs.kind, jobs.payload, jobs.attempts, jobs.lock_token"
        ))
    }

    fn wake_workers(&self) -> Option<Statement> {
        Some(sql("SELECT pg_notify('gemchat_jobs', '')"))
    }

    fn completion(&self) -> Completion {
        // Data-modifying CTEs all run, atomically, whatever the final SELECT reads. The job
        // goes; the room's activity moves only if this run finished the reply.
        Completion::Statement(concat!(
            "WITH done AS ( \
                 UPDATE messages SET status = 'completed', content = $2, finish_reason = $3, \
                 model_version = $4, prompt_tokens = $5, output_tokens = $6, total_tokens = $7, \
                 updated_at = $8, thinking_tokens = $9, cached_tokens = $10 \
                 WHERE id = $1 AND status IN ('pending', 'streaming') RETURNING *), \
             gone AS (DELETE FROM jobs WHERE id = $11), \
             touched AS (UPDATE chatrooms SET last_message_at = $8, activity_at = $8 \
                 WHERE id = $12 AND EXISTS (SELECT 1 FROM done) RETURNING name_source) \
             SELECT ",
            message_columns!(),
            ", (SELECT name_source FROM touched) AS room_name_source FROM done"
        ))
    }

    /// On a fresh connection, outside the pool: a pool busy under load is not an outage.
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

    async fn wait_for_work(&self, local: &tokio::sync::Notify, max_wait: Duration) {
        let listener = self
            .jobs_listener
            .get_or_init(|| JobsListener::start(self.pool.connect_options().as_ref().clone()));
        tokio::select! {
            () = listener.wake.notified() => {}
            () = local.notified() => {}
            () = tokio::time::sleep(max_wait) => {}
        }
    }
}

/// A task that holds the `LISTEN gemchat_jobs` connection and turns each notification into a
/// wake-up; it reconnects after a failure, and stops with the store.
///
/// The connection comes from a pool of its own and is never awaited by anything that can be
/// cancelled: a listener reconnecting inside a `select!` (as the worker's wait was) could be
/// dropped between its `LISTEN` and the answer, and the shared pool took the connection back
/// still listening; the next statement on it then failed on the notification it was sent
/// (found by `bench/chaos`, after PostgreSQL's backends were terminated: a reply was stored
/// as completed while its worker took the statement as failed and never announced it).
struct JobsListener {
    wake: std::sync::Arc<tokio::sync::Notify>,
    task: tokio::task::AbortHandle,
}

impl JobsListener {
    fn start(options: sqlx::postgres::PgConnectOptions) -> Self {
        let wake = std::sync::Arc::new(tokio::sync::Notify::new());
        let task = tokio::spawn(listen_for_jobs(options, std::sync::Arc::clone(&wake)));
        Self {
            wake,
            task: task.abort_handle(),
        }
    }
}

impl Drop for JobsListener {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// After a failed connection, the listener tries again after this long, doubling up to
/// `MAX_RELISTEN_DELAY`.
const FIRST_RELISTEN_DELAY: Duration = Duration::from_millis(100);
const MAX_RELISTEN_DELAY: Duration = Duration::from_secs(5);

async fn listen_for_jobs(
    options: sqlx::postgres::PgConnectOptions,
    wake: std::sync::Arc<tokio::sync::Notify>,
) {
    let pool = PgPoolOptions::new()
        .max_connections(1)
        .connect_lazy_with(options);
    let mut delay = FIRST_RELISTEN_DELAY;
    loop {
        let listening = async {
            let mut listener = PgListener::connect_with(&pool).await?;
            listener.listen(JOBS_CHANNEL).await?;
            Ok::<_, sqlx::Error>(listener)
        };
        match listening.await {
            Ok(mut listener) => {
                delay = FIRST_RELISTEN_DELAY;
                // Jobs queued while nobody listened are looked for now.
                wake.notify_one();
                let err = loop {
                    match listener.recv().await {
                        Ok(_) => wake.notify_one(),
                        Err(err) => break err,
                    }
                };
                tracing::warn!(error = %err, "job notifications interrupted; listening again");
            }
            Err(err) => {
                tracing::warn!(error = %err, retry_in = ?delay, "cannot LISTEN for jobs; polling meanwhile");
            }
        }
        tokio::time::sleep(delay).await;
        delay = (delay * 2).min(MAX_RELISTEN_DELAY);
    }
}

/// The channel `LISTEN`ed to by workers.
const JOBS_CHANNEL: &str = "gemchat_jobs";

/// A search in `to_tsquery`'s language: `'a' & ('b' <-> 'c') & !'x'`. Every word is quoted
/// (letters and digits only), so no input can be a tsquery syntax error; `<->` keeps a
/// phrase's words adjacent and in order.
fn tsquery(query: &SearchQuery) -> String {
    let phrase = |term: &Term| {
        let words: Vec<String> = term.words.iter().map(|w| format!("'{w}'")).collect();
        format!("({})", words.join(" <-> "))
    };
    let required = query.required.iter().map(phrase);
    let excluded = query.excluded.iter().map(|t| format!("!{}", phrase(t)));
    required.chain(excluded).collect::<Vec<_>>().join(" & ")
}
