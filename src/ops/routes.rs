//! `/health` and `/ready`. (`/openapi.json` and `/docs` are mounted by the app router.)

use axum::extract::State;
use serde::Serialize;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::error::{AppError, Result};
use crate::http::extract::AppJson;
use crate::http::problem::Problem;
use crate::http::state::AppState;

pub(crate) fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(health))
        .routes(routes!(ready))
        .routes(routes!(metrics))
}

/// Prometheus metrics (text format). Bind the service where only your scraper reaches this.
#[utoipa::path(get, path = "/metrics", tag = "operations",
    responses((status = 200, description = "Prometheus text format", content_type = "text/plain", body = String)))]
async fn metrics(State(state): State<AppState>) -> axum::response::Response {
    use axum::response::IntoResponse;
    match state.store.jobs.counts(state.clock.now()).await {
        Ok((queued, running)) => {
            ::metrics::gauge!(crate::metrics::JOBS, "state" => "queued").set(queued as f64);
            ::metrics::gauge!(crate::metrics::JOBS, "state" => "running").set(running as f64);
        }
        Err(err) => tracing::warn!(error = %err, "metrics: cannot count jobs"),
    }
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        state.metrics.render(),
    )
        .into_response()
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub(crate) enum HealthState {
    Ok,
}

#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct HealthResponse {
    pub(crate) status: HealthState,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub(crate) enum ReadyState {
    Ready,
}

#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct ReadyResponse {
    pub(crate) status: ReadyState,
    /// The dependencies that were checked.
    #[schema(example = json!(["database", "redis"]))]
    pub(crate) checked: Vec<&'static str>,
}

/// Liveness: the process is up.
#[utoipa::path(get, path = "/health", tag = "operations",
    responses((status = 200, body = HealthResponse)))]
async fn health() -> AppJson<HealthResponse> {
    AppJson(HealthResponse {
        status: HealthState::Ok,
    })
}

/// Readiness: the database (and Redis, when configured) answer.
#[utoipa::path(get, path = "/ready", tag = "operations",
    responses(
        (status = 200, body = ReadyResponse),
        (status = 503, description = "`unavailable`; the detail names what is down", body = Problem, content_type = "application/problem+json"),
    ))]
async fn ready(State(state): State<AppState>) -> Result<AppJson<ReadyResponse>> {
    let mut checked = vec!["database"];
    let mut down = Vec::new();
    if !super::service::database_answers(&state).await {
        down.push("database");
    }
    if let Some(redis_up) = super::service::redis_answers(&state).await {
        checked.push("redis");
        if !redis_up {
            down.push("redis");
        }
    }
    if !down.is_empty() {
        return Err(AppError::Unavailable(down.join(", ")));
    }
    Ok(AppJson(ReadyResponse {
        status: ReadyState::Ready,
        checked,
    }))
}
