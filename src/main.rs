//! The `gemchat` binary: reads `.env`, parses the command line, runs the command.

use std::process::ExitCode;

#[tokio::main]
async fn main() -> ExitCode {
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
