//! The application: [`App`] (configuration and every port, built once per process),
//! [`AppState`] (what handlers receive), the router with its middleware, and `serve`.

use std::any::Any;
use std::future::Future;
use std::ops::Deref;
use std::sync::Arc;

use anyhow::Context;
use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::extract::MatchedPath;
use axum::http::{HeaderName, HeaderValue, Method, header};
use axum::response::{IntoResponse, Response};
use tokio::net::TcpListener;
use tower::ServiceBuilder;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::cors::{AllowOrigin, CorsLayer};
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::set_header::SetResponseHeaderLayer;
use tower_http::trace::TraceLayer;
use utoipa::OpenApi;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa_axum::router::OpenApiRouter;
use utoipa_swagger_ui::SwaggerUi;

use crate::ai::AiProvider;
use crate::ai::echo::EchoProvider;
use crate::ai::gemini::GeminiProvider;
use crate::auth::jwt::{self, JwtKeys};
use crate::auth::otp::{IssuePolicy, OtpKey};
use crate::auth::sms::{LogSmsSender, SmsSender};
use crate::auth::tokens::Authenticator;
use crate::billing::gateway::{PaymentGateway, Price};
use crate::billing::stripe::StripeGateway;
use crate::cache::{ListCache, MemoryListCache, RedisListCache};
use crate::clock::Clock;
use crate::config::{AiProviderKind, Config};
use crate::error::AppError;
use crate::events::EventBus;
use crate::events::progress::{MemoryProgress, RedisProgress, ReplyProgress};
use crate::quota::model::QuotaPolicy;
use crate::redis_link::RedisLink;
use crate::storage::Store;
use crate::storage::gate::DatabaseGate;

/// Everything a gemchat process holds: configuration and the adapters behind each port.
pub struct App {
    pub config: Config,
    pub store: Store,
    pub clock: Arc<dyn Clock>,
    pub auth: Authenticator,
    pub otp_key: OtpKey,
    pub otp_policy: IssuePolicy,
    pub sms: Arc<dyn SmsSender>,
    pub region: phonenumber::country::Id,
    pub quota: QuotaPolicy,
    pub redis: Option<RedisLink>,
    /// Refuses database work at once while the database is unreachable.
    pub database_gate: Arc<DatabaseGate>,
    pub events: Arc<EventBus>,
    pub list_cache: Arc<dyn ListCache>,
    pub progress: Arc<dyn ReplyProgress>,
    pub ai: Arc<dyn AiProvider>,
    /// Stripe, when `STRIPE_SECRET_KEY` is set; billing is off otherwise.
    pub payments: Option<Arc<dyn PaymentGateway>>,
    /// Pro's price, read from Stripe once.
    pub pro_price: tokio::sync::OnceCell<Price>,
    /// Abuse limits (per IP on auth routes, per user elsewhere).
    pub limiter: Arc<dyn crate::ratelimit::RateLimiter>,
    /// Renders `/metrics`.
    pub metrics: metrics_exporter_prometheus::PrometheusHandle,
    /// Turns true when the process begins to shut down; long-lived work (event streams,
    /// workers) watches it.
    stopping: tokio::sync::watch::Sender<bool>,
}

impl App {
    /// Connects to the database (migrating it unless told not to) and Redis, and loads the
    /// signing secret.
    pub async fn build(config: Config, clock: Arc<dyn Clock>) -> anyhow::Result<Self> {
        let region = config
            .default_region
            .trim()
            .to_ascii_uppercase()
            .parse::<phonenumber::country::Id>()
            .map_err(|_| {
                anyhow::anyhow!(
                    "DEFAULT_REGION must be an ISO 3166 region code such as IN, got {:?}",
                    config.default_region
                )
            })?;
        let store = Store::connect(&config.database_url, !config.skip_migrations).await?;
        let secret = jwt::load_or_generate_secret(
            config
                .jwt_secret
                .as_ref()
                .map(crate::config::Secret::expose),
            &config.data_dir,
        )?;
        let ttl = chrono::Duration::seconds(i64::try_from(config.jwt_ttl).unwrap_or(86_400));
        let (redis, events) = match &config.redis_url {
            Some(url) => {
                let client = redis::Client::open(url.as_str()).context("parsing REDIS_URL")?;
                let link = RedisLink::new(connect_redis(client.clone()).await?);
                let events = EventBus::redis(client, link.clone()).await?;
                (Some(link), events)
            }
            None => (None, EventBus::in_process()),
        };
        let events = Arc::new(events);
        let cache_ttl = std::time::Duration::from_secs(config.chatroom_cache_ttl.max(1));
        let (list_cache, progress): (Arc<dyn ListCache>, Arc<dyn ReplyProgress>) = match &redis {
            Some(conn) => (
                Arc::new(RedisListCache::new(conn.clone(), cache_ttl)),
                Arc::new(RedisProgress::new(conn.clone())),
            ),
            None => (
                Arc::new(MemoryListCache::new(cache_ttl)),
                Arc::new(MemoryProgress::default()),
            ),
        };
        let ai = ai_provider(&config)?;
        let limiter: Arc<dyn crate::ratelimit::RateLimiter> = match &redis {
            Some(conn) => Arc::new(crate::ratelimit::RedisLimiter::new(conn.clone())),
            None => Arc::new(crate::ratelimit::MemoryLimiter::default()),
        };
        let payments: Option<Arc<dyn PaymentGateway>> = match &config.stripe_secret_key {
            Some(key) => Some(Arc::new(StripeGateway::new(
                &config.stripe_api_base,
                key.clone(),
            )?)),
            None => {
                tracing::info!("billing is off: STRIPE_SECRET_KEY is not set");
                None
            }
        };
        let auth = Authenticator::new(
            JwtKeys::new(&secret, ttl),
            store.sessions.clone(),
            clock.clone(),
            events.clone(),
        );
        Ok(Self {
            otp_key: OtpKey::derive(&secret),
            otp_policy: IssuePolicy::default(),
            sms: Arc::new(LogSmsSender),
            region,
            quota: QuotaPolicy {
                basic: Some(config.basic_daily_limit),
                pro: config.pro_daily_limit,
            },
            redis,
            database_gate: DatabaseGate::new(store.health.clone()),
            events,
            list_cache,
            progress,
            ai,
            payments,
            pro_price: tokio::sync::OnceCell::new(),
            limiter,
            metrics: crate::metrics::handle(),
            stopping: tokio::sync::watch::Sender::new(false),
            auth,
            store,
            clock,
            config,
        })
    }
}

impl App {
    /// The base of links back to this service (Checkout's return pages).
    pub fn public_url(&self) -> String {
        match &self.config.public_url {
            Some(url) => url.trim_end_matches('/').to_owned(),
            None => format!("http://{}:{}", self.config.host, self.config.port),
        }
    }

    /// Starts shutting down: event streams end, workers stop claiming.
    pub fn begin_shutdown(&self) {
        self.stopping.send_replace(true);
    }

    /// A receiver that turns true when shutdown begins.
    pub fn stopping(&self) -> tokio::sync::watch::Receiver<bool> {
        self.stopping.subscribe()
    }

    /// Completes when shutdown begins.
    pub async fn stopped(&self) {
        let mut stopping = self.stopping();
        let _ = stopping.wait_for(|stopping| *stopping).await;
    }
}

/// The configured AI provider: Gemini when a key is set (or `AI_PROVIDER=gemini`), else the
/// offline `echo` provider, announced loudly.
fn ai_provider(config: &Config) -> anyhow::Result<Arc<dyn AiProvider>> {
    let kind = config
        .ai_provider
        .unwrap_or(if config.gemini_api_key.is_some() {
            AiProviderKind::Gemini
        } else {
            AiProviderKind::Echo
        });
    match kind {
        AiProviderKind::Gemini => {
            let key = config
                .gemini_api_key
                .clone()
                .context("AI_PROVIDER=gemini needs GEMINI_API_KEY")?;
            tracing::info!(model = %config.gemini_model, "AI provider: Gemini");
            Ok(Arc::new(GeminiProvider::new(
                &config.gemini_base_url,
                &config.gemini_model,
                key,
            )?))
        }
        AiProviderKind::Echo => {
            tracing::warn!(
                "AI provider: ECHO (offline). Replies are generated locally and only repeat \
                 the prompt. Set GEMINI_API_KEY to use Gemini."
            );
            Ok(Arc::new(EchoProvider {
                pace: std::time::Duration::from_millis(config.echo_chunk_delay_ms),
            }))
        }
    }
}

async fn connect_redis(client: redis::Client) -> anyhow::Result<redis::aio::ConnectionManager> {
    // Fail fast: a command waits at most 2 s, and a lost connection is retried in the
    // background by the manager rather than stalling requests.
    let config = redis::aio::ConnectionManagerConfig::new()
        .set_connection_timeout(Some(std::time::Duration::from_secs(2)))
        .set_response_timeout(Some(std::time::Duration::from_secs(2)))
        .set_number_of_retries(2)
        .set_max_delay(std::time::Duration::from_millis(500));
    redis::aio::ConnectionManager::new_with_config(client, config)
        .await
        .context("connecting to Redis (REDIS_URL)")
}

/// What handlers receive: a cheap handle on the one [`App`].
#[derive(Clone)]
pub struct AppState(pub Arc<App>);

impl Deref for AppState {
    type Target = App;

    fn deref(&self) -> &App {
        &self.0
    }
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "gemchat",
        description = "Gemini-style AI chat: OTP sign-in, chatrooms, streamed AI replies, Pro \
                       subscriptions. Errors are RFC 9457 problem details with a stable `code`. \
                       A path written with a trailing slash (`/chatroom/`) answers 308 Permanent \
                       Redirect to the same path without it (the method and body are kept). \
                       Text fields never accept the NUL character (422 `validation_failed`). \
                       A request body must arrive within `HTTP_BODY_TIMEOUT` seconds of its \
                       headers (408 `request_timeout`)."
    ),
    modifiers(&BearerAuth),
    tags(
        (name = "auth", description = "Sign-up, one-time codes, passwords, sessions"),
        (name = "user", description = "The caller's account"),
        (name = "chatrooms", description = "Chatrooms, messages and AI replies"),
        (name = "billing", description = "Pro subscriptions through Stripe"),
        (name = "operations", description = "Health, readiness, documentation"),
    )
)]
struct ApiDoc;

struct BearerAuth;

impl utoipa::Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("JWT")
                    .build(),
            ),
        );
    }
}

/// The API's routes and their OpenAPI description, before state and middleware.
fn api() -> (Router<AppState>, utoipa::openapi::OpenApi) {
    let (routes, mut doc) = OpenApiRouter::with_openapi(ApiDoc::openapi())
        .merge(crate::auth::routes::router())
        .merge(crate::users::routes::router())
        .merge(crate::chatrooms::routes::router())
        .merge(crate::messages::routes::router())
        .merge(crate::billing::routes::router())
        .merge(crate::ops::routes::router())
        .split_for_parts();
    crate::error::document_common_errors(&mut doc);
    (routes, doc)
}

/// The OpenAPI document served at `/openapi.json`.
pub fn openapi() -> utoipa::openapi::OpenApi {
    api().1
}

/// The complete HTTP service: routes, docs, error fallbacks and middleware.
pub fn router(app: Arc<App>) -> Router {
    let (routes, openapi) = api();
    let not_found = not_found(&openapi);
    let max_body = app.config.max_body_bytes;
    let body_time = std::time::Duration::from_secs(app.config.http_body_timeout);
    let cors = cors_layer(app.config.cors_origins.as_deref());
    let state = AppState(app);
    let routes = routes
        .merge(docs(openapi))
        .merge(crate::web::router())
        .fallback(not_found)
        .method_not_allowed_fallback(|| async { AppError::MethodNotAllowed })
        .with_state(state.clone())
        .layer(DefaultBodyLimit::max(max_body))
        .layer(axum::middleware::from_fn_with_state(
            body_time,
            crate::server::limit_body_time,
        ))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            crate::storage::gate::fail_fast,
        ))
        .layer(axum::middleware::from_fn_with_state(
            state,
            crate::ratelimit::limit_auth_routes,
        ))
        .layer(axum::middleware::from_fn(crate::metrics::track_http));
    with_security_headers(routes).layer(
        ServiceBuilder::new()
            .layer(tower::util::MapRequestLayer::new(drop_unusable_request_id))
            .layer(SetRequestIdLayer::x_request_id(MakeRequestUuid))
            .layer(
                TraceLayer::new_for_http()
                    .make_span_with(request_span)
                    .on_request(())
                    .on_response(log_response),
            )
            .layer(PropagateRequestIdLayer::x_request_id())
            .option_layer(cors)
            .layer(CatchPanicLayer::custom(panic_response)),
    )
}

/// Swagger UI at `/docs` and the document at `/openapi.json`; what Swagger UI answers with an
/// empty body (an unknown file, a wrong method) becomes problem+json like every other error.
fn docs(openapi: utoipa::openapi::OpenApi) -> Router<AppState> {
    async fn as_problem(response: Response) -> Response {
        match response.status() {
            axum::http::StatusCode::NOT_FOUND => AppError::RouteNotFound.into_response(),
            axum::http::StatusCode::METHOD_NOT_ALLOWED => {
                AppError::MethodNotAllowed.into_response()
            }
            _ => response,
        }
    }
    Router::from(SwaggerUi::new("/docs").url("/openapi.json", openapi))
        .layer(axum::middleware::map_response(as_problem))
}

/// The fallback when no route matched. A path of the API written with a trailing slash
/// (`/chatroom/`, as clients of other variants of this API send) is redirected with 308, which
/// keeps the method and the body, to the path without it; anything else is a 404. The API's
/// paths are read from its own OpenAPI document, so the router stays the one list of routes.
fn not_found(
    openapi: &utoipa::openapi::OpenApi,
) -> impl Fn(axum::http::Uri) -> std::future::Ready<Response> + Clone + Send + Sync + 'static {
    let mut paths = matchit::Router::new();
    for path in openapi.paths.paths.keys() {
        if let Err(err) = paths.insert(path.as_str(), ()) {
            tracing::error!(path, error = %err, "an API path cannot be matched");
        }
    }
    let paths = Arc::new(paths);
    move |uri: axum::http::Uri| {
        let path = uri.path();
        let canonical = path.trim_end_matches('/');
        let redirect = canonical.len() < path.len() && paths.at(canonical).is_ok();
        let location = match uri.query() {
            Some(query) => format!("{canonical}?{query}"),
            None => canonical.to_owned(),
        };
        std::future::ready(match HeaderValue::from_str(&location) {
            Ok(location) if redirect => (
                axum::http::StatusCode::PERMANENT_REDIRECT,
                [(header::LOCATION, location)],
            )
                .into_response(),
            _ => AppError::RouteNotFound.into_response(),
        })
    }
}

/// The longest `X-Request-Id` taken from a client.
const MAX_REQUEST_ID: usize = 128;

/// Removes a client's `X-Request-Id` unless it is a short id of safe characters, so that one is
/// generated instead: the id is echoed and logged, and must not carry 60 KB or log-breaking text.
fn drop_unusable_request_id(
    mut request: axum::http::Request<axum::body::Body>,
) -> axum::http::Request<axum::body::Body> {
    let usable = |value: &HeaderValue| {
        let bytes = value.as_bytes();
        !bytes.is_empty()
            && bytes.len() <= MAX_REQUEST_ID
            && bytes
                .iter()
                .all(|b| b.is_ascii_alphanumeric() || b"-_.:+/=@".contains(b))
    };
    let headers = request.headers_mut();
    let mut ids = headers.get_all("x-request-id").iter();
    let keep = match (ids.next(), ids.next()) {
        (None, _) => true,
        (Some(id), None) => usable(id),
        // Several ids: none is the one.
        (Some(_), Some(_)) => false,
    };
    if !keep {
        headers.remove("x-request-id");
    }
    request
}

/// The span every request runs in: one log line per request carries these fields.
/// `user_id` is filled in by the `AuthUser` extractor once the token checks out.
fn request_span(request: &axum::http::Request<axum::body::Body>) -> tracing::Span {
    let request_id = request
        .headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    // The route template, never the concrete path (ids stay out of logs and labels).
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or("unmatched", MatchedPath::as_str);
    tracing::info_span!(
        "request",
        method = crate::metrics::method_label(request.method()),
        route,
        request_id,
        user_id = tracing::field::Empty,
    )
}

fn log_response<B>(
    response: &axum::http::Response<B>,
    latency: std::time::Duration,
    _span: &tracing::Span,
) {
    tracing::info!(
        status = response.status().as_u16(),
        latency_ms = latency.as_secs_f64() * 1000.0,
        "request finished"
    );
}

/// Whether a response carries data (JSON or an event stream), which may hold tokens and
/// personal data.
fn is_data(response: &axum::http::Response<axum::body::Body>) -> bool {
    response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("json") || v.starts_with("text/event-stream"))
}

/// Adds the headers every API response carries: no sniffing, no framing, no referrer; and for
/// data, no caching and a deny-all content security policy (the docs page keeps its own).
fn with_security_headers(router: Router) -> Router {
    router
        .layer(SetResponseHeaderLayer::if_not_present(
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        ))
        .layer(SetResponseHeaderLayer::if_not_present(
            header::X_FRAME_OPTIONS,
            HeaderValue::from_static("DENY"),
        ))
        .layer(SetResponseHeaderLayer::if_not_present(
            header::REFERRER_POLICY,
            HeaderValue::from_static("no-referrer"),
        ))
        .layer(SetResponseHeaderLayer::if_not_present(
            header::CACHE_CONTROL,
            |response: &axum::http::Response<axum::body::Body>| {
                is_data(response).then(|| HeaderValue::from_static("no-store"))
            },
        ))
        .layer(SetResponseHeaderLayer::if_not_present(
            header::CONTENT_SECURITY_POLICY,
            |response: &axum::http::Response<axum::body::Body>| {
                is_data(response)
                    .then(|| HeaderValue::from_static("default-src 'none'; frame-ancestors 'none'"))
            },
        ))
}

/// CORS for the configured origins; none (no CORS headers at all) by default.
fn cors_layer(origins: Option<&str>) -> Option<CorsLayer> {
    let origins: Vec<&str> = origins?
        .split(',')
        .map(str::trim)
        .filter(|o| !o.is_empty())
        .collect();
    if origins.is_empty() {
        return None;
    }
    let allow = if origins.contains(&"*") {
        AllowOrigin::any()
    } else {
        AllowOrigin::list(origins.iter().filter_map(|o| HeaderValue::from_str(o).ok()))
    };
    Some(
        CorsLayer::new()
            .allow_origin(allow)
            .allow_methods([Method::GET, Method::POST, Method::PATCH, Method::DELETE])
            .allow_headers([
                header::AUTHORIZATION,
                header::CONTENT_TYPE,
                HeaderName::from_static("last-event-id"),
                HeaderName::from_static("x-request-id"),
            ])
            .expose_headers([
                HeaderName::from_static("x-request-id"),
                header::RETRY_AFTER,
                HeaderName::from_static("ratelimit-limit"),
                HeaderName::from_static("ratelimit-remaining"),
                HeaderName::from_static("ratelimit-reset"),
            ])
            .max_age(std::time::Duration::from_secs(3600)),
    )
}

/// A panic in a handler still answers problem+json (500), and is logged.
fn panic_response(panic: Box<dyn Any + Send + 'static>) -> Response {
    let message = panic
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "unknown panic".into());
    AppError::Internal(anyhow::anyhow!("handler panicked: {message}")).into_response()
}

/// Serves `app` on `listener` until `shutdown` completes, then stops accepting and lets
/// in-flight requests finish (within `SHUTDOWN_TIMEOUT`).
pub async fn serve(
    app: Arc<App>,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let limits = crate::server::Limits::from_config(&app.config);
    crate::server::serve(router(app), listener, limits, shutdown).await
}

/// Serves any router the way [`serve`] does (client addresses, time limits, graceful
/// shutdown), with the default limits.
pub async fn serve_router(
    router: Router,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let limits = crate::server::Limits::from_config(&Config::defaults());
    crate::server::serve(router, listener, limits, shutdown).await
}

/// Completes on SIGINT (Ctrl-C) or SIGTERM.
pub async fn shutdown_signal() {
    let interrupt = async {
        if let Err(err) = tokio::signal::ctrl_c().await {
            tracing::error!(error = %err, "cannot listen for Ctrl-C");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(err) => {
                tracing::error!(error = %err, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = interrupt => {}
        () = terminate => {}
    }
    tracing::info!("shutting down: no new connections; finishing requests in flight");
}

#[cfg(test)]
mod tests {
    use axum::body::Body;
    use axum::http::{Request, StatusCode};
    use axum::routing::get;
    use http_body_util::BodyExt;
    use tower::ServiceExt;

    use super::*;

    #[tokio::test]
    async fn a_panicking_handler_answers_500_problem_json() {
        #[allow(clippy::panic)]
        async fn boom() -> &'static str {
            panic!("handler bug")
        }
        let router = Router::new()
            .route("/boom", get(boom))
            .layer(CatchPanicLayer::custom(panic_response));
        let request = Request::builder().uri("/boom").body(Body::empty());
        let response = router.oneshot(request.unwrap_or_default()).await;
        let response = response.unwrap_or_else(|never| match never {});
        assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(
            response.headers().get("content-type").map(|v| v.as_bytes()),
            Some(&b"application/problem+json"[..])
        );
        let body = response.into_body().collect().await.map(|b| b.to_bytes());
        let body: serde_json::Value =
            serde_json::from_slice(&body.unwrap_or_default()).unwrap_or_default();
        assert_eq!(body["code"], "internal_error");
        assert!(
            !body.to_string().contains("handler bug"),
            "panic messages stay in the log"
        );
    }
}
