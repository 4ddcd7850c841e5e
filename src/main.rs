//! The `gemchat` binary: reads `.env`, parses the command line, runs the command.

use std::process::ExitCode;

#[tokio::main]
async fn main() -> ExitCode {
    // One TLS stack, rustls with ring; it must be chosen before any HTTPS client is built.
    let _ = rustls::crypto::ring::default_provider().install_default();
    // A missing .env is normal; a malformed one is reported once logging is up.
    let dotenv = dotenvy::dotenv();
    let cli = gemchat::config::Cli::parse_env();
    if let Err(err) = dotenv
        && !err.not_found()
    {
        eprintln!("warning: ignoring .env: {err}");
    }
    match gemchat::run(cli).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            tracing::error!(error = format!("{err:#}"), "gemchat stopped");
            eprintln!("error: {err:#}");
            ExitCode::FAILURE
        }
    }
}
