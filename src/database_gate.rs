//! The database gate: fail fast while the database is unreachable.
//!
//! Without it, every request during a PostgreSQL outage would wait out the pool's acquire
//! timeout (the pool keeps retrying a refused connection, as if the server were starting)
//! before answering 503, and requests would pile up. Instead, the first request that meets
//! an unreachable database makes the gate check: a probe on a fresh connection, outside the
//! pool (so a pool merely saturated by load does not count as an outage). If the server does
//! not answer, the gate closes: requests that need the database answer 503 `unavailable` at
//! once, and the probe repeats, backing off, until the server answers and the gate opens.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use crate::storage::HealthCheck;

const FIRST_RECHECK: Duration = Duration::from_millis(200);
const MAX_RECHECK: Duration = Duration::from_secs(2);

pub struct DatabaseGate {
    health: Arc<dyn HealthCheck>,
    /// Requests are refused at once while this is set.
    closed: AtomicBool,
    /// A check is running (at most one at a time).
    checking: AtomicBool,
}

impl DatabaseGate {
    pub(crate) fn new(health: Arc<dyn HealthCheck>) -> Arc<Self> {
        metrics::gauge!(crate::metrics::DATABASE_UP).set(1.0);
        Arc::new(Self {
            health,
            closed: AtomicBool::new(false),
            checking: AtomicBool::new(false),
        })
    }

    /// Whether the database is known to be unreachable right now.
    pub fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }

    /// A request met an unreachable database: check, unless a check is already running.
    pub(crate) fn suspect(self: &Arc<Self>) {
        if self.checking.swap(true, Ordering::AcqRel) {
            return;
        }
        tokio::spawn(Arc::clone(self).check_until_reachable());
    }

    async fn check_until_reachable(self: Arc<Self>) {
        let mut wait = FIRST_RECHECK;
        loop {
            match self.health.probe().await {
                Ok(()) => break,
                Err(err) => {
                    if !self.closed.swap(true, Ordering::AcqRel) {
                        metrics::gauge!(crate::metrics::DATABASE_UP).set(0.0);
                        tracing::error!(
                            error = %err,
                            "the database is unreachable; answering 503 at once until it is back"
                        );
                    }
                }
            }
            tokio::time::sleep(wait).await;
            wait = (wait * 2).min(MAX_RECHECK);
        }
        if self.closed.swap(false, Ordering::AcqRel) {
            metrics::gauge!(crate::metrics::DATABASE_UP).set(1.0);
            tracing::info!("the database answers again; serving");
        }
        self.checking.store(false, Ordering::Release);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::storage::error::StoreError;
    use std::sync::atomic::AtomicUsize;

    /// A database that fails its first `failures` probes.
    struct Flaky {
        failures: usize,
        probes: AtomicUsize,
    }

    #[async_trait::async_trait]
    impl HealthCheck for Flaky {
        async fn ping(&self) -> Result<(), StoreError> {
            if self.probes.fetch_add(1, Ordering::SeqCst) < self.failures {
                Err(StoreError::Unavailable(anyhow::anyhow!("refused")))
            } else {
                Ok(())
            }
        }
    }

    /// Waits (polling, 10 s at most) for the running check to end.
    async fn settle(gate: &DatabaseGate) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while gate.checking.load(Ordering::Acquire) {
            assert!(
                tokio::time::Instant::now() < deadline,
                "the check never ended"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    #[tokio::test]
    async fn a_reachable_database_keeps_the_gate_open() {
        let gate = DatabaseGate::new(Arc::new(Flaky {
            failures: 0,
            probes: AtomicUsize::new(0),
        }));
        gate.suspect();
        settle(&gate).await;
        assert!(!gate.is_closed());
    }

    #[tokio::test]
    async fn an_unreachable_database_closes_the_gate_until_it_answers() {
        let gate = DatabaseGate::new(Arc::new(Flaky {
            failures: 2,
            probes: AtomicUsize::new(0),
        }));
        gate.suspect();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while !gate.is_closed() {
            assert!(
                tokio::time::Instant::now() < deadline,
                "the gate never closed"
            );
            tokio::task::yield_now().await;
        }
        gate.suspect(); // a second suspicion joins the running check
        settle(&gate).await;
        assert!(!gate.is_closed());
    }
}
