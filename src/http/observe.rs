//! What every request leaves behind, in one layer: the span its log lines carry (method, route
//! template, request id, and the user id once the token checks out), the access line
//! (`request finished`, with status and latency) and its two metrics series.
//!
//! One layer, with a future of its own, where tower-http's `TraceLayer` and a `from_fn`
//! middleware for the metrics were two: each layer `Router::layer` adds costs a boxed service
//! clone and a boxed future per request, and `from_fn` two more (see the README, "The request
//! path").

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::Instant;

use axum::BoxError;
use axum::body::Body;
use axum::extract::MatchedPath;
use axum::http::{Request, Response};
use bytes::Bytes;
use tower::{Layer, Service};
use tracing::Span;

/// Observes each request of the service it wraps. Layered after routing (`Router::layer`), so
/// the route template is known.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct ObserveLayer;

impl<S> Layer<S> for ObserveLayer {
    type Service = Observe<S>;

    fn layer(&self, inner: S) -> Observe<S> {
        Observe { inner }
    }
}

/// See [`ObserveLayer`].
#[derive(Debug, Clone)]
pub(crate) struct Observe<S> {
    inner: S,
}

impl<S, B> Service<Request<Body>> for Observe<S>
where
    S: Service<Request<Body>, Response = Response<B>>,
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    type Response = Response<Body>;
    type Error = S::Error;
    type Future = Observed<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<Body>) -> Self::Future {
        let start = Instant::now();
        let method = crate::metrics::method_label(request.method());
        // The route template, never the concrete path (ids stay out of logs and labels).
        let route = request.extensions().get::<MatchedPath>().cloned();
        let span = request_span(&request, method, route.as_ref());
        let inner = span.in_scope(|| self.inner.call(request));
        Observed {
            inner,
            span,
            start,
            method,
            route,
        }
    }
}

pin_project_lite::pin_project! {
    /// The wrapped service's response, in the request's span, observed once it is ready.
    pub(crate) struct Observed<F> {
        #[pin]
        inner: F,
        span: Span,
        start: Instant,
        method: &'static str,
        route: Option<MatchedPath>,
    }
}

impl<F, B, E> Future for Observed<F>
where
    F: Future<Output = Result<Response<B>, E>>,
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    type Output = Result<Response<Body>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let entered = this.span.enter();
        let result = ready!(this.inner.poll(cx));
        let latency = this.start.elapsed();
        let route = this.route.as_ref().map_or(UNMATCHED, MatchedPath::as_str);
        let response = match result {
            Ok(response) => response,
            Err(err) => return Poll::Ready(Err(err)),
        };
        let status = response.status().as_u16();
        crate::metrics::record_http(this.method, route, status, latency);
        tracing::info!(
            status,
            latency_ms = latency.as_secs_f64() * 1000.0,
            "request finished"
        );
        drop(entered);
        // A streamed body (an event stream, an export) is produced after this point: its
        // polls run in the span too, so what they log is tied to the request.
        let streamed = http_body::Body::size_hint(response.body())
            .exact()
            .is_none();
        let response = if streamed {
            let span = this.span.clone();
            response.map(|body| Body::new(InSpan { body, span }))
        } else {
            response.map(Body::new)
        };
        Poll::Ready(Ok(response))
    }
}

/// The route label of a request no route matched.
const UNMATCHED: &str = "unmatched";

/// The span every request runs in: one log line per request carries these fields.
/// `user_id` is filled in by the `AuthUser` extractor once the token checks out.
fn request_span(
    request: &Request<Body>,
    method: &'static str,
    route: Option<&MatchedPath>,
) -> Span {
    let request_id = request
        .headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let route = route.map_or(UNMATCHED, MatchedPath::as_str);
    tracing::info_span!(
        "request",
        method,
        route,
        request_id,
        user_id = tracing::field::Empty,
    )
}

pin_project_lite::pin_project! {
    /// A response body polled in the request's span.
    struct InSpan<B> {
        #[pin]
        body: B,
        span: Span,
    }
}

impl<B: http_body::Body> http_body::Body for InSpan<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Self::Data>, Self::Error>>> {
        let this = self.project();
        let _entered = this.span.enter();
        this.body.poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.body.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex, PoisonError};

    use axum::Router;
    use axum::routing::get;
    use http_body_util::BodyExt;
    use tower::ServiceExt;
    use tracing::field::{Field, Visit};
    use tracing_subscriber::layer::{Context, SubscriberExt};

    use super::*;

    /// Each event's message and the name of the span it happened in.
    type Seen = Arc<Mutex<Vec<(String, Option<&'static str>)>>>;

    struct Recorder(Seen);

    impl<S> tracing_subscriber::Layer<S> for Recorder
    where
        S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
    {
        fn on_event(&self, event: &tracing::Event<'_>, ctx: Context<'_, S>) {
            struct Message(String);
            impl Visit for Message {
                fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
                    if field.name() == "message" {
                        self.0 = format!("{value:?}");
                    }
                }
            }
            let mut message = Message(String::new());
            event.record(&mut message);
            let span = ctx.event_span(event).map(|span| span.name());
            let mut seen = self.0.lock().unwrap_or_else(PoisonError::into_inner);
            seen.push((message.0, span));
        }
    }

    #[tokio::test]
    async fn the_access_line_and_a_streamed_body_are_in_the_request_span() {
        let seen = Seen::default();
        let subscriber = tracing_subscriber::registry().with(Recorder(Arc::clone(&seen)));
        let _default = tracing::subscriber::set_default(subscriber);
        let streamed = || async {
            Body::from_stream(futures::stream::once(async {
                tracing::warn!("while streaming");
                Ok::<_, std::convert::Infallible>(Bytes::from_static(b"data"))
            }))
        };
        let router = Router::new()
            .route("/stream/{id}", get(streamed))
            .layer(ObserveLayer);
        let request = Request::builder().uri("/stream/7").body(Body::empty());
        let response = router
            .oneshot(request.unwrap_or_default())
            .await
            .unwrap_or_else(|never| match never {});
        assert_eq!(response.status(), axum::http::StatusCode::OK);
        // The line is written when the response is ready, before its body is read.
        let before_body = seen.lock().unwrap_or_else(PoisonError::into_inner).clone();
        assert_eq!(
            before_body,
            vec![("request finished".to_owned(), Some("request"))]
        );
        let body = response.into_body().collect().await.map(|b| b.to_bytes());
        assert_eq!(body.unwrap_or_default(), Bytes::from_static(b"data"));
        let seen = seen.lock().unwrap_or_else(PoisonError::into_inner).clone();
        assert_eq!(
            seen.last(),
            Some(&("while streaming".to_owned(), Some("request")))
        );
    }
}
