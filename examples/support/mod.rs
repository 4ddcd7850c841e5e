//! What the benchmark's stand-in servers share: how they listen.

/// Serves `app` on `127.0.0.1:port`, printing `ready` (the harness waits for that line) once it
/// listens. As gemchat's own server, small writes (headers, then each event) go out at once,
/// not after the peer's delayed ACK.
pub async fn serve_on(port: u16, app: axum::Router) -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await?;
    let mut out = std::io::stdout().lock();
    std::io::Write::write_all(&mut out, b"ready\n")?;
    std::io::Write::flush(&mut out)?;
    drop(out);
    let listener = axum::serve::ListenerExt::tap_io(listener, |tcp| {
        let _ = tcp.set_nodelay(true);
    });
    axum::serve(listener, app).await?;
    Ok(())
}
