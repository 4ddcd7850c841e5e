//! Logging set-up: `LOG_FORMAT=pretty|json` (pretty on a terminal by default), filtered by
//! `RUST_LOG` (default `info`).

use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;

use crate::config::LogFormat;

/// Installs the global subscriber; later calls are no-ops (tests build many apps).
pub(crate) fn init(format: Option<LogFormat>) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let format = format.unwrap_or(if std::io::stdout().is_terminal() {
        LogFormat::Pretty
    } else {
        LogFormat::Json
    });
    let builder = tracing_subscriber::fmt().with_env_filter(filter);
    let _ = match format {
        LogFormat::Pretty => builder.try_init(),
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            // Spans never nest here (one per request, one per reply), so the current span
            // carries every field; serialising the span list too would repeat it.
            .with_current_span(true)
            .with_span_list(false)
            .try_init(),
    };
}
