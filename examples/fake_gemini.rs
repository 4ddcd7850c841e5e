//! A stand-in for Google's Gemini API, for benchmarks: answers every
//! `POST /v1beta/models/{model}:streamGenerateContent?alt=sse` with a streamed reply in the
//! real SSE format (`spec/gemini.md`), spread evenly over a configurable latency.
//!
//! `fake_gemini [PORT] [LATENCY_MS] [CHUNKS]` (defaults 8089, 50, 5). Prints `ready` once it
//! listens.

#[path = "support/mod.rs"]
mod support;

use std::convert::Infallible;
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::http::header;
use axum::response::Response;
use axum::routing::post;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let port: u16 = args.next().map_or(Ok(8089), |a| a.parse())?;
    let latency = Duration::from_millis(args.next().map_or(Ok(50), |a| a.parse())?);
    let chunks: u32 = args.next().map_or(Ok(5), |a| a.parse())?;
    let chunks = chunks.max(1);
    let app = Router::new().route(
        "/v1beta/models/{call}",
        post(move |_body: Bytes| async move { stream_reply(latency, chunks) }),
    );
    support::serve_on(port, app).await
}

/// `chunks` SSE events, one every `latency / chunks`, the last with `finishReason` and usage.
/// Each is due at its time from the request (not `gap` after the previous was written, which
/// added each write's delay and timer rounding: 5 chunks "over 50 ms" took 55-60).
fn stream_reply(latency: Duration, chunks: u32) -> Response {
    let gap = latency / chunks;
    let start = tokio::time::Instant::now();
    let events = futures::stream::unfold(0, move |i| async move {
        if i == chunks {
            return None;
        }
        tokio::time::sleep_until(start + gap * (i + 1)).await;
        let last = i + 1 == chunks;
        let mut event = serde_json::json!({
            "candidates": [{
                "content": {"parts": [{"text": format!("Piece {i} of a benchmark reply. ")}], "role": "model"},
                "index": 0
            }],
            "usageMetadata": {"promptTokenCount": 12, "totalTokenCount": 12},
            "modelVersion": "gemini-2.5-flash-001",
        });
        if last {
            event["candidates"][0]["finishReason"] = "STOP".into();
            event["usageMetadata"] = serde_json::json!(
                {"promptTokenCount": 12, "candidatesTokenCount": 40, "totalTokenCount": 52}
            );
        }
        Some((
            Ok::<_, Infallible>(Bytes::from(format!("data: {event}\r\n\r\n"))),
            i + 1,
        ))
    });
    Response::builder()
        .header(header::CONTENT_TYPE, "text/event-stream")
        .body(Body::from_stream(events))
        .unwrap_or_default()
}
