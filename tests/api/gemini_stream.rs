//! A Gemini whose streamed answers the test writes chunk by chunk, over real HTTP in the real
//! SSE format, and which sees when the client closes a stream (a cancelled reply must close it).

use std::convert::Infallible;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::http::header;
use axum::response::Response;
use axum::routing::post;
use futures::Stream;
use serde_json::{Value, json};
use tokio::sync::{Mutex, mpsc};

use crate::harness::eventually;

/// One call the fake received, whose answer the test streams.
pub struct Call {
    /// What follows `/v1beta/models/`: the model and the method.
    pub target: String,
    pub body: Value,
    chunks: mpsc::Sender<Bytes>,
    closed: Arc<AtomicBool>,
}

impl Call {
    /// Streams one piece of the answer.
    pub async fn send(&self, text: &str) {
        let event = json!({
            "candidates": [{"content": {"parts": [{"text": text}], "role": "model"}, "index": 0}],
            "usageMetadata": {"promptTokenCount": 10, "totalTokenCount": 10},
            "modelVersion": self.model_version(),
        });
        let _ = self
            .chunks
            .send(Bytes::from(format!("data: {event}\r\n\r\n")))
            .await;
    }

    /// Ends the answer as Gemini does: a last event with `finishReason: STOP` and the usage,
    /// then the end of the response.
    pub async fn finish(self) {
        let event = json!({
            "candidates": [{"content": {"parts": [{"text": ""}], "role": "model"},
                            "finishReason": "STOP", "index": 0}],
            "usageMetadata": {"promptTokenCount": 10, "candidatesTokenCount": 5, "totalTokenCount": 15},
            "modelVersion": self.model_version(),
        });
        let _ = self
            .chunks
            .send(Bytes::from(format!("data: {event}\r\n\r\n")))
            .await;
    }

    /// The version Gemini names for the model asked (`gemini-2.5-flash` -> `…-001`).
    fn model_version(&self) -> String {
        format!("{}-001", self.target.split(':').next().unwrap_or_default())
    }

    /// Waits until the client has closed this stream.
    pub async fn closed_by_client(&self, within: Duration) {
        let closed = Arc::clone(&self.closed);
        eventually(within, "the client closed the stream", || {
            let closed = Arc::clone(&closed);
            async move { closed.load(Ordering::Acquire) }
        })
        .await;
    }
}

/// The fake: `uri` for `GEMINI_BASE_URL`, and the calls in the order they came.
pub struct StreamingGemini {
    pub uri: String,
    calls: Mutex<mpsc::Receiver<Call>>,
}

impl StreamingGemini {
    pub async fn start() -> Self {
        let (calls, received) = mpsc::channel::<Call>(16);
        let app = Router::new().route(
            "/v1beta/models/{call}",
            post(
                move |axum::extract::Path(target): axum::extract::Path<String>, body: Bytes| {
                    let calls = calls.clone();
                    async move { answer(&calls, target, &body).await }
                },
            ),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the fake Gemini");
        let address = listener.local_addr().expect("address");
        tokio::spawn(async move { axum::serve(listener, app).await });
        Self {
            uri: format!("http://{address}"),
            calls: Mutex::new(received),
        }
    }

    /// The next call, once it arrives.
    pub async fn next_call(&self) -> Call {
        let mut calls = self.calls.lock().await;
        let next = tokio::time::timeout(Duration::from_secs(10), calls.recv()).await;
        next.ok().flatten().expect("a call to the fake Gemini")
    }
}

async fn answer(calls: &mpsc::Sender<Call>, target: String, body: &Bytes) -> Response {
    let (chunks, pieces) = mpsc::channel::<Bytes>(16);
    let closed = Arc::new(AtomicBool::new(false));
    let call = Call {
        target,
        body: serde_json::from_slice(body).unwrap_or(Value::Null),
        chunks,
        closed: Arc::clone(&closed),
    };
    let _ = calls.send(call).await;
    let stream = Watched { pieces, closed };
    Response::builder()
        .header(header::CONTENT_TYPE, "text/event-stream")
        .body(Body::from_stream(stream))
        .unwrap_or_default()
}

/// The answer's body: what the test sends; notes when the server drops it (the client went).
struct Watched {
    pieces: mpsc::Receiver<Bytes>,
    closed: Arc<AtomicBool>,
}

impl Stream for Watched {
    type Item = Result<Bytes, Infallible>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.pieces.poll_recv(cx).map(|piece| piece.map(Ok))
    }
}

impl Drop for Watched {
    fn drop(&mut self) {
        self.closed.store(true, Ordering::Release);
    }
}
