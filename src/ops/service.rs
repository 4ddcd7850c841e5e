//! Readiness checks: whether the database and Redis answer, each within a bounded time.

use std::time::Duration;

use crate::app::App;

/// How long a readiness check may take before its dependency counts as down.
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);

/// Whether the database answers. While the gate is closed it is known to be down (no probe to
/// wait for); a failed check makes the gate look.
pub(crate) async fn database_answers(app: &App) -> bool {
    let up = !app.database_gate.is_closed()
        && match tokio::time::timeout(PROBE_TIMEOUT, app.store.health.ping()).await {
            Ok(Ok(())) => true,
            Ok(Err(err)) => {
                tracing::warn!(error = %err, "readiness: database check failed");
                false
            }
            Err(_) => false,
        };
    if !up {
        app.database_gate.suspect();
    }
    up
}

/// Whether Redis answers, when it is configured. While the link's breaker is open this
/// answers at once, without a round trip.
pub(crate) async fn redis_answers(app: &App) -> Option<bool> {
    let redis = app.redis.as_ref()?;
    let ping = redis.call("check readiness", |mut conn| async move {
        redis::cmd("PING").query_async::<()>(&mut conn).await
    });
    Some(
        tokio::time::timeout(PROBE_TIMEOUT, ping)
            .await
            .ok()
            .flatten()
            .is_some(),
    )
}
