//! The HTTP server under the router: accepts connections, bounds how long a client may take
//! (headers, bodies, silence), and shuts down gracefully within a hard deadline.
//!
//! axum's own `serve` sets none of these limits, so a client sending a byte every few seconds
//! holds a connection (and a half-sent request holds a stopping process) forever. Here:
//! - request headers must arrive within `header_read` of the connection being ready for a
//!   request (hyper's timer starts as soon as it waits for the next request, so this also
//!   closes idle HTTP/1.1 keep-alive connections);
//! - a request body must arrive within `HTTP_BODY_TIMEOUT` of its headers (enforced by the
//!   router's `http::middleware::limit_body_time`, 408);
//! - a connection where no byte moves either way for `idle` is closed (a stalled reader, an
//!   idle HTTP/2 connection);
//! - at shutdown, connections get `shutdown` to finish what they are doing, then are cut.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::Request;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto::Builder;
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;

/// How long a client may take, and how long shutdown may wait.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub(crate) header_read: Duration,
    pub(crate) idle: Duration,
    pub(crate) shutdown: Duration,
}

impl Limits {
    pub fn from_config(config: &crate::config::Config) -> Self {
        Self {
            header_read: Duration::from_secs(config.http_header_timeout),
            idle: Duration::from_secs(config.http_idle_timeout),
            shutdown: Duration::from_secs(config.shutdown_timeout),
        }
    }
}

/// Serves `router` on `listener` until `shutdown` completes; then stops accepting, lets the
/// open connections finish for up to `limits.shutdown`, and cuts the rest.
pub async fn serve(
    router: Router,
    listener: TcpListener,
    limits: Limits,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let mut builder = Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read);
    builder.http2().timer(TokioTimer::new());
    let (stop, stopping) = tokio::sync::watch::channel(false);
    let mut connections = JoinSet::new();
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    connections.spawn(connection(
                        stream,
                        peer,
                        router.clone(),
                        builder.clone(),
                        limits.idle,
                        stopping.clone(),
                    ));
                }
                Err(err) => accept_failed(err).await,
            },
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
            () = &mut shutdown => break,
        }
    }
    drop(listener);
    stop.send_replace(true);
    let drained = tokio::time::timeout(limits.shutdown, async {
        while connections.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        tracing::warn!(
            connections = connections.len(),
            deadline_seconds = limits.shutdown.as_secs(),
            "shutdown deadline reached; closing the connections still open"
        );
        connections.shutdown().await;
    }
    Ok(())
}

/// Errors of `accept` concern one connection (reset before it was accepted) or the process
/// (out of file descriptors): neither stops the server, but the second must not spin.
async fn accept_failed(err: std::io::Error) {
    tracing::warn!(error = %err, "accepting a connection failed");
    tokio::time::sleep(Duration::from_millis(50)).await;
}

/// Serves one connection until it ends, falls silent for `idle`, or shutdown passes it.
async fn connection(
    stream: TcpStream,
    peer: SocketAddr,
    router: Router,
    builder: Builder<TokioExecutor>,
    idle: Duration,
    mut stopping: tokio::sync::watch::Receiver<bool>,
) {
    let _ = stream.set_nodelay(true);
    let stream = Watched::new(stream);
    let activity = Arc::clone(&stream.activity);
    let service = tower::service_fn(move |request: Request<hyper::body::Incoming>| {
        let mut request = request.map(Body::new);
        request.extensions_mut().insert(ConnectInfo(peer));
        tower::ServiceExt::oneshot(router.clone(), request)
    });
    let connection =
        builder.serve_connection(TokioIo::new(stream), TowerToHyperService::new(service));
    tokio::pin!(connection);
    // A quarter of the idle limit between looks (a silent connection closes within 1.25× the
    // limit): one timer a connection, firing rarely, even with thousands of open streams.
    let mut check = tokio::time::interval(
        (idle / 4).clamp(Duration::from_millis(250), Duration::from_secs(15)),
    );
    let mut shutting_down = false;
    loop {
        tokio::select! {
            result = connection.as_mut() => {
                if let Err(err) = result {
                    tracing::debug!(error = %err, "connection ended with an error");
                }
                return;
            }
            _ = check.tick() => {
                if activity.silent_for() >= idle {
                    tracing::debug!("closing a connection silent for the idle timeout");
                    return;
                }
            }
            _ = stopping.wait_for(|stop| *stop), if !shutting_down => {
                shutting_down = true;
                connection.as_mut().graceful_shutdown();
            }
        }
    }
}

/// When a connection last moved a byte, in milliseconds since it was accepted.
struct Activity {
    since: Instant,
    last: AtomicU64,
}

impl Activity {
    fn touch(&self) {
        let now = u64::try_from(self.since.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.last.store(now, Ordering::Relaxed);
    }

    fn silent_for(&self) -> Duration {
        let now = self.since.elapsed();
        now.saturating_sub(Duration::from_millis(self.last.load(Ordering::Relaxed)))
    }
}

/// A TCP stream that records when bytes last moved.
struct Watched {
    inner: TcpStream,
    activity: Arc<Activity>,
}

impl Watched {
    fn new(inner: TcpStream) -> Self {
        Self {
            inner,
            activity: Arc::new(Activity {
                since: Instant::now(),
                last: AtomicU64::new(0),
            }),
        }
    }
}

impl AsyncRead for Watched {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        if buf.filled().len() > before {
            self.activity.touch();
        }
        polled
    }
}

impl AsyncWrite for Watched {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write(cx, buf);
        if matches!(polled, Poll::Ready(Ok(n)) if n > 0) {
            self.activity.touch();
        }
        polled
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        if matches!(polled, Poll::Ready(Ok(n)) if n > 0) {
            self.activity.touch();
        }
        polled
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// Completes on SIGINT (Ctrl-C) or SIGTERM.
pub(crate) async fn shutdown_signal() {
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
