//! The ceiling of the HTTP stack on this machine, for benchmarks: a bare axum route answering
//! constant JSON (no middleware, no state), measured in the same run as gemchat so each of
//! gemchat's figures is also a ratio to it.
//!
//! `bare_axum [PORT]` (default 8090). Prints `ready` once it listens.

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
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await?;
    // The harness waits for this line.
    let mut out = std::io::stdout().lock();
    std::io::Write::write_all(&mut out, b"ready\n")?;
    std::io::Write::flush(&mut out)?;
    drop(out);
    // As gemchat's own server: small writes (headers, then each event) go out at once, not after
    // the peer's delayed ACK.
    let listener = axum::serve::ListenerExt::tap_io(listener, |tcp| {
        let _ = tcp.set_nodelay(true);
    });
    axum::serve(listener, app).await?;
    Ok(())
}
