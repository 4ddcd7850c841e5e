//! The Redis connection every Redis adapter shares (list cache, rate limits, reply progress,
//! event publishing, readiness), behind a circuit breaker.
//!
//! Redis is an accelerator here, never the source of truth, so a Redis outage must not slow
//! requests down. The first command that fails for a connection reason opens the breaker:
//! from then on every command is skipped at once (callers fall back to the database or to
//! this process) instead of each waiting out a reconnect. One background task probes Redis
//! with `PING`, backing off; when Redis answers it first runs the registered recovery
//! commands (the list cache moves its epoch on, so no list cached before the outage can be
//! served after it), then closes the breaker.

use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use redis::aio::ConnectionManager;

/// The first probe waits this long after the breaker opens; later ones back off to `MAX_PROBE_DELAY`.
const FIRST_PROBE_DELAY: Duration = Duration::from_millis(200);
const MAX_PROBE_DELAY: Duration = Duration::from_secs(5);

/// A shared handle on Redis. Cheap to clone.
#[derive(Clone)]
pub struct RedisLink {
    inner: Arc<Inner>,
}

struct Inner {
    conn: ConnectionManager,
    /// The breaker: while open, commands are skipped.
    open: AtomicBool,
    /// Commands run (in order) when Redis comes back, before the breaker closes.
    recovery: Mutex<Vec<redis::Cmd>>,
}

impl RedisLink {
    pub(crate) fn new(conn: ConnectionManager) -> Self {
        metrics::gauge!(crate::metrics::REDIS_UP).set(1.0);
        Self {
            inner: Arc::new(Inner {
                conn,
                open: AtomicBool::new(false),
                recovery: Mutex::default(),
            }),
        }
    }

    /// Registers a command to run whenever Redis comes back after an outage.
    pub(crate) fn on_recovery(&self, cmd: redis::Cmd) {
        self.lock_recovery().push(cmd);
    }

    /// Whether commands currently reach Redis (the breaker is closed).
    pub fn is_up(&self) -> bool {
        !self.inner.open.load(Ordering::Acquire)
    }

    /// Runs one Redis operation, unless the breaker is open. `None` when it was skipped or
    /// failed (the failure is logged here, with `what` names the operation).
    pub(crate) async fn call<T, F, Fut>(&self, what: &'static str, op: F) -> Option<T>
    where
        F: FnOnce(ConnectionManager) -> Fut,
        Fut: Future<Output = redis::RedisResult<T>>,
    {
        if !self.is_up() {
            return None;
        }
        match op(self.inner.conn.clone()).await {
            Ok(value) => Some(value),
            Err(err) if is_outage(&err) => {
                self.trip(what, &err);
                None
            }
            Err(err) => {
                tracing::warn!(error = %err, operation = what, "Redis command failed");
                None
            }
        }
    }

    /// Opens the breaker (once) and starts the probe that closes it again.
    fn trip(&self, what: &'static str, err: &redis::RedisError) {
        if self.inner.open.swap(true, Ordering::AcqRel) {
            return;
        }
        metrics::gauge!(crate::metrics::REDIS_UP).set(0.0);
        tracing::error!(
            error = %err,
            operation = what,
            "Redis is unreachable; until it answers again: chatroom lists are read from the \
             database (cache bypassed), abuse limits count per process, live events reach \
             only listeners on the process that publishes them, and reconnecting listeners \
             get no partial-reply snapshot from other processes"
        );
        tokio::spawn(self.clone().probe_until_back());
    }

    async fn probe_until_back(self) {
        let mut delay = FIRST_PROBE_DELAY;
        loop {
            tokio::time::sleep(delay).await;
            delay = (delay * 2).min(MAX_PROBE_DELAY);
            if self.try_recover().await.is_ok() {
                self.inner.open.store(false, Ordering::Release);
                metrics::gauge!(crate::metrics::REDIS_UP).set(1.0);
                tracing::info!("Redis answers again; cache, shared limits and events restored");
                return;
            }
        }
    }

    async fn try_recover(&self) -> redis::RedisResult<()> {
        let mut conn = self.inner.conn.clone();
        redis::cmd("PING").query_async::<()>(&mut conn).await?;
        let steps = self.lock_recovery().clone();
        for step in steps {
            step.query_async::<()>(&mut conn).await?;
        }
        Ok(())
    }

    fn lock_recovery(&self) -> std::sync::MutexGuard<'_, Vec<redis::Cmd>> {
        // The list is only pushed to and cloned; a panic elsewhere cannot leave it half-done.
        self.inner
            .recovery
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// Whether `err` says Redis cannot be reached (as opposed to refusing one command).
fn is_outage(err: &redis::RedisError) -> bool {
    err.is_io_error()
        || err.is_timeout()
        || err.is_connection_dropped()
        || err.is_connection_refusal()
        || err.is_unrecoverable_error()
}
