//! Prometheus metrics: the recorder (one per process), the HTTP middleware, and the names
//! every part of gemchat records under. Recording is an atomic update on a cached handle, so it
//! is cheap on the hot path; `/metrics` renders the text format.

use std::sync::OnceLock;
use std::time::Duration;

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

pub(crate) const HTTP_REQUESTS: &str = "http_requests_total";
pub(crate) const HTTP_DURATION: &str = "http_request_duration_seconds";
pub(crate) const JOBS: &str = "gemchat_jobs";
pub(crate) const JOB_OUTCOMES: &str = "gemchat_job_outcomes_total";
pub(crate) const AI_DURATION: &str = "gemchat_ai_request_duration_seconds";
pub(crate) const AI_ERRORS: &str = "gemchat_ai_errors_total";
pub(crate) const AI_PAUSES: &str = "gemchat_ai_pauses_total";
pub(crate) const CACHE_REQUESTS: &str = "gemchat_cache_requests_total";
pub(crate) const SSE_CONNECTIONS: &str = "gemchat_sse_connections";
pub(crate) const QUOTA_REJECTIONS: &str = "gemchat_quota_rejections_total";
pub(crate) const REDIS_UP: &str = "gemchat_redis_up";
pub(crate) const DATABASE_UP: &str = "gemchat_database_up";

/// How often the histograms' recorded samples are folded into their buckets (the exporter's
/// own default).
const UPKEEP_EVERY: Duration = Duration::from_secs(5);

/// The name of the thread that does it.
const UPKEEP_THREAD: &str = "metrics-upkeep";

/// The process's metrics recorder, installed on first use, with the thread that keeps its
/// histograms folded.
pub(crate) fn handle() -> PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let latency = [
                0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
            ];
            let ai = [0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 20.0, 40.0, 60.0, 120.0];
            let builder = PrometheusBuilder::new()
                .set_buckets_for_metric(Matcher::Full(HTTP_DURATION.into()), &latency)
                .and_then(|b| b.set_buckets_for_metric(Matcher::Full(AI_DURATION.into()), &ai));
            let recorder = match builder {
                Ok(builder) => builder.build_recorder(),
                Err(err) => {
                    tracing::error!(error = %err, "bad histogram buckets; using summaries");
                    PrometheusBuilder::new().build_recorder()
                }
            };
            let handle = recorder.handle();
            if metrics::set_global_recorder(recorder).is_err() {
                tracing::warn!("a metrics recorder was already installed");
            }
            describe();
            // Present from the start, so a scrape shows 0 rather than nothing.
            metrics::gauge!(SSE_CONNECTIONS).set(0.0);
            keep_up(handle.clone());
            handle
        })
        .clone()
}

/// Folds recorded histogram samples into their buckets every `UPKEEP_EVERY`, for the life of
/// the process. The recorder keeps every sample (every request's latency) as recorded until
/// then: without this, a process nobody scrapes, or a worker, which serves no `/metrics`, grew
/// by ~8 bytes a request without end (bench scenario 4: +10 MiB over a million requests).
/// A thread, not a task: the recorder outlives any one runtime (each test has its own).
fn keep_up(handle: PrometheusHandle) {
    let started = std::thread::Builder::new()
        .name(UPKEEP_THREAD.into())
        .stack_size(64 * 1024)
        .spawn(move || {
            loop {
                std::thread::sleep(UPKEEP_EVERY);
                handle.run_upkeep();
            }
        });
    if let Err(err) = started {
        tracing::error!(error = %err, "cannot start the metrics upkeep thread; histograms grow until scraped");
    }
}

fn describe() {
    metrics::describe_counter!(
        HTTP_REQUESTS,
        "HTTP requests by method, route template and status"
    );
    metrics::describe_histogram!(
        HTTP_DURATION,
        metrics::Unit::Seconds,
        "HTTP request latency"
    );
    metrics::describe_gauge!(JOBS, "Reply jobs in the queue by state (queued, running)");
    metrics::describe_counter!(JOB_OUTCOMES, "Reply job attempts by outcome");
    metrics::describe_histogram!(
        AI_DURATION,
        metrics::Unit::Seconds,
        "AI provider calls, start to last chunk"
    );
    metrics::describe_counter!(AI_ERRORS, "AI provider errors by kind");
    metrics::describe_counter!(
        AI_PAUSES,
        "Rate-limited AI answers that paused every AI call of the project"
    );
    metrics::describe_counter!(
        CACHE_REQUESTS,
        "Cache lookups by cache and result (hit, miss)"
    );
    metrics::describe_gauge!(SSE_CONNECTIONS, "Open Server-Sent Events connections");
    metrics::describe_counter!(
        QUOTA_REJECTIONS,
        "Prompts refused by the daily limit, by tier"
    );
    metrics::describe_gauge!(
        DATABASE_UP,
        "1 while the database answers, 0 while requests are refused at once for its outage"
    );
    metrics::describe_gauge!(
        REDIS_UP,
        "1 while Redis answers, 0 while its circuit breaker is open (only with REDIS_URL)"
    );
}

/// Counts and times a request by method, route template (never the concrete path) and status.
pub(crate) fn record_http(method: &'static str, route: &str, status: u16, latency: Duration) {
    let series = HttpSeries::of(method, route, status);
    series.requests.increment(1);
    series.duration.record(latency.as_secs_f64());
}

/// The two series of one method, route and status. Looking a series up in the recorder
/// builds its labels and hashes them; the handles are kept instead, so a request costs a
/// read lock and two atomic updates.
#[derive(Clone)]
struct HttpSeries {
    requests: metrics::Counter,
    duration: metrics::Histogram,
}

/// The series of each route template, by method and status. Bounded: the routes, methods
/// ([`method_label`]) and status codes are.
type SeriesByRoute = std::collections::HashMap<Box<str>, Vec<(&'static str, u16, HttpSeries)>>;

impl HttpSeries {
    fn of(method: &'static str, route: &str, status: u16) -> Self {
        use std::sync::{PoisonError, RwLock};
        static SERIES: OnceLock<RwLock<SeriesByRoute>> = OnceLock::new();
        let series = SERIES.get_or_init(RwLock::default);
        let find = |known: &SeriesByRoute| {
            known.get(route).and_then(|of_route| {
                of_route
                    .iter()
                    .find(|(m, s, _)| *m == method && *s == status)
                    .map(|(_, _, series)| series.clone())
            })
        };
        if let Some(found) = find(&series.read().unwrap_or_else(PoisonError::into_inner)) {
            return found;
        }
        let mut known = series.write().unwrap_or_else(PoisonError::into_inner);
        if let Some(found) = find(&known) {
            return found;
        }
        let labels = [
            ("method", method.to_owned()),
            ("route", route.to_owned()),
            ("status", status.to_string()),
        ];
        let made = Self {
            requests: metrics::counter!(HTTP_REQUESTS, &labels),
            duration: metrics::histogram!(HTTP_DURATION, &labels),
        };
        known
            .entry(route.into())
            .or_default()
            .push((method, status, made.clone()));
        made
    }
}

/// The method as a label: the standard methods by name, anything else as `other`, so a client
/// cannot add series by inventing methods.
pub(crate) fn method_label(method: &axum::http::Method) -> &'static str {
    use axum::http::Method;
    match *method {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::PATCH => "PATCH",
        Method::DELETE => "DELETE",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        _ => "other",
    }
}

/// Counts an open SSE connection for as long as it lives.
pub(crate) struct SseConnection;

impl SseConnection {
    pub(crate) fn open() -> Self {
        metrics::gauge!(SSE_CONNECTIONS).increment(1.0);
        Self
    }
}

impl Drop for SseConnection {
    fn drop(&mut self) {
        metrics::gauge!(SSE_CONNECTIONS).decrement(1.0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;

    #[test]
    fn one_thread_folds_the_histograms_whoever_asks_for_the_recorder() {
        fn upkeep_threads() -> usize {
            std::fs::read_dir("/proc/self/task")
                .expect("the process's threads")
                .filter_map(|task| std::fs::read_to_string(task.ok()?.path().join("comm")).ok())
                .filter(|name| name.trim_end() == UPKEEP_THREAD)
                .count()
        }
        handle();
        handle();
        // A new thread names itself once it runs.
        let deadline = Instant::now() + Duration::from_secs(10);
        while upkeep_threads() == 0 && Instant::now() < deadline {
            std::thread::yield_now();
        }
        assert_eq!(upkeep_threads(), 1);
    }

    #[test]
    fn unknown_methods_share_one_label() {
        use axum::http::Method;
        assert_eq!(method_label(&Method::GET), "GET");
        assert_eq!(method_label(&Method::DELETE), "DELETE");
        for invented in ["M12345", "PROPFIND", &"X".repeat(4000)] {
            let method = Method::from_bytes(invented.as_bytes());
            assert_eq!(method.map(|m| method_label(&m)).ok(), Some("other"));
        }
    }
}
