//! The complete HTTP service: the API's routes (the routes that need the database behind the
//! database gate), the operations routes, the docs, the web client, the fallbacks, and the
//! middleware around them all.

use std::sync::Arc;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use tokio::net::TcpListener;
use tower::ServiceBuilder;
use tower::util::{MapRequestLayer, MapResponseLayer};
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::request_id::{PropagateRequestIdLayer, SetRequestIdLayer};
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;
use utoipa_swagger_ui::SwaggerUi;

use crate::app::App;
use crate::error::AppError;
use crate::http::middleware::{
    MakeRequestId, add_security_headers, cors_layer, drop_unusable_request_id, fail_fast,
    limit_body_time, panic_response,
};
use crate::http::observe::ObserveLayer;
use crate::http::openapi::{ApiDoc, document_common_errors};
use crate::http::server::{self, Limits};
use crate::http::state::AppState;

/// The API's routes and their OpenAPI description, before state and middleware: those that
/// need the database, and the operations routes (which answer without it).
fn api(
    config: &crate::config::Config,
) -> (Router<AppState>, Router<AppState>, utoipa::openapi::OpenApi) {
    let (with_database, mut doc) = OpenApiRouter::with_openapi(ApiDoc::openapi())
        .merge(crate::auth::routes::router())
        .merge(crate::users::routes::router())
        .merge(crate::chatrooms::routes::router())
        .merge(crate::messages::routes::router())
        .merge(crate::replies::routes::router())
        .merge(crate::billing::routes::router())
        .merge(crate::uploads::routes::router(config.upload_max_bytes))
        .merge(crate::admin::routes::router())
        .split_for_parts();
    let (operations, operations_doc) = crate::ops::routes::router().split_for_parts();
    doc.merge(operations_doc);
    document_common_errors(&mut doc);
    (with_database, operations, doc)
}

/// The complete HTTP service: routes, docs, error fallbacks and middleware.
pub fn router(app: Arc<App>) -> Router {
    let (with_database, operations, openapi) = api(&app.config);
    let not_found = not_found(&openapi);
    let max_body = app.config.max_body_bytes;
    let body_time = std::time::Duration::from_secs(app.config.http_body_timeout);
    let cors = cors_layer(app.config.cors_origins.as_deref());
    let state = AppState(app);
    let routes = with_database
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            fail_fast,
        ))
        .merge(operations)
        .merge(docs(openapi))
        .merge(crate::web::router())
        .fallback(not_found)
        .method_not_allowed_fallback(|| async { AppError::MethodNotAllowed })
        .with_state(state.clone());
    with_middleware(routes, cors, body_time, max_body)
}

/// Every middleware around every route. One `Router::layer` for the whole stack: each one adds
/// a boxed clone of the service and a boxed future to every request. Outermost first.
fn with_middleware(
    routes: Router,
    cors: Option<tower_http::cors::CorsLayer>,
    body_time: std::time::Duration,
    max_body: usize,
) -> Router {
    routes.layer(
        ServiceBuilder::new()
            .layer(MapRequestLayer::new(drop_unusable_request_id))
            .layer(SetRequestIdLayer::x_request_id(MakeRequestId))
            .layer(ObserveLayer)
            .layer(PropagateRequestIdLayer::x_request_id())
            .option_layer(cors)
            .layer(MapResponseLayer::new(add_security_headers))
            .layer(CatchPanicLayer::custom(panic_response))
            .layer(MapRequestLayer::new(limit_body_time(body_time)))
            .layer(DefaultBodyLimit::max(max_body)),
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

/// Serves `app` on `listener` until `shutdown` completes, then stops accepting and lets
/// in-flight requests finish (within `SHUTDOWN_TIMEOUT`).
pub async fn serve(
    app: std::sync::Arc<crate::app::App>,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let limits = Limits::from_config(&app.config);
    server::serve(router(app), listener, limits, shutdown).await
}

#[cfg(test)]
mod tests {
    use axum::body::Body;
    use axum::http::{Request, StatusCode};
    use axum::routing::get;
    use tower::ServiceExt;

    use super::*;

    #[tokio::test]
    async fn a_panic_answers_500_with_the_headers_every_response_carries() {
        #[allow(clippy::panic)]
        async fn boom() -> &'static str {
            panic!("handler bug")
        }
        let routes = Router::new().route("/boom", get(boom));
        let router = with_middleware(routes, None, std::time::Duration::from_secs(5), 1024);
        let request = Request::builder().uri("/boom").body(Body::empty());
        let response = router
            .oneshot(request.unwrap_or_default())
            .await
            .unwrap_or_else(|never| match never {});
        assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
        let header = |name: &str| response.headers().get(name).map(|v| v.as_bytes().to_vec());
        assert_eq!(header("x-content-type-options"), Some(b"nosniff".to_vec()));
        assert_eq!(header("cache-control"), Some(b"no-store".to_vec()));
        assert!(header("x-request-id").is_some_and(|id| id.len() == 36));
    }
}
