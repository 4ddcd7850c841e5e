//! The ceiling of the HTTP stack on this machine, for benchmarks: a bare axum route answering
//! constant JSON (no middleware, no state), measured in the same run as gemchat so each of
//! gemchat's figures is also a ratio to it.
//!
//! `bare_axum [PORT]` (default 8090). Prints `ready` once it listens.

#[path = "support/mod.rs"]
mod support;

use axum::Router;
use axum::http::header;
use axum::routing::get;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let port: u16 = std::env::args().nth(1).map_or(Ok(8090), |a| a.parse())?;
    let app = Router::new().fallback(get(|| async {
        (
            [(header::CONTENT_TYPE, "application/json")],
            r#"{"status":"ok"}"#,
        )
    }));
    support::serve_on(port, app).await
}
